"""The user rules of a rule set, compiled and run over micro-batches, with their window state.

:class:`UserRules` compiles every enabled user rule once (when rules are applied), owns the
aggregates' key spaces (:class:`~.aggregates.WindowStore`, one per ``(by, over, field)``,
kept across a reload when the new rules still use them) and, per batch, steps each key space
once, evaluates every rule over the whole batch and returns which rows each rule fired, the
forced outcomes and the reasons' texts (written lazily, for the rows read).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.rules.aggregates import WindowStore, key_column
from fraudstream.rules.check import TX_FIELDS
from fraudstream.rules.compile import (
    SHARED_KEY_FIELDS,
    Compiled,
    RuleInput,
    aggregate_store,
    compile_node,
    number_column,
)
from fraudstream.rules.explain import BoundMessages, RuleMessages
from fraudstream.rules.parse import Aggregate, Node, parse
from fraudstream.rules.ruleset import UserRule

Bools = npt.NDArray[np.bool_]
__all__ = [
    "OUTCOME_TIER",
    "UserFindings",
    "UserRules",
    "aggregates_of",
    "key_part",
    "windowed",
]

OUTCOME_TIER = {"review": 1, "approve": 0, "decline": 2}
# Applied in this order, each overriding the one before: decline beats approve beats review.
_OUTCOME_ORDER = ("review", "approve", "decline")
_OUTCOME_RANK = {"decline": 4.0, "approve": 3.0, "review": 2.0}


def aggregates_of(node: Node) -> list[Aggregate]:
    """Every aggregate in an expression tree, in source order."""
    found: list[Aggregate] = []

    def walk(value: Any) -> None:
        if isinstance(value, Aggregate):
            found.append(value)
        elif isinstance(value, Node):
            for name in value.__dataclass_fields__:
                walk(getattr(value, name))
        elif isinstance(value, tuple):
            for item in value:
                walk(item)

    walk(node)
    return found


def windowed(rules: Iterable[UserRule]) -> list[str]:
    """The ids of the rules holding an aggregate: window state under a key of their own
    (a device, a merchant, a card and merchant), which a job keyed by card and user cannot
    keep in one place; the other rules read only the record and its detectors' answers.

    >>> from fraudstream.rules.parse import parse
    >>> rules = [UserRule("big", "amount > 900", tree=parse("amount > 900")),
    ...          UserRule("busy", "count(by=device_id, over='1h') > 9",
    ...                   tree=parse("count(by=device_id, over='1h') > 9"))]
    >>> windowed(rules)
    ['busy']
    """
    return [
        rule.id
        for rule in rules
        if aggregates_of(rule.tree if rule.tree is not None else parse(rule.when))
    ]


@dataclass(slots=True)
class _Compiled:
    rule: UserRule
    condition: Compiled
    messages: RuleMessages


@dataclass(slots=True)
class UserFindings:
    """What the user rules found in a batch."""

    fired: dict[str, Bools]
    messages: dict[str, tuple[npt.NDArray[np.int64], BoundMessages]]
    outcome: npt.NDArray[np.int8] | None  # forced tier per row, -1 where none


class UserRules:
    """The enabled user rules of a rule set, compiled, with their aggregates' state."""

    def __init__(
        self,
        rules: list[UserRule],
        lists: dict[str, tuple[str, ...]],
        previous: UserRules | None = None,
    ) -> None:
        self.rules: list[_Compiled] = []
        self.aggregates: dict[str, Aggregate] = {}
        for rule in rules:
            assert rule.tree is not None  # a UserRule from RuleSet.from_document is checked
            condition = compile_node(rule.tree, lists)
            self.rules.append(_Compiled(rule, condition, RuleMessages(rule, lists)))
            for node in aggregates_of(rule.tree):
                self.aggregates.setdefault(aggregate_store(node), node)
        kept = previous.stores if previous is not None else {}
        self.stores: dict[str, WindowStore] = {}
        for name, node in self.aggregates.items():
            store = kept.get(name)
            if store is None:
                shared = len(node.by) == 1 and node.by[0] in SHARED_KEY_FIELDS
                store = WindowStore(node.over_ms, node.kind == "distinct_count", shared)
            self.stores[name] = store
        self.kinds: dict[str, set[str]] = {}
        for rule in rules:
            assert rule.tree is not None
            for node in aggregates_of(rule.tree):
                self.kinds.setdefault(aggregate_store(node), set()).add(node.kind)
        self.scores = {c.rule.id: c.rule.score or 0.0 for c in self.rules}
        # Reasons rank: outcomes first (decline, approve, review), then by score (<= 1).
        self.rank = {
            c.rule.id: _OUTCOME_RANK[c.rule.outcome] if c.rule.outcome else c.rule.score or 0.0
            for c in self.rules
        }

    def __bool__(self) -> bool:
        return bool(self.rules)

    def step_aggregates(self, batch: RuleInput) -> None:
        """Adds the batch to every key space and stores each aggregate's values in ``batch``."""
        for name, node in self.aggregates.items():
            store = self.stores[name]
            keys: Any
            if store.shared_keys:
                keys = batch.slots[node.by[0]]
                batch.keys[name] = batch.column(node.by[0])  # for the reasons' texts
            else:
                keys = batch.keys[name] = self.key_of(name, batch)
            value, distinct = self.inputs_of(name, batch)
            totals = store.step(keys, batch.time_ms, value, distinct)
            for kind in self.kinds[name]:
                batch.aggregates[(name, kind)] = totals.result(kind)

    def key_of(self, name: str, batch: RuleInput) -> pa.Array:
        """Each row's key in key space ``name`` (text; null where a key field is)."""
        return key_column([key_part(batch, f) for f in self.aggregates[name].by])

    def inputs_of(self, name: str, batch: RuleInput) -> tuple[Any, pa.Array | None]:
        """What key space ``name`` aggregates per row: (numbers, distinct values), either
        or both None (a count reads neither)."""
        node = self.aggregates[name]
        if node.kind == "distinct_count":
            assert node.field is not None
            return None, key_part(batch, node.field)
        if node.field is not None:
            return batch.column(node.field), None
        return None, None

    def read_aggregates(self, batch: RuleInput, columns: dict[str, Any]) -> None:
        """Stores aggregates computed elsewhere (the keyed Flink job's aggregate stages:
        ``columns["<key space>:<kind>"]``) in ``batch``, as :meth:`step_aggregates` would."""
        for name in self.aggregates:
            batch.keys[name] = self.key_of(name, batch)
            for kind in self.kinds[name]:
                batch.aggregates[(name, kind)] = np.asarray(
                    columns[f"{name}:{kind}"], dtype=np.float64
                )

    def evaluate(self, batch: RuleInput) -> UserFindings:
        """Every rule over the batch (after :meth:`step_aggregates`)."""
        n = len(batch)
        fired: dict[str, Bools] = {}
        messages: dict[str, tuple[npt.NDArray[np.int64], BoundMessages]] = {}
        outcome: npt.NDArray[np.int8] | None = None
        by_outcome: dict[str, Bools] = {}
        for compiled in self.rules:
            rule = compiled.rule
            mask = np.asarray(compiled.condition(batch), dtype=np.bool_)
            fired[rule.id] = mask
            rows = np.flatnonzero(mask).astype(np.int64)
            if len(rows):
                messages[rule.id] = (rows, compiled.messages.bind(batch, rows))
                if rule.outcome is not None and rule.mode == "live":  # shadow: never forces
                    seen = by_outcome.get(rule.outcome)
                    by_outcome[rule.outcome] = mask if seen is None else seen | mask
        if by_outcome:
            outcome = np.full(n, -1, dtype=np.int8)
            for name in _OUTCOME_ORDER:
                if name in by_outcome:
                    outcome[by_outcome[name]] = OUTCOME_TIER[name]
        return UserFindings(fired, messages, outcome)

    def compact(self, low_ms: int) -> None:
        """Drops window state no record from ``low_ms`` on can see."""
        for store in self.stores.values():
            store.compact(low_ms)

    def snapshot(self) -> dict[str, Any]:
        """Every key space's arrays, by store name."""
        return {
            f"{name}/{k}": v
            for name, store in self.stores.items()
            for k, v in store.snapshot().items()
        }

    def restore(self, arrays: dict[str, Any]) -> None:
        """Loads a :meth:`snapshot` (key spaces the rules no longer use are ignored)."""
        for name, store in self.stores.items():
            prefix = name + "/"
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            if own:
                store.restore(own)


def key_part(batch: RuleInput, name: str) -> pa.Array:
    """A key field as text (numbers: null where missing)."""
    value = batch.column(name)
    if TX_FIELDS.get(name) == "number":
        numbers = number_column(value)
        return pa.array(numbers, pa.float64(), mask=np.isnan(numbers)).cast(pa.string())
    assert isinstance(value, pa.Array)
    return value
