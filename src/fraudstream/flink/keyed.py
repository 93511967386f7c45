"""The keyed job's stages, without Flink: a release of one key group's records in, decisions out.

A card stage and a user stage each hold a pipeline with only their key's detectors. For a
release (the records of one Flink key group that the watermark let through, in event-time
order) a stage numbers the release's keys 0..k-1, asks its caller for those keys' state
values (Flink ``MapState`` in the job, a dict in the tests), loads them into its tables
(:class:`~fraudstream.flink.key_rows.KeyRows`), runs the embedded runtime's own
:meth:`Pipeline.process <fraudstream.engine.pipeline.Pipeline.process>` over the records
and hands back each key's new value. Nothing of a key outlives the release in Python: the
tables are scratch space, profiles are configuration looked up per release.

Order: a release is decided in (event time, transaction id, position) order, which is the
embedded runtime's order for every stream whose records arrive within the out-of-orderness
(see ``docs/flink.md``, "What is the same"). Duplicates are found per card: a record whose
transaction id is among the card's last :data:`~fraudstream.flink.key_rows.RECENT_IDS`
decided ones (or earlier in the release) is a duplicate and is not decided again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.decide import Decisions
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.clock import NO_WATERMARK, watermarks
from fraudstream.engine.expiry import NEVER
from fraudstream.engine.ids import hash_ids
from fraudstream.engine.keys import KeySpace
from fraudstream.features.timeline import LabelTimeline
from fraudstream.flink.aggregate_rows import AGGREGATE, KeyWindows, window_keys
from fraudstream.flink.feature_rows import FeatureRows
from fraudstream.flink.key_rows import Key, KeyRows
from fraudstream.flink.stages import PipelineParts, StageResult, assemble, stage_result
from fraudstream.profiles import ProfileTable

I64 = npt.NDArray[np.int64]
Fetch = Callable[[list[str]], Sequence[bytes | None]]
CODE_CACHE_KEYS = 1_000_000  # text codes are a cache (values keep text): cleared past this

__all__ = [
    "AggregateStage",
    "CardStage",
    "Routes",
    "TerminalStage",
    "UserStage",
    "late_rows",
    "release_order",
]


def late_rows(
    times: I64, latest_ms: int | None, out_of_orderness_ms: int, allowed_lateness_ms: int
) -> tuple[npt.NDArray[np.bool_], I64, int]:
    """Which records, in the order their source sends them, come more than the allowed
    lateness behind the watermark (the latest time before them minus the out-of-orderness):
    the embedded clock's rule (:class:`~fraudstream.engine.clock.EventClock`), applied per
    source split. Returns the mask, each record's watermark and the latest time after them.

    >>> late, watermark, latest = late_rows(np.array([100, 40, 95, 200]), None, 10, 5)
    >>> late.tolist(), watermark[1], latest
    ([False, True, False, False], np.int64(90), 200)
    """
    if latest_ms is None:
        start = NO_WATERMARK
        latest = int(times.max()) if len(times) else int(NEVER)
    else:
        start = int(latest_ms) - out_of_orderness_ms
        latest = max(int(latest_ms), int(times.max())) if len(times) else int(latest_ms)
    watermark, _ = watermarks(times, start, out_of_orderness_ms)
    late: npt.NDArray[np.bool_] = times < watermark - allowed_lateness_ms
    return late, watermark, latest


def release_order(tx: TxBatch, processing: bool = False) -> I64:
    """Indices putting records in (event time, transaction id, position) order; in
    processing time, the embedded runtime's arrival order: (arrival time, position).

    >>> from fraudstream.testing import tx_batch
    >>> release_order(tx_batch(ids=["b", "a", "c"], times=[5, 5, 1])).tolist()
    [2, 1, 0]
    >>> release_order(tx_batch(ids=["b", "a", "c"], times=[5, 5, 1]), processing=True).tolist()
    [0, 1, 2]
    """
    if processing:
        table = pa.table({"arrival": tx.arrival_ms, "position": tx.position})
        keys = [("arrival", "ascending"), ("position", "ascending")]
    else:
        table = pa.table(
            {"time": tx.timestamp_ms, "id": tx.transaction_id, "position": tx.position}
        )
        keys = [("time", "ascending"), ("id", "ascending"), ("position", "ascending")]
    order: I64 = pc.sort_indices(table, sort_keys=keys).to_numpy().astype(np.int64)
    return order


@numba.njit(cache=True, nogil=True)
def _repeated(slots: npt.NDArray[np.int32], hashes: Any, recent: Any, out: Any) -> None:
    # Each card's ring of recent id hashes, newest first; a hit is a duplicate.
    width = recent.shape[1]
    for i in range(slots.size):
        ring = recent[slots[i]]
        h = hashes[i]
        hit = False
        for j in range(width):
            if ring[j] == h:
                hit = True
                break
        if hit:
            out[i] = True
            continue
        for j in range(width - 1, 0, -1):
            ring[j] = ring[j - 1]
        ring[0] = h


class _Stage:
    """What both stages share: per-release key numbering, state rows, profiles."""

    def __init__(self, parts: PipelineParts, key: Key) -> None:
        self.key = key
        self.pipeline = parts.pipeline(key)
        self.pipeline.model_stage = None
        self.rows = KeyRows(self.pipeline, key)
        self.profiles = parts.profiles  # configuration, looked up per release
        self.processing = parts.time.mode == "processing"
        self.lateness_ms = parts.time.allowed_lateness_ms

    def clock(self, tx: TxBatch) -> I64:
        """The times the detectors see: event times, or arrival times in processing time."""
        if self.processing:
            return tx.arrival_ms.astype(np.int64)
        return tx.timestamp_ms

    def _begin(self, tx: TxBatch, fetch: Fetch) -> tuple[npt.NDArray[np.int32], list[str]]:
        """Numbers the release's keys 0..k-1, loads their state; returns (slots, keys)."""
        pipeline = self.pipeline
        self._trim_caches()
        own = KeySpace()
        slots = own.slots(tx.card_id if self.key == "card" else tx.user_id)
        keys = own.keys
        users = own if self.key == "user" else KeySpace()
        profiles = ProfileTable(users=users, countries=pipeline.codes["country"])
        known = self.profiles.profiles
        if known:
            for user_id in pc.unique(tx.user_id).to_pylist():
                profile = known.get(user_id)
                if profile is not None:
                    profiles.upsert(profile)
        pipeline.profiles = profiles
        pipeline.users = users
        if self.key == "card":
            pipeline.cards = own
        self.rows.load(list(fetch(keys)))
        return slots, keys

    def _trim_caches(self) -> None:
        pipeline = self.pipeline
        for name in ("zipcode", "merchant", "device"):
            if len(pipeline.codes[name]) > CODE_CACHE_KEYS:
                pipeline.codes[name] = KeySpace()
        if len(pipeline.ips) > CODE_CACHE_KEYS:
            pipeline.ips = KeySpace()
            pipeline.ip_country = np.empty(0, dtype=np.int32)
            pipeline.ip_network = np.empty(0, dtype=np.int32)

    def _timers(self, tx: TxBatch, watermark: int, k: int) -> None:
        """The detectors' event-time timers for the loaded keys that are due before the
        release's earliest record and the allowed lateness behind the watermark (a timer
        never fires past a record not yet decided, nor one still to come late), as the
        embedded pipeline's sweep."""
        if len(tx) == 0:
            return
        earliest = int(self.clock(tx).min())
        lateness = self.lateness_ms
        due = earliest - 1 if self.processing else min(watermark - lateness, earliest - 1)
        if due <= NEVER:
            return
        pipeline = self.pipeline
        for name, instance in pipeline.instances.items():
            if instance.detector.key == self.key:
                instance.detector.on_time(pipeline.states[name], due, k)

    def _finish(
        self, keys: list[str], slots: npt.NDArray[np.int32], times: I64
    ) -> dict[str, bytes]:
        k = len(keys)
        last = np.array(self.rows.last_ms[:k])
        if len(slots):
            np.maximum.at(last, slots, times)
        return dict(zip(keys, self.rows.dump(k, last), strict=True))


