"""The keyed job's Python operators: thin Flink wrappers around :mod:`fraudstream.flink.keyed`.

- :class:`DecodeChunks` reads one chunk of the input (a parallel source hands out chunk
  numbers), decodes it and cuts it into one part per card key group;
- :class:`CardDetectors` and :class:`UserDetectors` are ``KeyedProcessFunction`` s keyed by
  an int of one Flink key group each (:func:`fraudstream.flink.key_groups.shard_keys`).
  A part waits in a ``MapState`` until the watermark passes its records; an event-time
  timer then releases them, in event-time order, to the stage. Each card's (user's) state is
  one value of a ``MapState`` under its key group, read for the keys a release holds and
  written back after it: a checkpoint (RocksDB, incremental) writes only the keys that
  changed, and a savepoint rescales by key group like any Flink job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from pyflink.common import Types
from pyflink.common.time import Time
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import (
    MapStateDescriptor,
    StateTtlConfig,
)

from fraudstream.engine.batch import TxBatch
from fraudstream.flink.chunks import Chunk, read_block
from fraudstream.flink.functions import (
    DEAD_LETTERS,
    LATE,
    PICKLED,
    decision_outputs,
    json_lines,
)
from fraudstream.flink.keyed import (
    AggregateStage,
    CardStage,
    Routes,
    TerminalStage,
    UserStage,
    late_rows,
    release_order,
)
from fraudstream.flink.stages import PipelineParts
from fraudstream.flink.transport import (
    bucket_parts,
    part_times,
    result_batch,
    take_part,
    tx_batch,
    unpack_result,
    unpack_tx,
)
from fraudstream.io.decode import Decoder, ParsedBlock
from fraudstream.io.records import duplicate_letters, late_dicts
from fraudstream.schema import CardTokenizer

ROW = PICKLED  # bytes: pickling a bytes object costs a copy; a byte array converts per byte
NO_WATERMARK = -(2**63)

__all__ = [
    "AggregateWindows",
    "CardDetectors",
    "DecodeChunks",
    "PartTime",
    "TerminalFeatures",
    "UserDetectors",
    "without_late",
]


class DecodeChunks(ProcessFunction):  # type: ignore[misc]
    """Chunk number -> the chunk's records, one part per card key group; dead letters out."""

    def __init__(
        self, parts: PipelineParts, plan: list[Chunk], keys: tuple[int, ...], wanted: frozenset[str]
    ) -> None:
        self.parts = parts
        self.plan = plan
        self.keys = keys
        self.wanted = wanted

    def open(self, runtime_context: RuntimeContext) -> None:
        self.decoder = Decoder(CardTokenizer.from_environment(), "input", self.parts.limits)
        self.latest_ms: int | None = None  # the latest event time this subtask has sent
        self.arrival_ms = 0  # processing time: the last chunk's arrival stamp (increasing)

    def process_element(self, value: int, ctx: Any) -> Iterator[Any]:
        chunk = self.plan[int(value)]
        block = ParsedBlock.of(read_block(chunk), threads=False)
        # Processing time: a chunk's records arrive at one whole millisecond after the last
        # chunk's, so the arrival watermark can pass a chunk without reaching the next.
        self.arrival_ms = max(int(time.time() * 1000), self.arrival_ms + 1)
        tx, dead = self.decoder.block(block, chunk.first_line, float(self.arrival_ms))
        if dead and "dead_letters" in self.wanted:
            yield DEAD_LETTERS, json_lines([d.to_dict() for d in dead])
        if len(tx) == 0:
            return
        # Late is decided here, per source split, by the embedded clock's rule: in the order
        # the split sends its records, as the embedded runtime does for its one input.
        timing = self.parts.time
        if timing.mode == "processing":  # the watermark runs on arrival times: none late
            for key, part in bucket_parts(tx_batch(tx), tx.card_id, self.keys):
                yield key, part, self.arrival_ms
            yield self.keys[0], None, self.arrival_ms + 1  # lets this chunk through
            return
        latest = self.latest_ms
        late, watermark, self.latest_ms = late_rows(
            tx.timestamp_ms, latest, timing.out_of_orderness_ms, timing.allowed_lateness_ms
        )
        letters, tx = without_late(tx, late, watermark, timing.allowed_lateness_ms, self.wanted)
        yield from letters
        # A chunk's parts go out one key group after another, each spanning the chunk's
        # time range: while they do, the watermark must stay where it was before the chunk
        # (every part carries that time), and moves on only with the marker after the last.
        before = int(tx.timestamp_ms.min()) if latest is None else latest
        for key, part in bucket_parts(tx_batch(tx), tx.card_id, self.keys):
            yield key, part, before
        yield self.keys[0], None, self.latest_ms


