"""The job's Python operators: thin Flink wrappers around :mod:`fraudstream.flink.stages`.

Each function keeps its stage's state in Flink keyed state, so checkpoints, restarts and
rescaling are Flink's: the sequencer (keyed by one constant key) holds the lines not yet
cut into a micro-batch (a ``ListState``, one append per line) and its dedup/clock snapshot;
each detector shard holds its pipeline snapshot (one ``ValueState`` per shard, written once
per micro-batch part); the join holds the stage answers of a micro-batch until both stages
have answered for every record. A Python-side cache only saves re-reading state: it is
rebuilt from Flink state whenever the function is opened again (after a restore).
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from fraudstream.decide import Decisions
from fraudstream.flink.chunks import Chunk, chunk_reader
from fraudstream.flink.stages import (
    DetectorStage,
    Key,
    PipelineParts,
    Released,
    Sequencer,
    StageResult,
    assemble,
)
from fraudstream.io.records import decision_dicts, enriched_dicts

PICKLED = Types.PICKLED_BYTE_ARRAY()
END_OF_INPUT = 2**63 - 2  # an event-time timer only the end-of-input watermark reaches
USER_PARTS = OutputTag("user-parts", PICKLED)
DEAD_LETTERS = OutputTag("dead-letters", Types.STRING())
LATE = OutputTag("late", Types.STRING())
DECISIONS = OutputTag("decisions", Types.STRING())
ALERTS = OutputTag("alerts", Types.STRING())
ENRICHED = OutputTag("enriched", Types.STRING())
LAKEHOUSE = OutputTag("lakehouse", Types.STRING())  # a batch's lakehouse rows (one line)
# The job's outputs by name (OUTPUTS in flink.job), as side outputs of the operators.
OUTPUT_TAGS = {"dead_letters": DEAD_LETTERS, "late": LATE, "decisions": DECISIONS}
OUTPUT_TAGS.update(alerts=ALERTS, enriched=ENRICHED, lakehouse=LAKEHOUSE)
LAKEHOUSE_RUN_ID = "flink"  # the lakehouse rows' run_id: which runtime wrote them
_encode_lines = msgspec.json.Encoder().encode_lines

__all__ = [
    "ALERTS",
    "DEAD_LETTERS",
    "DECISIONS",
    "ENRICHED",
    "LAKEHOUSE",
    "LATE",
    "PICKLED",
    "USER_PARTS",
    "ChunkSequenceFunction",
    "DecideFunction",
    "DetectorFunction",
    "Fault",
    "SequenceFunction",
    "decision_outputs",
    "json_lines",
]


def json_lines(records: list[dict[str, Any]]) -> str:
    """JSON lines as one string (the FileSink's encoder adds the last newline)."""
    return _encode_lines(records)[:-1].decode()


@dataclass(frozen=True)
class Fault:
    """A test-only fault: fail once, after ``after`` decisions and (unless told not to wait)
    a completed checkpoint."""

    after: int
    marker: str
    checkpoints: str
    wait_for_checkpoint: bool = True

    def due(self, decided: int) -> bool:
        """True the first time it should fire (the marker file makes it fire only once)."""
        if decided < self.after or os.path.exists(self.marker):
            return False
        if not self.wait_for_checkpoint:
            return True
        return bool(glob.glob(os.path.join(self.checkpoints, "*", "chk-*", "_metadata")))

    def fire(self, decided: int) -> None:
        """Fails the job (once) when :meth:`due`."""
        if self.due(decided):
            with open(self.marker, "w") as handle:
                handle.write(f"failed after {decided} decisions\n")
            raise RuntimeError(f"injected fault after {decided} decisions (test only)")

    def note_restore(self, what: str) -> None:
        """Records that an operator came back from a checkpoint (the test checks this)."""
        with open(self.marker + ".restored", "a") as handle:
            handle.write(what + "\n")


class SequenceFunction(KeyedProcessFunction):  # type: ignore[misc]
    """Decode, dedupe, event clock, sharding (keyed by one constant: parallelism 1).

    Lines are cut into micro-batches of about ``batch_bytes`` (the embedded file source's
    cut, so a replayed file is cut the same way); a live source is also flushed every
    ``flush_ms``, and after ``idle_timeout_ms`` without input the watermark catches up.
    """

    def __init__(
        self,
        parts: PipelineParts,
        shards: int,
        batch_bytes: int,
        live: bool,
        flush_ms: int,
        wanted: frozenset[str],
        source: str = "input",
        fault: Fault | None = None,
    ) -> None:
        self.fault = fault
        self.parts = parts
        self.wanted = wanted  # which outputs are written: dead letters and late leave here
        self.shards = shards
        self.batch_bytes = batch_bytes
        self.live = live
        self.flush_ms = flush_ms
        self.source = source

    def open(self, runtime_context: RuntimeContext) -> None:
        self.core_state = runtime_context.get_state(ValueStateDescriptor("sequencer", PICKLED))
        self.lines_state = runtime_context.get_list_state(ListStateDescriptor("lines", PICKLED))
        self.core: Sequencer | None = None
        self.buffer: list[bytes] = []
        self.buffer_bytes = 0
        self.timer_at = 0
        self.last_input = time.time()

    def _load(self, ctx: Any) -> Sequencer:
        core = Sequencer(self.parts, self.shards, self.source)
        snapshot = self.core_state.value()
        if snapshot is None:
            ctx.timer_service().register_event_time_timer(END_OF_INPUT)
        else:
            core.restore(snapshot)
        self.buffer = list(self.lines_state.get() or [])
        self.buffer_bytes = sum(len(line) + 1 for line in self.buffer)
        if self.fault is not None and (snapshot is not None or self.buffer):
            read = core.lines_seen + len(self.buffer)
            self.fault.note_restore(f"sequencer restored at line {read}")
        self.core = core
        return core

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        core = self.core or self._load(ctx)
        line = value.encode()
        self.buffer.append(line)
        self.lines_state.add(line)
        self.buffer_bytes += len(line) + 1
        if self.buffer_bytes >= self.batch_bytes:
            yield from self._cut(core)
        if self.live:
            now = time.time()
            self.last_input = now
            if self.timer_at == 0:
                self.timer_at = int(now * 1000) + self.flush_ms
                ctx.timer_service().register_processing_time_timer(self.timer_at)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        core = self.core or self._load(ctx)
        if timestamp >= END_OF_INPUT:  # the source is finished
            yield from self._cut(core)
            yield from self._emit(core.flush())
            return
        self.timer_at = 0
        yield from self._cut(core)
        idle_ms = (time.time() - self.last_input) * 1000
        if idle_ms >= self.parts.time.idle_timeout_ms:
            yield from self._emit(core.flush())  # a quiet source still advances time
        if core.pipeline.pending:
            self.timer_at = int(time.time() * 1000) + self.flush_ms
            ctx.timer_service().register_processing_time_timer(self.timer_at)

    def _cut(self, core: Sequencer) -> Iterator[Any]:
        if not self.buffer:
            return
        released = core.lines(self.buffer, time.time() * 1000)
        self.buffer, self.buffer_bytes = [], 0
        self.lines_state.clear()
        yield from self._emit(released)

    def _emit(self, released: Released) -> Iterator[Any]:
        assert self.core is not None
        self.core_state.update(self.core.snapshot())
        yield from _released(released, self.wanted)


class ChunkSequenceFunction(KeyedProcessFunction):  # type: ignore[misc]
    """The sequencer for bounded files: one call per chunk (see :mod:`fraudstream.flink.chunks`).

    Its Flink state is the sequencer snapshot and the index of the next chunk, so a chunk
    the source sends again after a restart is skipped (the source may replay from the start).
    """

    def __init__(
        self,
        parts: PipelineParts,
        shards: int,
        plan: list[Chunk],
        wanted: frozenset[str],
        source: str = "input",
        fault: Fault | None = None,
    ) -> None:
        self.parts = parts
        self.wanted = wanted  # which outputs are written: dead letters and late leave here
        self.shards = shards
        self.plan = plan  # the chunks the source sends: the next one is read ahead
        self.source = source
        self.fault = fault

    def open(self, runtime_context: RuntimeContext) -> None:
        self.core_state = runtime_context.get_state(ValueStateDescriptor("sequencer", PICKLED))
        self.core: Sequencer | None = None
        self.reader = chunk_reader(self.plan)
        self.next_chunk = 0

    def close(self) -> None:
        self.reader.close()

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        chunk = Chunk.from_json(value)
        core = self.core
        if core is None:
            core = self.core = Sequencer(self.parts, self.shards, self.source)
            snapshot = self.core_state.value()
            if snapshot is not None:
                core.restore(snapshot["sequencer"])
                self.next_chunk = snapshot["next_chunk"]
                if self.fault is not None:
                    self.fault.note_restore(f"sequencer restored at chunk {self.next_chunk}")
        if chunk.index < self.next_chunk:
            return  # already sequenced before a restart
        if chunk.first_of_file:
            core.lines_seen = 0  # line numbers go on from the file's chunk before
        released = core.block(self.reader.get(chunk), time.time() * 1000)
        self.next_chunk = chunk.index + 1
        outputs = list(_released(released, self.wanted))
        if chunk.last:
            outputs.extend(_released(core.flush(), self.wanted))
        self.core_state.update({"sequencer": core.snapshot(), "next_chunk": self.next_chunk})
        yield from outputs


def _released(released: Released, wanted: frozenset[str]) -> Iterator[Any]:
    """A sequencer step as the job's outputs: the side outputs asked for (one nobody reads
    fails the job) and card / user parts."""
    if released.dead_letters and "dead_letters" in wanted:
        yield DEAD_LETTERS, json_lines(released.dead_letters)
    if released.late and "late" in wanted:
        yield LATE, json_lines(released.late)
    for shard, part in released.card_parts.items():
        yield (shard, part)
    for shard, part in released.user_parts.items():
        yield USER_PARTS, (shard, part)


class DetectorFunction(KeyedProcessFunction):  # type: ignore[misc]
    """The card (or user) detectors of one shard: one state value per shard key."""

    def __init__(self, parts: PipelineParts, key: Key) -> None:
        self.parts = parts
        self.key = key

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor(f"{self.key}-shard", PICKLED))
        self.cache: dict[int, DetectorStage] = {}

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        shard, part = value
        stage = self.cache.get(shard)
        if stage is None:
            stage = DetectorStage(self.parts, self.key)
            snapshot = self.state.value()
            if snapshot is not None:
                stage.restore(snapshot)
            self.cache[shard] = stage
        result = stage.process(part, time.time() * 1000)
        self.state.update(stage.snapshot())
        yield (part.batch, result)


