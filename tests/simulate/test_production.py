"""The production-shaped benchmark workload: its shape is what the benchmark says it is."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pytest

from fraudstream.schema import CardTokenizer, validate_record
from fraudstream.simulate.production import ProductionShape, production_table, walkthrough_csv

SHAPE = ProductionShape(
    rows=60_000, cards=2_000, users=2_000, zipcodes=500, devices=6_000, merchants=300, ips=700
)


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    return production_table(SHAPE, seed=7)


def test_every_field_is_filled_and_cardinalities_are_bounded(table) -> None:  # type: ignore[no-untyped-def]
    assert table.num_rows == SHAPE.rows
    assert all(column.null_count == 0 for column in table.columns)
    bounds = {
        "card_id": SHAPE.cards, "user_id": SHAPE.users, "zipcode": SHAPE.zipcodes,
        "device_id": SHAPE.devices, "merchant_id": SHAPE.merchants, "ip": SHAPE.ips,
    }  # fmt: skip
    for name, bound in bounds.items():
        distinct = pc.count_distinct(table.column(name)).as_py()
        assert bound * 0.5 < distinct <= bound, name
    assert pc.count_distinct(table.column("transaction_id")).as_py() == SHAPE.rows


def test_amount_tails_and_far_transactions(table) -> None:  # type: ignore[no-untyped-def]
    amount = table.column("amount").to_numpy()
    assert 0.025 < (amount < 1.0).mean() < 0.035
    assert 0.045 < (amount > 500.0).mean() < 0.055
    # One user per card: a card's transactions are its user's, and 2 % are in another city.
    home = table.group_by("user_id").aggregate([("country", "count_distinct")])
    assert pc.max(home.column("country_count_distinct")).as_py() > 1
    timestamps = table.column("timestamp").to_numpy()
    assert (timestamps[1:] >= timestamps[:-1]).all()


def test_rows_are_valid_transactions_and_deterministic(table) -> None:  # type: ignore[no-untyped-def]
    tokenizer = CardTokenizer(b"k")
    for record in table.slice(0, 200).to_pylist():
        valid = validate_record(record, tokenizer)
        assert valid.card_id == record["card_id"]  # ids hold no card number
        assert valid.transaction_id == record["transaction_id"]
    assert production_table(SHAPE, seed=7).slice(0, 500).equals(table.slice(0, 500))


def test_walkthrough_csv_holds_the_same_transactions(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines = walkthrough_csv(table.slice(0, 100), tmp_path / "tx.csv").read_text().splitlines()
    first = table.slice(0, 1).to_pylist()[0]
    account, timestamp, amount = lines[0].split(",")
    assert int(account) == int(first["card_id"].removeprefix("card-"))
    assert (int(timestamp), float(amount)) == (first["timestamp"], first["amount"])
    assert len(lines) == 100