def without_late(
    tx: TxBatch, late: Any, watermark: Any, allowed_lateness_ms: int, wanted: frozenset[str]
) -> tuple[list[Any], TxBatch]:
    """The late records (``late``, a mask) as the late output's lines, and the rest."""
    if not late.any():
        return [], tx
    letters = []
    if "late" in wanted:
        rows = np.flatnonzero(late)
        letters = [
            (LATE, json_lines(late_dicts(tx.take(rows), watermark[rows], allowed_lateness_ms)))
        ]
    return letters, tx.take(np.flatnonzero(~late))


class PartTime(TimestampAssigner):  # type: ignore[misc]
    """An element's event time is the latest its decoder had sent before its chunk (the
    marker after a chunk: the chunk's latest). The watermark, that minus the
    out-of-orderness, then never passes a record still to come, as long as records keep
    within the out-of-orderness. In processing time, the chunk's arrival stamp (the marker:
    one millisecond later), so the watermark runs on arrival times."""

    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[2])


class _Pairs(dict[str, bytes]):
    """A dict that iterates as (key, value) pairs: PyFlink's ``MapState.put_all`` iterates
    its argument so in process mode, and calls ``items()`` in thread mode."""

    def __iter__(self) -> Any:
        return iter(self.items())


class _Released(KeyedProcessFunction):  # type: ignore[misc]
    """Buffers parts in a ``ListState`` and releases them, in event-time order, as the
    watermark passes them (an event-time timer at the earliest record waiting)."""

    def __init__(self, parts: PipelineParts, key: str, state_ttl_ms: int | None) -> None:
        self.parts = parts
        self.key = key
        self.state_ttl_ms = state_ttl_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.rows = runtime_context.get_map_state(self.per_key(f"{self.key}-state"))
        # Waiting parts by their earliest event time: a timer reads only the entries due,
        # never the parts of a source split that runs ahead (they may wait long).
        self.pending = runtime_context.get_map_state(
            MapStateDescriptor(f"{self.key}-pending", Types.LONG(), PICKLED)
        )

    def per_key(self, name: str) -> MapStateDescriptor:
        """A ``MapState`` of one value per card, user or terminal (with the state TTL)."""
        values = MapStateDescriptor(name, Types.STRING(), ROW)
        if self.state_ttl_ms:
            # Flink's TTL runs on processing time: it bounds storage for keys that stopped
            # coming (RocksDB: its compaction filter; the heap: full snapshots; not the heap's
            # incremental cleanup, which made every read scan a copy of all keys here).
            # Decisions never depend on it: a key is found expired by its own event times
            # (the stage compares the record with the key's last time, as embedded).
            # PyFlink builds the default RocksDB cleanup's Duration through a Py4J gateway a
            # TaskManager does not have (thread mode fails to open); the strategies are set
            # here instead. Only the entry count reaches Java: the periodic compaction time
            # stays Flink's default, so the placeholder is never read.
            ttl = (
                StateTtlConfig.new_builder(Time.milliseconds(self.state_ttl_ms))
                .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
                .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                .disable_cleanup_in_background()
                .cleanup_full_snapshot()
                .cleanup_in_rocksdb_compact_filter(1000, "Flink's default")
                .build()
            )
            values.enable_time_to_live(ttl)
        return values

    def fetch(self, keys: list[str]) -> list[bytes | None]:
        get = self.rows.get
        return [get(key) for key in keys]

    def store(self, values: dict[str, bytes]) -> None:
        self.rows.put_all(_Pairs(values))

    def wait(self, part: Any, ctx: Any) -> None:
        earliest = int(self.times(part).min())
        waiting = self.pending.get(earliest)
        self.pending.put(earliest, [part] if waiting is None else [*waiting, part])
        ctx.timer_service().register_event_time_timer(earliest)

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        part = value[1]
        if part is None:  # a chunk's end marker: it only moved the watermark
            return
        watermark = ctx.timer_service().current_watermark()
        times = self.times(part)
        waiting = times > watermark
        if not waiting.all():  # behind the watermark: decided at once, as embedded
            yield from self.arrived_behind(self.take(part, np.flatnonzero(~waiting)), watermark)
        if waiting.all():
            self.wait(part, ctx)
        elif waiting.any():
            self.wait(self.take(part, np.flatnonzero(waiting)), ctx)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        watermark = ctx.timer_service().current_watermark()
        due_keys = [earliest for earliest in self.pending.keys() if earliest <= watermark]
        ready = []
        for earliest in due_keys:
            parts = self.pending.get(earliest)
            self.pending.remove(earliest)
            for part in parts:
                due = self.times(part) <= watermark
                if due.all():
                    ready.append(part)
                    continue
                ready.append(self.take(part, np.flatnonzero(due)))
                self.wait(self.take(part, np.flatnonzero(~due)), ctx)
        if ready:
            yield from self.release(ready, watermark)

    def arrived_behind(self, part: Any, watermark: int) -> Iterator[Any]:
        yield from self.release([part], watermark)

    def times(self, part: bytes) -> Any:
        return part_times(part, arrival=self.stage.processing)

    def take(self, part: bytes, rows: Any) -> bytes:
        return take_part(part, rows)

    def release(self, parts: list[bytes], watermark: int) -> Iterator[Any]:
        raise NotImplementedError


