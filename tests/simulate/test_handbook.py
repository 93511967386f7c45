"""The handbook simulation at small scale: its published design, statistic by statistic."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.simulate.handbook import (
    DAY_MS,
    START,
    HandbookConfig,
    handbook_labels,
    handbook_table,
    scenario_counts,
)

CONFIG = HandbookConfig(customers=400, terminals=800, days=60, seed=11)


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    return handbook_table(CONFIG)


def test_deterministic_for_a_seed(table) -> None:  # type: ignore[no-untyped-def]
    again = handbook_table(CONFIG)
    assert again.equals(table)
    assert not handbook_table(HandbookConfig(400, 800, 60, seed=12)).equals(table)


def test_volume_time_and_amounts_follow_the_design(table) -> None:  # type: ignore[no-untyped-def]
    n = table.num_rows
    # U(0, 4) a day per customer -> 2 on average, minus the ~3 % of times outside the day
    expected = CONFIG.customers * CONFIG.days * 2 * 0.969
    assert abs(n - expected) / expected < 0.08
    ts = table.column("timestamp").to_numpy()
    assert np.all(np.diff(ts) >= 0), "sorted by time"
    start = int(START.timestamp() * 1000)
    assert ts.min() >= start and ts.max() < start + CONFIG.days * DAY_MS
    seconds = (ts - start) % DAY_MS / 1000
    assert abs(seconds.mean() - 43_200) < 600 and abs(seconds.std() - 19_000) < 1_500
    genuine = table.column("fraud_scenario").to_numpy() == 0
    amount = table.column("amount").to_numpy()
    assert amount.min() >= 0 and np.allclose(amount, np.round(amount, 2))
    assert amount[genuine].max() <= 220  # every larger amount is scenario 1 (or 3)
    assert 45 < amount[genuine].mean() < 60  # mean of U(5, 100) = 52.5
    ids = table.column("transaction_id").to_pylist()
    assert len(set(ids)) == n and ids[0] == "tx0"


def test_fraud_scenarios(table) -> None:  # type: ignore[no-untyped-def]
    counts = scenario_counts(table)
    scenario = table.column("fraud_scenario").to_numpy()
    fraud = table.column("is_fraud").to_numpy(zero_copy_only=False)
    assert np.array_equal(fraud, scenario > 0)
    assert counts["frauds"] == counts[1] + counts[2] + counts[3]
    amount = table.column("amount").to_numpy()
    assert np.all(fraud[amount > 220])
    # scenario 2: all transactions of a compromised terminal on the days it is compromised
    assert counts[2] > counts[1] > 0 and counts[3] > 0
    # scenario 3 multiplies amounts by 5: they stand out
    assert np.median(amount[scenario == 3]) > 3 * np.median(amount[scenario == 0])


def test_records_follow_the_contract(table) -> None:  # type: ignore[no-untyped-def]
    from fraudstream.schema import CardTokenizer, validate_record

    tokenizer = CardTokenizer(b"k")
    for record in table.slice(0, 200).to_pylist():
        tx = validate_record(record, tokenizer)
        assert tx.card_id == tx.user_id and tx.merchant_id is not None
        assert 48.3 < tx.lat < 49.4 and 1.8 < tx.lon < 3.4
        assert record["is_fraud"] in (True, False)


def test_labels_are_is_fraud_seven_days_later(table) -> None:  # type: ignore[no-untyped-def]
    labels = handbook_labels(table)
    assert labels.num_rows == table.num_rows
    times = labels.column("label_time").to_numpy()
    assert np.all(np.diff(times) >= 0)
    by_id = dict(zip(labels.column("transaction_id").to_pylist(), times.tolist(), strict=True))
    first = table.slice(0, 1).to_pylist()[0]
    assert by_id[first["transaction_id"]] == first["timestamp"] + 7 * DAY_MS


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="--customers must be >= 1"):
        handbook_table(HandbookConfig(customers=0))
