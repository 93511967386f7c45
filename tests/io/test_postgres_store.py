"""The decision store on a real PostgreSQL (``FRAUDSTREAM_TEST_POSTGRES``; `.ci/run` starts it).

Every test works in its own schema (``search_path`` set through the URL's libpq
``options``), created before and dropped after, so runs never see each other's rows. The
record factories are the SQLite tests' (:mod:`test_sqlstore`): the same contract, another
database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, make_url, text
from test_sqlstore import check_new_rows_inserter, decision
from typer.testing import CliRunner

from fraudstream.cli.decisions import decisions_app
from fraudstream.io.sqlstore import DecisionStore, decisions_table, make_engine
from fraudstream.simulate.demo import demo_records

SERVER = os.environ.get("FRAUDSTREAM_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(
    not SERVER,
    reason="FRAUDSTREAM_TEST_POSTGRES is not set (e.g. postgresql+psycopg://user:pw@host/db; "
    "scripts/services.sh starts the local PostgreSQL and the test script sets it)",
)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose every table lives in a fresh schema, dropped after the test."""
    assert SERVER is not None
    schema = f"fraudstream_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(SERVER)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in SERVER else "?"
    try:
        yield f"{SERVER}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def records() -> list[dict[str, Any]]:
    tiers = ["approve", "review", "decline", "approve", "review"]
    return [decision(i, tiers[i % len(tiers)], ("card-a", "card-b")[i % 2]) for i in range(20)]


