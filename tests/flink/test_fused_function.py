"""The fused job's operator, without Flink: held chunks, checkpoints anywhere, restarts.

Property: for any stream cut into chunks, whatever the pattern of chunks held and decided
together, a checkpoint taken between any two elements and a failure any time after it give
the committed outputs of an uninterrupted run, each once and in order (the FileSink commits
what was emitted before the checkpoint; the restored operator emits the rest), whether the
source resumes after the checkpoint or replays from its start.
"""

from __future__ import annotations

import json
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from test_stages import streams

from fraudstream.engine.pipeline import TimeConfig
from fraudstream.flink import fused
from fraudstream.flink.chunks import Chunk, plan_chunks
from fraudstream.flink.fused import WholePipelineFunction
from fraudstream.flink.stages import PipelineParts
from fraudstream.profiles import ProfileTable
from fraudstream.reference import IpReference
from fraudstream.rules import RuleSet

WANTED = frozenset({"decisions", "alerts"})
WALL = ("processed_at", "latency_ms")


class State:
    """A Flink value or list state kept in a dict (pickled, as PICKLED state is)."""

    def __init__(self, store: dict[str, Any], name: str) -> None:
        self.store, self.name = store, name

    def value(self) -> Any:
        raw = self.store.get(self.name)
        return None if raw is None else pickle.loads(raw)

    def update(self, value: Any) -> None:
        self.store[self.name] = pickle.dumps(value)

    def get(self) -> list[Any]:
        return list(self.store.get(self.name, []))

    def add(self, value: Any) -> None:
        self.store[self.name] = [*self.store.get(self.name, []), value]

    def clear(self) -> None:
        self.store.pop(self.name, None)


class Context:
    """The runtime context's state accessors over one store (one key: the job's constant)."""

    def __init__(self, store: dict[str, Any]) -> None:
        self.store = store

    def get_state(self, descriptor: Any) -> State:
        return State(self.store, descriptor.name)

    def get_list_state(self, descriptor: Any) -> State:
        return State(self.store, descriptor.name)


class Clock:
    """``time`` for the operator: wall time as is, a monotonic clock stepping as drawn."""

    def __init__(self, steps_ms: list[int]) -> None:
        self.steps, self.now = steps_ms, 0.0

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        if self.steps:
            self.now += self.steps.pop(0) / 1000
        return self.now


def operator(
    parts: PipelineParts, plan: list[Chunk], store: dict[str, Any], steps: list[int]
) -> Any:
    """The operator opened on ``store``, its clock stepping by ``steps`` (one per reading)."""
    function = WholePipelineFunction(parts, WANTED, plan, hold_ms=1_000)
    with mock.patch.object(fused, "time", Clock(list(steps))) as clock:
        function.open(Context(store))
    function.clock = clock
    return function


def emitted(function: Any, element: str) -> list[tuple[str, Any]]:
    """What one element makes the operator emit, as (output, record without wall time)."""
    out = []
    with mock.patch.object(fused, "time", function.clock):
        results = list(function.process_element(element, None))
    for tag, text in results:
        for line in text.splitlines():
            record = {k: v for k, v in json.loads(line).items() if k not in WALL}
            out.append((tag.tag_id, record))
    return out


@settings(max_examples=100, deadline=None)
@given(
    lines=streams(),
    hint=st.integers(150, 2_500),
    steps=st.lists(st.sampled_from([0, 300, 1_200]), max_size=40),
    checkpoint=st.integers(0, 50),
    failure=st.integers(0, 50),
    replay=st.booleans(),
)
def test_a_restart_anywhere_commits_what_an_uninterrupted_run_does(
    lines: list[bytes], hint: int, steps: list[int], checkpoint: int, failure: int, replay: bool
) -> None:
    parts = PipelineParts(RuleSet.default(), ProfileTable(), TimeConfig(), IpReference())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tx.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        plan = plan_chunks([str(path)], hint)
        elements = [chunk.to_json() for chunk in plan]
        at = min(checkpoint, len(elements))  # the barrier: after element at - 1
        fails = max(at, min(failure, len(elements)))  # the failure: after element fails - 1

        whole = operator(parts, plan, {}, steps)
        expected = [out for e in elements for out in emitted(whole, e)]
        whole.close()

        store: dict[str, Any] = {}
        first = operator(parts, plan, store, steps)
        committed = [out for e in elements[:at] for out in emitted(first, e)]
        saved = pickle.loads(pickle.dumps(store))  # the checkpoint
        for e in elements[at:fails]:
            emitted(first, e)  # emitted after the barrier: dropped by the sink
        first.close()

        second = operator(parts, plan, saved, steps[at:])
        resumed = elements if replay else elements[at:]
        committed += [out for e in resumed for out in emitted(second, e)]
        second.close()

    assert committed == expected
    decided = [r["transaction_id"] for tag, r in expected if tag == "decisions"]
    assert len(decided) == len(set(decided))
