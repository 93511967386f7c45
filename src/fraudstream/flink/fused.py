"""Parallelism 1 without the hops: the whole embedded pipeline as one Flink operator.

At parallelism 1 every stage of the sharded job runs in the same TaskManager one after the
other, so splitting each micro-batch into card and user parts, sending them pickled through
four Python operators and joining them again only costs time (it is most of the job's work
there). A bounded file read in chunks at parallelism 1 therefore runs as one keyed
operator, :class:`WholePipelineFunction`: per chunk, the embedded decoder and
``Pipeline.submit`` (dedup, event clock, every detector, the model, decide), and one Flink
``ValueState`` holding the pipeline's whole snapshot and the next chunk's index, written
when held chunks are decided (see the class). The next chunk is read and parsed on a
worker thread meanwhile (:func:`.chunk_reader`). A chunk the source replays after a restart
is skipped, as in the sharded job, and the outputs go through the same exactly-once sinks.
Its operator uid differs from the sharded job's (``fraudstream-pipeline``): a savepoint of
one is not a savepoint of the other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import (
    ListStateDescriptor,
    ValueStateDescriptor,
)

from fraudstream.decide import Decisions
from fraudstream.engine.pipeline import warm_up
from fraudstream.engine.tuning import settle_garbage_collector
from fraudstream.flink.chunks import Chunk, chunk_reader
from fraudstream.flink.functions import (
    DEAD_LETTERS,
    LATE,
    PICKLED,
    Fault,
    decision_outputs,
    json_lines,
)
from fraudstream.flink.stages import PipelineParts
from fraudstream.io.decode import Decoder, ParsedBlock
from fraudstream.io.records import duplicate_letters, late_dicts
from fraudstream.schema import CardTokenizer

__all__ = ["WholePipeline", "WholePipelineFunction"]


class WholePipeline:
    """`fraudstream run` over a file's blocks: decoder and pipeline, as the embedded runtime
    builds them (the model stage as ``run --model --labels`` attaches it)."""

    def __init__(self, parts: PipelineParts, source: str = "input") -> None:
        self.pipeline = parts.pipeline()
        if parts.model is not None:
            self.pipeline.model_stage = parts.model.embedded_stage()
        self.decoder = Decoder(CardTokenizer.from_environment(), source, parts.limits)
        self.lines_seen = 0

    def snapshot(self) -> dict[str, Any]:
        """Every piece of state (the embedded checkpoint's) and the lines read."""
        return {"pipeline": self.pipeline.snapshot(), "lines": self.lines_seen}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Loads a :meth:`snapshot`."""
        self.pipeline.restore(snapshot["pipeline"])
        self.lines_seen = snapshot["lines"]

    def block(
        self, block: ParsedBlock, arrival_ms: float, now_ms: float
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Decisions | None]:
        """One block of whole lines: (dead letters, late records, decisions)."""
        first = self.lines_seen + 1
        self.lines_seen += block.lines
        batch, dead = self.decoder.block(block, first, arrival_ms)
        step = self.pipeline.submit(batch, now_ms)
        letters = [d.to_dict() for d in dead] + duplicate_letters(step.duplicates)
        lateness = self.pipeline.clock.allowed_lateness_ms
        late = late_dicts(step.late, step.late_watermark, lateness)
        return letters, late, step.decisions

    def flush(self, now_ms: float) -> tuple[list[dict[str, Any]], Decisions | None]:
        """End of input: every record still waiting for the watermark is decided (its
        duplicates as dead letters)."""
        step = self.pipeline.flush(now_ms)
        return duplicate_letters(step.duplicates), step.decisions


class WholePipelineFunction(KeyedProcessFunction):  # type: ignore[misc]
    """The job at parallelism 1 for bounded files: keyed by one constant, one call per chunk.

    Writing the pipeline's snapshot to Flink state costs about as much as deciding a chunk
    (the snapshot grows with the keys, not the chunk), so it is not written per chunk: a
    chunk's descriptor is *held* (a small ``ListState``) and held chunks are decided together,
    each as its own micro-batch, when the last chunk arrives or ``hold_ms`` have passed since
    the snapshot was last written; their outputs and the new snapshot leave in the same call
    (Flink handles a checkpoint barrier only between calls).
    A checkpoint therefore always finds outputs and state that agree: the snapshot, plus
    descriptors the source will not send again, decided after a restore before anything else.
    """

    def __init__(
        self,
        parts: PipelineParts,
        wanted: frozenset[str],
        plan: list[Chunk],
        source: str = "input",
        fault: Fault | None = None,
        hold_ms: int = 5_000,
    ) -> None:
        self.parts = parts
        self.wanted = wanted  # which outputs are written (OUTPUT_TAGS names)
        self.plan = plan  # the chunks the source sends: the next one is read ahead
        self.source = source
        self.fault = fault
        self.hold_ms = hold_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor("pipeline", PICKLED))
        self.held_state = runtime_context.get_list_state(
            ListStateDescriptor("held-chunks", Types.STRING())
        )
        self.core: WholePipeline | None = None
        self.reader = chunk_reader(self.plan)
        warm_up(self.parts.rules)  # loads the kernels while the first chunk is parsed
        # As `fraudstream run` does: Flink's, numba's and the job's setup objects leave the
        # cyclic collector's view, and a chunk's short-lived objects no longer trigger
        # hundreds of passes over them.
        settle_garbage_collector()
        self.held: list[Chunk] = []
        self.next_chunk = 0
        self.decided = 0
        self.written_at = time.monotonic()

    def close(self) -> None:
        self.reader.close()

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        chunk = Chunk.from_json(value)
        core = self._core()
        if chunk.index < self.next_chunk or (self.held and chunk.index <= self.held[-1].index):
            return  # decided, or held, before a restart
        self.held.append(chunk)
        due = (time.monotonic() - self.written_at) * 1000 >= self.hold_ms
        if not (chunk.last or due):
            self.held_state.add(value)
            return
        # Each chunk's outputs leave as it is decided (a whole file's decisions would not
        # fit in memory); no checkpoint barrier can come before this call ends.
        for held in self.held:
            yield from self._decide(core, held)
        self.next_chunk = chunk.index + 1
        self.held = []
        self.held_state.clear()
        # After the last chunk nothing will read the pipeline again: a restore then only
        # needs to know that every chunk was decided (the final checkpoint stays small).
        snapshot = None if chunk.last else core.snapshot()
        self.state.update({"core": snapshot, "next_chunk": self.next_chunk})
        self.written_at = time.monotonic()
        if self.fault is not None:
            self.fault.fire(self.decided)

    def _core(self) -> WholePipeline:
        """The pipeline, restored on first use from the snapshot and the held chunks."""
        if self.core is None:
            self.core = WholePipeline(self.parts, self.source)
            snapshot = self.state.value()
            if snapshot is not None:
                if snapshot["core"] is not None:
                    self.core.restore(snapshot["core"])
                self.next_chunk = snapshot["next_chunk"]
            self.held = [Chunk.from_json(text) for text in self.held_state.get() or ()]
            if self.fault is not None and (snapshot is not None or self.held):
                self.fault.note_restore(
                    f"pipeline restored at chunk {self.next_chunk}, {len(self.held)} held"
                )
        return self.core

    def _decide(self, core: WholePipeline, chunk: Chunk) -> Iterator[Any]:
        """One chunk as a micro-batch (at the last, the end of input): its outputs."""
        if chunk.first_of_file:
            core.lines_seen = 0  # line numbers go on from the file's chunk before
        now = time.time() * 1000
        letters, late, decisions = core.block(self.reader.get(chunk), now, now)
        # a side output nobody reads fails the job: only the ones asked for leave
        decided = [decisions]
        if chunk.last:
            repeated, flushed = core.flush(time.time() * 1000)
            letters.extend(repeated)
            decided.append(flushed)
        if letters and "dead_letters" in self.wanted:
            yield DEAD_LETTERS, json_lines(letters)
        if late and "late" in self.wanted:
            yield LATE, json_lines(late)
        for step in decided:
            if step is not None and len(step):
                yield from decision_outputs(step, self.wanted)
                self.decided += len(step)
