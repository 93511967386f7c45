"""unusual_hour: an hour (and its neighbours) the card never used, after min_history tx."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.detectors.base import Findings
from fraudstream.detectors.unusual_hour import (
    UnusualHour,
    UnusualHourThresholds,
    reference_step,
)
from fraudstream.engine.state import StateTable
from fraudstream.testing import detector_input

DAY0 = 1_699_920_000_000  # 2023-11-14T00:00:00Z
HOUR = 3_600_000


def run(
    d: UnusualHour,
    card: list[int],
    hours: list[int],
    state: StateTable | None = None,
    day: int = 0,
) -> Findings:
    """Transactions at the given UTC hours (-1: no hour), 7 minutes past, on day ``day``."""
    state = state if state is not None else d.new_state()
    times = [DAY0 + day * 24 * HOUR + max(h, 0) * HOUR + 7 * 60_000 for h in hours]
    tx = detector_input(card=card, time_ms=times, amount=[5.0] * len(card))
    tx.hour = np.asarray(hours, dtype=np.int8)
    return d.process(state, tx)


def fired(out: Findings) -> list[bool]:
    return list(out.fired["unusual_hour"].tolist())


def test_hour_comes_from_time_in_utc() -> None:
    times = [DAY0 + 3 * HOUR - 1, DAY0 + 3 * HOUR, DAY0 + 24 * HOUR + 23 * HOUR + 59 * 60_000]
    tx = detector_input(time_ms=times, amount=[1.0] * 3)
    out = UnusualHour().process(UnusualHour().new_state(), tx)
    assert out.features["hour_utc"].tolist() == [2, 3, 23]


def test_new_hour_after_history_fires() -> None:
    d = UnusualHour(min_history=3)
    out = run(d, [0] * 5, [9, 10, 9, 3, 3])
    assert fired(out) == [False, False, False, True, False]
    assert out.features["hours_seen"].tolist() == [0, 1, 2, 2, 3]
    assert out.features["hour_utc"].tolist() == [9, 10, 9, 3, 3]


def test_needs_min_history() -> None:
    assert fired(run(UnusualHour(), [0] * 20, [12] * 19 + [3]))[-1] is False
    assert fired(run(UnusualHour(), [0] * 21, [12] * 20 + [3]))[-1] is True


def test_neighbour_hours_count_as_used() -> None:
    d = UnusualHour(min_history=2)
    for h, expected in [(11, False), (13, False), (14, True), (10, True)]:
        assert fired(run(d, [0] * 3, [12, 12, h]))[-1] is expected, h


def test_neighbours_wrap_around_midnight() -> None:
    d = UnusualHour(min_history=2)
    assert fired(run(d, [0] * 3, [23, 23, 0]))[-1] is False
    assert fired(run(d, [0] * 3, [0, 0, 23]))[-1] is False
    assert fired(run(d, [0] * 3, [0, 0, 22]))[-1] is True


def test_without_neighbours_only_the_hour_counts() -> None:
    d = UnusualHour(min_history=2, include_neighbours=False)
    assert fired(run(d, [0] * 3, [12, 12, 13])) == [False, False, True]
    assert fired(run(d, [0] * 3, [12, 12, 12])) == [False, False, False]


def test_fired_hour_is_added() -> None:
    d = UnusualHour(min_history=2)
    state = d.new_state()
    assert fired(run(d, [0] * 4, [12, 12, 3, 3], state)) == [False, False, True, False]
    assert state["hours"][0] == (1 << 12) | (1 << 3)
    assert state["count"][0] == 4


def test_missing_hour_is_skipped() -> None:
    d = UnusualHour(min_history=2)
    state = d.new_state()
    out = run(d, [0] * 4, [12, -1, 12, 3], state)
    assert fired(out) == [False, False, False, True]
    assert state["count"][0] == 3


def test_cards_interleaved() -> None:
    d = UnusualHour(min_history=2)
    out = run(d, [0, 1, 0, 1, 0, 1], [12, 3, 12, 3, 3, 12])
    assert fired(out) == [False, False, False, False, True, True]


def test_state_carries_over_batches() -> None:
    d = UnusualHour(min_history=2)
    state = d.new_state()
    assert fired(run(d, [0, 0], [12, 12], state)) == [False, False]
    assert fired(run(d, [0], [12], state, day=1)) == [False]
    assert fired(run(d, [0], [18], state, day=2)) == [True]


def test_thresholds_override_and_rejection() -> None:
    assert UnusualHour(UnusualHourThresholds(min_history=5)).thresholds.min_history == 5
    with pytest.raises(ValueError, match="unusual_hour"):
        UnusualHour(min_history=0)


def test_message_names_the_values() -> None:
    message = UnusualHour().message("unusual_hour", {"hour_utc": 3, "hours_seen": 2})
    assert message == (
        "03:00-04:00 UTC, an hour the card never used nor the hours either side "
        "(2 of 24 hours seen, history >= 20)"
    )
    message = UnusualHour(include_neighbours=False).message(
        "unusual_hour", {"hour_utc": 23, "hours_seen": 5}
    )
    assert message.startswith("23:00-00:00 UTC, an hour the card never used (5 of 24")


@st.composite
def streams(
    draw: st.DrawFn,
) -> tuple[list[int], list[int], list[int], UnusualHourThresholds]:
    n = draw(st.integers(0, 80))
    card = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    hours = draw(
        st.lists(st.one_of(st.integers(-1, 23), st.sampled_from([0, 1, 22, 23])), min_size=n,
                 max_size=n)
    )  # fmt: skip
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    t = UnusualHourThresholds(
        min_history=draw(st.integers(1, 6)), include_neighbours=draw(st.booleans())
    )
    return card, hours, cuts, t


Stream = tuple[list[int], list[int], list[int], UnusualHourThresholds]


@settings(max_examples=200, deadline=None)
@given(streams())
def test_kernel_matches_reference(stream: Stream) -> None:
    card, hours, cuts, t = stream
    d = UnusualHour(t)
    state = d.new_state()
    got: list[bool] = []
    seen: list[int] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(card)], strict=True):
        out = run(d, card[lo:hi], hours[lo:hi], state)
        got += fired(out)
        seen += out.features["hours_seen"].tolist()
    states: dict[int, dict[str, Any] | None] = {}
    expected = []
    expected_seen = []
    for c, h in zip(card, hours, strict=True):
        before = states.get(c)
        expected_seen.append(len(before["hours"]) if before is not None else 0)
        states[c], f = reference_step(before, h, t)
        expected.append(f)
    assert got == expected
    assert seen == expected_seen
