"""Streaming features in the runtime's own keyed state: the handbook's 15 and ours.

:class:`StreamingFeatures` lives inside the pipeline. For each micro-batch, in processing
order, it first takes the labels known by the batch's latest decision time from its
:class:`~fraudstream.io.labels.LabelFeed` (marking those transactions in their customer's
and terminal's rings), then computes every transaction's features from the rings (see
:mod:`.kernels` for the exact window semantics). Customers are the pipeline's user key
space, terminals its merchant key space. The same object produces the features of a live
run, of ``fraudstream features`` and of the training set, so training and production can
never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.engine.keys import KeySpace
from fraudstream.features.catalog import CALENDAR_FEATURES, customer_features, terminal_features
from fraudstream.features.kernels import (
    DAY_MS,
    NEVER,
    apply_labels,
    customer_kernel,
    mark_known,
    terminal_kernel,
    unroll,
)
from fraudstream.io.labels import LabelFeed, Labels

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]

__all__ = ["FeatureConfig", "StreamingFeatures", "warm_up"]


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Windows (days), the label delay the terminal windows are shifted by, ring limits."""

    windows_days: tuple[int, ...] = (1, 7, 30)
    delay_days: int = 7
    slack_days: int = 1  # how far behind its key's newest record a record may arrive
    initial_width: int = 16  # ring widths are powers of two (a mask, not a modulo)
    cap: int = 1024

    def check(self) -> None:
        """Rejects settings the kernels cannot use."""
        for name in ("initial_width", "cap"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"features: {name} must be a power of two, got {value}")
        if not self.windows_days or min(self.windows_days) < 1:
            raise ValueError("features: windows_days must be whole days >= 1")
        if list(self.windows_days) != sorted(self.windows_days):
            raise ValueError("features: windows_days must be in increasing order")


_NO_TIME = np.iinfo(np.int64).min // 4  # a key's newest time before it has any


class _Rings:
    """One key space's rings: per key, its last transactions (a table that widens)."""

    def __init__(self, fields: dict[str, Any], width: int) -> None:
        self.fields = fields  # name -> (dtype, fill)
        self.width = width
        self.keys = 0
        self.arrays: dict[str, Any] = {
            name: np.full((1024, width), fill, dtype=dtype)
            for name, (dtype, fill) in fields.items()
        }
        self.count = np.zeros(1024, dtype=np.int64)
        self.head = np.zeros(1024, dtype=np.int64)  # number of each key's oldest live entry
        self.newest = np.full(1024, _NO_TIME, dtype=np.int64)
        self.marked = np.zeros(1024, dtype=np.int64)  # > 0 once a key had a fraud marked

    def ensure(self, keys: int) -> None:
        capacity = len(self.count)
        if keys <= capacity:
            return
        while capacity < keys:
            capacity *= 2
        for name, (dtype, fill) in self.fields.items():
            grown = np.full((capacity, self.width), fill, dtype=dtype)
            grown[: len(self.arrays[name])] = self.arrays[name]
            self.arrays[name] = grown
        count = np.zeros(capacity, dtype=np.int64)
        count[: len(self.count)] = self.count
        self.count = count
        head = np.zeros(capacity, dtype=np.int64)
        head[: len(self.head)] = self.head
        self.head = head
        newest = np.full(capacity, _NO_TIME, dtype=np.int64)
        newest[: len(self.newest)] = self.newest
        self.newest = newest
        marked = np.zeros(capacity, dtype=np.int64)
        marked[: len(self.marked)] = self.marked
        self.marked = marked

    def reset(self, keys: npt.NDArray[np.integer[Any]]) -> None:
        """These keys start over, as if never seen."""
        for name, (_, fill) in self.fields.items():
            self.arrays[name][keys] = fill
        self.count[keys] = 0
        self.head[keys] = 0
        self.newest[keys] = _NO_TIME
        self.marked[keys] = 0

    def retain(self, keep: npt.NDArray[np.integer[Any]]) -> None:
        """Key ``keep[i]`` becomes key ``i``; the keys after them start over."""
        kept = len(keep)
        for name, (_, fill) in self.fields.items():
            array = self.arrays[name]
            array[:kept] = array[keep]
            array[kept:] = fill
        for column, fill in ((self.count, 0), (self.head, 0), (self.marked, 0)):
            column[:kept] = column[keep]
            column[kept:] = fill
        self.newest[:kept] = self.newest[keep]
        self.newest[kept:] = _NO_TIME

    def widen(self) -> None:
        width = self.width * 2
        for name, (_, fill) in self.fields.items():
            self.arrays[name] = unroll(self.arrays[name], self.count, width, fill)
        self.width = width

    def nbytes(self) -> int:
        arrays = (*self.arrays.values(), self.count, self.head, self.newest, self.marked)
        return int(sum(a.nbytes for a in arrays))


