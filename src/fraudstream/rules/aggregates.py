"""Aggregates over any key: count, sum, avg, min, max and distinct count in a sliding window.

For a transaction at time ``t`` whose key (one field, or a tuple of fields) is ``k``, an
aggregate with window ``W`` reads the transactions of key ``k`` with time in ``(t - W, t]``
that were processed before it, the current one included: in event-time order, and for equal
timestamps in the pipeline's processing order (a later record with the same timestamp is not
seen yet). A record with a null key field has no key: its aggregates are null and it joins no
window. Null values of the aggregated field are skipped (SQL's rule): ``sum``, ``avg``,
``min``, ``max`` of no value is null; ``count`` counts transactions, ``distinct_count`` the
distinct non-null values.

Each :class:`WindowStore` is one key space (one ``by``, ``over`` and aggregated field) with
state of its own: an event log (time, value) in processing order, threaded into one list per
key. The numba kernel appends each record to its key's list and walks that list; events older
than any record still to come can see (``horizon``, from the watermark and the allowed
lateness) are dropped by :meth:`WindowStore.compact`, so memory is bounded by the window.
:func:`reference_step` is the plain single-record oracle the kernel is tested against.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.engine.keys import KeySpace

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
__all__ = ["WindowStore", "WindowTotals", "key_column", "reference_step"]

KEY_SEPARATOR = "\x1f"  # joins the fields of a tuple key (unit separator: not in ids)


class WindowTotals:
    """Per row of a batch: count, non-null values, sum, min, max, distinct values."""

    def __init__(self, n: int) -> None:
        self.count = np.zeros(n, dtype=np.int64)
        self.values = np.zeros(n, dtype=np.int64)
        self.sum = np.zeros(n, dtype=np.float64)
        self.min = np.full(n, np.nan, dtype=np.float64)
        self.max = np.full(n, np.nan, dtype=np.float64)
        self.distinct = np.zeros(n, dtype=np.int64)
        self.keyed = np.zeros(n, dtype=np.bool_)

    def result(self, kind: str) -> F64:
        """The aggregate ``kind`` per row, NaN for null."""
        keyed = self.keyed
        if kind == "count":
            out = self.count.astype(np.float64)
        elif kind == "distinct_count":
            out = self.distinct.astype(np.float64)
        elif kind == "sum":
            out = np.where(self.values > 0, self.sum, np.nan)
        elif kind == "avg":
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.where(self.values > 0, self.sum / np.maximum(self.values, 1), np.nan)
        elif kind == "min":
            out = self.min.copy()
        else:
            out = self.max.copy()
        out[~keyed] = np.nan
        return out


@numba.njit(cache=True, nogil=True, inline="always")
def _append(head: I64, tail: I64, ev_next: I64, s: int, e: int) -> None:
    """Event ``e`` becomes the last of key slot ``s``'s list."""
    ev_next[e] = -1
    if head[s] < 0:
        head[s] = e
    else:
        ev_next[tail[s]] = e
    tail[s] = e


@numba.njit(cache=True, nogil=True)
def _window_kernel(
    slots: I32,
    time_ms: I64,
    value: F64,
    code: I64,
    window_ms: int,
    head: I64,
    tail: I64,
    start: I64,
    latest: I64,
    ev_time: I64,
    ev_value: F64,
    ev_code: I64,
    ev_next: I64,
    used: I64,
    marks: I64,
    count: I64,
    values: I64,
    total: F64,
    low: F64,
    high: F64,
    distinct: I64,
) -> None:
    # used = [events in the log, distinct-count stamp]
    for i in range(slots.size):
        s = slots[i]
        if s < 0:
            continue
        t = time_ms[i]
        e = used[0]
        used[0] = e + 1
        ev_time[e] = t
        ev_value[e] = value[i]
        ev_code[e] = code[i]
        _append(head, tail, ev_next, s, e)
        stamp = used[1] + 1
        used[1] = stamp
        c = 0
        v = 0
        acc = 0.0
        lo = np.inf
        hi = -np.inf
        d = 0
        j = head[s]
        if t >= latest[s]:
            # In order for its key: skip (for good) the list's events at or before t - W;
            # no later record at or after t can see them. One out of order walks from head.
            latest[s] = t
            if start[s] >= 0:
                j = start[s]
            while j != e and ev_time[j] <= t - window_ms:
                j = ev_next[j]
            start[s] = j
        while j >= 0:
            tj = ev_time[j]
            if t - window_ms < tj <= t:
                c += 1
                x = ev_value[j]
                if not math.isnan(x):
                    v += 1
                    acc += x
                    lo = min(lo, x)
                    hi = max(hi, x)
                k = ev_code[j]
                if k >= 0 and marks[k] != stamp:
                    marks[k] = stamp
                    d += 1
            j = ev_next[j]
        count[i] = c
        values[i] = v
        total[i] = acc
        if v > 0:
            low[i] = lo
            high[i] = hi
        distinct[i] = d


