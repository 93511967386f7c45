"""spend_deviation: amount > mean + z * std and >= min_excess above the card's running mean."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.detectors.base import Findings
from fraudstream.detectors.spend_deviation import (
    SpendDeviation,
    SpendDeviationThresholds,
    reference_step,
)
from fraudstream.engine.state import StateTable
from fraudstream.testing import detector_input

T0 = 1_700_000_000_000


def run(
    d: SpendDeviation, card: list[int], amount: list[float], state: StateTable | None = None
) -> Findings:
    state = state if state is not None else d.new_state()
    times = [T0 + 1_000 * k for k in range(len(card))]
    return d.process(state, detector_input(card=card, time_ms=times, amount=amount))


def fired(out: Findings) -> list[bool]:
    return list(out.fired["spend_deviation"].tolist())


HISTORY = [20.0, 30.0] * 10  # 20 transactions: mean 25, std 5


def test_fires_above_mean_plus_three_std_and_min_excess() -> None:
    out = run(SpendDeviation(), [0] * 22, [*HISTORY, 400.0, 30.0])
    assert fired(out) == [False] * 20 + [True, False]


def test_boundaries() -> None:
    d = SpendDeviation()
    # Excess exactly min_excess (100.00) is enough; 99.99 is not.
    assert fired(run(d, [0] * 21, [*HISTORY, 125.0]))[-1] is True
    assert fired(run(d, [0] * 21, [*HISTORY, 124.99]))[-1] is False
    # z exactly 3 is not above: history with std 50, mean 100 -> 250 is z = 3.
    wide = [50.0, 150.0] * 10
    assert fired(run(d, [0] * 21, [*wide, 250.0]))[-1] is False
    assert fired(run(d, [0] * 21, [*wide, 250.01]))[-1] is True


def test_needs_min_history() -> None:
    out = run(SpendDeviation(), [0] * 20, [*HISTORY[:19], 900.0])
    assert fired(out)[-1] is False  # 19 earlier transactions
    out = run(SpendDeviation(), [0] * 21, [*HISTORY, 900.0])
    assert fired(out)[-1] is True


def test_features_are_the_history_before_the_transaction() -> None:
    out = run(SpendDeviation(), [0] * 21, [*HISTORY, 400.0])
    assert out.features["mean_amount"][-1] == pytest.approx(25.0)
    assert out.features["std_amount"][-1] == pytest.approx(5.0)
    assert out.features["amount_zscore"][-1] == pytest.approx(75.0)
    assert math.isnan(out.features["mean_amount"][0])  # first transaction: no history
    assert math.isnan(out.features["amount_zscore"][0])


def test_constant_history_has_infinite_zscore() -> None:
    out = run(SpendDeviation(min_history=3), [0] * 5, [10.0, 10.0, 10.0, 10.0, 200.0])
    assert out.features["amount_zscore"].tolist()[1:] == [0.0, 0.0, 0.0, math.inf]
    assert fired(out) == [False, False, False, False, True]
    out = run(SpendDeviation(min_history=3), [0] * 4, [10.0, 10.0, 10.0, 5.0])
    assert out.features["amount_zscore"][-1] == -math.inf


def test_fired_transactions_update_the_history_too() -> None:
    d = SpendDeviation(min_history=3)
    state = d.new_state()
    out = run(d, [0] * 5, [10.0, 10.0, 10.0, 1_000.0, 1_000.0], state)
    assert fired(out) == [False, False, False, True, False]
    assert state["count"][0] == 5
    assert state["mean"][0] == pytest.approx(406.0)


def test_missing_amount_is_skipped() -> None:
    d = SpendDeviation(min_history=2)
    state = d.new_state()
    out = run(d, [0] * 4, [10.0, math.nan, 10.0, 500.0], state)
    assert fired(out) == [False, False, False, True]
    assert state["count"][0] == 3
    assert math.isnan(out.features["mean_amount"][1])


def test_cards_interleaved_keep_their_own_history() -> None:
    card = [0, 1] * 20 + [0, 1]
    amount = [25.0, 1_000.0] * 20 + [1_000.0, 1_000.0]
    out = run(SpendDeviation(), card, amount)
    assert fired(out)[-2:] == [True, False]


def test_state_carries_over_batches() -> None:
    d = SpendDeviation()
    state = d.new_state()
    for start in range(0, 20, 7):
        assert not any(fired(run(d, [0] * len(HISTORY[start : start + 7]),
                                 HISTORY[start : start + 7], state)))  # fmt: skip
    assert fired(run(d, [0], [900.0], state)) == [True]


def test_thresholds_override() -> None:
    d = SpendDeviation(min_history=2, z_threshold=1.0, min_excess=0.0)
    assert fired(run(d, [0] * 3, [10.0, 20.0, 20.01])) == [False, False, True]


@pytest.mark.parametrize(
    "overrides", [{"min_history": 0}, {"z_threshold": -1.0}, {"min_excess": -5.0}]
)
def test_bad_thresholds_are_rejected(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="spend_deviation"):
        SpendDeviation(**overrides)


def test_message_names_the_values() -> None:
    values = {"amount": 400.0, "mean_amount": 25.0, "std_amount": 5.0, "amount_zscore": 75.0}
    assert SpendDeviation().message("spend_deviation", values) == (
        "amount 400.00 is 75.0 std above the card's mean 25.00 (std 5.00; "
        "> 3 std and >= 100.00 above, history >= 20)"
    )
    values["amount_zscore"] = math.inf
    assert "infinitely many std" in SpendDeviation().message("spend_deviation", values)


amounts = st.one_of(
    st.sampled_from([0.0, 1.0, 25.0, 100.0, 125.0, 1_000.0, math.nan]),
    st.floats(0, 5_000, allow_nan=False),
)


@st.composite
def streams(
    draw: st.DrawFn,
) -> tuple[list[int], list[float], list[int], SpendDeviationThresholds]:
    n = draw(st.integers(0, 80))
    card = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    amount = draw(st.lists(amounts, min_size=n, max_size=n))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    t = SpendDeviationThresholds(
        min_history=draw(st.integers(1, 8)),
        z_threshold=draw(st.sampled_from([0.0, 1.0, 3.0])),
        min_excess=draw(st.sampled_from([0.0, 100.0])),
    )
    return card, amount, cuts, t


Stream = tuple[list[int], list[float], list[int], SpendDeviationThresholds]


@settings(max_examples=200, deadline=None)
@given(streams())
def test_kernel_matches_reference(stream: Stream) -> None:
    card, amount, cuts, t = stream
    d = SpendDeviation(t)
    state = d.new_state()
    got: list[bool] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(card)], strict=True):
        got += fired(run(d, card[lo:hi], amount[lo:hi], state))
    states: dict[int, dict[str, Any] | None] = {}
    expected = []
    for c, a in zip(card, amount, strict=True):
        states[c], f = reference_step(states.get(c), a, t)
        expected.append(f)
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(streams())
def test_running_stats_equal_numpy_over_the_history(stream: Stream) -> None:
    card, amount, _, t = stream
    out = run(SpendDeviation(t), card, amount)
    for i in range(len(card)):
        history = [amount[j] for j in range(i) if card[j] == card[i] and not math.isnan(amount[j])]
        if not history or math.isnan(amount[i]):
            assert math.isnan(out.features["mean_amount"][i])
            continue
        assert out.features["mean_amount"][i] == pytest.approx(np.mean(history), abs=1e-6)
        assert out.features["std_amount"][i] == pytest.approx(np.std(history), abs=1e-6)
