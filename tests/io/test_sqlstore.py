"""The SQL decision store on a SQLite file: round trip, upsert on replay, listing, the CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fraudstream.cli.decisions import decisions_app
from fraudstream.io.records import iso_ms
from fraudstream.io.sqlstore import DecisionStore, database_url

BASE_MS = 1_546_301_160_000  # 2019-01-01T00:06:00Z


def decision(i: int, tier: str = "approve", card: str = "card-a", **more: Any) -> dict[str, Any]:
    """A decision record shaped like ``decision_dicts`` output."""
    reasons = []
    if tier != "approve":
        reasons = [
            {"rule": "small_then_large", "message": f"0.50 then {100 + i}.00 within 5 minutes"},
            {"rule": "geo_velocity", "message": "1200 km/h > 900 km/h"},
        ]
    record = {
        "transaction_id": f"tx-{i:04d}",
        "card_id": card,
        "user_id": f"user-{i % 3}",
        "event_time": iso_ms(BASE_MS + i * 60_000),
        "decision": tier,
        "score": round(0.1 + i / 1000, 6),
        "reasons": reasons,
        "model": None,
        "features": {"amount": 10.5 + i, "distance_km": 12.25, "first_name": "Ada", "n": i},
        "processed_at": iso_ms(BASE_MS + i * 60_000 + 1234),
        "latency_ms": 0.125,
    }
    record.update(more)
    return record


@pytest.fixture
def records() -> list[dict[str, Any]]:
    tiers = ["approve", "review", "decline", "approve", "review"]
    cards = ["card-a", "card-b"]
    return [decision(i, tiers[i % len(tiers)], cards[i % 2]) for i in range(20)]


def rows_in(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        (count,) = connection.execute("SELECT count(*) FROM fraud_detection_results").fetchone()
    connection.close()
    return int(count)


def test_written_decisions_read_back_equal(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    path = tmp_path / "nested" / "decisions.db"
    store = DecisionStore(str(path))
    store.write_dicts(records)
    store.flush()
    for record in records:
        assert store.get(record["transaction_id"]) == record
    assert store.get("tx-missing") is None
    store.close()
    assert path.exists()
    assert rows_in(path) == len(records)


def test_model_and_url_form(tmp_path: Path) -> None:
    model = {"name": "gbm", "version": "3", "probability": 0.91, "top": [["amount", 0.4]]}
    record = decision(7, "decline", model=model)
    with DecisionStore(f"sqlite:///{tmp_path / 'd.db'}") as store:
        store.write_dicts([record])
        assert store.get("tx-0007") == record


def test_sqlite_file_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    with DecisionStore(str(path)) as store:
        store.write_dicts([decision(1)])
    connection = sqlite3.connect(path)
    try:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
    finally:
        connection.close()
    assert mode == "wal"


def test_replay_writes_each_decision_once(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    path = tmp_path / "decisions.db"
    store = DecisionStore(str(path))
    store.write_dicts(records)
    store.write_dicts(records)  # the same stream replayed
    # A replay in one batch with a repeated id, and a changed decision: the last one wins.
    changed = dict(records[0], decision="decline", score=0.99)
    store.write_dicts([records[0], changed])
    assert len(store) == len(records)
    assert store.get(records[0]["transaction_id"]) == changed
    store.close()
    assert rows_in(path) == len(records)


def test_list_filters_and_orders_newest_first(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    with DecisionStore(str(tmp_path / "decisions.db")) as store:
        store.write_dicts(list(reversed(records)))
        newest = store.list(limit=5)
        assert [r["transaction_id"] for r in newest] == [
            f"tx-{i:04d}" for i in (19, 18, 17, 16, 15)
        ]
        review = store.list(decision="review", limit=100)
        assert {r["transaction_id"] for r in review} == {
            r["transaction_id"] for r in records if r["decision"] == "review"
        }
        assert review == sorted(review, key=lambda r: r["event_time"], reverse=True)
        card_b_declines = store.list(decision="decline", card_id="card-b", limit=100)
        expected = [
            r for r in reversed(records) if r["decision"] == "decline" and r["card_id"] == "card-b"
        ]
        assert card_b_declines == expected
        assert store.list(card_id="card-z") == []


def test_database_url_forms(tmp_path: Path) -> None:
    assert database_url(str(tmp_path / "x.db")).database == str(tmp_path / "x.db")
    url = database_url("postgresql+psycopg://user:pw@db.example/fraud")
    assert url.get_backend_name() == "postgresql"
    assert url.get_driver_name() == "psycopg"


# --- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def store_path(tmp_path: Path, records: list[dict[str, Any]]) -> str:
    path = tmp_path / "cli.db"
    with DecisionStore(str(path)) as store:
        store.write_dicts(records)
    return str(path)


def test_cli_show_prints_the_decision_json(store_path: str, records: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(decisions_app, ["show", "tx-0002", "--store", store_path])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == records[2]


def test_cli_show_unknown_transaction_is_one_line_and_exit_1(store_path: str) -> None:
    result = CliRunner().invoke(decisions_app, ["show", "tx-nope", "--store", store_path])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no decision for transaction 'tx-nope'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_missing_store_is_a_readable_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.db"
    result = CliRunner().invoke(decisions_app, ["list", "--store", str(missing)])
    assert result.exit_code == 1
    assert "no decision store at" in result.stderr
    assert not missing.exists()


def test_cli_list_filters(store_path: str, records: list[dict[str, Any]]) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(
        decisions_app, ["list", "--decision", "review", "--limit", "3", "--store", store_path]
    )
    assert result.exit_code == 0, result.output
    reviews = [r for r in reversed(records) if r["decision"] == "review"][:3]
    for record in reviews:
        assert record["transaction_id"] in result.stdout
    assert "small_then_large" in result.stdout
    assert "decline" not in result.stdout
    shown = [r["transaction_id"] for r in records if r["transaction_id"] in result.stdout]
    assert sorted(shown) == sorted(r["transaction_id"] for r in reviews)

    result = runner.invoke(decisions_app, ["list", "--card", "card-a", "--store", store_path])
    assert result.exit_code == 0, result.output
    assert "card-a" in result.stdout and "card-b" not in result.stdout

    result = runner.invoke(decisions_app, ["list", "--card", "card-z", "--store", store_path])
    assert result.exit_code == 0
    assert "no decisions match" in result.stdout


def test_cli_list_rejects_an_unknown_tier(store_path: str) -> None:
    result = CliRunner().invoke(
        decisions_app, ["list", "--decision", "maybe", "--store", store_path]
    )
    assert result.exit_code == 2


def check_new_rows_inserter(url: str) -> None:
    """Rows whose key is new are inserted, counted, the last of a call's repeats kept; a
    row already there is left as it is (the review queue keeps an alert's status)."""
    from sqlalchemy import Column, Integer, MetaData, String, Table, select

    from fraudstream.io.sqlstore import create_tables, make_engine, new_rows_inserter

    table = Table(
        "inserter_check", MetaData(), Column("id", String(16), primary_key=True),
        Column("value", Integer, nullable=False), Column("status", String(8), nullable=False),
    )  # fmt: skip
    engine = make_engine(url)
    try:
        create_tables(engine, [table])
        insert_new = new_rows_inserter(engine, table, "id")
        assert insert_new is not None
        first = [
            {"id": "a", "value": 1, "status": "open"},
            {"id": "b", "value": 1, "status": "open"},
            {"id": "a", "value": 2, "status": "open"},
        ]
        assert insert_new(first) == 2
        again = [
            {"id": "b", "value": 3, "status": "new"},
            {"id": "c", "value": 1, "status": "open"},
        ]
        assert insert_new(again) == 1
        assert insert_new([]) == 0
        with engine.connect() as connection:
            rows = connection.execute(select(table).order_by(table.c.id)).all()
        assert [tuple(r) for r in rows] == [("a", 2, "open"), ("b", 1, "open"), ("c", 1, "open")]
    finally:
        engine.dispose()


def test_new_rows_inserter_on_sqlite(tmp_path: Path) -> None:
    check_new_rows_inserter(str(tmp_path / "rows.db"))