@numba.njit(cache=True, nogil=True)
def _compact_kernel(
    horizon_ms: int,
    head: I64,
    tail: I64,
    ev_time: I64,
    ev_value: F64,
    ev_code: I64,
    ev_next: I64,
    used: I64,
    slot_of: I64,
) -> int:
    # Keeps the events after the horizon, in log order, and rethreads every key's list.
    for s in range(head.size):
        j = head[s]
        while j >= 0:
            slot_of[j] = s
            j = ev_next[j]
        head[s] = -1
        tail[s] = -1
    kept = 0
    for e in range(used[0]):
        if ev_time[e] <= horizon_ms:
            continue
        s = slot_of[e]
        ev_time[kept] = ev_time[e]
        ev_value[kept] = ev_value[e]
        ev_code[kept] = ev_code[e]
        _append(head, tail, ev_next, s, kept)
        kept += 1
    used[0] = kept
    return kept


def key_column(columns: list[pa.Array]) -> pa.Array:
    """One text key per row from one or more columns; null when any of them is null.

    >>> key_column([pa.array(["c1", None]), pa.array(["d1", "d2"])]).to_pylist()
    ['c1\\x1fd1', None]
    """
    texts = [c if pa.types.is_string(c.type) else pc.cast(c, pa.string()) for c in columns]
    if len(texts) == 1:
        return texts[0]
    return pc.binary_join_element_wise(*texts, KEY_SEPARATOR)