def schema_of(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SELECT current_schema()")).scalar())
    finally:
        engine.dispose()


def test_the_table_lives_in_the_test_schema(pg_url: str) -> None:
    with DecisionStore(pg_url) as store:
        assert store.engine.dialect.name == "postgresql"
        with store.engine.connect() as connection:
            found = connection.execute(
                text("SELECT table_schema FROM information_schema.tables WHERE table_name = :t"),
                {"t": decisions_table.name},
            ).scalars()
            assert list(found) == [schema_of(pg_url)]


def test_written_decisions_read_back_equal(pg_url: str, records: list[dict[str, Any]]) -> None:
    model = {"name": "gbm", "version": "3", "probability": 0.91, "top": [["amount", 0.4]]}
    records[3] = decision(3, "decline", model=model)
    with DecisionStore(pg_url) as store:
        store.write_dicts(records)
        for record in records:
            assert store.get(record["transaction_id"]) == record
        assert store.get("tx-missing") is None


def test_a_replay_writes_each_decision_once_and_the_last_wins(
    pg_url: str, records: list[dict[str, Any]]
) -> None:
    with DecisionStore(pg_url) as store:
        store.write_dicts(records)
        store.write_dicts(records)  # the same stream replayed
        changed = dict(records[0], decision="decline", score=0.99)
        # One batch touching a row twice: PostgreSQL's ON CONFLICT refuses that in a single
        # statement, so the store keeps the last one per id.
        store.write_dicts([records[0], changed, records[1]])
        assert len(store) == len(records)
        assert store.get(records[0]["transaction_id"]) == changed
    with DecisionStore(pg_url) as reopened:  # committed, visible to a new connection
        assert len(reopened) == len(records)


def test_two_stores_upserting_the_same_ids_leave_one_row_each(
    pg_url: str, records: list[dict[str, Any]]
) -> None:
    first, second = DecisionStore(pg_url), DecisionStore(pg_url)
    try:
        first.write_dicts(records[:12])
        second.write_dicts(records[8:])  # overlapping ids from another writer
        assert len(first) == len(records)
    finally:
        first.close()
        second.close()


def test_list_filters_and_orders_newest_first(pg_url: str, records: list[dict[str, Any]]) -> None:
    with DecisionStore(pg_url) as store:
        store.write_dicts(list(reversed(records)))
        newest = store.list(limit=3)
        assert [r["transaction_id"] for r in newest] == ["tx-0019", "tx-0018", "tx-0017"]
        declines = store.list(decision="decline", card_id="card-b", limit=100)
        assert declines == [
            r for r in reversed(records) if r["decision"] == "decline" and r["card_id"] == "card-b"
        ]


def test_cli_show_and_list_on_postgresql(pg_url: str, records: list[dict[str, Any]]) -> None:
    with DecisionStore(pg_url) as store:
        store.write_dicts(records)
    runner = CliRunner(env={"COLUMNS": "200"})
    shown = runner.invoke(decisions_app, ["show", "tx-0002", "--store", pg_url])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == records[2]
    listed = runner.invoke(decisions_app, ["list", "--decision", "review", "--store", pg_url])
    assert listed.exit_code == 0, listed.output
    reviews = {r["transaction_id"] for r in records if r["decision"] == "review"}
    assert {t for t in reviews if t in listed.stdout} == reviews
    assert "decline" not in listed.stdout


def test_a_database_that_refuses_is_one_line_without_the_password(tmp_path: Path) -> None:
    assert SERVER is not None
    wrong = make_url(SERVER).set(password="not-the-password")
    store = wrong.render_as_string(hide_password=False)
    result = CliRunner().invoke(decisions_app, ["list", "--store", store])
    assert result.exit_code == 1
    assert "password authentication failed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    source = tmp_path / "one.jsonl"
    source.write_text('{"transaction_id": "t1", "card_id": "c1", "timestamp": 0, "amount": 1}\n')
    command = [
        str(Path(sys.executable).parent / "fraudstream"), "run", "--input", str(source),
        "--store", store, "--quiet",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: decision store postgresql+psycopg://")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "not-the-password" not in done.stderr and "***" in done.stderr


def test_run_store_on_postgresql_writes_each_decision_once(pg_url: str, tmp_path: Path) -> None:
    records = demo_records(count=1500, users=20, seed=9)
    source = tmp_path / "tx.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    alerts = tmp_path / "alerts.jsonl"
    command = [
        str(Path(sys.executable).parent / "fraudstream"), "run", "--input", str(source),
        "--store", pg_url, "--alerts", str(alerts), "--quiet",
    ]  # fmt: skip
    env = dict(os.environ, FRAUDSTREAM_TOKEN_KEY="test")
    for _ in range(2):  # the second run is a replay: upserts, no second row
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
    with DecisionStore(pg_url) as store:
        stored = store.list(limit=10_000)
        assert len(store) == len(records)
    assert sorted(d["transaction_id"] for d in stored) == sorted(
        r["transaction_id"] for r in records
    )
    alerted = {json.loads(line)["transaction_id"] for line in alerts.read_text().splitlines()}
    assert alerted == {d["transaction_id"] for d in stored if d["decision"] != "approve"}


def test_undeliverable_alerts_wait_in_a_postgresql_retry_table(pg_url: str) -> None:
    from test_webhook import Receiver, alert

    from fraudstream.io.webhook import WebhookSink

    down = Receiver(failures=10_000)
    alerts = [alert(i) for i in range(4)]
    try:
        sink = WebhookSink(
            down.url, b"s", pg_url, max_attempts=2, backoff_s=0.001, retry_delay_s=0.0
        )
        sink.write_dicts(alerts)
        sink.write_dicts(alerts[:1])  # the same alert again: one retry row per delivery id
        assert sorted(row["delivery_id"] for row in sink.pending()) == [
            a["transaction_id"] for a in alerts
        ]
        sink.close()
    finally:
        down.stop()
    up = Receiver(port=down.server.server_port)
    try:
        later = WebhookSink(up.url, b"s", pg_url, retry_delay_s=0.0)
        assert later.pending_count() == len(alerts)
        later.flush()
        assert later.pending_count() == 0
        assert sorted(up.delivered_ids()) == [a["transaction_id"] for a in alerts]
        later.close()
    finally:
        up.stop()


def test_new_rows_inserter_on_postgresql(pg_url: str) -> None:
    """The review queue's insert of new alerts (one driver executemany), on PostgreSQL."""
    check_new_rows_inserter(pg_url)
