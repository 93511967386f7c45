"""The live keyed job's decoders against the embedded runtime, without Flink.

A live input's lines reach the decoders in batches: Flink SQL's processing-time windows,
one batch per part (the line's hash modulo the parts) and window, decoded on the window
operator's subtask (:mod:`fraudstream.flink.live_lines`). ``live_run`` plays that dataflow in
one process: each subtask gets its parts' lines in arrival order and cuts them into windows
of its own (hypothesis chooses where: the subtasks' windows need not line up), each window's
batches in any order, with windows of ticks only before the first lines (a job waiting for
its input) and between them; the subtasks run ahead of one another as hypothesis chooses;
each subtask's watermark is that of Flink's bounded-out-of-orderness generator over the
times its batches carry, and the card and user operators get the watermark Flink's valve
makes of them (:class:`Valve`: the minimum over the active subtasks, a subtask idle from its
declaration, :mod:`fraudstream.flink.watermarks`). The decoders are the job's own
:class:`~fraudstream.flink.live_lines.DecodeLines`. For any stream whose records keep within
the out-of-orderness, the decisions and duplicates must equal the embedded runtime's. Ticks
keep a subtask's watermark coming, and catch it up once it has had nothing but ticks for the
idle timeout.
"""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_keyed_stages import (
    END,
    GROUPS,
    OUT_OF_ORDERNESS,
    TIMING,
    Downstream,
    comparable,
    decode,
    embedded,
    records,
)

from fraudstream.flink.functions import DEAD_LETTERS, LATE
from fraudstream.flink.live_lines import (
    NOTHING_BEFORE,
    RESUME_HOLD_MS,
    START_HOLD_MS,
    DecodeLines,
)
from fraudstream.flink.stages import PipelineParts
from fraudstream.flink.watermarks import IDLE_MARK
from fraudstream.profiles import ProfileTable
from fraudstream.reference import IpReference
from fraudstream.rules import RuleSet

WINDOW_MS = 200


def decoder(parts: PipelineParts) -> DecodeLines:
    function = DecodeLines(parts, GROUPS, frozenset({"dead_letters", "late"}))
    function.open(None)  # a ProcessFunction: no state, nothing asked of the context
    return function


def windows(
    received: list[tuple[int, str]], window: int, rng: random.Random
) -> list[tuple[int, str, int]]:
    """One subtask's lines (in arrival order) as its window operator emits them, windows of
    ticks (empty text) before and between them, never enough in a row to catch up."""
    rows: list[tuple[int, str, int]] = []
    start, window_end = 0, 0
    ticks_in_a_row = TIMING.idle_timeout_ms // WINDOW_MS - 2
    for _ in range(rng.randint(0, 3 * ticks_in_a_row)):  # the job waits for its input
        window_end += WINDOW_MS
        rows.append((0, "", window_end))
    while start < len(received):
        for _ in range(rng.choice([0, 0, rng.randint(1, ticks_in_a_row)])):
            window_end += WINDOW_MS
            rows.append((0, "", window_end))
        size = rng.randint(1, 2 * window)
        window_end += WINDOW_MS
        batches: dict[int, list[str]] = {}
        for part, line in received[start : start + size]:
            batches.setdefault(part, []).append(line)
        order = list(batches)
        rng.shuffle(order)  # a window's batches come in any order
        rows.extend((part, "\n".join(batches[part]), window_end) for part in order)
        start += size
    return rows


def live_run(
    stream: list[dict[str, Any]], window: int, parts: int, subtasks: int, seed: int,
    interleaving: list[int],
) -> tuple[dict[str, Any], int]:  # fmt: skip
    pipeline_parts = PipelineParts(RuleSet.default(), ProfileTable(), TIMING, IpReference.default())
    downstream = Downstream(pipeline_parts)
    rng = random.Random(seed)
    salt = str(seed).encode()
    received: list[list[tuple[int, str]]] = [[] for _ in range(subtasks)]
    for record in stream:  # a copy of a line lands in the same part
        line = json.dumps(record)
        part = zlib.crc32(salt + line.encode()) % parts
        received[part % subtasks].append((part, line))
    queues = [windows(lines, window, rng) for lines in received]
    decoders = [decoder(pipeline_parts) for _ in range(subtasks)]
    valve = Valve(subtasks)
    for subtask in interleaving + [s for s in range(subtasks) for _ in queues[s]]:
        if not queues[subtask]:
            continue
        row = queues[subtask].pop(0)
        for tag, *value in decoders[subtask].process_element(row, None):
            assert tag is not DEAD_LETTERS and tag is not LATE  # the stream has neither
            part_bytes, carried = value
            if carried == IDLE_MARK:  # the job's watermark generator marks it idle
                valve.idle(subtask)
                continue
            valve.record(subtask)
            if part_bytes is not None:
                downstream.groups["card"][tag].pending.append(part_bytes)
            # Flink's bounded-out-of-orderness generator over the times the batches carry
            valve.watermark(subtask, carried - OUT_OF_ORDERNESS - 1)
        downstream.advance(valve.output)
    downstream.advance(END)
    return comparable(downstream.decided), len(downstream.duplicates)