class StreamingFeatures:
    """Per-customer and per-terminal features computed inline, point-in-time correct.

    ``labels`` feeds known frauds; without it terminal risk stays 0 (no fraud is known).
    """

    def __init__(
        self, config: FeatureConfig | None = None, labels: LabelFeed | None = None
    ) -> None:
        self.config = cfg = config or FeatureConfig()
        cfg.check()
        self.labels = labels
        self.customer_names = customer_features(cfg.windows_days)
        self.terminal_names = terminal_features(cfg.windows_days)
        self.windows_ms = np.array([d * DAY_MS for d in cfg.windows_days], dtype=np.int64)
        longest = int(self.windows_ms.max())
        slack = cfg.slack_days * DAY_MS
        self.customer_horizon = longest + slack
        self.terminal_horizon = longest + cfg.delay_days * DAY_MS + slack
        self.customers = _Rings(
            {"time": (np.int64, NEVER), "amount": (np.float64, 0.0), "seq": (np.int64, -1),
             "known": (np.int64, NEVER)}, cfg.initial_width,
        )  # fmt: skip
        self.terminals = _Rings(
            {"time": (np.int64, NEVER), "seq": (np.int64, -1), "known": (np.int64, NEVER)},
            cfg.initial_width,
        )
        self.stats = np.zeros((1024, 3), dtype=np.float64)
        self.last_ms = np.zeros(1024, dtype=np.int64)
        # transaction ids -> sequence numbers (only kept when labels can arrive)
        # Transaction ids -> sequence numbers, to find the transaction a label names. A live
        # feed needs every id; a file feed only the ids its fraud labels name (a small set
        # looked up per batch instead of an index of every transaction).
        self.transactions = KeySpace(expected_keys=1 << 16) if labels is not None else None
        self.named: KeySpace | None = None
        if labels is not None and not labels.live:
            self.named = KeySpace(expected_keys=1 << 12)
            self.named.slots(labels.fraud_ids())
        self.seq_customer = np.empty(0, dtype=np.int32)
        self.seq_terminal = np.empty(0, dtype=np.int32)
        self.seq_known = np.empty(0, dtype=np.int64)  # when each transaction became a known fraud
        self.pending = Labels.empty()  # labels of transactions not seen yet
        self.labels_applied = 0  # labels that changed what is known
        self.labels_ignored = 0  # not-fraud labels of transactions never labelled fraud
        self.fraud_labelled = KeySpace()  # ids ever labelled fraud

    def forget_customers(self, customers: npt.NDArray[np.integer[Any]]) -> None:
        """Customers whose state expired (the state TTL) start over, as if never seen:
        like the detectors' user state, their rings, running amount and last time go."""
        if not len(customers):
            return
        self.customers.ensure(int(customers.max()) + 1)
        self.customers.reset(customers)
        inside = customers[customers < len(self.stats)]
        self.stats[inside] = 0.0
        self.last_ms[inside] = 0
        # labels of their old transactions must not mark the fresh rings
        self.seq_customer[np.isin(self.seq_customer, customers)] = -1

    def retain_customers(self, keep: npt.NDArray[np.integer[Any]], used: int) -> None:
        """The user key space was compacted (customer ``keep[i]`` is now ``i`` of ``used``):
        customer state moves with it, so each customer still reads its own rings."""
        self.customers.ensure(used)
        self.customers.retain(keep)
        if len(self.stats) < used:
            self.stats = np.concatenate([self.stats, np.zeros((used - len(self.stats), 3))])
            self.last_ms = np.concatenate(
                [self.last_ms, np.zeros(used - len(self.last_ms), np.int64)]
            )
        kept = len(keep)
        self.stats[:kept] = self.stats[keep]
        self.stats[kept:] = 0.0
        self.last_ms[:kept] = self.last_ms[keep]
        self.last_ms[kept:] = 0
        renumber = np.full(used, -1, dtype=np.int32)
        renumber[keep] = np.arange(kept, dtype=np.int32)
        mapped = self.seq_customer >= 0
        self.seq_customer[mapped] = renumber[self.seq_customer[mapped]]

    @property
    def names(self) -> tuple[str, ...]:
        """Every feature this produces, in column order."""
        return CALENDAR_FEATURES + self.customer_names + self.terminal_names

    def nbytes(self) -> int:
        """Memory held by the feature state."""
        return self.customers.nbytes() + self.terminals.nbytes() + self.stats.nbytes

    def _sequence(self, transaction_id: pa.Array, customer: I32, terminal: I32) -> I64:
        if self.transactions is None:
            return np.full(len(customer), -1, dtype=np.int64)
        if self.named is None:
            seq = self.transactions.slots(transaction_id).astype(np.int64)
        else:
            seq = np.full(len(transaction_id), -1, dtype=np.int64)
            rows = np.flatnonzero(self.named.slots(transaction_id, insert=False) >= 0)
            if len(rows):
                ids = transaction_id.take(pa.array(rows))
                seq[rows] = self.transactions.slots(ids)
        size = len(self.transactions)
        if size > len(self.seq_customer):
            grown = max(size, 2 * len(self.seq_customer), 1024) - len(self.seq_customer)
            self.seq_customer = np.concatenate([self.seq_customer, np.full(grown, -1, np.int32)])
            self.seq_terminal = np.concatenate([self.seq_terminal, np.full(grown, -1, np.int32)])
            self.seq_known = np.concatenate([self.seq_known, np.full(grown, NEVER, np.int64)])
        known = seq >= 0
        self.seq_customer[seq[known]] = customer[known]
        self.seq_terminal[seq[known]] = terminal[known]
        return seq

    def _take_labels(self, until_ms: int) -> None:
        """Marks the labels known by ``until_ms`` (and earlier ones whose transaction came).

        Called after the batch's transactions have their sequence numbers: a label of a
        transaction in this very batch is kept in ``seq_known`` and enters the rings with it.
        """
        if self.labels is None or self.transactions is None:
            return
        due = self.labels.due(until_ms)
        if len(self.pending):
            due = Labels(
                pa.concat_arrays([self.pending.transaction_id, due.transaction_id]),
                np.concatenate([self.pending.is_fraud, due.is_fraud]),
                np.concatenate([self.pending.label_time, due.label_time]),
            )
        if not len(due):
            return
        # A not-fraud label only matters for a transaction once labelled fraud: most labels
        # are those, and a lookup in the small set of fraud-labelled ids is cheap.
        relevant = due.is_fraud.copy()
        legit = np.flatnonzero(~due.is_fraud)
        if len(legit) and len(self.fraud_labelled):
            ids = due.transaction_id.take(pa.array(legit))
            relevant[legit] = self.fraud_labelled.slots(ids, insert=False) >= 0
        if not relevant.all():
            keep = pa.array(relevant)
            due = Labels(
                due.transaction_id.filter(keep), due.is_fraud[relevant], due.label_time[relevant]
            )
            self.labels_ignored += int((~relevant).sum())
        if not len(due):
            return
        self.fraud_labelled.slots(due.transaction_id.filter(pa.array(due.is_fraud)))
        seq = self.transactions.slots(due.transaction_id, insert=False).astype(np.int64)
        unseen = seq < 0
        self.pending = Labels.empty()
        if unseen.any():
            ids = due.transaction_id.filter(pa.array(unseen))
            self.pending = Labels(ids, due.is_fraud[unseen], due.label_time[unseen])
        mark_known(seq, due.is_fraud, due.label_time, self.seq_known)
        for rings, seq_key in (
            (self.customers, self.seq_customer),
            (self.terminals, self.seq_terminal),
        ):
            apply_labels(
                seq, due.is_fraud, due.label_time, seq_key, rings.arrays["seq"],
                rings.arrays["known"], rings.count, rings.head, rings.marked,
            )  # fmt: skip
        self.labels_applied += int((~unseen).sum())

    def compute(
        self,
        transaction_id: pa.Array,
        customer: I32,
        terminal: I32,
        time_ms: I64,
        amount: F64,
        event_ms: I64 | None = None,
        numbered: tuple[I64, I64] | None = None,
    ) -> dict[str, F64]:
        """The features of a batch in processing order; state updated once per record.

        ``time_ms`` is the decision time (event time, or arrival time in processing-time
        mode); ``event_ms`` the transaction's own time for the calendar features.
        ``numbered`` is (each record's sequence number, when each numbered transaction is
        known as a fraud) from a caller that tracks labels itself (the keyed Flink job, see
        :mod:`fraudstream.features.timeline`); this object's own feed is then not read.
        """
        n = len(time_ms)
        self.customers.ensure(int(customer.max(initial=-1)) + 1)
        self.terminals.ensure(int(terminal.max(initial=-1)) + 1)
        if numbered is None:
            seq = self._sequence(transaction_id, customer, terminal)
            if n:
                self._take_labels(int(time_ms.max()))  # after ensure: labels may name new keys
            seq_known = self.seq_known
        else:
            seq, seq_known = numbered
        keys = len(self.customers.count)
        if len(self.stats) < keys:
            self.stats = np.concatenate([self.stats, np.zeros((keys - len(self.stats), 3))])
            self.last_ms = np.concatenate(
                [self.last_ms, np.zeros(keys - len(self.last_ms), np.int64)]
            )
        time_ms = np.ascontiguousarray(time_ms, dtype=np.int64)
        amount = np.ascontiguousarray(amount, dtype=np.float64)
        cust = np.empty((n, len(self.customer_names)), dtype=np.float64)
        term = np.empty((n, len(self.terminal_names)), dtype=np.float64)
        cfg = self.config
        row = 0
        while row < n:
            c = self.customers.arrays
            row = customer_kernel(
                row, customer, time_ms, amount, seq, seq_known, self.windows_ms,
                self.customer_horizon, cfg.cap, c["time"], c["amount"], c["seq"], c["known"],
                self.customers.count, self.customers.head, self.customers.newest,
                self.customers.marked, self.stats,
                self.last_ms, cust,
            )  # fmt: skip
            if row < n:
                self.customers.widen()
        row = 0
        while row < n:
            t = self.terminals.arrays
            row = terminal_kernel(
                row, terminal, time_ms, seq, seq_known, self.windows_ms,
                cfg.delay_days * DAY_MS, self.terminal_horizon, cfg.cap, t["time"], t["seq"],
                t["known"], self.terminals.count, self.terminals.head, self.terminals.newest,
                self.terminals.marked,
                term,
            )  # fmt: skip
            if row < n:
                self.terminals.widen()
        event = time_ms if event_ms is None else event_ms
        day = event // DAY_MS
        hour = (event - day * DAY_MS) // 3_600_000
        out = {
            "amount": amount,
            "weekend": ((day + 3) % 7 >= 5).astype(np.float64),  # 1970-01-01 was a Thursday
            "night": (hour <= 6).astype(np.float64),
            "hour": hour.astype(np.float64),
        }
        out.update({name: cust[:, k] for k, name in enumerate(self.customer_names)})
        out.update({name: term[:, k] for k, name in enumerate(self.terminal_names)})
        return out


def warm_up() -> None:
    """Compiles (or loads from cache) the feature kernels, so no live record waits for it."""
    labels = Labels(pa.array(["w0"]), np.array([True]), np.array([1], dtype=np.int64))
    engine = StreamingFeatures(FeatureConfig(initial_width=1), LabelFeed(labels))
    for start in (0, 2):
        engine.compute(
            pa.array([f"w{start}", f"w{start + 1}"]), np.array([0, 0], np.int32),
            np.array([0, 0], np.int32), np.array([start, start + 1], dtype=np.int64),
            np.array([1.0, 2.0]),
        )  # fmt: skip
