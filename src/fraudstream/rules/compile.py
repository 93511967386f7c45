"""Checked expressions -> functions over a whole micro-batch (numpy and Arrow, no row loop).

A compiled node is a function from a :class:`RuleInput` (the batch's columns) to a column:
numbers are float64 arrays with NaN for null, texts are Arrow string arrays, bools are numpy
bool arrays. Null semantics: arithmetic with a null gives null, as do ``x / 0``, ``x % 0``,
``log`` of a number <= 0 and ``min``/``max`` with a null argument; a comparison, ``in``,
``not in`` or ``startswith`` with a null operand is false (not unknown), so
``not (amount > 5)`` is true when ``amount`` is null: test ``is null`` to tell them apart.
Aggregates are read from the batch's window totals (:mod:`.aggregates`), stepped once per
batch and key space before any rule runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.engine.batch import TxBatch
from fraudstream.rules.check import FEATURES, PROFILE_FIELDS, TX_FIELDS, field_type
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

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Column = Any  # F64 | pa.Array | Bools
Compiled = Callable[["RuleInput"], Column]
# Key fields whose slots the pipeline computes anyway and never renumbers: an aggregate by one
# of them alone uses those slots instead of hashing the keys again.
SHARED_KEY_FIELDS = frozenset({"merchant_id", "device_id", "zipcode"})
__all__ = [
    "SHARED_KEY_FIELDS",
    "RuleInput",
    "aggregate_store",
    "compile_node",
    "number_column",
    "text_column",
]


@dataclass(slots=True)
class RuleInput:
    """A micro-batch's columns as the rules see them (in processing order).

    ``time_ms`` is the pipeline's clock (event time, or arrival time in processing-time mode);
    ``profile(name)`` gives a profile field by row; ``aggregates`` holds each aggregate's
    values by :func:`aggregate_store` name and kind; ``keys`` each key space's key column;
    ``slots`` the stable slots of some key fields (see :data:`SHARED_KEY_FIELDS`).
    """

    tx: TxBatch
    time_ms: npt.NDArray[np.int64]
    profile: Callable[[str], Column]
    features: Mapping[str, Any]
    fired: Mapping[str, Bools]
    # Stable slots of some key fields (the pipeline's own key spaces, never renumbered).
    slots: Mapping[str, npt.NDArray[np.int32]] = field(default_factory=dict)
    aggregates: dict[tuple[str, str], F64] = field(default_factory=dict)
    keys: dict[str, pa.Array] = field(default_factory=dict)
    cache: dict[str, Column] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.time_ms)

    def column(self, name: str) -> Column:
        """A field by name (transaction field, ``hour``, ``profile.*`` or feature)."""
        found = self.cache.get(name)
        if found is None:
            found = self.cache[name] = self._read(name)
        return found

    def _read(self, name: str) -> Column:
        n = len(self)
        kind = field_type(name)
        if name.startswith("profile."):
            return self.profile(name.removeprefix("profile."))
        if name == "hour":
            return ((self.tx.timestamp_ms // 3_600_000) % 24).astype(np.float64)
        if name == "timestamp":
            return self.tx.timestamp_ms.astype(np.float64)
        if name in TX_FIELDS:
            value = getattr(self.tx, name)
            return number_column(value) if kind == "number" else text_column(value)
        value = self.features.get(name)
        if value is None:  # its detector is off
            return np.full(n, np.nan) if kind == "number" else pa.nulls(n, pa.string())
        return number_column(value) if kind == "number" else text_column(value)


def number_column(value: Any) -> F64:
    """A numeric column as float64 with NaN for null."""
    if isinstance(value, pa.Array | pa.ChunkedArray):
        out: F64 = pc.cast(value, pa.float64()).to_numpy(zero_copy_only=False)
        return out
    return np.asarray(value, dtype=np.float64)


def text_column(value: Any) -> pa.Array:
    """A text column as an Arrow string array."""
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if not isinstance(value, pa.Array):
        value = pa.array(value)
    return value if pa.types.is_string(value.type) else pc.cast(value, pa.string())


def aggregate_store(node: Aggregate) -> str:
    """The key space an aggregate reads: one per (by, over, aggregated field).

    >>> from fraudstream.rules.parse import parse
    >>> aggregate_store(parse("sum(amount, by=card_id, over='1h')"))
    'amount|by=card_id|over=3600000'
    >>> aggregate_store(parse("distinct_count(card_id, by=(device_id, ip), over='1h')"))
    'distinct:card_id|by=device_id,ip|over=3600000'
    """
    subject = node.field or "*"
    if node.kind == "distinct_count":
        subject = f"distinct:{subject}"
    return f"{subject}|by={','.join(node.by)}|over={node.over_ms}"


def _bools(array: Any) -> Bools:
    """An Arrow boolean result as numpy, null -> False."""
    out: Bools = pc.fill_null(array, False).to_numpy(zero_copy_only=False)
    return out


_NUMBER_COMPARE: dict[str, Callable[[Any, Any], Bools]] = {
    "==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
    ">": np.greater, ">=": np.greater_equal,
}  # fmt: skip
_TEXT_COMPARE = {
    "==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
    ">": pc.greater, ">=": pc.greater_equal,
}  # fmt: skip


def compile_node(node: Node, lists: Mapping[str, tuple[str, ...]]) -> Compiled:
    """The batch function of a checked node (``lists``: the rule set's named lists)."""
    if isinstance(node, Const):
        value = node.value
        if isinstance(value, bool):
            return lambda batch: np.full(len(batch), value, dtype=np.bool_)
        if isinstance(value, float):
            return lambda batch: np.full(len(batch), value, dtype=np.float64)
        text = pa.scalar(value, pa.string())
        return lambda batch: pa.repeat(text, len(batch))
    if isinstance(node, Field):
        name = node.name
        return lambda batch: batch.column(name)
    if isinstance(node, Arith):
        return _arith(node, lists)
    if isinstance(node, Compare):
        return _compare(node, lists)
    if isinstance(node, BoolOp):
        items = [compile_node(item, lists) for item in node.items]
        combine = np.logical_and if node.op == "and" else np.logical_or

        def boolean(batch: RuleInput) -> Bools:
            out: Bools = items[0](batch)
            for item in items[1:]:
                out = combine(out, item(batch))
            return out

        return boolean
    if isinstance(node, Not):
        operand = compile_node(node.operand, lists)
        return lambda batch: ~operand(batch)
    if isinstance(node, InList):
        return _in_list(node, lists)
    if isinstance(node, IsNull):
        operand = compile_node(node.operand, lists)
        negated = node.negated

        def is_null(batch: RuleInput) -> Bools:
            value = operand(batch)
            null = np.isnan(value) if isinstance(value, np.ndarray) else _bools(value.is_null())
            return ~null if negated else null

        return is_null
    if isinstance(node, StartsWith):
        operand = compile_node(node.operand, lists)
        prefix = node.prefix
        return lambda batch: _bools(pc.starts_with(operand(batch), prefix))
    if isinstance(node, Call):
        return _call(node, lists)
    if isinstance(node, Fired):
        rule = node.rule

        def fired(batch: RuleInput) -> Bools:
            mask = batch.fired.get(rule)
            return np.zeros(len(batch), dtype=np.bool_) if mask is None else mask

        return fired
    if isinstance(node, Aggregate):
        where = (aggregate_store(node), node.kind)
        return lambda batch: batch.aggregates[where]
    raise TypeError(f"cannot compile {node!r}")


def _arith(node: Arith, lists: Mapping[str, tuple[str, ...]]) -> Compiled:
    left = compile_node(node.left, lists)
    if node.right is None:
        return lambda batch: -left(batch)
    right = compile_node(node.right, lists)
    op = node.op

    def arith(batch: RuleInput) -> F64:
        a, b = left(batch), right(batch)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if op == "+":
                out: F64 = a + b
            elif op == "-":
                out = a - b
            elif op == "*":
                out = a * b
            elif op == "/":
                out = np.where(b == 0, np.nan, a / np.where(b == 0, 1.0, b))
            else:
                out = np.where(b == 0, np.nan, np.mod(a, np.where(b == 0, 1.0, b)))
        return out

    return arith


def _compare(node: Compare, lists: Mapping[str, tuple[str, ...]]) -> Compiled:
    left = compile_node(node.left, lists)
    op = node.op
    if field_type_of(node.left) == "text":
        text_op = _TEXT_COMPARE[op]
        if isinstance(node.right, Const):  # the common `field == 'x'`: no repeated column
            scalar = pa.scalar(node.right.value, pa.string())
            return lambda batch: _bools(text_op(left(batch), scalar))
        right = compile_node(node.right, lists)
        return lambda batch: _bools(text_op(left(batch), right(batch)))
    right = compile_node(node.right, lists)
    number_op = _NUMBER_COMPARE[op]

    def compare(batch: RuleInput) -> Bools:
        a, b = left(batch), right(batch)
        out = number_op(a, b)
        if a.dtype == np.float64:  # bools are never null
            out &= ~np.isnan(a) & ~np.isnan(b)
        return out

    return compare


def field_type_of(node: Node) -> str:
    """The checked type of a node, recomputed cheaply for dispatch (texts vs the rest)."""
    if isinstance(node, Const):
        return "text" if isinstance(node.value, str) else "other"
    if isinstance(node, Field):
        return field_type(node.name) or "other"
    return "other"  # every other text-valued node is a field or a literal


def _in_list(node: InList, lists: Mapping[str, tuple[str, ...]]) -> Compiled:
    operand = compile_node(node.operand, lists)
    raw: tuple[Any, ...] = lists[node.list_name] if node.list_name is not None else node.values
    negated = node.negated
    if field_type_of(node.operand) == "text":
        value_set = pa.array([str(v) for v in raw], pa.string())

        def in_texts(batch: RuleInput) -> Bools:
            value = operand(batch)
            found = _bools(pc.is_in(value, value_set=value_set))
            return (~found & _bools(value.is_valid())) if negated else found

        return in_texts
    numbers = np.array([v for v in (_number(x) for x in raw) if v is not None], dtype=np.float64)

    def in_numbers(batch: RuleInput) -> Bools:
        value = operand(batch)
        found = np.isin(value, numbers)
        return (~found & ~np.isnan(value)) if negated else found

    return in_numbers


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _call(node: Call, lists: Mapping[str, tuple[str, ...]]) -> Compiled:
    args = [compile_node(a, lists) for a in node.args]
    function = node.function

    def call(batch: RuleInput) -> F64:
        values = [a(batch) for a in args]
        with np.errstate(divide="ignore", invalid="ignore"):
            if function == "abs":
                out: F64 = np.abs(values[0])
            elif function == "log":
                x = values[0]
                out = np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), np.nan)
            else:
                reduce = np.minimum if function == "min" else np.maximum
                out = values[0]
                for other in values[1:]:
                    out = reduce(out, other)  # NaN (null) propagates
        return out

    return call


def known_fields() -> list[str]:
    """Every field name a rule may read (for error messages and the docs)."""
    return [*TX_FIELDS, *(f"profile.{n}" for n in PROFILE_FIELDS), *FEATURES]