class DecideFunction(KeyedProcessFunction):  # type: ignore[misc]
    """Joins both stages' answers for a micro-batch and writes its decisions (keyed by batch)."""

    def __init__(
        self, parts: PipelineParts, wanted: frozenset[str], fault: Fault | None = None
    ) -> None:
        self.parts = parts
        self.wanted = wanted  # which of decisions, alerts, enriched are written
        self.fault = fault

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_list_state(ListStateDescriptor("answers", PICKLED))
        self.cache: dict[int, list[StageResult]] = {}
        self.full = self.parts.decider()  # every rule, and the model (--model)
        self.decided = 0

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        batch, result = value
        have = self.cache.get(batch)
        if have is None:
            have = list(self.state.get() or [])
        have.append(result)
        total = result.total
        cards = sum(len(r.seq) for r in have if r.key == "card")
        users = sum(len(r.seq) for r in have if r.key == "user")
        if cards < total or users < total:
            self.state.add(result)
            self.cache[batch] = have
            return
        self.cache.pop(batch, None)
        self.state.clear()
        decisions = assemble(have, self.full, time.time() * 1000)
        yield from decision_outputs(decisions, self.wanted)
        self.decided += len(decisions)
        if self.fault is not None:
            self.fault.fire(self.decided)


def decision_outputs(decisions: Decisions, wanted: frozenset[str]) -> Iterator[Any]:
    """A micro-batch's decisions as the job's side outputs (decisions, alerts, enriched, and
    the lakehouse's rows staged for their commit)."""
    if "decisions" in wanted:
        rows = decision_dicts(decisions)
        yield DECISIONS, json_lines(rows)
        alerts = [row for row in rows if row["decision"] != "approve"]
    else:
        alerts = decision_dicts(decisions.take(decisions.alerts()))
    if alerts and "alerts" in wanted:
        yield ALERTS, json_lines(alerts)
    if "enriched" in wanted:
        yield ENRICHED, json_lines(enriched_dicts(decisions))
    if "lakehouse" in wanted and len(decisions):
        from fraudstream.io.lakehouse import lakehouse_rows
        from fraudstream.io.lakehouse_staging import rows_line

        yield LAKEHOUSE, rows_line(lakehouse_rows(decisions, LAKEHOUSE_RUN_ID, 0))
