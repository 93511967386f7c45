"""card_testing: >= 3 charges of <= 2.00 at >= 3 distinct merchants within 600 s (half-open)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.detectors.card_testing import (
    MERCHANT_WIDTH,
    RING_WIDTH,
    CardTesting,
    CardTestingThresholds,
    reference_step,
)
from fraudstream.engine.state import StateTable
from fraudstream.testing import detector_input

T0 = 1_700_000_000_000
MINUTE = 60_000


def run(
    d: CardTesting,
    card: list[int],
    time_ms: list[int],
    amount: list[float],
    merchant: list[int],
    state: StateTable | None = None,
) -> tuple[list[bool], list[int], list[int]]:
    state = state if state is not None else d.new_state()
    tx = detector_input(card=card, time_ms=time_ms, amount=amount, merchant=merchant)
    out = d.process(state, tx)
    return (
        out.fired["card_testing"].tolist(),
        out.features["small_transactions"].tolist(),
        out.features["distinct_merchants"].tolist(),
    )


def test_three_small_at_three_merchants_fires() -> None:
    fired, small, merchants = run(
        CardTesting(), [0] * 3, [T0, T0 + MINUTE, T0 + 2 * MINUTE], [1.0, 2.0, 0.01], [1, 2, 3]
    )
    assert fired == [False, False, True]
    assert small == [1, 2, 3]
    assert merchants == [1, 2, 3]


def test_exactly_window_earlier_is_outside() -> None:
    times = [T0, T0 + 5 * MINUTE, T0 + 10 * MINUTE]  # the first is exactly 600 s earlier
    fired, small, merchants = run(CardTesting(), [0] * 3, times, [1.0] * 3, [1, 2, 3])
    assert fired == [False, False, False]
    assert (small[-1], merchants[-1]) == (2, 2)


def test_one_ms_inside_window_counts() -> None:
    times = [T0, T0 + 5 * MINUTE, T0 + 10 * MINUTE - 1]
    fired, small, merchants = run(CardTesting(), [0] * 3, times, [1.0] * 3, [1, 2, 3])
    assert fired == [False, False, True]
    assert (small[-1], merchants[-1]) == (3, 3)


def test_equal_timestamps() -> None:
    fired, _, _ = run(CardTesting(), [0] * 3, [T0] * 3, [1.0] * 3, [1, 2, 3])
    assert fired == [False, False, True]


def test_amount_limit_is_inclusive_and_large_ones_are_ignored() -> None:
    # 2.00 is small; 2.01 is not, never fires and changes nothing.
    fired, small, merchants = run(
        CardTesting(),
        [0] * 4,
        [T0, T0 + 1, T0 + 2, T0 + 3],
        [2.00, 2.01, 2.00, 1.00],
        [1, 2, 3, 4],
    )
    assert fired == [False, False, False, True]
    assert small == [1, 1, 2, 3]
    assert merchants == [1, 1, 2, 3]


def test_current_transaction_must_be_small() -> None:
    fired, small, merchants = run(
        CardTesting(), [0] * 4, [T0, T0 + 1, T0 + 2, T0 + 3], [1.0, 1.0, 1.0, 50.0], [1, 2, 3, 4]
    )
    assert fired == [False, False, True, False]
    assert (small[-1], merchants[-1]) == (3, 3)


def test_missing_merchant_counts_as_transaction_not_merchant() -> None:
    fired, small, merchants = run(
        CardTesting(), [0] * 4, [T0, T0 + 1, T0 + 2, T0 + 3], [1.0] * 4, [1, -1, 2, -1]
    )
    assert small == [1, 2, 3, 4]
    assert merchants == [1, 1, 2, 2]
    assert fired == [False] * 4
    # A third merchant then fires.
    fired, _, _ = run(
        CardTesting(), [0] * 5, [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4], [1.0] * 5, [1, -1, 2, -1, 3]
    )
    assert fired[-1] is True


def test_missing_amount_is_not_small() -> None:
    fired, small, _ = run(
        CardTesting(),
        [0] * 4,
        [T0, T0 + 1, T0 + 2, T0 + 3],
        [1.0, math.nan, 1.0, 1.0],
        [1, 2, 3, 4],
    )
    assert small == [1, 1, 2, 3]
    assert fired == [False, False, False, True]


def test_same_merchant_again_is_one_merchant() -> None:
    fired, small, merchants = run(
        CardTesting(), [0] * 4, [T0, T0 + 1, T0 + 2, T0 + 3], [1.0] * 4, [5, 5, 6, 6]
    )
    assert small == [1, 2, 3, 4]
    assert merchants == [1, 1, 2, 2]
    assert fired == [False] * 4


def test_merchant_time_is_its_latest_small_charge() -> None:
    # Merchant 1 at 0 and again at 9 min: still in the window at 12 min.
    times = [T0, T0 + 9 * MINUTE, T0 + 11 * MINUTE, T0 + 12 * MINUTE]
    fired, _, merchants = run(CardTesting(), [0] * 4, times, [1.0] * 4, [1, 1, 2, 3])
    assert merchants == [1, 1, 2, 3]
    assert fired[-1] is True


def test_cards_interleaved() -> None:
    card = [0, 1, 0, 1, 0, 1]
    times = [T0 + k for k in range(6)]
    fired, small, merchants = run(CardTesting(), card, times, [1.0] * 6, [1, 1, 2, 2, 3, 2])
    assert small == [1, 1, 2, 2, 3, 3]
    assert merchants == [1, 1, 2, 2, 3, 2]
    assert fired == [False, False, False, False, True, False]


def test_state_carries_over_batches() -> None:
    d = CardTesting()
    state = d.new_state()
    assert run(d, [0, 0], [T0, T0 + 1], [1.0, 1.0], [1, 2], state)[0] == [False, False]
    assert run(d, [0], [T0 + MINUTE], [1.0], [3], state)[0] == [True]


def test_caps_at_the_kept_state() -> None:
    n = 40
    fired, small, merchants = run(CardTesting(), [0] * n, [T0] * n, [1.0] * n, list(range(n)))
    assert small[-1] == RING_WIDTH
    assert merchants[-1] == MERCHANT_WIDTH
    assert all(fired[2:])


def test_thresholds_override() -> None:
    d = CardTesting(max_amount=5.0, min_transactions=2, min_merchants=1, window_s=60)
    fired, _, _ = run(d, [0] * 3, [T0, T0 + 59_999, T0 + 120_000], [4.0, 5.0, 5.0], [7, 7, 7])
    assert fired == [False, True, False]


@pytest.mark.parametrize(
    "overrides",
    [
        {"min_transactions": 0},
        {"min_transactions": RING_WIDTH + 1},
        {"min_merchants": MERCHANT_WIDTH + 1},
        {"min_merchants": -1},
        {"window_s": -1},
        {"max_amount": -0.5},
    ],
)
def test_bad_thresholds_are_rejected(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="card_testing"):
        CardTesting(**overrides)


def test_message_names_the_values() -> None:
    message = CardTesting().message(
        "card_testing", {"small_transactions": 4, "distinct_merchants": 3}
    )
    assert message == (
        "4 charges of <= 2.00 at 3 merchants within 10.0 min "
        "(>= 3 at >= 3 merchants within 10.0 min)"
    )


WINDOW_MS = 600_000


@st.composite
def streams(
    draw: st.DrawFn,
) -> tuple[list[int], list[int], list[float], list[int], list[int], CardTestingThresholds]:
    n = draw(st.integers(0, 80))
    card = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    steps = draw(st.lists(st.integers(0, 10), min_size=n, max_size=n))
    offsets = draw(st.lists(st.sampled_from([-1, 0, 0, 1]), min_size=n, max_size=n))
    times = [T0 + k * (WINDOW_MS // 2) + o for k, o in zip(steps, offsets, strict=True)]
    if draw(st.booleans()):
        times.sort()
    amount = draw(
        st.lists(
            st.sampled_from([0.0, 0.5, 1.99, 2.0, 2.01, 50.0, math.nan]), min_size=n, max_size=n
        )
    )
    # Many merchants now and then, so the 16 kept merchants overflow.
    top = draw(st.sampled_from([4, 24]))
    merchant = draw(st.lists(st.integers(-1, top), min_size=n, max_size=n))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    t = CardTestingThresholds(
        min_transactions=draw(st.integers(1, 5)),
        min_merchants=draw(st.sampled_from([0, 1, 2, 3, 16])),
    )
    return card, times, amount, merchant, cuts, t


Stream = tuple[list[int], list[int], list[float], list[int], list[int], CardTestingThresholds]


@settings(max_examples=200, deadline=None)
@given(streams())
def test_kernel_matches_reference(stream: Stream) -> None:
    card, times, amount, merchant, cuts, t = stream
    d = CardTesting(t)
    state = d.new_state()
    fired: list[bool] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(card)], strict=True):
        fired += run(d, card[lo:hi], times[lo:hi], amount[lo:hi], merchant[lo:hi], state)[0]
    states: dict[int, dict[str, Any] | None] = {}
    expected = []
    for c, time_ms, a, m in zip(card, times, amount, merchant, strict=True):
        states[c], f = reference_step(states.get(c), time_ms, a, m, t)
        expected.append(f)
    assert fired == expected


@settings(max_examples=100, deadline=None)
@given(streams())
def test_in_time_order_counts_equal_a_naive_recount(stream: Stream) -> None:
    card, times, amount, merchant, _, t = stream
    order = np.argsort(times, kind="stable")
    card, times = [card[i] for i in order], [times[i] for i in order]
    amount, merchant = [amount[i] for i in order], [merchant[i] for i in order]
    _, small, merchants = run(CardTesting(t), card, times, amount, merchant)
    for i in range(len(card)):
        window = [
            j
            for j in range(i + 1)
            if card[j] == card[i] and amount[j] <= t.max_amount and times[i] - times[j] < WINDOW_MS
        ]
        assert small[i] == min(len(window), RING_WIDTH)
        distinct = {merchant[j] for j in window if merchant[j] != -1}
        assert merchants[i] == min(len(distinct), MERCHANT_WIDTH)
