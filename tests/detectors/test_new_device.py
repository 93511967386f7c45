"""new_device: a device not among the card's `remember` most recent, after min_history."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.detectors.base import Findings
from fraudstream.detectors.new_device import (
    DEVICE_WIDTH,
    NewDevice,
    NewDeviceThresholds,
    reference_step,
)
from fraudstream.engine.state import StateTable
from fraudstream.testing import detector_input

T0 = 1_700_000_000_000


def run(
    d: NewDevice, card: list[int], device: list[int], state: StateTable | None = None
) -> Findings:
    state = state if state is not None else d.new_state()
    times = [T0 + 1_000 * k for k in range(len(card))]
    return d.process(
        state, detector_input(card=card, time_ms=times, amount=[5.0] * len(card), device=device)
    )


def fired(out: Findings) -> list[bool]:
    return list(out.fired["new_device"].tolist())


def test_new_device_after_history_fires_once() -> None:
    out = run(NewDevice(), [0] * 6, [1, 1, 1, 2, 2, 1])
    assert fired(out) == [False, False, False, True, False, False]
    assert out.features["known_devices"].tolist() == [0, 1, 1, 1, 2, 2]


def test_needs_min_history_of_transactions_with_a_device() -> None:
    assert fired(run(NewDevice(), [0] * 3, [1, 2, 3])) == [False, False, False]
    assert fired(run(NewDevice(), [0] * 4, [1, 2, 3, 4])) == [False] * 3 + [True]
    # Transactions without a device are not history.
    assert fired(run(NewDevice(), [0] * 5, [1, -1, 1, -1, 2])) == [False] * 5


def test_missing_device_neither_fires_nor_changes_state() -> None:
    d = NewDevice()
    state = d.new_state()
    out = run(d, [0] * 5, [1, 1, 1, -1, -1], state)
    assert fired(out) == [False] * 5
    assert state["count"][0] == 3
    assert state["devices"][0].tolist()[:2] == [1, -1]


def test_only_the_most_recent_are_remembered() -> None:
    d = NewDevice(remember=2, min_history=1)
    # 1, 2, 3: device 1 is now the third most recent -> new again.
    out = run(d, [0] * 5, [1, 2, 3, 1, 3])
    assert fired(out) == [False, True, True, True, False]
    assert out.features["known_devices"].tolist() == [0, 1, 2, 2, 2]


def test_reuse_refreshes_recency() -> None:
    d = NewDevice(remember=2, min_history=1)
    # 1, 2, 1 (refreshes 1), 3 (evicts 2), 1 is still known, 2 is not.
    assert fired(run(d, [0] * 6, [1, 2, 1, 3, 1, 2])) == [False, True, False, True, False, True]


def test_cards_interleaved() -> None:
    out = run(NewDevice(min_history=1), [0, 1, 0, 1, 0, 1], [1, 1, 1, 2, 2, 2])
    assert fired(out) == [False, False, False, True, True, False]


def test_state_carries_over_batches() -> None:
    d = NewDevice()
    state = d.new_state()
    assert fired(run(d, [0, 0], [1, 1], state)) == [False, False]
    assert fired(run(d, [0], [1], state)) == [False]
    assert fired(run(d, [0, 0], [1, 5], state)) == [False, True]


def test_more_devices_than_kept() -> None:
    n = DEVICE_WIDTH + 4
    d = NewDevice(remember=DEVICE_WIDTH, min_history=0)
    out = run(d, [0] * n, list(range(n)))
    assert all(fired(out))
    assert out.features["known_devices"].tolist()[-1] == DEVICE_WIDTH


@pytest.mark.parametrize(
    "overrides", [{"remember": 0}, {"remember": DEVICE_WIDTH + 1}, {"min_history": -1}]
)
def test_bad_thresholds_are_rejected(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="new_device"):
        NewDevice(**overrides)


def test_thresholds_override() -> None:
    assert NewDevice(NewDeviceThresholds(remember=4)).thresholds.remember == 4


def test_message_names_the_values() -> None:
    assert NewDevice().message("new_device", {"known_devices": 3}) == (
        "a device not among the card's 3 known devices "
        "(the last 8 remembered, history >= 3 with a device)"
    )
    assert NewDevice().message("new_device", {"known_devices": 2, "device_id": "dev-7f3a"}) == (
        "device dev-7f3a not among the card's 2 known devices "
        "(the last 8 remembered, history >= 3 with a device)"
    )


@st.composite
def streams(
    draw: st.DrawFn,
) -> tuple[list[int], list[int], list[int], NewDeviceThresholds]:
    n = draw(st.integers(0, 80))
    card = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    top = draw(st.sampled_from([3, 10, 30]))
    device = draw(st.lists(st.integers(-1, top), min_size=n, max_size=n))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    t = NewDeviceThresholds(
        min_history=draw(st.integers(0, 4)), remember=draw(st.sampled_from([1, 2, 8, 16]))
    )
    return card, device, cuts, t


Stream = tuple[list[int], list[int], list[int], NewDeviceThresholds]


@settings(max_examples=200, deadline=None)
@given(streams())
def test_kernel_matches_reference(stream: Stream) -> None:
    card, device, cuts, t = stream
    d = NewDevice(t)
    state = d.new_state()
    got: list[bool] = []
    known: list[int] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(card)], strict=True):
        out = run(d, card[lo:hi], device[lo:hi], state)
        got += fired(out)
        known += out.features["known_devices"].tolist()
    states: dict[int, dict[str, Any] | None] = {}
    expected = []
    expected_known = []
    for c, dev in zip(card, device, strict=True):
        before = states.get(c)
        expected_known.append(len(before["devices"][: t.remember]) if before else 0)
        states[c], f = reference_step(before, dev, t)
        expected.append(f)
    assert got == expected
    assert known == expected_known
