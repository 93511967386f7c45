"""The feature kernels against the plain-Python reference: window edges, ties, disorder, labels."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.features import FeatureConfig, StreamingFeatures
from fraudstream.features.reference import DAY_MS, Tx, reference_features
from fraudstream.io.labels import LabelFeed, Labels

QUARTER_DAY = DAY_MS // 4  # times on a 6-hour grid land exactly on window edges
COMPARED = (
    "customer_tx_1d",
    "customer_avg_amount_1d",
    "customer_tx_2d",
    "customer_avg_amount_2d",
    "customer_tx_3d",
    "customer_avg_amount_3d",
    "customer_known_frauds_3d",
    "customer_amount_ratio",
    "customer_tx_seen",
    "terminal_tx_1d",
    "terminal_risk_1d",
    "terminal_tx_2d",
    "terminal_risk_2d",
    "terminal_tx_3d",
    "terminal_risk_3d",
    "terminal_tx_1d_now",
    "terminal_known_frauds_3d",
    "terminal_days_since_fraud",
    "terminal_days_since_first_fraud",
    "terminal_cleared_since_fraud",
    "terminal_fraud_share_since_first",
)

transaction = st.tuples(
    st.integers(0, 3),  # customer
    st.integers(0, 2),  # terminal
    st.integers(0, 40).map(lambda q: q * QUARTER_DAY) | st.integers(0, 10 * DAY_MS),
    st.sampled_from([1.0, 2.5, 10.0, 99.99]),
    st.one_of(st.none(), st.integers(0, 12 * DAY_MS)),  # fraud label time, if any
)


def _run(
    rows: list[tuple[int, int, int, float, int | None]],
    cuts: list[int],
    width: int,
    live: bool = False,
) -> list[dict[str, float]]:
    ids = [f"t{i}" for i in range(len(rows))]
    labelled = [(ids[i], r[4]) for i, r in enumerate(rows) if r[4] is not None]
    labels = Labels(
        pa.array([i for i, _ in labelled], pa.string()),
        np.ones(len(labelled), dtype=bool),
        np.array([t for _, t in labelled], dtype=np.int64),
    )
    config = FeatureConfig(windows_days=(1, 2, 3), delay_days=1, slack_days=20, initial_width=width)
    engine = StreamingFeatures(config, LabelFeed(labels, live=live))
    out: list[dict[str, float]] = []
    bounds = [0, *sorted(set(cuts)), len(rows)]
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        part = rows[start:stop]
        if not part:
            continue
        columns = engine.compute(
            pa.array(ids[start:stop], pa.string()),
            np.array([r[0] for r in part], dtype=np.int32),
            np.array([r[1] for r in part], dtype=np.int32),
            np.array([r[2] for r in part], dtype=np.int64),
            np.array([r[3] for r in part], dtype=np.float64),
        )
        for k in range(len(part)):
            out.append({name: float(columns[name][k]) for name in COMPARED})
    return out


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(transaction, min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=4),
    width=st.sampled_from([1, 2, 16]),
    live=st.booleans(),
)
def test_kernels_equal_the_reference(
    rows: list[tuple[int, int, int, float, int | None]], cuts: list[int], width: int, live: bool
) -> None:
    """Any order, ties, exact edges, any batching, labels before/after: same as the oracle.

    Labels join in batches (a batch takes every label due by its latest decision time) and
    still count only from their own label time, so the batching never shows. A live feed
    indexes every transaction, a file feed only those its fraud labels name: same result.
    """
    got = _run(rows, cuts, width, live)
    fraud_labels = {f"t{i}": r[4] for i, r in enumerate(rows) if r[4] is not None}
    txs = [Tx(f"t{i}", r[0], r[1], r[2], r[3]) for i, r in enumerate(rows)]
    want = reference_features(txs, fraud_labels, windows_days=(1, 2, 3), delay_days=1)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        for name in COMPARED:
            assert _same(g[name], w[name]), (i, name, g[name], w[name])


def test_window_edges_are_half_open() -> None:
    """A transaction exactly 1 day earlier is outside the 1-day window; the same ms is inside."""
    rows = [(0, 0, 0, 10.0, None), (0, 0, DAY_MS, 20.0, None), (0, 0, DAY_MS, 30.0, None)]
    got = _run(rows, [], 16)
    assert [g["customer_tx_1d"] for g in got] == [1.0, 1.0, 2.0]
    assert [g["customer_tx_2d"] for g in got] == [1.0, 2.0, 3.0]
    assert got[2]["customer_avg_amount_1d"] == 25.0


def test_a_label_counts_only_from_its_time() -> None:
    """The terminal's fraud from day 0 is known at day 2 (label time), not before."""
    rows = [
        (0, 0, 0, 10.0, 2 * DAY_MS),
        (1, 0, DAY_MS + QUARTER_DAY, 10.0, None),  # label not known yet
        (1, 0, 2 * DAY_MS, 10.0, None),  # known now (label time == decision time)
    ]
    got = _run(rows, [1], 16)
    assert got[1]["terminal_tx_1d"] == 1.0 and got[1]["terminal_risk_1d"] == 0.0
    assert got[2]["terminal_known_frauds_3d"] == 1.0


