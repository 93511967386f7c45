"""Processing time on the sharded job's stages (live inputs): as `run --time processing`.

The sequencer releases each micro-batch at once, in arrival order (nothing waits, nothing is
late), duplicates found in that order; the detector shards run on arrival times and sweep
their timers at the latest arrival, as the embedded pipeline does in processing time.
"""

from __future__ import annotations

import pickle
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_stages import comparable, cuts, detect, streams

from fraudstream.engine.pipeline import TimeConfig
from fraudstream.flink.stages import PipelineParts, Sequencer, assemble
from fraudstream.io.decode import Decoder
from fraudstream.io.records import decision_dicts
from fraudstream.profiles import ProfileTable
from fraudstream.reference import IpReference
from fraudstream.rules import RuleSet
from fraudstream.schema import CardTokenizer

ARRIVAL_STEP_MS = 700.0  # between micro-batches: timers (1 s sweeps) fire between some


def embedded(parts: PipelineParts, batches: list[list[bytes]]) -> tuple[Any, ...]:
    pipeline = parts.pipeline()
    decoder = Decoder(CardTokenizer(b"test"), "input")
    decisions: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    position = 0
    for k, lines in enumerate(batches):
        positions = list(range(position + 1, position + len(lines) + 1))
        position += len(lines)
        arrival = [k * ARRIVAL_STEP_MS] * len(lines)
        batch, letters = decoder.lines(lines, positions, arrival)
        dead += [d.to_dict() for d in letters]
        result = pipeline.submit(batch, 0.0)
        assert len(result.late) == 0
        dead += [{"position": int(p)} for p in result.duplicates.position]
        if result.decisions is not None:
            decisions += decision_dicts(result.decisions)
    return decisions, dead, []


def sharded(parts: PipelineParts, batches: list[list[bytes]], shards: int) -> tuple[Any, ...]:
    sequencer = Sequencer(parts, shards)
    stages: dict[tuple[str, int], bytes] = {}
    full = parts.pipeline()
    decisions: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    for k, lines in enumerate(batches):
        released = sequencer.lines(lines, k * ARRIVAL_STEP_MS)
        snapshot = pickle.loads(pickle.dumps(sequencer.snapshot()))
        sequencer = Sequencer(parts, shards)
        sequencer.restore(snapshot)
        assert not released.late
        dead += [
            {"position": d["position"]} if str(d.get("reason", "")).startswith("duplicate") else d
            for d in released.dead_letters
        ]
        results = detect(parts, released, stages)
        if results:
            decisions += decision_dicts(assemble(results, full, 0.0))
    assert not sequencer.flush().card_parts  # nothing waits in processing time
    return decisions, dead, []


@settings(max_examples=30, deadline=None)
@given(streams(), st.lists(st.integers(1, 25), max_size=6), st.integers(1, 9))
def test_sharded_stages_decide_in_processing_time_like_embedded(
    lines: list[bytes], sizes: list[int], shards: int
) -> None:
    parts = PipelineParts(
        RuleSet.default(), ProfileTable(), TimeConfig("processing"), IpReference.default()
    )
    batches = cuts(lines, sizes)
    assert comparable(sharded(parts, batches, shards)) == comparable(embedded(parts, batches))