class WindowStore:
    """One key space's window state (see the module docstring).

    >>> store = WindowStore(window_ms=3_600_000, distinct=True)
    >>> keys, cards = pa.array(["d-9", "d-9", "d-9", None]), pa.array(["c1", "c2", "c3", "c4"])
    >>> out = store.step(keys, np.array([0, 1_000, 3_600_000, 5]), None, cards)
    >>> out.result("distinct_count").tolist()
    [1.0, 2.0, 2.0, nan]
    """

    def __init__(self, window_ms: int, distinct: bool = False, shared_keys: bool = False) -> None:
        self.window_ms = int(window_ms)
        # Shared keys: the caller passes slots of a key space it owns and never renumbers
        # (the pipeline's merchant or device codes), so no key is hashed twice.
        self.shared_keys = shared_keys
        self.compact_min_events = 4096  # below this, compacting is not worth a pass
        self.distinct = distinct
        self.keys = KeySpace()
        self.values = KeySpace() if distinct else None
        self.head = np.full(1024, -1, dtype=np.int64)
        self.tail = np.full(1024, -1, dtype=np.int64)
        self._forget_starts()
        self.ev_time = np.zeros(4096, dtype=np.int64)
        self.ev_value = np.full(4096, np.nan, dtype=np.float64)
        self.ev_code = np.full(4096, -1, dtype=np.int64)
        self.ev_next = np.full(4096, -1, dtype=np.int64)
        self.used = np.zeros(2, dtype=np.int64)
        self.marks = np.zeros(1024, dtype=np.int64)

    def __len__(self) -> int:
        """Events held."""
        return int(self.used[0])

    def _forget_starts(self) -> None:
        # Where each key's walk may start (-1: its head) and its latest time: a cache that
        # any event renumbering resets (a reset skips nothing, so it is always safe).
        self.start = np.full(len(self.head), -1, dtype=np.int64)
        self.latest = np.full(len(self.head), np.iinfo(np.int64).min, dtype=np.int64)

    def _grow_keys(self, size: int) -> None:
        if size > len(self.head):
            grown = max(size, 2 * len(self.head))
            self.head = np.concatenate([self.head, np.full(grown - len(self.head), -1, np.int64)])
            self.tail = np.concatenate([self.tail, np.full(grown - len(self.tail), -1, np.int64)])
            extra = grown - len(self.start)
            self.start = np.concatenate([self.start, np.full(extra, -1, np.int64)])
            self.latest = np.concatenate(
                [self.latest, np.full(extra, np.iinfo(np.int64).min, np.int64)]
            )

    def _grow_events(self, size: int) -> None:
        if size > len(self.ev_time):
            grown = max(size, 2 * len(self.ev_time))
            extra = grown - len(self.ev_time)
            self.ev_time = np.concatenate([self.ev_time, np.zeros(extra, np.int64)])
            self.ev_value = np.concatenate([self.ev_value, np.full(extra, np.nan)])
            self.ev_code = np.concatenate([self.ev_code, np.full(extra, -1, np.int64)])
            self.ev_next = np.concatenate([self.ev_next, np.full(extra, -1, np.int64)])

    def step(
        self,
        keys: pa.Array | I32,
        time_ms: I64,
        value: F64 | None,
        distinct_values: pa.Array | None = None,
    ) -> WindowTotals:
        """Adds a batch (processing order) and returns each row's window totals; ``keys``
        is the key column, or with ``shared_keys`` its slots (-1: no key)."""
        n = len(time_ms)
        if self.shared_keys:
            slots = np.asarray(keys, dtype=np.int32)
            self._grow_keys(int(slots.max(initial=-1)) + 1)
        else:
            slots = self.keys.slots(keys)
            self._grow_keys(len(self.keys))
        self._grow_events(len(self) + n)
        codes = np.full(n, -1, dtype=np.int64)
        if self.values is not None and distinct_values is not None:
            codes = self.values.slots(key_column([distinct_values])).astype(np.int64)
            if len(self.values) > len(self.marks):
                self.marks = np.zeros(2 * len(self.values), dtype=np.int64)
        totals = WindowTotals(n)
        totals.keyed = slots >= 0
        _window_kernel(
            np.ascontiguousarray(slots, dtype=np.int32),
            np.ascontiguousarray(time_ms, dtype=np.int64),
            np.full(n, np.nan) if value is None else np.ascontiguousarray(value, np.float64),
            codes, self.window_ms, self.head, self.tail, self.start, self.latest, self.ev_time,
            self.ev_value,
            self.ev_code, self.ev_next, self.used, self.marks, totals.count, totals.values,
            totals.sum, totals.min, totals.max, totals.distinct,
        )  # fmt: skip
        return totals

    def compact(self, low_ms: int) -> None:
        """Drops what no record from ``low_ms`` on can see (time <= low_ms - window), when
        that is at least half of the log; then keys (and distinct values) left without
        events are forgotten, so memory follows the window, not the stream."""
        horizon = low_ms - self.window_ms
        used = len(self)
        if (
            used < self.compact_min_events
            or np.count_nonzero(self.ev_time[:used] <= horizon) * 2 < used
        ):
            return
        slot_of = np.empty(used, dtype=np.int64)
        _compact_kernel(
            horizon, self.head, self.tail, self.ev_time, self.ev_value, self.ev_code,
            self.ev_next, self.used, slot_of,
        )  # fmt: skip
        self.start[:] = -1  # events moved: walks start at each head again
        live = np.flatnonzero(self.head[: len(self.keys)] >= 0)
        if not self.shared_keys and len(live) * 2 < len(self.keys):
            self.keys.retain(live.astype(np.int64))
            self.head[: len(live)] = self.head[live]
            self.tail[: len(live)] = self.tail[live]
            self.head[len(live) :] = -1
            self.tail[len(live) :] = -1
            self._forget_starts()
        if self.values is not None:
            kept = len(self)
            codes = self.ev_code[:kept]
            present = np.unique(codes[codes >= 0])
            if len(present) * 2 < len(self.values):
                remap = np.full(len(self.values), -1, dtype=np.int64)
                remap[present] = np.arange(len(present))
                self.values.retain(present.astype(np.int64))
                self.ev_code[:kept] = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)

    def snapshot(self) -> dict[str, np.ndarray[Any, Any]]:
        """The store's arrays (copies), for a checkpoint."""
        used = len(self)
        keys = (
            int(np.flatnonzero(self.head >= 0).max(initial=-1)) + 1
            if self.shared_keys
            else len(self.keys)
        )
        arrays: dict[str, np.ndarray[Any, Any]] = {
            "head": self.head[:keys].copy(),
            "tail": self.tail[:keys].copy(),
            "ev_time": self.ev_time[:used].copy(),
            "ev_value": self.ev_value[:used].copy(),
            "ev_code": self.ev_code[:used].copy(),
            "ev_next": self.ev_next[:used].copy(),
            "used": self.used.copy(),
        }
        if not self.shared_keys:
            arrays.update({f"keys.{k}": v.copy() for k, v in self.keys.snapshot().items()})
        if self.values is not None:
            arrays.update({f"values.{k}": v.copy() for k, v in self.values.snapshot().items()})
        return arrays

    def restore(self, arrays: dict[str, np.ndarray[Any, Any]]) -> None:
        """Loads a :meth:`snapshot`."""
        if not self.shared_keys:
            self.keys.restore({k[5:]: v for k, v in arrays.items() if k.startswith("keys.")})
        if self.values is not None:
            values = {k[7:]: v for k, v in arrays.items() if k.startswith("values.")}
            self.values.restore(values)
            self.marks = np.zeros(max(1024, 2 * len(self.values)), dtype=np.int64)
        keys, used = len(arrays["head"]), len(arrays["ev_time"])
        self.head = np.full(max(1024, keys), -1, dtype=np.int64)
        self.tail = np.full(max(1024, keys), -1, dtype=np.int64)
        self.head[:keys] = arrays["head"]
        self.tail[:keys] = arrays["tail"]
        self._forget_starts()
        size = max(4096, used)
        self.ev_time = np.zeros(size, np.int64)
        self.ev_value = np.full(size, np.nan)
        self.ev_code = np.full(size, -1, np.int64)
        self.ev_next = np.full(size, -1, np.int64)
        for name in ("ev_time", "ev_value", "ev_code", "ev_next"):
            getattr(self, name)[:used] = arrays[name]
        self.used = np.array(arrays["used"], dtype=np.int64)