class CardStage(_Stage):
    """The card-keyed detectors and per-card duplicate detection over one release."""

    def __init__(self, parts: PipelineParts) -> None:
        super().__init__(parts, "card")

    def process(
        self, tx: TxBatch, fetch: Fetch, watermark: int, now_ms: float
    ) -> tuple[StageResult, TxBatch, dict[str, bytes]]:
        """(card answers for the decided records, the duplicates, the new state values);
        ``tx`` in release order."""
        slots, keys = self._begin(tx, fetch)
        self._timers(tx, watermark, len(keys))
        repeated = np.zeros(len(tx), dtype=np.bool_)
        _repeated(slots, hash_ids(tx.transaction_id), self.rows.recent_ids, repeated)
        duplicates = tx.take(np.flatnonzero(repeated))
        if repeated.any():
            kept_rows = np.flatnonzero(~repeated)
            tx, slots = tx.take(kept_rows), slots[kept_rows]
        clock = self.clock(tx)
        decisions = self.pipeline.process(tx, clock, now_ms, sweep=False)
        result = stage_result("card", decisions, np.arange(len(tx), dtype=np.int64), tx)
        return result, duplicates, self._finish(keys, slots, clock)


def _labels(parts: PipelineParts) -> LabelTimeline:
    return LabelTimeline(parts.model.labels if parts.model is not None else None)