class Valve:
    """The watermark Flink's ``StatusWatermarkValve`` makes of the decoders' channels: the
    minimum over the active, aligned ones; an idle channel is left out (and, once all are,
    the largest of theirs goes out); one active again counts from when its own watermark
    reaches the valve's. Each starts active at the beginning of time."""

    def __init__(self, channels: int) -> None:
        self.channel = [-END] * channels
        self.active = [True] * channels
        self.aligned = [True] * channels
        self.output = -END

    def idle(self, channel: int) -> None:
        self.active[channel] = self.aligned[channel] = False
        if not any(self.active):
            self.output = max(self.output, *self.channel)
        else:
            self._minimum()

    def record(self, channel: int) -> None:
        if not self.active[channel]:
            self.active[channel] = True
            self.aligned[channel] = self.channel[channel] >= self.output

    def watermark(self, channel: int, watermark: int) -> None:
        if watermark <= self.channel[channel]:
            return
        self.channel[channel] = watermark
        if watermark >= self.output:
            self.aligned[channel] = True
        self._minimum()

    def _minimum(self) -> None:
        counted = [
            w for w, a, b in zip(self.channel, self.active, self.aligned, strict=True) if a and b
        ]
        if counted:
            self.output = max(self.output, min(counted))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    window=st.sampled_from([5, 40, 150]),
    parts=st.sampled_from([1, 3, 8]),
    subtasks=st.sampled_from([1, 2, 4]),
    interleaving=st.lists(st.integers(0, 3), max_size=60),
)
def test_live_batches_decide_as_embedded(
    seed: int, window: int, parts: int, subtasks: int, interleaving: list[int]
) -> None:
    stream = records(seed, 300, cards=12, late=False)
    want, duplicates, _ = embedded(decode(stream), 64)
    got, found = live_run(
        stream, window, parts, subtasks, seed, [s % subtasks for s in interleaving]
    )
    assert got == want  # every decision: tier, score, reasons, features
    assert found == len(duplicates)


def test_ticks_keep_a_subtask_sending_and_catch_it_up_when_idle() -> None:
    parts = PipelineParts(RuleSet.default(), ProfileTable(), TIMING, IpReference.default())
    function = decoder(parts)
    lines = [json.dumps(record) for record in records(3, 20, cards=4, late=False)]
    latest = max(record["timestamp"] for record in map(json.loads, lines))
    list(function.process_element((0, "\n".join(lines[:10]), 200), None))
    list(function.process_element((1, "\n".join(lines[10:]), 400), None))

    def markers(window_end_ms: int) -> list[int]:
        return [v[2] for v in function.process_element((5, "", window_end_ms), None)]

    idle_ms = TIMING.idle_timeout_ms
    # ticks, not yet idle for long enough: the latest before this window, as batches carry
    assert markers(400 + idle_ms - 200) == [latest]
    # the watermark reaches the latest record, and the subtask declares itself idle
    caught_up = [latest + OUT_OF_ORDERNESS + 1, IDLE_MARK]
    assert markers(400 + idle_ms) == caught_up
    assert markers(400 + 2 * idle_ms) == []  # then silent
    resumed = 400 + 3 * idle_ms
    list(function.process_element((2, lines[0], resumed), None))  # lines again
    # held while the other subtasks, idle too, may send the batches of the same moments
    assert markers(resumed + 200) == [NOTHING_BEFORE]
    assert markers(resumed + RESUME_HOLD_MS - 200) == [NOTHING_BEFORE]
    assert markers(resumed + RESUME_HOLD_MS) == caught_up  # idle since: caught up at once


def test_a_subtask_without_lines_holds_the_watermark_until_its_first_batch() -> None:
    parts = PipelineParts(RuleSet.default(), ProfileTable(), TIMING, IpReference.default())
    waiting = decoder(parts)
    # a job waiting for its input: the others must not pass this subtask's first batch
    assert [v[2] for v in waiting.process_element((5, "", 200), None)] == [NOTHING_BEFORE]
    assert [v[2] for v in waiting.process_element((5, "", 200 + 10_000), None)] == [NOTHING_BEFORE]
    # no lines at all for START_HOLD_MS: idle, so it holds no other subtask back
    assert [v[2] for v in waiting.process_element((5, "", 200 + START_HOLD_MS), None)] == [
        IDLE_MARK
    ]
    assert list(waiting.process_element((5, "", 300 + START_HOLD_MS), None)) == []
    line = json.dumps(records(3, 1, cards=1, late=False)[0])
    sent = list(waiting.process_element((1, line, 400 + START_HOLD_MS), None))
    assert {v[2] for v in sent} == {NOTHING_BEFORE}  # its first batch: nothing before it
    held = [v[2] for v in waiting.process_element((5, "", 600 + START_HOLD_MS), None)]
    assert held == [NOTHING_BEFORE]  # it was idle: held for RESUME_HOLD_MS
