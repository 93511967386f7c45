"""The DynamoDB decision store on moto: the seed's table, idempotent puts, unprocessed items
sent again, and `fraudstream decisions show/list` reading it."""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import boto3
import pytest
from aws_support import create_seed_table, table_items, unique
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.config import ConfigError
from fraudstream.io.aws.dynamodb_store import DynamoDecisionStore
from fraudstream.run import decide_records

T0 = 1_767_225_600_000


def _decisions(count: int = 40, cards: int = 4) -> list[dict[str, Any]]:
    records = [
        {
            "transaction_id": f"t{i}",
            "card_id": f"card-{(i // 9) % cards}",  # 9 in a row: small, then large
            "timestamp": T0 + 20_000 * i,
            "amount": 0.5 if i % 9 == 0 else (900.0 if i % 9 == 1 else 25.0),
        }
        for i in range(count)
    ]
    return decide_records(records)


def test_the_seeds_table_works_as_written_and_a_put_round_trips(aws: str) -> None:
    table = unique("FraudDetectionResults")
    create_seed_table(table)  # TransactionId hash key, provisioned throughput, as in the seed
    decisions = _decisions()
    with DynamoDecisionStore(f"dynamodb://{table}") as store:
        assert store.key == "TransactionId"
        store.write_dicts(decisions)
        assert len(store) == len(decisions)
        alert = next(d for d in decisions if d["decision"] != "approve")
        assert store.get(alert["transaction_id"]) == json.loads(json.dumps(alert))
        assert store.get("no-such-id") is None
    item = table_items(table)[alert["transaction_id"]]
    assert item["decision"] == {"S": alert["decision"]}
    assert item["reasons"]["L"][0]["M"]["rule"] == {"S": alert["reasons"][0]["rule"]}


def test_replaying_puts_each_decision_once_the_last_one_winning(aws: str) -> None:
    table = unique("results")
    store = DynamoDecisionStore(f"dynamodb://{table}?create=true")
    decisions = _decisions(60)
    store.write_dicts(decisions)
    store.write_dicts(decisions[10:50])  # a resumed run writes the same decisions again
    changed = dict(decisions[5], decision="review", score=0.75)
    store.write_dicts([decisions[5], changed])  # one id twice in one batch: the last wins
    items = table_items(table)
    assert sorted(items) == sorted(d["transaction_id"] for d in decisions)
    assert store.get(decisions[5]["transaction_id"]) == json.loads(json.dumps(changed))


class _Throttling:
    """The real moto client, except that the first ``throttled`` BatchWriteItem calls write
    only half their items and return the rest as UnprocessedItems, as DynamoDB does when a
    partition is over its capacity (moto never throttles)."""

    def __init__(self, client: Any, throttled: int) -> None:
        self.client = client
        self.throttled = throttled
        self.calls: list[int] = []
        self.lock = threading.Lock()  # the store writes chunks from several threads

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        (table, requests), = RequestItems.items()  # fmt: skip
        with self.lock:
            self.calls.append(len(requests))
            throttle = self.throttled > 0 and len(requests) > 1
            self.throttled -= throttle
        if throttle:
            half = len(requests) // 2
            self.client.batch_write_item(RequestItems={table: requests[:half]})
            return {"UnprocessedItems": {table: requests[half:]}}
        response: dict[str, Any] = self.client.batch_write_item(RequestItems=RequestItems)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_unprocessed_items_are_sent_again_until_written(aws: str) -> None:
    table = unique("results")
    store = DynamoDecisionStore(f"dynamodb://{table}?create=true")
    throttling = _Throttling(store.dynamodb, throttled=3)
    store.dynamodb = throttling
    decisions = _decisions(30)
    store.write_dicts(decisions)
    assert sorted(table_items(table)) == sorted(d["transaction_id"] for d in decisions)
    assert throttling.throttled == 0 and store.retried_items > 0
    # Every item sent once, and once more each time the service left it unprocessed.
    assert sum(throttling.calls) == len(decisions) + store.retried_items


def test_a_missing_table_or_a_composite_key_is_one_readable_error(aws: str) -> None:
    with pytest.raises(ConfigError, match=r"no such table.*\?create=true"):
        DynamoDecisionStore(f"dynamodb://{unique('missing')}")
    table = unique("composite")
    boto3.client("dynamodb").create_table(
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "TransactionId", "AttributeType": "S"},
            {"AttributeName": "Time", "AttributeType": "N"},
        ],
        KeySchema=[
            {"AttributeName": "TransactionId", "KeyType": "HASH"},
            {"AttributeName": "Time", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ConfigError, match="hash key only"):
        DynamoDecisionStore(f"dynamodb://{table}")


def test_decisions_show_and_list_read_the_dynamodb_table(
    aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = unique("FraudDetectionResults")
    create_seed_table(table)
    decisions = _decisions(40)
    DynamoDecisionStore(f"dynamodb://{table}").write_dicts(decisions)
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the option says where
    runner = CliRunner()
    store = ["--store", f"dynamodb://{table}", "--aws-endpoint-url", aws]
    alert = next(d for d in decisions if d["decision"] == "decline")
    shown = runner.invoke(app, ["decisions", "show", alert["transaction_id"], *store])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == json.loads(json.dumps(alert))

    listed = runner.invoke(
        app, ["decisions", "list", "--decision", "decline", "--limit", "50", *store],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert listed.exit_code == 0, listed.output
    declined = [d for d in decisions if d["decision"] == "decline"]
    newest = max(declined, key=lambda d: d["event_time"])
    rows = [line for line in listed.output.splitlines() if "decline" in line]
    assert len(rows) == len(declined) and newest["transaction_id"] in rows[0]

    missing = runner.invoke(app, ["decisions", "show", "nope", *store])
    assert missing.exit_code == 1 and "no decision" in missing.output


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**60), 10**60))
def test_any_number_in_a_decision_is_stored_never_refused(aws: str, value: float | int) -> None:
    store, decided = _hypothesis_store()
    decision = dict(decided, score=value, features={"x": value, "nested": [value]})
    store.write_dicts([decision])  # DynamoDB (moto checks the range) accepts it
    back = store.get(decision["transaction_id"])
    assert back is not None
    stored = back["features"]["x"]
    if isinstance(value, float) and not math.isfinite(value):
        assert stored is None  # as in the JSON outputs
    elif value != 0 and abs(value) < 1e-130:
        assert stored == 0  # below DynamoDB's smallest magnitude
    elif isinstance(value, int):
        assert int(stored) == value  # a number, or its text past 38 digits
    else:
        assert float(stored) == value  # a number, or its text past 1e126


_made: list[tuple[DynamoDecisionStore, dict[str, Any]]] = []


def _hypothesis_store() -> tuple[DynamoDecisionStore, dict[str, Any]]:
    """One table and one decision for every example (the server outlives them)."""
    if not _made:
        store = DynamoDecisionStore(f"dynamodb://{unique('numbers')}?create=true")
        _made.append((store, _decisions(1)[0]))
    return _made[0]
