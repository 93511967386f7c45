"""One customer's or terminal's streaming-feature state as one value, for the keyed job.

The embedded pipeline keeps the model's streaming features in rings indexed by key slot
(:class:`~fraudstream.features.StreamingFeatures`). The keyed Flink job keeps them as it
keeps the detectors' state (:mod:`fraudstream.flink.key_rows`): one value per customer
(user, in the user stage) or terminal (merchant, in the terminal stage) in Flink's
``MapState``. For a release, :class:`FeatureRows` loads its keys' values into the first
slots of fresh rings, runs the very same feature kernels over the release's records and
writes the slots back as values.

A value is a header (the key's newest time, its entries ever and live; for a customer the
running amount statistics and its last time), then its live ring entries, oldest first:
event time, the 64-bit hash of the transaction id, and, for a customer, the amount. When
an entry counts as a known fraud is not stored: it is a function of the transaction and
the time the labels were taken (:class:`~fraudstream.features.timeline.LabelTimeline`),
recomputed at each load with the release's latest decision time, the time the embedded
pipeline takes a micro-batch's labels by.

>>> from fraudstream.testing import tx_batch
>>> rows = FeatureRows("customer", LabelTimeline())
>>> tx = tx_batch(ids=["t1", "t2"], times=[60_000, 120_000])
>>> first, values = rows.compute([None], np.array([0, 0], np.int32), tx, tx.timestamp_ms)
>>> first["customer_tx_1d"].tolist()
[1.0, 2.0]
>>> later = tx_batch(ids=["t3"], times=[180_000])
>>> columns, _ = rows.compute(values, np.array([0], np.int32), later, later.timestamp_ms)
>>> columns["customer_tx_1d"].tolist(), columns["customer_seconds_since_previous"].tolist()
([3.0], [60.0])
"""

from __future__ import annotations

from typing import Any, Literal

import numba
import numpy as np
import numpy.typing as npt

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.ids import hash_ids
from fraudstream.features import StreamingFeatures
from fraudstream.features.catalog import CALENDAR_FEATURES
from fraudstream.features.kernels import NEVER
from fraudstream.features.timeline import LabelTimeline

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Kind = Literal["customer", "terminal"]

HEADERS = {
    "customer": np.dtype(
        [
            ("newest", np.int64),
            ("seen", np.int64),
            ("entries", np.int64),
            ("stats", np.float64, (3,)),
            ("last_ms", np.int64),
        ]
    ),  # fmt: skip
    "terminal": np.dtype([("newest", np.int64), ("seen", np.int64), ("entries", np.int64)]),
}
ENTRIES = {
    "customer": np.dtype([("time", np.int64), ("id_hash", np.uint64), ("amount", np.float64)]),
    "terminal": np.dtype([("time", np.int64), ("id_hash", np.uint64)]),
}

NEVER_SEEN = np.iinfo(np.int64).min  # a customer's last time before its first record

__all__ = ["FeatureRows"]


@numba.njit(cache=True, nogil=True)
def _returns(slots: I32, clock: I64, previous: I64, ttl_ms: int) -> I64:
    # The rows (in processing order) where a customer comes back more than the TTL after
    # its previous record; ``previous`` holds each slot's last time and is updated.
    out = np.empty(slots.size, dtype=np.int64)
    found = 0
    for i in range(slots.size):
        s = slots[i]
        if s < 0:
            continue
        if previous[s] != NEVER_SEEN and clock[i] - previous[s] > ttl_ms:
            out[found] = i
            found += 1
        previous[s] = clock[i]
    return out[:found]


