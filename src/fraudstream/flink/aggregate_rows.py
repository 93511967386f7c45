"""One key's window events as one value, for the keyed job's aggregate stages.

A `when:` rule's aggregate (``count(by=device_id, over='1h')``) keeps a window per key of
its own key space (:class:`~fraudstream.rules.aggregates.WindowStore`: one per ``by``,
``over`` and aggregated field). The keyed Flink job gives each key space a stage keyed by
that key's key group, and keeps each key's window events as one value of ``MapState``:
:class:`AggregateRows` loads a release's keys into a fresh store, steps the release's
records through the very same kernel as :meth:`UserRules.step_aggregates
<fraudstream.rules.user.UserRules.step_aggregates>` and writes each key's events back, only
those a record still to come can see (after ``watermark - allowed lateness - window``, the
embedded compaction's horizon).

A value: the event count ``n`` (int64), their times (n x int64), values (n x float64, NaN
for none) and, for a distinct count, each distinct value's byte length (n x int32, -1 for
null) and the UTF-8 bytes: codes mean nothing outside one store, text means the same on
any TaskManager.

>>> from fraudstream.rules import RuleSet
>>> from fraudstream.testing import tx_batch
>>> rules = RuleSet.from_document({"rules": [
...     {"id": "busy", "when": "count(by=user_id, over='1h') >= 2", "score": 0.5}]})
>>> rows = AggregateRows(rules, "*|by=user_id|over=3600000", allowed_lateness_ms=0)
>>> tx = tx_batch(ids=["a", "b"], times=[0, 60_000], users=["u1", "u1"])
>>> keys = rows.keys(tx, tx.timestamp_ms)
>>> columns, values = rows.compute([None], keys, tx, tx.timestamp_ms, watermark=0)
>>> columns["*|by=user_id|over=3600000:count"].tolist()
[1.0, 2.0]
>>> later = tx_batch(ids=["c"], times=[3_630_000], users=["u1"])
>>> columns, _ = rows.compute(values, rows.keys(later, later.timestamp_ms), later,
...                           later.timestamp_ms, watermark=3_000_000)
>>> columns["*|by=user_id|over=3600000:count"].tolist()  # "a" left the window
[2.0]
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.keys import string_buffers
from fraudstream.rules import RuleSet
from fraudstream.rules.aggregates import WindowStore
from fraudstream.rules.compile import RuleInput
from fraudstream.rules.user import UserRules

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
NO_PROFILE: dict[str, Any] = {}
AGGREGATE = "aggregate:"  # the columns an aggregate stage adds: "aggregate:<space>:<kind>"

__all__ = ["AGGREGATE", "AggregateRows", "KeyWindows", "key_spaces", "window_keys"]


def key_spaces(rules: RuleSet) -> list[str]:
    """The aggregates' key spaces of the enabled `when:` rules, in rule order (one keyed
    stage each on the keyed job)."""
    user = rules.enabled_user_rules()
    return list(UserRules(user, rules.list_values()).aggregates) if user else []


def window_keys(rules: RuleSet) -> dict[str, list[str]]:
    """The aggregates' key spaces grouped by their key (``by``): one keyed stage a key.

    >>> rules = RuleSet.from_document({"rules": [
    ...     {"id": "r", "score": 0.5, "when": "sum(amount, by=card_id, over='1h') > 9"
    ...      " and count(by=card_id, over='1h') > 2 and count(by=device_id, over='1d') > 5"}]})
    >>> window_keys(rules)  # doctest: +NORMALIZE_WHITESPACE
    {'by=card_id': ['amount|by=card_id|over=3600000', '*|by=card_id|over=3600000'],
     'by=device_id': ['*|by=device_id|over=86400000']}
    """
    user = rules.enabled_user_rules()
    if not user:
        return {}
    grouped: dict[str, list[str]] = {}
    for name, node in UserRules(user, rules.list_values()).aggregates.items():
        grouped.setdefault("by=" + ",".join(node.by), []).append(name)
    return grouped


def _no_profile(name: str) -> Any:
    raise KeyError(name)  # aggregates read transaction fields only (rules.check)


class AggregateRows:
    """Loads, steps and writes back one key space's window events per release."""

    def __init__(self, rules: RuleSet, name: str, allowed_lateness_ms: int) -> None:
        self.rules = UserRules(rules.enabled_user_rules(), rules.list_values())
        self.name = name
        self.node = self.rules.aggregates[name]
        self.distinct = self.node.kind == "distinct_count"
        self.lateness_ms = allowed_lateness_ms
        # every kind, so a rules version may read any of them from this key space
        self.kinds = ["count", "sum", "avg", "min", "max", "distinct_count"]

    def _view(self, tx: TxBatch, clock: I64) -> RuleInput:
        return RuleInput(tx, clock, _no_profile, NO_PROFILE, {})

    def keys(self, tx: TxBatch, clock: I64) -> pa.Array:
        """Each record's key in this key space (null: no key)."""
        return self.rules.key_of(self.name, self._view(tx, clock))

    def compute(
        self, values: list[bytes | None], keys: pa.Array, tx: TxBatch, clock: I64, watermark: int
    ) -> tuple[dict[str, F64], list[bytes]]:
        """The aggregates of ``tx`` (processing order; ``keys`` from :meth:`keys`, whose
        distinct keys, in order of first appearance, are the ones ``values`` belong to) and
        those keys' new values."""
        store = WindowStore(self.node.over_ms, self.distinct)
        store.keys.slots(keys)  # the release's keys take slots 0..k-1, as the caller's
        self._load(store, values, len(tx))
        value, distinct = self.rules.inputs_of(self.name, self._view(tx, clock))
        totals = store.step(keys, clock, value, distinct)
        columns = {f"{self.name}:{kind}": totals.result(kind) for kind in self.kinds}
        horizon = watermark - self.lateness_ms - self.node.over_ms
        return columns, self._dump(store, len(values), horizon)

    def _load(self, store: WindowStore, values: list[bytes | None], extra: int) -> None:
        k = len(values)
        counts = np.zeros(k, dtype=np.int64)
        times, amounts, texts = [], [], []
        for s, value in enumerate(values):
            if value is None:
                continue
            n = int(np.frombuffer(value[:8], dtype=np.int64)[0])
            counts[s] = n
            at = 8 + 16 * n
            times.append(np.frombuffer(value[8 : 8 + 8 * n], dtype=np.int64))
            amounts.append(np.frombuffer(value[8 + 8 * n : at], dtype=np.float64))
            if self.distinct:
                lengths = np.frombuffer(value[at : at + 4 * n], dtype=np.int32)
                texts.append((lengths, value[at + 4 * n :]))
        events = int(counts.sum())
        size = max(4096, events + extra)
        store.ev_time = np.zeros(size, np.int64)
        store.ev_value = np.full(size, np.nan)
        store.ev_code = np.full(size, -1, np.int64)
        store.ev_next = np.full(size, -1, np.int64)
        capacity = max(1024, k)
        store.head = np.full(capacity, -1, np.int64)
        store.tail = np.full(capacity, -1, np.int64)
        store.start = np.full(capacity, -1, np.int64)
        store.latest = np.full(capacity, np.iinfo(np.int64).min, np.int64)
        store.used[:] = (events, 0)
        if not events:
            return
        store.ev_time[:events] = np.concatenate(times)
        store.ev_value[:events] = np.concatenate(amounts)
        ends = np.cumsum(counts)
        starts = ends - counts
        held = counts > 0
        store.head[:k] = np.where(held, starts, -1)
        store.tail[:k] = np.where(held, ends - 1, -1)
        chained = np.arange(1, events + 1, dtype=np.int64)
        chained[ends[held] - 1] = -1  # each key's last event ends its list
        store.ev_next[:events] = chained
        if self.distinct and store.values is not None:
            lengths = np.concatenate([t[0] for t in texts])
            data = b"".join(t[1] for t in texts)
            offsets = np.zeros(events + 1, dtype=np.int32)
            np.cumsum(np.maximum(lengths, 0), out=offsets[1:])
            valid = np.packbits(lengths >= 0, bitorder="little")
            column = pa.StringArray.from_buffers(
                events, pa.py_buffer(offsets), pa.py_buffer(data), pa.py_buffer(valid)
            )
            store.ev_code[:events] = store.values.slots(column).astype(np.int64)
            store.marks = np.zeros(max(1024, 2 * len(store.values)), dtype=np.int64)

    def _dump(self, store: WindowStore, k: int, horizon: int) -> list[bytes]:
        owner = np.full(len(store), -1, dtype=np.int64)
        _owners(store.head[:k], store.ev_next, owner)
        kept = np.flatnonzero((owner >= 0) & (store.ev_time[: len(store)] > horizon))
        kept = kept[np.argsort(owner[kept], kind="stable")]  # by key, each in log order
        counts = np.bincount(owner[kept], minlength=k)
        times = store.ev_time[kept].tobytes()
        amounts = store.ev_value[kept].tobytes()
        lengths = b""
        data = b""
        text_starts = np.zeros(len(kept) + 1, dtype=np.int64)
        if self.distinct and store.values is not None and len(kept):
            codes = store.ev_code[kept].astype(np.int32)
            offsets, text_bytes, nulls = string_buffers(store.values.texts(codes))
            sizes = np.where(nulls, -1, np.diff(offsets)).astype(np.int32)
            lengths = sizes.tobytes()
            text_starts = offsets
            data = text_bytes.tobytes()
        out = []
        at = 0
        for s in range(k):
            n = int(counts[s])
            parts = [
                np.int64(n).tobytes(),
                times[8 * at : 8 * (at + n)],
                amounts[8 * at : 8 * (at + n)],
            ]
            if self.distinct:
                parts.append(lengths[4 * at : 4 * (at + n)])
                parts.append(data[int(text_starts[at]) : int(text_starts[at + n])])
            out.append(b"".join(parts))
            at += n
        return out