class Routes:
    """The keyed operators a card answer crosses after the card stage, and the key column
    each is keyed by: ``terminal`` (with a model or labels: the merchant), one per key the
    `when:` rules aggregate by (``by=device_id``: the aggregates with that ``by``), then
    ``user``."""

    def __init__(self, parts: PipelineParts) -> None:
        windows = window_keys(parts.rules)
        self.hops = (["terminal"] if parts.model is not None else []) + [*windows, "user"]
        lateness = parts.time.allowed_lateness_ms
        self.aggregates = {
            hop: KeyWindows(parts.rules, spaces, lateness) for hop, spaces in windows.items()
        }

    def after(self, hop: str) -> str:
        """The hop after ``hop`` (``card``: the first)."""
        return self.hops[0] if hop == "card" else self.hops[self.hops.index(hop) + 1]

    def column(self, hop: str, tx: TxBatch) -> pa.Array:
        """The key each record has in operator ``hop`` (its key group's key)."""
        if hop == "user":
            return tx.user_id
        if hop == "terminal":
            return tx.merchant_id
        return self.aggregates[hop].keys(tx, tx.timestamp_ms)


def _add_columns(cards: list[StageResult], order: I64, columns: dict[str, Any]) -> None:
    """Adds columns computed over the answers' records in release order (``order``: the
    concatenated row of each release row) to each answer, at its own rows."""
    back = np.empty(len(order), dtype=np.int64)
    back[order] = np.arange(len(order))  # release row of each concatenated row
    start = 0
    for card in cards:
        rows = back[start : start + len(card.seq)]
        for name, column in columns.items():
            card.features[name] = column[rows]
        start += len(card.seq)


class TerminalStage:
    """The model's terminal features over one release of a merchant key group's records
    (only with ``--model`` or ``--labels``: a stage between the card and user stages).

    The card answers released together are decided in release order, as the embedded
    pipeline runs its terminal rings; each answer goes on with its records' terminal
    features added.
    """

    def __init__(self, parts: PipelineParts) -> None:
        self.processing = parts.time.mode == "processing"
        self.rows = FeatureRows("terminal", _labels(parts))

    def process(
        self, cards: list[StageResult], fetch: Fetch
    ) -> tuple[list[StageResult], dict[str, bytes]]:
        """The answers with their terminal features, and the terminals' new state values."""
        tx = TxBatch.concat([c.tx for c in cards if c.tx is not None])
        order = release_order(tx, self.processing)
        ordered = tx.take(order)
        own = KeySpace()
        slots = own.slots(ordered.merchant_id)
        keys = own.keys
        clock = ordered.arrival_ms.astype(np.int64) if self.processing else ordered.timestamp_ms
        columns, values = self.rows.compute(list(fetch(keys)), slots, ordered, clock)
        _add_columns(cards, order, columns)
        return cards, dict(zip(keys, values, strict=True))