class FeatureRows:
    """Loads, computes and writes back one key type's streaming features per release."""

    def __init__(self, kind: Kind, timeline: LabelTimeline, ttl_ms: int | None = None) -> None:
        self.kind = kind
        self.timeline = timeline
        self.ttl_ms = ttl_ms if kind == "customer" else None  # terminals never expire
        self.header = HEADERS[kind]
        self.entry = ENTRIES[kind]
        features = StreamingFeatures()
        self.names: tuple[str, ...] = (
            CALENDAR_FEATURES + features.customer_names
            if kind == "customer"
            else features.terminal_names
        )

    def compute(
        self, values: list[bytes | None], slots: I32, tx: TxBatch, clock: I64
    ) -> tuple[dict[str, F64], list[bytes]]:
        """The features of ``tx`` (in processing order; ``slots`` number its keys 0..k-1,
        -1 for none) from the keys' ``values``, and the keys' new values, in slot order.
        ``clock`` is the decision time of each record (event or arrival time)."""
        k = len(values)
        features = StreamingFeatures()  # fresh rings: slots 0..k-1 are this release's keys
        rings = features.customers if self.kind == "customer" else features.terminals
        rings.ensure(max(k, 1))
        if len(features.stats) < len(rings.count):
            grown = len(rings.count)
            features.stats = np.zeros((grown, 3), dtype=np.float64)
            features.last_ms = np.zeros(grown, dtype=np.int64)
        headers = np.zeros(k, dtype=self.header)
        present = np.zeros(k, dtype=np.bool_)
        parts: list[Any] = []
        for s, value in enumerate(values):
            if value is None:
                continue
            present[s] = True
            headers[s] = np.frombuffer(value[: self.header.itemsize], dtype=self.header)[0]
            parts.append(np.frombuffer(value[self.header.itemsize :], dtype=self.entry))
        loaded = np.concatenate(parts) if parts else np.empty(0, dtype=self.entry)
        counts = headers["entries"]
        while rings.width < max(int(counts.max(initial=0)), 1):
            rings.widen()
        owner = np.repeat(np.arange(k), counts)
        number = np.arange(len(loaded)) - np.repeat(np.cumsum(counts) - counts, counts)
        head = headers["seen"] - counts  # entry numbers go on where the key's left off
        column = (head[owner] + number) & (rings.width - 1)
        # Every entry of this release gets a sequence number: the loaded ones first, then
        # the release's records; its known-fraud time is the timeline's by the latest time.
        hashes = np.concatenate([loaded["id_hash"], hash_ids(tx.transaction_id)])
        until = int(clock.max()) if len(clock) else int(NEVER)
        known = self.timeline.known(hashes, until)
        arrays = rings.arrays
        arrays["time"][owner, column] = loaded["time"]
        arrays["seq"][owner, column] = np.arange(len(loaded))
        arrays["known"][owner, column] = known[: len(loaded)]
        rings.count[:k] = headers["seen"]
        rings.head[:k] = head
        rings.newest[:k] = np.where(present, headers["newest"], rings.newest[:k])
        rings.marked[:k] = np.bincount(owner, weights=known[: len(loaded)] != NEVER, minlength=k)
        if self.kind == "customer":
            arrays["amount"][owner, column] = loaded["amount"]
            features.stats[:k] = headers["stats"]
            features.last_ms[:k] = headers["last_ms"]
        none = np.full(len(tx), -1, dtype=np.int32)
        customer, terminal = (slots, none) if self.kind == "customer" else (none, slots)
        seq = np.arange(len(loaded), len(hashes), dtype=np.int64)
        returns = np.empty(0, dtype=np.int64)
        if self.ttl_ms is not None:
            previous = np.where(present, headers["last_ms"], NEVER_SEEN).astype(np.int64)
            returns = _returns(slots, clock, previous, self.ttl_ms)
        # A customer back after more than the state TTL starts over, as its user's state
        # does (embedded: StateExpiry cuts the batch there and forgets the customer).
        bounds = sorted({0, *returns.tolist(), len(tx)})
        pieces = []
        for start, stop in zip(bounds, bounds[1:], strict=False):
            if len(returns) and start in returns:
                features.forget_customers(slots[start : start + 1])
            piece = tx if stop - start == len(tx) else tx.take(np.arange(start, stop))
            part = slice(start, stop)
            pieces.append(
                features.compute(
                    piece.transaction_id,
                    customer[part],
                    terminal[part],
                    clock[part],
                    piece.amount,
                    piece.timestamp_ms,
                    numbered=(seq[part], known),
                )  # fmt: skip
            )
        if len(pieces) == 1:
            columns = {name: pieces[0][name] for name in self.names}
        else:
            columns = {name: np.concatenate([p[name] for p in pieces]) for name in self.names}
        return columns, self._dump(features, k, hashes)

    def _dump(self, features: StreamingFeatures, k: int, hashes: Any) -> list[bytes]:
        rings = features.customers if self.kind == "customer" else features.terminals
        head, count = rings.head[:k], rings.count[:k]
        live = count - head
        owner = np.repeat(np.arange(k), live)
        number = np.arange(int(live.sum())) - np.repeat(np.cumsum(live) - live, live)
        position = (head[owner] + number) & (rings.width - 1)
        entries = np.empty(len(owner), dtype=self.entry)
        entries["time"] = rings.arrays["time"][owner, position]
        entries["id_hash"] = hashes[rings.arrays["seq"][owner, position]]
        headers = np.zeros(k, dtype=self.header)
        headers["newest"] = rings.newest[:k]
        headers["seen"] = count
        headers["entries"] = live
        if self.kind == "customer":
            entries["amount"] = rings.arrays["amount"][owner, position]
            headers["stats"] = features.stats[:k]
            headers["last_ms"] = features.last_ms[:k]
        head_bytes = headers.tobytes()
        entry_bytes = entries.tobytes()
        size, width = self.header.itemsize, self.entry.itemsize
        ends = np.cumsum(live) * width
        starts = ends - live * width
        return [
            head_bytes[s * size : (s + 1) * size] + entry_bytes[a:b]
            for s, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True))
        ]