def test_terminal_fraud_episode() -> None:
    """A terminal's frauds of days 0 and 1 (charged back a day later, the delay), then
    genuine transactions: the episode's age grows and the cleared transactions count the
    genuine ones old enough to have been charged back."""
    rows = [
        (0, 0, 0, 10.0, DAY_MS),
        (1, 0, DAY_MS, 10.0, 2 * DAY_MS),
        (2, 0, 2 * DAY_MS, 10.0, None),
        (3, 0, 2 * DAY_MS + QUARTER_DAY, 10.0, None),
        (0, 1, 3 * DAY_MS, 10.0, None),  # another terminal: no episode
        (1, 0, 3 * DAY_MS + QUARTER_DAY, 10.0, None),
    ]
    got = _run(rows, [2, 4], 2)
    assert math.isnan(got[0]["terminal_days_since_fraud"])  # nothing known yet
    assert got[1]["terminal_days_since_fraud"] == 1.0  # day 0's fraud, known at day 1
    assert got[2]["terminal_days_since_fraud"] == 1.0  # day 1's fraud, known at day 2
    assert got[2]["terminal_days_since_first_fraud"] == 2.0
    assert got[2]["terminal_cleared_since_fraud"] == 0.0  # still compromised, as far as known
    assert got[2]["terminal_fraud_share_since_first"] == 1.0
    assert math.isnan(got[4]["terminal_days_since_fraud"])
    last = got[5]  # day 3.25: the genuine ones of day 2 and 2.25 are past the 1-day delay
    assert last["terminal_days_since_fraud"] == 2.25
    assert last["terminal_cleared_since_fraud"] == 2.0
    assert last["terminal_fraud_share_since_first"] == 0.5


def test_calendar_features() -> None:
    """Weekend and night (hour <= 6) from the event time, in UTC."""
    engine = StreamingFeatures()
    saturday_6h = 1_532_757_600_000  # 2018-07-28T06:00:00Z, a Saturday
    monday_7h = saturday_6h + 2 * DAY_MS + 3_600_000
    out = engine.compute(
        pa.array(["a", "b"]), np.array([0, 0], np.int32), np.array([0, 0], np.int32),
        np.array([saturday_6h, monday_7h]), np.array([1.0, 1.0]),
    )  # fmt: skip
    assert out["weekend"].tolist() == [1.0, 0.0]
    assert out["night"].tolist() == [1.0, 0.0]


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="power of two"):
        StreamingFeatures(FeatureConfig(initial_width=3))
    with pytest.raises(ValueError, match="increasing"):
        StreamingFeatures(FeatureConfig(windows_days=(7, 1)))


def test_cap_bounds_memory_for_a_hot_key() -> None:
    """At the cap a window holds the last ``cap`` transactions of a key, this one included."""
    engine = StreamingFeatures(FeatureConfig(initial_width=2, cap=8))
    n = 50
    out = engine.compute(
        pa.array([f"x{i}" for i in range(n)]), np.zeros(n, np.int32), np.zeros(n, np.int32),
        np.arange(n, dtype=np.int64) * 1000, np.ones(n),
    )  # fmt: skip
    assert engine.customers.width == 8
    assert out["customer_tx_1d"][-1] == 8.0  # this one and the 7 before it