@numba.njit(cache=True, nogil=True)
def _owners(head: I64, ev_next: I64, owner: I64) -> None:
    # The key slot of each event, by walking every key's list.
    for s in range(head.size):
        j = head[s]
        while j >= 0:
            owner[j] = s
            j = ev_next[j]


class KeyWindows:
    """Every key space of one key (the aggregates with the same ``by``): one value per key
    holds its windows in each (each space's :class:`AggregateRows` value, length-framed)."""

    def __init__(self, rules: RuleSet, spaces: list[str], allowed_lateness_ms: int) -> None:
        self.spaces = [AggregateRows(rules, space, allowed_lateness_ms) for space in spaces]

    def keys(self, tx: TxBatch, clock: I64) -> pa.Array:
        """Each record's key (null: no key)."""
        return self.spaces[0].keys(tx, clock)

    def compute(
        self, values: list[bytes | None], keys: pa.Array, tx: TxBatch, clock: I64, watermark: int
    ) -> tuple[dict[str, F64], list[bytes]]:
        """:meth:`AggregateRows.compute` for every key space of the key."""
        split = [_unframe(value, len(self.spaces)) for value in values]
        columns: dict[str, F64] = {}
        written = []
        for i, rows in enumerate(self.spaces):
            found, new = rows.compute([s[i] for s in split], keys, tx, clock, watermark)
            columns.update(found)
            written.append(new)
        return columns, [b"".join(_frame(w[k]) for w in written) for k in range(len(values))]


def _frame(value: bytes) -> bytes:
    return np.int64(len(value)).tobytes() + value


def _unframe(value: bytes | None, count: int) -> list[bytes | None]:
    if value is None:
        return [None] * count
    out: list[bytes | None] = []
    at = 0
    for _ in range(count):
        size = int(np.frombuffer(value[at : at + 8], dtype=np.int64)[0])
        out.append(value[at + 8 : at + 8 + size])
        at += 8 + size
    return out
