"""Alerts to SQS and Kinesis on moto: deduplication by transaction id, attributes, keys."""

from __future__ import annotations

import json
from typing import Any

import boto3
from aws_support import create_stream, queue_messages, unique

from fraudstream.io.aws.kinesis_sink import KinesisSink
from fraudstream.io.aws.sqs_sns import SqsAlertSink


def _alerts(count: int) -> list[dict[str, Any]]:
    return [
        {"transaction_id": f"t{i}", "card_id": f"tok_{i % 3}", "decision": "decline",
         "score": 0.9, "reasons": [{"rule": "small_then_large", "message": "..."}]}
        for i in range(count)
    ]  # fmt: skip


def test_a_fifo_queue_gets_each_alert_once_however_often_it_is_sent(aws: str) -> None:
    sqs = boto3.client("sqs")
    name = unique("fraud-alerts") + ".fifo"
    url = sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]
    alerts = _alerts(23)
    sink = SqsAlertSink(f"sqs://{name}")
    sink.write_dicts(alerts)
    sink.write_dicts(alerts[5:15])  # sent again after a resume
    messages = queue_messages(url)
    assert sorted(json.loads(m["Body"])["transaction_id"] for m in messages) == sorted(
        a["transaction_id"] for a in alerts
    )
    attributes = messages[0]["MessageAttributes"]
    assert attributes["decision"]["StringValue"] == "decline"
    assert (
        json.loads(messages[0]["Body"])["transaction_id"]
        == (attributes["transaction_id"]["StringValue"])
    )


def test_a_standard_queue_by_url_gets_every_send_with_the_id_to_deduplicate_on(
    aws: str,
) -> None:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=unique("lambda-inbox"))["QueueUrl"]
    alerts = _alerts(12)
    sink = SqsAlertSink(f"sqs://{url}")  # the queue's URL, as the console shows it
    sink.write_dicts(alerts)
    sink.write_dicts(alerts[:2])
    ids = [m["MessageAttributes"]["transaction_id"]["StringValue"] for m in queue_messages(url)]
    assert sorted(ids) == sorted([a["transaction_id"] for a in alerts] + ["t0", "t1"])
    assert sink.sent == 14


def test_kinesis_alerts_are_keyed_by_card_and_records_without_one_by_source(aws: str) -> None:
    stream = unique("FraudAlerts")
    kinesis = create_stream(stream, shards=3)
    sink = KinesisSink(f"kinesis://{stream}")
    letter = {"source": "tx[shardId-000000000001]", "position": 42, "reason": "invalid JSON"}
    sink.write_dicts([*_alerts(7), letter])
    written = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        written += kinesis.get_records(ShardIterator=iterator)["Records"]
    keys = {
        json.loads(r["Data"]).get("transaction_id", "letter"): r["PartitionKey"] for r in written
    }
    assert keys == {
        **{f"t{i}": f"tok_{i % 3}" for i in range(7)},
        "letter": "tx[shardId-000000000001]:42",
    }
    assert sink.sent == 8