class AggregateStage:
    """The aggregates of the `when:` rules by one key (``hop``: ``by=device_id``) over one
    release of its key group's records (a device's, a merchant's, any key's windows in one
    place): each answer goes on with its records' aggregates (every kind of every key space
    of the key) added, for the user stage's rules."""

    def __init__(self, parts: PipelineParts, hop: str) -> None:
        self.processing = parts.time.mode == "processing"
        self.hop = hop
        spaces = window_keys(parts.rules)[hop]
        self.rows = KeyWindows(parts.rules, spaces, parts.time.allowed_lateness_ms)

    def process(
        self, cards: list[StageResult], fetch: Fetch, watermark: int
    ) -> tuple[list[StageResult], dict[str, bytes]]:
        """The answers with their aggregates, and the keys' new window values."""
        tx = TxBatch.concat([c.tx for c in cards if c.tx is not None])
        order = release_order(tx, self.processing)
        ordered = tx.take(order)
        clock = ordered.arrival_ms.astype(np.int64) if self.processing else ordered.timestamp_ms
        keys = self.rows.keys(ordered, clock)
        own = KeySpace()
        own.slots(keys)  # the keys in order of first appearance, as the rows number them
        names = list(own.keys)
        columns, values = self.rows.compute(list(fetch(names)), keys, ordered, clock, watermark)
        _add_columns(cards, order, {AGGREGATE + k: v for k, v in columns.items()})
        return cards, dict(zip(names, values, strict=True))


class UserStage(_Stage):
    """The user-keyed detectors over one release, then the decision for each record."""

    def __init__(self, parts: PipelineParts) -> None:
        super().__init__(parts, "user")
        self.full = parts.decider()  # with the model, if any, fed the features of the parts
        self.customers = None
        if parts.model is not None:
            self.customers = FeatureRows("customer", _labels(parts), parts.state_ttl_ms)

    def process(
        self,
        cards: list[StageResult],
        fetch: Fetch,
        watermark: int,
        now_ms: float,
        fetch_features: Fetch | None = None,
    ) -> tuple[Decisions, dict[str, bytes], dict[str, bytes]]:
        """The decisions of the card answers released together (in release order), the new
        state values and (with a model) the customers' new feature values."""
        tx = TxBatch.concat([c.tx for c in cards if c.tx is not None])
        order = release_order(tx, self.processing)
        tx = tx.take(order)
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        placed, start = [], 0
        for card in cards:
            size = len(card.seq)
            placed.append(_placed(card, position[start : start + size], len(tx)))
            start += size
        slots, keys = self._begin(tx, fetch)
        self._timers(tx, watermark, len(keys))
        pipeline = self.pipeline
        clock = self.clock(tx)
        decisions = pipeline.process(tx, clock, now_ms, sweep=False)
        user = stage_result("user", decisions, np.arange(len(tx), dtype=np.int64), None)
        customers: dict[str, bytes] = {}
        if self.customers is not None and fetch_features is not None:
            columns, values = self.customers.compute(list(fetch_features(keys)), slots, tx, clock)
            user.features = {**user.features, **columns}
            customers = dict(zip(keys, values, strict=True))
        full = self.full
        full.profiles, full.users = pipeline.profiles, pipeline.users
        decided = assemble([*placed, user], full, now_ms)
        return decided, self._finish(keys, slots, clock), customers


def _placed(card: StageResult, seq: I64, total: int) -> StageResult:
    """A card part's answers placed at rows ``seq`` of a release of ``total`` records."""
    messages = {rule: (seq[rows], texts) for rule, (rows, texts) in card.messages.items()}
    return StageResult("card", 0, total, seq, card.tx, card.fired, card.features, messages)
