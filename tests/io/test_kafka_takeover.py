"""A consumer of the group dies; another takes over its partitions and nothing is lost.

Offsets are committed only once a checkpoint is durable, so the group's committed offsets
are always those of a complete checkpoint. The consumer that takes over resumes from them,
with that checkpoint's state; what the dead one decided after its checkpoint is decided
again and the decision store (upsert by transaction id) keeps it once.

The records carry no ``user_id``, so each user is one card, whose records share a partition
and arrive in offset order; with a lateness bound longer than the data, no record is late
however the partitions interleave, and every run decides exactly what a file run decides.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from test_kafka_support import (
    ENV,
    FAST_GROUP,
    FRAUDSTREAM,
    MockCluster,
    committed,
    end_offsets,
    read_topic,
    wait_for,
    write_jsonl,
)

from fraudstream.engine.checkpoint import CheckpointStore
from fraudstream.engine.pipeline import Pipeline, TimeConfig
from fraudstream.io.decode import Decoder
from fraudstream.io.kafka import KafkaURI
from fraudstream.io.kafka_source import KafkaSource
from fraudstream.io.sqlstore import DecisionStore
from fraudstream.profiles import ProfileTable
from fraudstream.rules import RuleSet
from fraudstream.run import Outputs, Runner
from fraudstream.schema import CardTokenizer
from fraudstream.simulate.demo import demo_records

LATENESS_MS = 120 * 86_400_000


def card_records(count: int) -> list[dict[str, Any]]:
    records = demo_records(count=count, users=30, seed=23)
    for record in records:
        record.pop("user_id", None)
    return records


def run_command(cluster: MockCluster, group: str, store: Path, *more: str) -> list[str]:
    return [
        FRAUDSTREAM, "run", "--input", cluster.uri("card-transactions", FAST_GROUP),
        "--group-id", group, "--store", str(store),
        "--allowed-lateness-ms", str(LATENESS_MS), "--idle-timeout-ms", "600000", "--quiet",
        *more,
    ]  # fmt: skip


def stored(path: Path) -> dict[str, tuple[Any, ...]]:
    with DecisionStore(str(path)) as store:
        rows = store.list(limit=1_000_000)
    return {r["transaction_id"]: (r["decision"], r["score"], r["reasons"]) for r in rows}


def test_a_killed_consumer_is_taken_over_from_its_committed_checkpoint(
    kafka_cluster: MockCluster, tmp_path: Path
) -> None:
    records = card_records(3000)
    early, late = records[:2000], records[2000:]
    checkpoints = tmp_path / "checkpoints"
    store = tmp_path / "decisions.db"
    alerts = kafka_cluster.uri("fraud-alerts")
    produce = [FRAUDSTREAM, "produce", "--to", kafka_cluster.uri("card-transactions"), "-q"]
    kafka_cluster.produce("card-transactions", [b"{}"], [b"warm-up"])  # the topic exists

    # The first consumer decides while records arrive, checkpointing every 100 records,
    # and is killed (SIGKILL: no goodbye to the group, no flush, no commit) mid-stream.
    producer_log = (tmp_path / "producer.log").open("w")
    first_log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        run_command(
            kafka_cluster, "deciders", store, "--alerts", alerts,
            "--checkpoint-dir", str(checkpoints), "--checkpoint-every-records", "100",
        ),
        env=ENV, stderr=first_log,
    )  # fmt: skip
    # The records must arrive while it runs (not be waiting when it starts, then read in one
    # or two batches): the producer starts once the consumer has opened its checkpoints.
    producer = None
    try:
        wait_for(lambda: (checkpoints / "run.json").exists(), 120, "the first consumer to start")
        producer = subprocess.Popen(
            [*produce, "--input", str(write_jsonl(tmp_path / "early.jsonl", early)),
             "--rate", "200"],
            env=ENV, stderr=producer_log,
        )  # fmt: skip
        wait_for(
            lambda: (CheckpointStore(str(checkpoints)).latest() or 0) >= 3, 240, "3 checkpoints"
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
        producer_code = producer.wait(timeout=60) if producer is not None else None
        producer_log.close()
        first_log.close()
    assert producer_code == 0, (tmp_path / "producer.log").read_text()

    # The group's offsets are those of a complete checkpoint (the newest, unless the kill
    # fell between a checkpoint's rename and its commit).
    group_offsets = committed(kafka_cluster.bootstrap, "deciders", "card-transactions")
    checkpoint_dir = CheckpointStore(str(checkpoints))
    checkpoint_offsets = []
    for checkpoint_id in checkpoint_dir.ids():
        manifest, _ = checkpoint_dir.read(checkpoint_id)
        offsets = manifest["source"]["offsets"]
        checkpoint_offsets.append({int(p): int(o) for p, o in offsets.items()})
    assert group_offsets in checkpoint_offsets[-2:], (group_offsets, checkpoint_offsets)
    newest = checkpoint_offsets[-1]
    assert 0 < sum(newest.values()) < len(early) + 1  # the kill came mid-stream

    subprocess.run(
        [*produce, "--input", str(write_jsonl(tmp_path / "late.jsonl", late))],
        env=ENV, check=True, timeout=60,
    )  # fmt: skip
    # The second consumer joins the same group, gets every partition once the dead one's
    # session expires, and resumes from the checkpoint's offsets and state.
    summary_path = tmp_path / "summary.json"
    second = subprocess.run(
        run_command(
            kafka_cluster, "deciders", store, "--alerts", alerts,
            "--checkpoint-dir", str(checkpoints), "--checkpoint-every-records", "500",
            "--resume", "--stop-at-end", "--summary-json", str(summary_path),
        ),
        env=ENV, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["resumed_from"] is not None
    # Every record counted once over both consumers (the warm-up record is a dead letter).
    assert summary["records"] == len(records) + 1 and summary["duplicates"] == 0

    # A consumer that never stopped, in its own group, over the same topic.
    reference_store = tmp_path / "reference.db"
    reference = subprocess.run(
        run_command(
            kafka_cluster, "reference", reference_store,
            "--alerts", kafka_cluster.uri("fraud-alerts-reference"), "--stop-at-end",
        ),
        env=ENV, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    expected = stored(reference_store)
    assert len(expected) == len(records)
    assert stored(store) == expected  # none missing, none different, each once

    alerted = read_topic(kafka_cluster.bootstrap, "fraud-alerts")
    reference_alerts = read_topic(kafka_cluster.bootstrap, "fraud-alerts-reference")
    assert {v["transaction_id"] for _, v, _, _ in alerted} == {
        v["transaction_id"] for _, v, _, _ in reference_alerts
    }  # at least once on the topic; readers deduplicate by transaction id
    assert {v["transaction_id"] for _, v, _, _ in reference_alerts} == {
        t for t, (decision, _, _) in expected.items() if decision != "approve"
    }


def test_without_a_checkpoint_a_new_member_starts_at_the_committed_offsets(
    kafka_cluster: MockCluster,
) -> None:
    records = card_records(600)
    kafka_cluster.produce_records(records)
    uri = KafkaURI.parse(kafka_cluster.uri("card-transactions", FAST_GROUP))
    decoder = Decoder(CardTokenizer(b"test"))

    first = KafkaSource(uri, "pair", idle_timeout_ms=600_000)
    seen_first: list[int] = []
    for item in first.batches(decoder):
        assert item is not None
        seen_first += item[0].transaction_id.to_pylist()
        if len(seen_first) >= 100:
            break
    position = first.position()
    first.commit(position)  # as a checkpoint would
    first.close()  # leaves the group: its partitions are handed over
    assert committed(kafka_cluster.bootstrap, "pair", "card-transactions") == {
        int(p): o for p, o in position["offsets"].items()
    }

    second = KafkaSource(uri, "pair", idle_timeout_ms=600_000, stop_at_end=True)
    seen_second = []
    try:
        for item in second.batches(decoder):
            if item is not None:
                seen_second += item[0].transaction_id.to_pylist()
    finally:
        second.close()
    assert not set(seen_first) & set(seen_second)
    assert sorted(seen_first + seen_second) == sorted(r["transaction_id"] for r in records)


def test_checkpoint_positions_round_trip_through_seek(kafka_cluster: MockCluster) -> None:
    records = card_records(400)
    kafka_cluster.produce_records(records)
    uri = KafkaURI.parse(kafka_cluster.uri("card-transactions", FAST_GROUP))
    pipeline = Pipeline(RuleSet.default(), ProfileTable(), TimeConfig())
    runner = Runner(pipeline, Outputs(), CardTokenizer(b"test"))
    reader = KafkaSource(uri, "seeker", stop_at_end=True, idle_timeout_ms=600_000)
    summary = runner.run(reader)
    everything = reader.position()
    reader.close()  # partitions revoked: no longer part of this member's position
    assert reader.position()["offsets"] == {}
    assert summary.records == len(records)
    halfway = {p: o // 2 for p, o in everything["offsets"].items()}
    resumed = KafkaSource(uri, "another-group", stop_at_end=True, idle_timeout_ms=600_000)
    resumed.seek({**everything, "offsets": halfway})
    count = 0
    try:
        for item in resumed.batches(Decoder(CardTokenizer(b"test"))):
            if item is not None:
                count += len(item[0])
        assert resumed.position() == everything
    finally:
        resumed.close()
    assert count == sum(o - o // 2 for o in everything["offsets"].values())


def test_sigterm_ends_a_live_run_with_its_offsets_committed(
    kafka_cluster: MockCluster, tmp_path: Path
) -> None:
    records = card_records(500)
    kafka_cluster.produce_records(records)
    store = tmp_path / "decisions.db"
    summary_path = tmp_path / "summary.json"
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        live = subprocess.Popen(
            run_command(kafka_cluster, "live", store, "--summary-json", str(summary_path)),
            env=ENV, stderr=log,
        )  # fmt: skip
        try:
            wait_for(lambda: store.exists() and len(stored(store)) == len(records), 60, "decisions")
        finally:
            live.send_signal(signal.SIGTERM)  # as a container stop does
            code = live.wait(timeout=60)
    assert code == 0, log_path.read_text()
    assert json.loads(summary_path.read_text())["records"] == len(records)
    assert committed(kafka_cluster.bootstrap, "live", "card-transactions") == end_offsets(
        kafka_cluster.bootstrap, "card-transactions"
    )
