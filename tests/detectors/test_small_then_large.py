"""small_then_large: amount < 1.00, then the card's next amount > 500.00 within 60 s (strictly)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.detectors.base import NONE_MS
from fraudstream.detectors.small_then_large import (
    SmallThenLarge,
    SmallThenLargeThresholds,
    reference_step,
)
from fraudstream.engine.state import StateTable
from fraudstream.testing import detector_input

T0 = 1_700_000_000_000  # an arbitrary epoch ms
WINDOW_MS = 60_000


def run(
    d: SmallThenLarge,
    card: list[int],
    time_ms: list[int],
    amount: list[float],
    state: StateTable | None = None,
) -> list[bool]:
    state = state if state is not None else d.new_state()
    out = d.process(state, detector_input(card=card, time_ms=time_ms, amount=amount))
    fired: list[bool] = out.fired["small_then_large"].tolist()
    return fired


def test_large_one_ms_inside_window_fires() -> None:
    fired = run(SmallThenLarge(), [0, 0], [T0, T0 + WINDOW_MS - 1], [0.50, 600.0])
    assert fired == [False, True]


def test_large_exactly_window_later_does_not_fire() -> None:
    fired = run(SmallThenLarge(), [0, 0], [T0, T0 + WINDOW_MS], [0.50, 600.0])
    assert fired == [False, False]


def test_amount_bounds_are_strict() -> None:
    # 1.00 is not small; 500.00 is not large.
    assert run(SmallThenLarge(), [0, 0], [T0, T0 + 1_000], [1.00, 600.0]) == [False, False]
    assert run(SmallThenLarge(), [0, 0], [T0, T0 + 1_000], [0.99, 500.00]) == [False, False]
    assert run(SmallThenLarge(), [0, 0], [T0, T0 + 1_000], [0.99, 500.01]) == [False, True]


def test_features_of_a_firing_record() -> None:
    d = SmallThenLarge()
    tx = detector_input(card=[0, 0], time_ms=[T0, T0 + 1_500], amount=[0.80, 871.15])
    out = d.process(d.new_state(), tx)
    assert out.features["small_amount"][1] == 0.80
    assert out.features["seconds_since_small"][1] == 1.5
    assert np.isnan(out.features["small_amount"][0])


def test_next_transaction_always_clears_the_flag() -> None:
    # small, medium, large: the medium one clears the flag, so the large one does not fire.
    fired = run(SmallThenLarge(), [0, 0, 0], [T0, T0 + 1_000, T0 + 2_000], [0.5, 50.0, 600.0])
    assert fired == [False, False, False]


def test_large_after_large_does_not_fire_again() -> None:
    fired = run(SmallThenLarge(), [0, 0, 0], [T0, T0 + 1_000, T0 + 2_000], [0.5, 600.0, 700.0])
    assert fired == [False, True, False]


def test_second_small_rearms_the_flag() -> None:
    # small at 0, small at 50 s, large at 100 s: 100 s after the first but 50 s after the second.
    times = [T0, T0 + 50_000, T0 + 100_000]
    d = SmallThenLarge()
    state = d.new_state()
    assert run(d, [0, 0, 0], times, [0.5, 0.3, 600.0], state) == [False, False, True]
    tx = detector_input(card=[0, 0, 0], time_ms=times, amount=[0.5, 0.3, 600.0])
    out = d.process(d.new_state(), tx)
    assert out.features["small_amount"][2] == 0.3
    assert out.features["seconds_since_small"][2] == 50.0


def test_equal_timestamps_fire() -> None:
    assert run(SmallThenLarge(), [0, 0], [T0, T0], [0.5, 600.0]) == [False, True]


def test_other_cards_interleaved_do_not_interfere() -> None:
    # Card 0: small then (after card 1's and card 2's transactions) large. Card 1's medium
    # amount must not clear card 0's flag, and card 2's large must not use it.
    card = [0, 1, 2, 0]
    times = [T0, T0 + 1_000, T0 + 2_000, T0 + 3_000]
    amount = [0.5, 50.0, 900.0, 600.0]
    assert run(SmallThenLarge(), card, times, amount) == [False, False, False, True]


def test_state_carries_over_batches() -> None:
    d = SmallThenLarge()
    state = d.new_state()
    assert run(d, [3], [T0], [0.5], state) == [False]
    assert state["small_at_ms"][3] == T0
    assert run(d, [1, 3], [T0 + 10, T0 + 20], [600.0, 600.0], state) == [False, True]
    assert state["small_at_ms"][3] == NONE_MS


def test_on_time_expires_the_flag() -> None:
    d = SmallThenLarge()
    state = d.new_state()
    run(d, [0, 1], [T0, T0 + 10_000], [0.5, 0.5], state)
    d.on_time(state, T0 + WINDOW_MS - 1, used=2)
    assert state["small_at_ms"][:2].tolist() == [T0, T0 + 10_000]
    d.on_time(state, T0 + WINDOW_MS, used=2)  # card 0's flag is due, card 1's is not
    assert state["small_at_ms"][:2].tolist() == [NONE_MS, T0 + 10_000]
    # An expired flag does not fire even if the large one is (out of order) within the window.
    assert run(d, [0, 1], [T0 + 1_000, T0 + 11_000], [600.0, 600.0], state) == [False, True]


def test_millisecond_window_is_exact() -> None:
    # window_s = 1.001 means 1,001 ms: a large amount 1,000 ms after the small one is inside.
    d = SmallThenLarge(window_s=1.001)
    assert run(d, [0, 0], [T0, T0 + 1_000], [0.5, 600.0]) == [False, True]
    state, fired = reference_step(None, T0, 0.5, d.thresholds)
    assert reference_step(state, T0 + 1_000, 600.0, d.thresholds)[1] is True


# --- the kernel against the reference ------------------------------------------------------

AMOUNTS = st.sampled_from([0.0, 0.5, 0.99, 1.0, 1.01, 50.0, 499.99, 500.0, 500.01, 871.15])


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[int], list[int], list[float], list[int]]:
    n = draw(st.integers(1, 60))
    card = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    # Small steps (so windows matter), occasionally backwards (out of order), some equal.
    steps = draw(
        st.lists(
            st.sampled_from([0, 1, 999, 30_000, 59_999, 60_000, 60_001, -5_000, 200_000]),
            min_size=n,
            max_size=n,
        )
    )
    times = (T0 + np.cumsum(steps)).tolist()
    amount = draw(st.lists(AMOUNTS, min_size=n, max_size=n))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=6))))
    return card, times, amount, cuts


THRESHOLDS = st.sampled_from(
    [
        SmallThenLargeThresholds(),
        SmallThenLargeThresholds(small_amount=1.01, large_amount=499.99, window_s=30.0),
        SmallThenLargeThresholds(small_amount=0.0, large_amount=0.0, window_s=1.0),
    ]
)


@settings(max_examples=100, deadline=None)
@given(streams(), THRESHOLDS)
def test_kernel_matches_reference_over_batches(stream: Any, t: SmallThenLargeThresholds) -> None:
    card, times, amount, cuts = stream
    d = SmallThenLarge(t)
    state = d.new_state()
    fired: list[bool] = []
    bounds = [0, *cuts, len(card)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if lo < hi:
            fired += run(d, card[lo:hi], times[lo:hi], amount[lo:hi], state)
    expected: list[bool] = []
    ref: dict[int, dict[str, Any] | None] = {}
    for c, ts, a in zip(card, times, amount, strict=True):
        ref[c], f = reference_step(ref.get(c), ts, a, t)
        expected.append(f)
    assert fired == expected
    for c in range(4):
        s = ref.get(c)
        assert state["small_at_ms"][c] == (NONE_MS if s is None else s["small_at_ms"])
