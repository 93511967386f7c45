"""Helpers of the AWS tests: names, the subprocess environment, streams and tables on moto."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import msgspec

FRAUDSTREAM = [sys.executable, "-c", "from fraudstream.cli import main; main()"]
AWS_ENV = {  # as tests/conftest.py MOTO_CREDENTIALS (the aws fixture sets those)
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
# Set by the run itself, not by what was decided: left out when two runs' items are compared.
WALL_CLOCK_FIELDS = ("processed_at", "latency_ms")


def unique(prefix: str) -> str:
    """A resource name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def subprocess_env() -> dict[str, str]:
    """The environment of a `fraudstream` subprocess: dummy credentials, no endpoint (the
    command line gives it with --aws-endpoint-url), this worktree's code."""
    env = dict(os.environ)
    env.update(AWS_ENV)
    env.pop("AWS_ENDPOINT_URL", None)
    env.setdefault("FRAUDSTREAM_TOKEN_KEY", "fraudstream-tests")
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    return env


def create_stream(name: str, shards: int) -> Any:
    """A Kinesis stream with ``shards`` shards, active; returns the client."""
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    return kinesis


def put_records(kinesis: Any, stream: str, records: list[dict[str, Any]]) -> None:
    """Writes transactions to a stream, partitioned by card (as a producer would)."""
    encode = msgspec.json.encode
    for start in range(0, len(records), 500):
        chunk = records[start : start + 500]
        response = kinesis.put_records(
            StreamName=stream,
            Records=[{"Data": encode(r), "PartitionKey": str(r["card_id"])} for r in chunk],
        )
        assert response["FailedRecordCount"] == 0


def simulated(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``fraudstream simulate``'s demo stream (seed-002 users, injected frauds)."""
    from fraudstream.simulate.demo import demo_records

    return [{k: v for k, v in r.items() if k != "scenario"} for r in demo_records(count, seed=seed)]


def table_items(table: str) -> dict[str, dict[str, Any]]:
    """Every item of a DynamoDB table by its ``TransactionId``, as the service returns it."""
    dynamodb = boto3.client("dynamodb")
    items: dict[str, dict[str, Any]] = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            items[item["TransactionId"]["S"]] = item
    return items


def decided_items(table: str) -> dict[str, dict[str, Any]]:
    """:func:`table_items` without the wall-clock attributes (what two runs must agree on)."""
    return {
        key: {k: v for k, v in item.items() if k not in WALL_CLOCK_FIELDS}
        for key, item in table_items(table).items()
    }


def create_seed_table(name: str = "FraudDetectionResults") -> None:
    """The results table exactly as seed 000 creates it (``aws dynamodb create-table``)."""
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "TransactionId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "TransactionId", "KeyType": "HASH"}],
        ProvisionedThroughput={"ReadCapacityUnits": 10, "WriteCapacityUnits": 10},
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})


def queue_messages(url: str) -> list[dict[str, Any]]:
    """Every message of a queue (received and deleted)."""
    sqs = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    quiet = 0
    while quiet < 2:
        response = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        batch = response.get("Messages", [])
        quiet = quiet + 1 if not batch else 0
        messages.extend(batch)
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if not batch:
            time.sleep(0.1)
    return messages
