"""The live keyed job's decoders against the embedded runtime, without Flink.

A live input's lines reach the decoders in batches: Flink SQL's processing-time windows,
one batch per part (the line's hash modulo the parts) and window, decoded on the window
operator's subtask (:mod:`fraudstream.flink.live_lines`). ``live_run`` plays that dataflow in
one process: each subtask gets its parts' lines in arrival order and cuts them into windows
of its own (hypothesis chooses where: the subtasks' windows need not line up), each window's
batches in any order; the subtasks run ahead of one another as hypothesis chooses; each
subtask's watermark is that of Flink's bounded-out-of-orderness generator over the times its
batches carry; the card and user operators are released by the minimum over the subtasks.
The decoders are the job's own :class:`~fraudstream.flink.live_lines.DecodeLines`. For any
stream whose records keep within the out-of-orderness, the decisions and duplicates must
equal the embedded runtime's. Ticks keep a subtask's watermark coming, and catch it up
once it has had nothing but ticks for the idle timeout.
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
from fraudstream.flink.live_lines import DecodeLines
from fraudstream.flink.stages import PipelineParts
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
    """One subtask's lines (in arrival order) as its window operator emits them."""
    rows: list[tuple[int, str, int]] = []
    start, window_end = 0, 0
    while start < len(received):
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
    highest = [-END] * subtasks  # the largest time each subtask's batches carried
    working = [s for s in range(subtasks) if queues[s]]  # the others are idle: left out
    for subtask in interleaving + [s for s in working for _ in queues[s]]:
        if not queues[subtask]:
            continue
        row = queues[subtask].pop(0)
        for tag, *value in decoders[subtask].process_element(row, None):
            assert tag is not DEAD_LETTERS and tag is not LATE  # the stream has neither
            part_bytes, carried = value
            highest[subtask] = max(highest[subtask], carried)
            if part_bytes is not None:
                downstream.cards[tag].pending.append(part_bytes)
        # Flink's bounded-out-of-orderness watermark, the minimum over the subtasks' own
        downstream.advance(min(highest[s] - OUT_OF_ORDERNESS - 1 for s in working))
    downstream.advance(END)
    return comparable(downstream.decided), len(downstream.duplicates)


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
    assert list(decoder(parts).process_element((5, "", 200), None)) == []  # no lines yet
    # ticks, not yet idle for long enough: the latest before this window, as batches carry
    assert markers(400 + idle_ms - 200) == [latest]
    caught_up = [latest + OUT_OF_ORDERNESS + 1]  # the watermark reaches the latest record
    assert markers(400 + idle_ms) == caught_up
    assert markers(400 + 2 * idle_ms) == []  # then silent: Flink's idleness leaves it out
    list(function.process_element((2, lines[0], 400 + 3 * idle_ms), None))  # lines again
    assert markers(400 + 3 * idle_ms + 200) == [latest]
