"""Kafka end to end on the mock cluster: produce -> run -> fraud-alerts / enriched / dead letters.

The same records decided from a file are the reference. Records of one card are in one
partition, but one user's cards (and geo-velocity is per user) can be in different
partitions, so both runs allow 60 days of out-of-orderness: every record waits for the
watermark and the pipeline decides them in event-time order, whatever the partition
interleaving (a live deployment sets it to the skew it expects between partitions).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import msgspec
from test_kafka_support import (
    ENV,
    FAST_GROUP,
    FRAUDSTREAM,
    MockCluster,
    committed,
    end_offsets,
    read_topic,
    write_jsonl,
)
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.engine.pipeline import Pipeline, TimeConfig
from fraudstream.io.files import FileSource
from fraudstream.io.kafka_run import KafkaInput
from fraudstream.io.sqlstore import DecisionStore
from fraudstream.profiles import ProfileTable
from fraudstream.rules import RuleSet
from fraudstream.run import Outputs, Runner, Summary
from fraudstream.schema import CardTokenizer
from fraudstream.simulate.demo import demo_profiles, demo_records, write_profiles

OUT_OF_ORDERNESS_MS = 60 * 86_400_000
TIME = TimeConfig(out_of_orderness_ms=OUT_OF_ORDERNESS_MS)
CARD_NUMBER = "4111111111111111"
OTHER_CARD_NUMBERS = ("5200828282828210", "4000056655665556")  # written grouped in the input


def make_input(tmp_path: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Demo transactions (seed users + 30), two seed-001 style card numbers, two bad lines."""
    records = demo_records(count=2500, users=30, seed=11)
    for i, amount in enumerate((0.5, 900.0)):
        records.append(
            {
                "transaction_id": f"cn-{i}",
                "card_number": CARD_NUMBER if i == 0 else "4111 1111 1111 1111",
                "timestamp": records[-1]["timestamp"] + 1_000 * (i + 1),
                "amount": amount,
                "merchant_id": "m 5200-8282-8282-8210",
                "note": "read out 4000 0566 5566 5556",
            }
        )
    lines = [msgspec.json.encode(r) for r in records]
    lines.insert(100, b'{"transaction_id": "broken", "amount": ')
    lines.insert(200, b'{"transaction_id": "no-card", "timestamp": 1, "amount": 2.0}')
    path = tmp_path / "transactions.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    profiles = write_profiles(tmp_path / "profiles.yaml", demo_profiles(users=30, seed=11))
    return path, profiles, records


