"""Parallelism 1 without the hops: the whole embedded pipeline as one Flink operator.

At parallelism 1 every stage of the sharded job runs in the same TaskManager one after the
other, so splitting each micro-batch into card and user parts, sending them pickled through
four Python operators and joining them again only costs time (it is most of the job's work
there). A bounded file read in chunks at parallelism 1 therefore runs as one keyed
operator, :class:`WholePipelineFunction`: per chunk, the embedded decoder and
``Pipeline.submit`` (dedup, event clock, every detector, the model, decide), and one Flink
``ValueState`` holding the pipeline's whole snapshot and the next chunk's index, written
once per chunk. A chunk the source replays after a restart is skipped, as in the sharded
job, and the outputs go through the same exactly-once sinks. Its operator uid differs from
the sharded job's (``fraudstream-pipeline``): a savepoint of one is not a savepoint of the
other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from pyflink.datastream import KeyedProcessFunction, RuntimeContext  # type: ignore[import-untyped]
from pyflink.datastream.state import ValueStateDescriptor  # type: ignore[import-untyped]

from fraudstream.decide import Decisions
from fraudstream.flink.chunks import Chunk, read_block
from fraudstream.flink.functions import (
    DEAD_LETTERS,
    LATE,
    PICKLED,
    Fault,
    _lines,
    decision_outputs,
)
from fraudstream.flink.stages import PipelineParts
from fraudstream.io.decode import Decoder, block_lines
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
        self.decoder = Decoder(CardTokenizer.from_environment(), source)
        self.lines_seen = 0

    def snapshot(self) -> dict[str, Any]:
        """Every piece of state (the embedded checkpoint's) and the lines read."""
        return {"pipeline": self.pipeline.snapshot(), "lines": self.lines_seen}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Loads a :meth:`snapshot`."""
        self.pipeline.restore(snapshot["pipeline"])
        self.lines_seen = snapshot["lines"]

    def block(
        self, data: bytes, arrival_ms: float, now_ms: float
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Decisions | None]:
        """One block of whole lines: (dead letters, late records, decisions)."""
        first = self.lines_seen + 1
        self.lines_seen += block_lines(data)
        batch, dead = self.decoder.block(data, first, arrival_ms)
        step = self.pipeline.submit(batch, now_ms)
        letters = [d.to_dict() for d in dead] + duplicate_letters(step.duplicates)
        clock = self.pipeline.clock
        late = late_dicts(step.late, clock.watermark, clock.allowed_lateness_ms)
        return letters, late, step.decisions

    def flush(self, now_ms: float) -> Decisions | None:
        """End of input: every record still waiting for the watermark is decided."""
        return self.pipeline.flush(now_ms).decisions


class WholePipelineFunction(KeyedProcessFunction):  # type: ignore[misc]
    """The job at parallelism 1 for bounded files: one call per chunk, keyed by one constant."""

    def __init__(
        self,
        parts: PipelineParts,
        wanted: frozenset[str],
        source: str = "input",
        fault: Fault | None = None,
    ) -> None:
        self.parts = parts
        self.wanted = wanted  # which of decisions, alerts, enriched are written
        self.source = source
        self.fault = fault

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor("pipeline", PICKLED))
        self.core: WholePipeline | None = None
        self.next_chunk = 0
        self.decided = 0

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        chunk = Chunk.from_json(value)
        core = self.core
        if core is None:
            core = self.core = WholePipeline(self.parts, self.source)
            snapshot = self.state.value()
            if snapshot is not None:
                core.restore(snapshot["core"])
                self.next_chunk = snapshot["next_chunk"]
                if self.fault is not None:
                    self.fault.note_restore(f"pipeline restored at chunk {self.next_chunk}")
        if chunk.index < self.next_chunk:
            return  # decided before a restart
        core.lines_seen = chunk.first_line - 1
        now = time.time() * 1000
        letters, late, decisions = core.block(read_block(chunk), now, now)
        outputs: list[Any] = []
        if letters:
            outputs.append((DEAD_LETTERS, _lines(letters)))
        if late:
            outputs.append((LATE, _lines(late)))
        decided = [decisions]
        if chunk.last:
            decided.append(core.flush(time.time() * 1000))
        for step in decided:
            if step is not None and len(step):
                outputs.extend(decision_outputs(step, self.wanted))
                self.decided += len(step)
        self.next_chunk = chunk.index + 1
        self.state.update({"core": core.snapshot(), "next_chunk": self.next_chunk})
        yield from outputs
        if self.fault is not None:
            self.fault.fire(self.decided)
