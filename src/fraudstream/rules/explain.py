"""A user rule's reason: the conditions that held, with the values that made them hold.

A rule's message lists each condition of its expression (a comparison, ``in``, ``is null``,
``startswith``, ``fired``) that held on the row (or, under a ``not``, did not), joined by
``"; "``, e.g. ``3 distinct card_id on device_id d-9 within 1h (>= 3)`` or
``amount 1,204.50 (> 1000); hour 3 (< 6)``. Messages are written when read, for the rows
read, from the batch's columns (:class:`RuleMessages`, bound to a batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, overload

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.rules.aggregates import KEY_SEPARATOR
from fraudstream.rules.compile import Compiled, RuleInput, aggregate_store, compile_node
from fraudstream.rules.parse import (
    Aggregate,
    BoolOp,
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
from fraudstream.rules.ruleset import UserRule

__all__ = ["RuleMessages", "atoms", "show"]

_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def show(value: Any) -> str:
    """A value the way reasons show it.

    >>> show(3.0), show(1204.5), show(None), show("d-9"), show(True)
    ('3', '1,204.50', 'null', 'd-9', 'true')
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "null"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | int):
        if float(value).is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.2f}"
    return str(value)


def atoms(node: Node, negated: bool = False) -> list[tuple[Node, bool]]:
    """The conditions of an expression, each with whether it sits under a ``not``."""
    if isinstance(node, BoolOp):
        return [atom for item in node.items for atom in atoms(item, negated)]
    if isinstance(node, Not):
        return atoms(node.operand, not negated)
    if isinstance(node, Compare | InList | IsNull | StartsWith | Fired):
        return [(node, negated)]
    return []


def _values(column: Any, rows: npt.NDArray[np.int64]) -> list[Any]:
    if isinstance(column, pa.Array):
        return list(column.take(pa.array(rows, pa.int64())).to_pylist())
    return list(np.asarray(column)[rows].tolist())


class _Operand:
    """One side of a condition: how to compute it and how to say it."""

    def __init__(self, node: Node, lists: Mapping[str, tuple[str, ...]]) -> None:
        self.node = node
        self.compute = compile_node(node, lists)

    def say(self, batch: RuleInput, rows: npt.NDArray[np.int64]) -> list[str]:
        node = self.node
        if isinstance(node, Const):
            return [node.text] * len(rows)
        values = [show(v) for v in _values(self.compute(batch), rows)]
        if isinstance(node, Field):
            return [f"{node.name} {v}" for v in values]
        if isinstance(node, Aggregate):
            keys = _values(batch.keys[aggregate_store(node)], rows)
            by = ", ".join(node.by)
            where = [f"on {by} {show(k).replace(KEY_SEPARATOR, ', ')} within {node.over_text}"
                     for k in keys]  # fmt: skip
            if node.kind == "count":
                return [f"{v} transactions {w}" for v, w in zip(values, where, strict=True)]
            if node.kind == "distinct_count":
                return [
                    f"{v} distinct {node.field} {w}" for v, w in zip(values, where, strict=True)
                ]
            return [
                f"{node.kind} of {node.field} {v} {w}" for v, w in zip(values, where, strict=True)
            ]
        return [f"{node.text} = {v}" for v in values]


class _Atom:
    def __init__(self, node: Node, negated: bool, lists: Mapping[str, tuple[str, ...]]) -> None:
        self.node = node
        self.negated = negated
        self.truth: Compiled = compile_node(node, lists)
        self.operands: list[_Operand] = []
        if isinstance(node, Compare):
            self.operands = [_Operand(node.left, lists), _Operand(node.right, lists)]
        elif isinstance(node, InList | IsNull | StartsWith):
            self.operands = [_Operand(node.operand, lists)]

    def say(self, batch: RuleInput, rows: npt.NDArray[np.int64]) -> list[str]:
        node, no = self.node, "not " if self.negated else ""
        if isinstance(node, Fired):
            return [f"{no}fired {node.rule}"] * len(rows)
        if isinstance(node, Compare):
            left, right = self.operands
            op = node.op
            if isinstance(node.left, Const) and not isinstance(node.right, Const):
                left, right, op = right, left, _FLIPPED[op]
            said = zip(left.say(batch, rows), right.say(batch, rows), strict=True)
            return [f"{a} ({no}{op} {b})" for a, b in said]
        subject = self.operands[0].say(batch, rows)
        if isinstance(node, InList):
            inside = "not in" if node.negated else "in"
            target = (
                f"list {node.list_name}"
                if node.list_name is not None
                else ("[" + ", ".join(show(v) for v in node.values) + "]")
            )
            return [f"{s} ({no}{inside} {target})" for s in subject]
        if isinstance(node, IsNull):
            test = "is not null" if node.negated else "is null"
            return [f"{s} ({no}{test})" for s in subject]
        assert isinstance(node, StartsWith)
        return [f"{s} ({no}starts with '{node.prefix}')" for s in subject]


class RuleMessages:
    """How a user rule's reasons are written; :meth:`bind` ties it to a batch's fired rows."""

    def __init__(self, rule: UserRule, lists: Mapping[str, tuple[str, ...]]) -> None:
        self.rule = rule
        found = atoms(rule.tree) if rule.tree is not None else []
        self.atoms = [_Atom(node, negated, lists) for node, negated in found]

    def bind(self, batch: RuleInput, rows: npt.NDArray[np.int64]) -> BoundMessages:
        """The messages of ``rows`` of ``batch`` (written when read)."""
        return BoundMessages(self, batch, rows)


class BoundMessages(Sequence[str]):
    """One rule's messages for its fired rows of one batch; :meth:`at` writes some."""

    def __init__(self, how: RuleMessages, batch: RuleInput, rows: npt.NDArray[np.int64]) -> None:
        self.how = how
        self.batch = batch
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return self.at(np.arange(len(self.rows))[index])
        return self.at(np.array([index], dtype=np.int64))[0]

    def at(self, positions: npt.NDArray[np.int64]) -> list[str]:
        """The messages at ``positions`` (indexes into the fired rows)."""
        rows = self.rows[np.asarray(positions, dtype=np.int64)]
        parts: list[list[str]] = [[] for _ in range(len(rows))]
        for atom in self.how.atoms:
            held = np.asarray(atom.truth(self.batch), dtype=np.bool_)[rows] != atom.negated
            chosen = np.flatnonzero(held)
            if len(chosen):
                for k, text in zip(
                    chosen.tolist(), atom.say(self.batch, rows[chosen]), strict=True
                ):
                    parts[k].append(text)
        fallback = self.how.rule.description or self.how.rule.id
        return ["; ".join(p) if p else fallback for p in parts]
