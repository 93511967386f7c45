"""velocity: >= min_transactions of one card within window_s (half-open), ring of 32 times."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.detectors.velocity import (
    RING_WIDTH,
    Velocity,
    VelocityThresholds,
    reference_step,
)
from fraudstream.engine.state import StateTable
from fraudstream.testing import detector_input

T0 = 1_700_000_000_000  # an arbitrary epoch ms


def run(
    d: Velocity, card: list[int], time_ms: list[int], state: StateTable | None = None
) -> tuple[list[bool], list[int]]:
    state = state if state is not None else d.new_state()
    out = d.process(state, detector_input(card=card, time_ms=time_ms, amount=[10.0] * len(card)))
    return out.fired["velocity"].tolist(), out.features["transactions_in_window"].tolist()


def test_fifth_transaction_within_window_fires() -> None:
    times = [T0 + k * 5_000 for k in range(5)]  # 0, 5, 10, 15, 20 s
    fired, counts = run(Velocity(), [0] * 5, times)
    assert fired == [False, False, False, False, True]
    assert counts == [1, 2, 3, 4, 5]


def test_exactly_window_earlier_is_outside() -> None:
    # The first is exactly 30 000 ms before the fifth: outside, so only 4 in the window.
    times = [T0, T0 + 10_000, T0 + 20_000, T0 + 25_000, T0 + 30_000]
    fired, counts = run(Velocity(), [0] * 5, times)
    assert counts[-1] == 4
    assert fired[-1] is False


def test_one_ms_inside_window_counts() -> None:
    times = [T0, T0 + 10_000, T0 + 20_000, T0 + 25_000, T0 + 29_999]
    fired, counts = run(Velocity(), [0] * 5, times)
    assert counts[-1] == 5
    assert fired[-1] is True


def test_equal_timestamps_all_count() -> None:
    fired, counts = run(Velocity(), [0] * 6, [T0] * 6)
    assert counts == [1, 2, 3, 4, 5, 6]
    assert fired == [False] * 4 + [True, True]


def test_cards_interleaved_are_counted_apart() -> None:
    # Cards 0 and 1 alternate every second: each has 4 in 30 s, the pair 8; nothing fires.
    card = [0, 1] * 4
    times = [T0 + k * 1_000 for k in range(8)]
    fired, counts = run(Velocity(), card, times)
    assert fired == [False] * 8
    assert counts == [1, 1, 2, 2, 3, 3, 4, 4]
    # A fifth for card 1 fires for card 1 only.
    d = Velocity()
    state = d.new_state()
    run(d, card, times, state)
    fired, counts = run(d, [0, 1], [T0 + 40_000, T0 + 8_000], state)
    assert fired == [False, True]
    assert counts == [1, 5]


def test_state_carries_over_batches() -> None:
    d = Velocity()
    state = d.new_state()
    assert run(d, [0, 0, 0], [T0, T0 + 1_000, T0 + 2_000], state)[0] == [False] * 3
    assert run(d, [0, 0], [T0 + 3_000, T0 + 4_000], state)[0] == [False, True]


def test_out_of_order_burst_counts_both_ways() -> None:
    times = [T0 + 20_000, T0 + 5_000, T0 + 25_000, T0, T0 + 10_000]
    fired, counts = run(Velocity(), [0] * 5, times)
    assert counts == [1, 2, 3, 4, 5]
    assert fired[-1] is True


def test_ring_keeps_last_32() -> None:
    fired, counts = run(Velocity(), [0] * 40, [T0] * 40)
    assert counts[:32] == list(range(1, 33))
    assert counts[32:] == [RING_WIDTH] * 8
    assert all(fired[4:])


def test_thresholds_override() -> None:
    d = Velocity(min_transactions=3, window_s=10)
    fired, _ = run(d, [0] * 4, [T0, T0 + 5_000, T0 + 9_999, T0 + 15_000])
    assert fired == [False, False, True, False]
    assert Velocity(VelocityThresholds(min_transactions=2)).thresholds.min_transactions == 2


@pytest.mark.parametrize(
    "overrides", [{"min_transactions": 0}, {"min_transactions": 33}, {"window_s": 0}]
)
def test_bad_thresholds_are_rejected(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="velocity"):
        Velocity(**overrides)


def test_message_names_the_values() -> None:
    d = Velocity()
    assert (
        d.message("velocity", {"transactions_in_window": 6})
        == "6 transactions in 30 s (>= 5 within 30 s)"
    )


def test_empty_batch() -> None:
    assert run(Velocity(), [], []) == ([], [])


WINDOW_MS = 30_000


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[int], list[int], list[int], VelocityThresholds]:
    n = draw(st.integers(0, 80))
    card = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    # Times on a half-window grid +-1 ms: equal times and exact window edges are common.
    steps = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
    offsets = draw(st.lists(st.sampled_from([-1, 0, 0, 1]), min_size=n, max_size=n))
    times = [T0 + k * (WINDOW_MS // 2) + o for k, o in zip(steps, offsets, strict=True)]
    if draw(st.booleans()):
        times.sort()
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    t = VelocityThresholds(
        min_transactions=draw(st.integers(1, 6)), window_s=draw(st.sampled_from([30.0, 15.0]))
    )
    return card, times, cuts, t


@settings(max_examples=200, deadline=None)
@given(streams())
def test_kernel_matches_reference(
    stream: tuple[list[int], list[int], list[int], VelocityThresholds],
) -> None:
    card, times, cuts, t = stream
    d = Velocity(t)
    state = d.new_state()
    fired: list[bool] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(card)], strict=True):
        fired += run(d, card[lo:hi], times[lo:hi], state)[0]
    states: dict[int, dict[str, Any] | None] = {}
    expected = []
    for c, time_ms in zip(card, times, strict=True):
        states[c], f = reference_step(states.get(c), time_ms, t)
        expected.append(f)
    assert fired == expected


@settings(max_examples=100, deadline=None)
@given(streams())
def test_in_time_order_counts_equal_a_naive_recount(
    stream: tuple[list[int], list[int], list[int], VelocityThresholds],
) -> None:
    card, times, _, t = stream
    order = np.argsort(times, kind="stable")
    card = [card[i] for i in order]
    times = [times[i] for i in order]
    _, counts = run(Velocity(t), card, times)
    window_ms = round(t.window_s * 1000)
    for i, (c, time_ms) in enumerate(zip(card, times, strict=True)):
        naive = sum(1 for j in range(i + 1) if card[j] == c and time_ms - times[j] < window_ms)
        assert counts[i] == min(naive, RING_WIDTH)