def run_file(path: Path, profiles: Path, out: Path) -> Summary:
    table = ProfileTable()
    table.load(profiles)
    outputs = Outputs(
        alerts=str(out / "alerts.jsonl"),
        enriched=str(out / "enriched.jsonl"),
        dead_letters=str(out / "dead.jsonl"),
    )
    runner = Runner(Pipeline(RuleSet.default(), table, TIME), outputs, CardTokenizer(b"test"))
    return runner.run(FileSource(path, "jsonl"))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def verdicts(records: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """transaction id -> what was decided (not when it was processed)."""
    return {
        r["transaction_id"]: (r["decision"], r["score"], json.dumps(r["reasons"], sort_keys=True))
        for r in records
    }


def produce_cli(cluster: MockCluster, *args: str) -> None:
    result = CliRunner().invoke(app, ["produce", *args])
    assert result.exit_code == 0, result.output
    assert "sent " in result.stderr


def test_produce_run_and_read_back_equal_the_file_run(
    kafka_cluster: MockCluster, tmp_path: Path
) -> None:
    path, profiles, records = make_input(tmp_path)
    reference = tmp_path / "reference"
    expected = run_file(path, profiles, reference)
    expected_alerts = verdicts(lines(reference / "alerts.jsonl"))
    assert expected_alerts and expected.dead_letters == 2

    transactions = kafka_cluster.uri("card-transactions")
    produce_cli(kafka_cluster, "--input", str(path), "--to", transactions)
    produce_cli(
        kafka_cluster,
        "--to", kafka_cluster.uri("unused"), "--count", "0",
        "--profiles", str(profiles), "--profiles-topic", "users-config",
    )  # fmt: skip

    pipeline = Pipeline(RuleSet.default(), ProfileTable(), TIME)
    kafka = KafkaInput.open(
        kafka_cluster.uri("card-transactions", FAST_GROUP),
        group_id="deciders",
        table=pipeline.profiles,
        profiles_topic="users-config",
        idle_timeout_ms=600_000,
        stop_at_end=True,
    )
    assert pipeline.profiles.get("user_1") is not None  # loaded before the first batch
    outputs = Outputs(
        alerts=kafka_cluster.uri("fraud-alerts"),
        enriched=kafka_cluster.uri("card-transactions-enriched"),
        dead_letters=kafka_cluster.uri("fraud-dead-letters"),
        store=str(tmp_path / "decisions.db"),
    )
    runner = Runner(
        pipeline, outputs, CardTokenizer(b"test"), between_batches=kafka.between_batches(None)
    )
    try:
        summary = runner.run(kafka.source)
        kafka.finish()
    finally:
        kafka.close()

    assert summary.records == expected.records == len(records) + 2
    assert summary.tiers == expected.tiers
    bootstrap = kafka_cluster.bootstrap
    alerts = read_topic(bootstrap, "fraud-alerts")
    assert verdicts([v for _, v, _, _ in alerts]) == expected_alerts
    for key, value, _, _ in alerts:  # keyed by card (a token for a card number)
        assert key == value["card_id"].encode()
    enriched = read_topic(bootstrap, "card-transactions-enriched")
    assert verdicts([v for _, v, _, _ in enriched]) == verdicts(lines(reference / "enriched.jsonl"))
    assert len(enriched) == len(records)
    by_id = {v["transaction_id"]: v for _, v, _, _ in enriched}
    assert by_id["cn-1"]["card_id"].startswith("tok_")
    assert by_id["cn-1"]["card_id"] == by_id["cn-0"]["card_id"]  # bare or spaced: one token
    dead = read_topic(bootstrap, "fraud-dead-letters")
    assert sorted(v["reason"].split(":")[0] for _, v, _, _ in dead) == sorted(
        d["reason"].split(":")[0] for d in lines(reference / "dead.jsonl")
    )
    for _, letter, _, _ in dead:  # the position is the partition and offset of the message
        assert letter["source"].startswith("card-transactions[")
        assert isinstance(letter["position"], int)
    everything = [msgspec.json.encode(v) for _, v, _, _ in alerts + enriched + dead]
    everything += [k or b"" for k, _, _, _ in alerts + enriched + dead]
    flat = [blob.replace(b" ", b"").replace(b"-", b"") for blob in everything]
    for number in (CARD_NUMBER, *OTHER_CARD_NUMBERS):
        assert not any(number.encode() in blob for blob in flat)

    with DecisionStore(str(tmp_path / "decisions.db")) as store:
        assert len(store) == len(records)
    # A normal end commits the offsets after the outputs were closed: all of them.
    assert committed(bootstrap, "deciders", "card-transactions") == end_offsets(
        bootstrap, "card-transactions"
    )


def test_the_cli_runs_on_kafka_and_matches_the_file_run(
    kafka_cluster: MockCluster, tmp_path: Path
) -> None:
    path, profiles, records = make_input(tmp_path)
    reference = tmp_path / "reference"
    run_file(path, profiles, reference)
    produce_cli(kafka_cluster, "--input", str(path), "--to", kafka_cluster.uri("card-transactions"))
    command = [
        FRAUDSTREAM, "run",
        "--input", kafka_cluster.uri("card-transactions", FAST_GROUP),
        "--group-id", "cli-deciders", "--stop-at-end", "--profiles", str(profiles),
        "--out-of-orderness-ms", str(OUT_OF_ORDERNESS_MS), "--idle-timeout-ms", "600000",
        "--alerts", kafka_cluster.uri("fraud-alerts"),
        "--enriched", kafka_cluster.uri("card-transactions-enriched"),
        "--dead-letters", str(tmp_path / "dead.jsonl"),
        "--summary-json", str(tmp_path / "summary.json"), "--quiet",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "rdkafka" not in done.stderr  # librdkafka's log lines do not reach the terminal
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["records"] == len(records) + 2 and summary["dead_letters"] == 2
    alerts = read_topic(kafka_cluster.bootstrap, "fraud-alerts")
    assert verdicts([v for _, v, _, _ in alerts]) == verdicts(lines(reference / "alerts.jsonl"))
    enriched = read_topic(kafka_cluster.bootstrap, "card-transactions-enriched")
    assert {v["transaction_id"] for _, v, _, _ in enriched} == {
        r["transaction_id"] for r in records
    }
    dead = lines(tmp_path / "dead.jsonl")
    assert {d["reason"].split(":")[0] for d in dead} == {"invalid JSON", "card_id"}


def test_with_default_time_settings_partitions_are_merged_by_event_time(
    kafka_cluster: MockCluster, tmp_path: Path
) -> None:
    # A backlog on 4 partitions: a user's cards in different partitions, read side by side.
    # The source releases records in event-time order across partitions (each in offset
    # order), so with the default lateness nothing is late and every decision equals the
    # file run's, geo-velocity pairs across a user's cards included.
    records = demo_records(count=4000, users=40, seed=29)
    path = write_jsonl(tmp_path / "tx.jsonl", records)
    outputs = Outputs(decisions=str(tmp_path / "file.jsonl"))
    Runner(Pipeline(), outputs, CardTokenizer(b"test")).run(FileSource(path, "jsonl"))
    kafka_cluster.produce_records(records)
    pipeline = Pipeline()
    kafka = KafkaInput.open(
        kafka_cluster.uri("card-transactions"),
        group_id="defaults",
        table=pipeline.profiles,
        stop_at_end=True,
    )
    outputs = Outputs(decisions=str(tmp_path / "kafka.jsonl"))
    try:
        summary = Runner(pipeline, outputs, CardTokenizer(b"test")).run(kafka.source)
    finally:
        kafka.close()
    assert summary.late == 0 and summary.records == len(records)
    expected = verdicts(lines(tmp_path / "file.jsonl"))
    assert verdicts(lines(tmp_path / "kafka.jsonl")) == expected
    assert sum(decision != "approve" for decision, _, _ in expected.values()) > 20