class CardDetectors(_Released):
    """Card key groups: late records out, per-card duplicates out, card detectors; the
    records with their card answers go on cut by the next operator's key group (the user
    stage, or first the terminal features and the aggregate windows: :class:`Routes`)."""

    def __init__(
        self,
        parts: PipelineParts,
        user_keys: tuple[int, ...],
        wanted: frozenset[str],
    ) -> None:
        super().__init__(parts, "card", parts.state_ttl_ms)
        self.user_keys = user_keys
        self.wanted = wanted

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self.stage = CardStage(self.parts)
        self.routes = Routes(self.parts)

    def release(self, parts: list[bytes], watermark: int) -> Iterator[Any]:
        tx = TxBatch.concat([unpack_tx(part) for part in parts])
        tx = tx.take(release_order(tx, self.stage.processing))
        result, duplicates, values = self.stage.process(
            tx, self.fetch, watermark, time.time() * 1000
        )
        self.store(values)
        if len(duplicates) and "dead_letters" in self.wanted:
            yield DEAD_LETTERS, json_lines(duplicate_letters(duplicates))
        decided = result.tx
        if decided is None or len(decided) == 0:
            return
        by = self.routes.column(self.routes.after("card"), decided)
        yield from bucket_parts(result_batch(result), by, self.user_keys)


class TerminalFeatures(_Released):
    """Merchant key groups (with ``--model`` or ``--labels``): the terminals' streaming
    features of the records released, added to their card answers, which go on cut by the
    next operator's key group. A terminal's state has no TTL, as in the embedded pipeline
    (its rings keep only their horizon's entries)."""

    def __init__(self, parts: PipelineParts, keys: tuple[int, ...]) -> None:
        super().__init__(parts, "terminal", None)
        self.keys = keys

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self.stage = TerminalStage(self.parts)
        self.routes = Routes(self.parts)

    def release(self, parts: list[bytes], watermark: int) -> Iterator[Any]:
        cards, values = self.stage.process([unpack_result(part) for part in parts], self.fetch)
        self.store(values)
        yield from _forward(cards, self.routes, "terminal", self.keys)


class AggregateWindows(_Released):
    """The key groups of one key the `when:` rules aggregate by (``hop``: ``by=device_id``):
    each key's window events one ``MapState`` value, the release's aggregates added to the
    card answers, which go on cut by the next operator's key group."""

    def __init__(self, parts: PipelineParts, hop: str, keys: tuple[int, ...]) -> None:
        super().__init__(parts, window_state(hop), parts.state_ttl_ms)
        self.hop = hop
        self.keys = keys

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self.stage = AggregateStage(self.parts, self.hop)
        self.routes = Routes(self.parts)

    def release(self, parts: list[bytes], watermark: int) -> Iterator[Any]:
        cards = [unpack_result(part) for part in parts]
        cards, values = self.stage.process(cards, self.fetch, watermark)
        self.store(values)
        yield from _forward(cards, self.routes, self.hop, self.keys)


def window_state(hop: str) -> str:
    """A stable, plain name for an aggregate stage's state and operator uid.

    >>> window_state("by=device_id")
    'window-device_id'
    >>> window_state("by=card_id,merchant_id")
    'window-card_id-merchant_id'
    """
    return "window-" + hop.removeprefix("by=").replace(",", "-")


def _forward(cards: list[Any], routes: Routes, hop: str, keys: tuple[int, ...]) -> Iterator[Any]:
    after = routes.after(hop)
    for card in cards:
        assert card.tx is not None
        yield from bucket_parts(result_batch(card), routes.column(after, card.tx), keys)


class UserDetectors(_Released):
    """User key groups: user detectors, then the decision; decisions, alerts and enriched
    records out."""

    def __init__(self, parts: PipelineParts, wanted: frozenset[str]) -> None:
        super().__init__(parts, "user", parts.state_ttl_ms)
        self.wanted = wanted

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self.stage = UserStage(self.parts)
        self.customers = None
        if self.parts.model is not None:  # each customer's streaming features (user state)
            self.customers = runtime_context.get_map_state(self.per_key("user-features"))

    def fetch_features(self, keys: list[str]) -> list[bytes | None]:
        get = self.customers.get  # type: ignore[union-attr]
        return [get(key) for key in keys]

    def release(self, parts: list[bytes], watermark: int) -> Iterator[Any]:
        cards = [unpack_result(part) for part in parts]
        fetch_features = self.fetch_features if self.customers is not None else None
        decisions, values, customers = self.stage.process(
            cards, self.fetch, watermark, time.time() * 1000, fetch_features
        )
        self.store(values)
        if customers and self.customers is not None:
            self.customers.put_all(_Pairs(customers))
        yield from decision_outputs(decisions, self.wanted)
