"""The rule language evaluated one record at a time, plainly: the oracle for the compiled rules.

This is the language's semantics written as directly as possible (None is null; a comparison,
``in`` or ``startswith`` with a null operand is false; arithmetic with a null is null, as are
``x / 0``, ``x % 0``, ``log`` of a number <= 0 and ``min``/``max`` with a null argument).
Tests hold :mod:`.compile` and :mod:`.aggregates` to it on random expressions and streams; it
is far too slow for the pipeline.

>>> from fraudstream.rules.parse import parse
>>> rules = ReferenceRules({"hot": parse("count(by=device_id, over='1s') >= 2 and amount > 5")})
>>> [rules.step({"device_id": "d", "amount": 9.0}, t, {})["hot"] for t in (0, 500, 1_500)]
[False, True, False]
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from fraudstream.rules.aggregates import reference_step
from fraudstream.rules.compile import aggregate_store
from fraudstream.rules.parse import (
    Aggregate,
    Arith,
    BoolOp,
    Call,
    Compare,
    Const,
    Field,
    Fired,
    InList,
    IsNull,
    Node,
    Not,
    StartsWith,
)

__all__ = ["ReferenceRules", "evaluate"]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}  # fmt: skip


def evaluate(
    node: Node,
    row: Mapping[str, Any],
    aggregate: Callable[[Aggregate], float | None],
    lists: Mapping[str, tuple[str, ...]],
    fired: Mapping[str, bool],
) -> Any:
    """The value of ``node`` for one record (``row``: field name -> value, None for null)."""

    def ev(n: Node) -> Any:
        return evaluate(n, row, aggregate, lists, fired)

    if isinstance(node, Const):
        return node.value
    if isinstance(node, Field):
        return row.get(node.name)
    if isinstance(node, Arith):
        a = ev(node.left)
        if node.right is None:
            return None if a is None else -a
        b = ev(node.right)
        if a is None or b is None:
            return None
        if node.op in ("/", "%") and b == 0:
            return None
        return {"+": operator.add, "-": operator.sub, "*": operator.mul,
                "/": operator.truediv, "%": operator.mod}[node.op](a, b)  # fmt: skip
    if isinstance(node, Compare):
        a, b = ev(node.left), ev(node.right)
        return a is not None and b is not None and _COMPARE[node.op](a, b)
    if isinstance(node, BoolOp):
        values = [ev(item) for item in node.items]
        return all(values) if node.op == "and" else any(values)
    if isinstance(node, Not):
        return not ev(node.operand)
    if isinstance(node, InList):
        value = ev(node.operand)
        if value is None:
            return False
        entries = lists[node.list_name] if node.list_name is not None else node.values
        if isinstance(value, str):
            found = value in {str(e) for e in entries}
        else:
            found = value in {n for n in (_number(e) for e in entries) if n is not None}
        return not found if node.negated else found
    if isinstance(node, IsNull):
        return (ev(node.operand) is not None) if node.negated else ev(node.operand) is None
    if isinstance(node, StartsWith):
        value = ev(node.operand)
        return value is not None and value.startswith(node.prefix)
    if isinstance(node, Call):
        args = [ev(a) for a in node.args]
        if any(a is None for a in args):
            return None
        if node.function == "abs":
            return abs(args[0])
        if node.function == "log":
            return math.log(args[0]) if args[0] > 0 else None
        return min(args) if node.function == "min" else max(args)
    if isinstance(node, Fired):
        return bool(fired.get(node.rule, False))
    if isinstance(node, Aggregate):
        return aggregate(node)
    raise TypeError(f"cannot evaluate {node!r}")


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class ReferenceRules:
    """Rules (id -> checked tree) run record by record in processing order, each aggregate
    keeping the full history of its key space (:func:`~.aggregates.reference_step`)."""

    def __init__(
        self, rules: Mapping[str, Node], lists: Mapping[str, tuple[str, ...]] | None = None
    ) -> None:
        self.rules = dict(rules)
        self.lists = lists or {}
        self.histories: dict[tuple[str, str], dict[Any, list[tuple[int, Any]]]] = {}

    def step(
        self, row: Mapping[str, Any], time_ms: int, fired: Mapping[str, bool]
    ) -> dict[str, bool]:
        """Which rules the record fires (``time_ms``: the pipeline's clock for it)."""
        values: dict[tuple[str, str], float | None] = {}

        def aggregate(node: Aggregate) -> float | None:
            name = (aggregate_store(node), node.kind)
            if name not in values:  # each record joins each key space once
                parts = [row.get(f) for f in node.by]
                key = None if any(p is None for p in parts) else tuple(parts)
                value = row.get(node.field) if node.field is not None else None
                history = self.histories.setdefault(name, {})
                window = node.over_ms
                values[name] = reference_step(history, key, time_ms, value, window, node.kind)
            return values[name]

        # Every aggregate joins its window whether or not `and`/`or` reach it.
        for tree in self.rules.values():
            for found in _aggregates(tree):
                aggregate(found)
        return {
            rule: bool(evaluate(tree, row, aggregate, self.lists, fired))
            for rule, tree in self.rules.items()
        }


def _aggregates(node: Any) -> list[Aggregate]:
    if isinstance(node, Aggregate):
        return [node]
    if isinstance(node, Node):
        return [a for name in node.__dataclass_fields__ for a in _aggregates(getattr(node, name))]
    if isinstance(node, tuple):
        return [a for item in node for a in _aggregates(item)]
    return []
