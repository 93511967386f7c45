"""A detector's messages for many rows at once are its one-row messages, text for text.

Detectors whose rules fire often (amount_anomaly, new_device) write a batch of reasons in one
pass instead of building a dict per row; the texts must not change.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.detectors import CardHistory, GeoVelocity, NewDevice, SpendDeviation

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
amounts = st.floats(min_value=0.0, max_value=1e12, allow_nan=False)
texts = st.one_of(st.none(), st.text(max_size=12))


def one_by_one(detector: Any, rule: str, columns: dict[str, list[Any]]) -> list[str]:
    names = list(columns)
    return [
        detector.message(rule, dict(zip(names, row, strict=True)))
        for row in zip(*columns.values(), strict=True)
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(amounts, floats, floats, texts, texts, floats), max_size=20),
    st.sampled_from(["amount_anomaly", "zip_mismatch"]),
    st.floats(min_value=1.0, max_value=50.0),
)
def test_card_history(rows: list[tuple[Any, ...]], rule: str, multiplier: float) -> None:
    detector = CardHistory(multiplier=multiplier)
    names = ("amount", "amount_ratio", "running_average", "zipcode", "last_zipcode")
    columns = {name: [row[k] for row in rows] for k, name in enumerate(names)}
    columns["seconds_since_last"] = [abs(row[5]) if row[5] == row[5] else 1.0 for row in rows]
    assert detector.messages(rule, columns) == one_by_one(detector, rule, columns)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(texts, st.integers(0, 10**6), st.integers(0, 3)), max_size=20),
    st.integers(1, 10),
)
def test_new_device(rows: list[tuple[Any, ...]], remember: int) -> None:
    detector = NewDevice(remember=remember)
    columns = {
        "device_id": [row[0] for row in rows],
        "known_devices": [row[1] for row in rows],
        "ip": [None for _ in rows],  # other fields the batch carries are ignored
    }
    assert detector.messages("new_device", columns) == one_by_one(detector, "new_device", columns)


finite = st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False)
epoch_ms = st.integers(0, 4_000_000_000_000)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(finite, st.just(float("inf"))), finite, st.text(max_size=8), epoch_ms,
            finite, epoch_ms,
        ),
        max_size=20,
    )
)  # fmt: skip
def test_geo_velocity(rows: list[tuple[Any, ...]]) -> None:
    detector = GeoVelocity()
    names = (
        "speed_kmh", "max_speed_kmh", "previous_transaction_id", "previous_timestamp",
        "distance_km", "time_ms",
    )  # fmt: skip
    columns = {name: [row[k] for row in rows] for k, name in enumerate(names)}
    assert detector.messages("geo_velocity", columns) == one_by_one(
        detector, "geo_velocity", columns
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(amounts, st.one_of(floats, st.just(float("inf"))), floats, floats)),
    st.floats(min_value=0.5, max_value=10.0),
)
def test_spend_deviation(rows: list[tuple[Any, ...]], z_threshold: float) -> None:
    detector = SpendDeviation(z_threshold=z_threshold)
    names = ("amount", "amount_zscore", "mean_amount", "std_amount")
    columns = {name: [row[k] for row in rows] for k, name in enumerate(names)}
    rule = "spend_deviation"
    assert detector.messages(rule, columns) == one_by_one(detector, rule, columns)
