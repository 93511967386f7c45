"""The AWS path end to end, on moto's server: Kinesis (4 shards) in, DynamoDB and SQS out,
checkpoints on S3, a SIGKILL mid-stream and a resume.

A simulated stream (``fraudstream simulate``'s demo) is written to a 4-shard stream and
decided twice by ``fraudstream run`` subprocesses: once without interruption, and once
checkpointing to S3, killed with SIGKILL after its second checkpoint while records are still
unread, then resumed with ``--resume``. The crashed run writes to the seed's own table,
``FraudDetectionResults`` keyed ``TransactionId``, created with the seed's command. Both
tables must hold the same items (every attribute but the two wall-clock ones), and the alerts
on the FIFO queue must be the reference run's alerts, each once (the transaction id is the
deduplication id, so alerts sent again after the resume are dropped by the queue).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
from aws_support import (
    FRAUDSTREAM,
    create_seed_table,
    create_stream,
    decided_items,
    put_records,
    queue_messages,
    simulated,
    subprocess_env,
    unique,
)

RECORDS = 4_000


def _run(endpoint: str, stream: str, store: str, queue: str, *extra: str) -> list[str]:
    return [
        *FRAUDSTREAM, "run",
        "--input", f"kinesis://{stream}",
        "--store", store,
        "--alerts", f"sqs://{queue}",
        "--aws-endpoint-url", endpoint,
        "--out-of-orderness-ms", "5000",
        "--batch-rows", "100",
        "--stop-at-end",
        "--quiet",
        *extra,
    ]  # fmt: skip


def _fifo_queue(name: str) -> str:
    sqs = boto3.client("sqs")
    return str(sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"])


def _checkpoints(bucket: str, prefix: str) -> list[dict[str, Any]]:
    """The manifests of the complete checkpoints under s3://bucket/prefix."""
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    keys = sorted(o["Key"] for o in listed if o["Key"].endswith("/manifest.json"))
    return [json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]


def _alert_ids(queue_url: str) -> list[str]:
    return [
        m["MessageAttributes"]["transaction_id"]["StringValue"] for m in queue_messages(queue_url)
    ]


def test_kinesis_to_dynamodb_and_sqs_survives_sigkill_and_resume(aws: str, tmp_path: Path) -> None:
    stream = unique("CreditCardTransactions")
    kinesis = create_stream(stream, shards=4)
    put_records(kinesis, stream, simulated(RECORDS))
    env = subprocess_env()

    # The uninterrupted run.
    reference_queue = _fifo_queue(unique("reference-alerts") + ".fifo")
    reference_table = unique("reference-results")
    reference = subprocess.run(
        _run(aws, stream, f"dynamodb://{reference_table}?create=true",
             reference_queue.rsplit("/", 1)[-1], "--summary-json", str(tmp_path / "ref.json")),
        env=env, capture_output=True, timeout=600,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr.decode()[-3000:]
    assert json.loads((tmp_path / "ref.json").read_text())["decided"] == RECORDS

    # The crashed run: the seed's table, checkpoints on S3, SIGKILL after checkpoint 2.
    create_seed_table("FraudDetectionResults")
    bucket = unique("flink-fraud-detection-bucket")
    boto3.client("s3").create_bucket(Bucket=bucket)
    queue = _fifo_queue(unique("fraud-alerts") + ".fifo")
    crashing = _run(
        aws, stream, "dynamodb://FraudDetectionResults", queue.rsplit("/", 1)[-1],
        "--checkpoint-dir", f"s3://{bucket}/checkpoints",
        "--checkpoint-every-records", "400",
        "--checkpoint-interval-s", "3600",
        "--summary-json", str(tmp_path / "crashed.json"),
    )  # fmt: skip
    with (tmp_path / "crashing-stderr.txt").open("wb") as log:
        process = subprocess.Popen(crashing, env=env, stderr=log)
    deadline = time.monotonic() + 300
    while len(_checkpoints(bucket, "checkpoints")) < 2:
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no second checkpoint"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    newest = _checkpoints(bucket, "checkpoints")[-1]
    assert 0 < newest["summary"]["records"] < RECORDS  # killed mid-stream
    assert newest["source"]["format"] == "kinesis" and len(newest["source"]["shards"]) == 4

    resumed = subprocess.run(crashing + ["--resume"], env=env, capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    summary = json.loads((tmp_path / "crashed.json").read_text())
    assert summary["resumed_from"] is not None and summary["decided"] == RECORDS

    expected = decided_items(reference_table)
    assert len(expected) == RECORDS
    assert decided_items("FraudDetectionResults") == expected

    alerts = sorted(tid for tid, item in expected.items() if item["decision"]["S"] != "approve")
    assert alerts
    assert sorted(_alert_ids(reference_queue)) == alerts
    assert sorted(_alert_ids(queue)) == alerts  # each once: deduplicated by transaction id


def test_a_live_kinesis_run_decides_what_arrives_and_ends_on_sigterm(
    aws: str, tmp_path: Path
) -> None:
    stream = unique("live")
    kinesis = create_stream(stream, shards=2)
    records = simulated(300, seed=11)
    put_records(kinesis, stream, records[:150])
    table = unique("live-results")
    queue = _fifo_queue(unique("live-alerts") + ".fifo")
    command = _run(aws, stream, f"dynamodb://{table}?create=true", queue.rsplit("/", 1)[-1])
    command.remove("--stop-at-end")  # a live run: it waits for more until told to stop
    summary = tmp_path / "summary.json"
    with (tmp_path / "stderr.txt").open("wb") as stderr:
        process = subprocess.Popen(
            [*command, "--summary-json", str(summary)], env=subprocess_env(), stderr=stderr
        )
    dynamodb = boto3.client("dynamodb")

    def stored() -> int:
        try:
            return int(dynamodb.scan(TableName=table, Select="COUNT")["Count"])
        except dynamodb.exceptions.ResourceNotFoundException:
            return 0

    def wait_for(count: int) -> None:
        while (seen := stored()) < count:
            assert process.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
            assert time.monotonic() < deadline, f"{seen} of {count} decisions stored"
            time.sleep(0.2)

    deadline = time.monotonic() + 300
    try:
        wait_for(150)
        put_records(kinesis, stream, records[150:])  # arrives while the run waits
        wait_for(300)
        process.send_signal(signal.SIGTERM)
        assert process.wait(120) == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    finally:
        if process.poll() is None:  # a failed wait: leave no run behind for the next test
            process.kill()
            process.wait()
    assert json.loads(summary.read_text())["decided"] == 300
