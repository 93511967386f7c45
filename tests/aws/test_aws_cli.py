"""`fraudstream run` with AWS everywhere else: rules and reference lists from S3, profiles
from DynamoDB, alerts to SNS (a Lambda's or a queue's subscription), decisions to a Kinesis
stream; and the one-line errors (no boto3, no such queue)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import msgspec
import yaml
from aws_support import FRAUDSTREAM, create_stream, queue_messages, subprocess_env, unique
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.io.aws.dynamodb_store import DynamoDecisionStore, to_item
from fraudstream.rules import RuleSet

T0 = 1_767_225_600_000


def _transactions(path: Path) -> list[dict[str, Any]]:
    """Two users, each a small then a large amount on one card within a minute."""
    records = []
    for n, user in enumerate(("u-plain", "u-strict")):
        card = f"card-{n}"
        records += [
            {"transaction_id": f"{user}-small", "card_id": card, "user_id": user,
             "timestamp": T0 + n * 1_000, "amount": 0.5},
            {"transaction_id": f"{user}-large", "card_id": card, "user_id": user,
             "timestamp": T0 + n * 1_000 + 20_000, "amount": 900.0},
        ]  # fmt: skip
    path.write_bytes(b"\n".join(msgspec.json.encode(r) for r in records) + b"\n")
    return records


def _stream_records(stream: str) -> list[dict[str, Any]]:
    kinesis = boto3.client("kinesis")
    out = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        out += kinesis.get_records(ShardIterator=iterator)["Records"]
    return out


def test_rules_from_s3_profiles_from_dynamodb_alerts_to_sns_decisions_to_kinesis(
    aws: str, tmp_path: Path
) -> None:
    # Rules on S3: small_then_large scores 0.6 (a review under the default thresholds).
    document = RuleSet.default().to_document()
    for rule in document["rules"]:
        if rule["id"] == "small_then_large":
            rule["score"] = 0.6
    bucket = unique("flink-fraud-detection-bucket")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="reference/rules.yaml", Body=yaml.safe_dump(document))
    ip_countries = Path(__file__).parents[2] / "src/fraudstream/data/ip_countries.csv"
    s3.put_object(Bucket=bucket, Key="reference/ip.csv", Body=ip_countries.read_bytes())
    # Profiles in DynamoDB, keyed UserId: u-strict declines from a score of 0.55.
    profiles = unique("profiles")
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=profiles,
        AttributeDefinitions=[{"AttributeName": "UserId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "UserId", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    item = to_item({"transaction_id": "u-strict", "decline_threshold": 0.55, "first_name": "S"})
    item["UserId"] = item.pop("TransactionId")
    dynamodb.put_item(TableName=profiles, Item=item)
    # Alerts to an SNS topic, delivered to a queue subscribed to it.
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name=unique("fraud-alerts"))["TopicArn"]
    queue = sqs.create_queue(QueueName=unique("lambda-inbox"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )  # fmt: skip
    decisions_stream = unique("FraudDecisions")
    create_stream(decisions_stream, shards=2)
    store = unique("FraudDetectionResults")

    records = _transactions(tmp_path / "tx.jsonl")
    result = CliRunner().invoke(
        app,
        [
            "run", "--input", str(tmp_path / "tx.jsonl"),
            "--rules", f"s3://{bucket}/reference/rules.yaml",
            "--ip-countries", f"s3://{bucket}/reference/ip.csv",
            "--profiles", f"dynamodb://{profiles}",
            "--store", f"dynamodb://{store}?create=true",
            "--alerts", f"sns://{topic}",
            "--decisions", f"kinesis://{decisions_stream}",
            "--aws-endpoint-url", aws,
            "--quiet",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    stored = {d["transaction_id"]: d for d in DynamoDecisionStore(f"dynamodb://{store}").items()}
    assert {t: d["decision"] for t, d in stored.items()} == {
        "u-plain-small": "approve",
        "u-plain-large": "review",  # the S3 rules' score
        "u-strict-small": "approve",
        "u-strict-large": "decline",  # the DynamoDB profile's threshold
    }
    alerts = [json.loads(m["Body"]) for m in queue_messages(queue)]
    assert sorted(a["transaction_id"] for a in alerts) == ["u-plain-large", "u-strict-large"]
    written = _stream_records(decisions_stream)
    assert sorted(json.loads(r["Data"])["transaction_id"] for r in written) == sorted(
        r["transaction_id"] for r in records
    )
    assert all(r["PartitionKey"] == json.loads(r["Data"])["card_id"] for r in written)


def test_without_boto3_an_aws_uri_says_how_to_install_it(tmp_path: Path) -> None:
    blocked = "import sys; sys.modules['boto3'] = None; from fraudstream.cli import main; main()"
    command = [FRAUDSTREAM[0], "-c", blocked, "run", "--input", "kinesis://CreditCardTransactions"]
    result = subprocess.run(command, env=subprocess_env(), capture_output=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "install fraudstream[aws]" in lines[0], lines


def test_a_missing_queue_is_one_readable_line(aws: str, tmp_path: Path) -> None:
    _transactions(tmp_path / "tx.jsonl")
    result = subprocess.run(
        [*FRAUDSTREAM, "run", "--input", str(tmp_path / "tx.jsonl"), "--quiet",
         "--alerts", "sqs://no-such-queue", "--aws-endpoint-url", aws],
        env=subprocess_env(), capture_output=True, timeout=120,
    )  # fmt: skip
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, lines
    assert "sqs://no-such-queue" in lines[0] and "does not exist" in lines[0]


def test_the_iceberg_warehouse_on_s3(aws: str, tmp_path: Path) -> None:
    from fraudstream.io.lakehouse import open_table

    bucket = unique("lake")
    boto3.client("s3").create_bucket(Bucket=bucket)
    config = tmp_path / "lakehouse.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "catalog": {
                    "name": "aws",
                    "type": "sql",
                    "uri": f"sqlite:///{tmp_path / 'catalog.db'}",
                    "warehouse": f"s3://{bucket}/warehouse",
                },
                "table": "fraudstream.decisions",
            }
        )
    )
    records = _transactions(tmp_path / "tx.jsonl")
    result = CliRunner().invoke(
        app,
        ["run", "--input", str(tmp_path / "tx.jsonl"), "--lakehouse", str(config),
         "--aws-endpoint-url", aws, "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]
    assert any(o["Key"].endswith(".parquet") for o in listed)
    rows = open_table(str(config)).scan().to_arrow()
    assert sorted(rows["transaction_id"].to_pylist()) == sorted(
        r["transaction_id"] for r in records
    )


def test_missing_credentials_are_one_readable_line_and_aws_region_is_a_region(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("AWS_")}
    env.update(AWS_REGION="eu-west-1", HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true")
    result = subprocess.run(
        [*FRAUDSTREAM, "run", "--input", "kinesis://CreditCardTransactions"],
        env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, lines
    assert "Unable to locate credentials" in lines[0]  # the region was found: AWS_REGION


def test_decisions_on_dynamodb_need_no_sql_extra(aws: str) -> None:
    blocked = (
        "import sys; sys.modules['sqlalchemy'] = None; from fraudstream.cli import main; main()"
    )
    table = unique("FraudDetectionResults")
    DynamoDecisionStore(f"dynamodb://{table}?create=true")
    env = dict(subprocess_env(), AWS_ENDPOINT_URL=aws)
    listed = subprocess.run(
        [FRAUDSTREAM[0], "-c", blocked, "decisions", "list", "--store", f"dynamodb://{table}"],
        env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr.decode()
    assert "no decisions match" in listed.stdout.decode()
    sql = subprocess.run(
        [FRAUDSTREAM[0], "-c", blocked, "decisions", "list", "--store", "x.db"],
        env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert sql.returncode == 1 and "fraudstream[store]" in sql.stderr.decode()