def reference_step(
    history: dict[Any, list[tuple[int, Any]]],
    key: Any,
    time_ms: int,
    value: Any,
    window_ms: int,
    kind: str,
) -> float | None:
    """One record, written plainly: the oracle :class:`WindowStore` is tested against.

    ``history`` maps each key to its (time, value) list in processing order; the record is
    appended (unless its key is None), then ``kind`` is computed over ``(t - W, t]``.

    >>> h: dict = {}
    >>> [reference_step(h, "d-9", t, c, 3_600_000, "distinct_count")
    ...  for t, c in [(0, "c1"), (1_000, "c2"), (3_600_000, "c3")]]
    [1.0, 2.0, 2.0]
    """
    if key is None:
        return None
    events = history.setdefault(key, [])
    events.append((time_ms, value))
    inside = [v for t, v in events if time_ms - window_ms < t <= time_ms]
    present = [v for v in inside if v is not None]
    if kind == "count":
        return float(len(inside))
    if kind == "distinct_count":
        return float(len(set(present)))
    if not present:
        return None
    if kind == "sum":
        total = 0.0
        for v in present:
            total += v
        return total
    if kind == "avg":
        total = 0.0
        for v in present:
            total += v
        return total / len(present)
    return float(min(present) if kind == "min" else max(present))
