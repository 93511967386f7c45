"""librdkafka's mock cluster for the Kafka tests, and helpers that read topics back.

The mock cluster (``test.mock.num.brokers``) runs inside the client that creates it: real
brokers on 127.0.0.1 ports that a subprocess (``fraudstream run``) can reach too. It supports
produce/consume, consumer groups and committed offsets; its transactions are not real, so no
test relies on them. Topics are created on first produce with 4 partitions.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

QUIET = logging.getLogger("tests.kafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
# Consumer settings that make a takeover quick on the mock (the default session is 45 s).
FAST_GROUP = "session.timeout.ms=6000&heartbeat.interval.ms=500"
TRANSACTIONS = "card-transactions"
# The installed CLI, for tests that run it as its own process, and its environment.
FRAUDSTREAM = str(Path(sys.executable).parent / "fraudstream")
ENV = dict(os.environ, FRAUDSTREAM_TOKEN_KEY="test")


@dataclass
class MockCluster:
    """A running mock cluster: its bootstrap address and the client keeping it alive."""

    bootstrap: str
    owner: Producer

    def uri(self, topic: str, settings: str = "") -> str:
        """``kafka://<bootstrap>/<topic>[?settings]``."""
        return f"kafka://{self.bootstrap}/{topic}" + (f"?{settings}" if settings else "")

    def produce(
        self, topic: str, values: list[bytes] | list[bytes | None], keys: list[bytes | None]
    ) -> None:
        """Sends messages and waits for every acknowledgement."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "logger": QUIET})
        errors: list[Any] = []
        for value, key in zip(values, keys, strict=True):
            producer.produce(topic, value, key, on_delivery=lambda e, _m: e and errors.append(e))
        assert producer.flush(30) == 0
        assert not errors, errors

    def produce_records(self, records: list[dict[str, Any]], topic: str = TRANSACTIONS) -> None:
        """Sends transaction records as JSON, keyed by card as ``fraudstream produce`` keys them."""
        self.produce(
            topic,
            [msgspec.json.encode(r) for r in records],
            [r["card_id"].encode() for r in records],
        )


def mock_cluster() -> Iterator[MockCluster]:
    """A fresh 3-broker mock cluster (tests/io/conftest.py wraps this in ``kafka_cluster``)."""
    owner = Producer({"test.mock.num.brokers": 3, "logger": QUIET})
    brokers = owner.list_topics(timeout=10).brokers.values()
    yield MockCluster(",".join(f"{b.host}:{b.port}" for b in brokers), owner)
    owner.flush(5)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    """Writes records as JSON lines (the file input of a run or of ``produce``); returns path."""
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in records))
    return path


def read_topic(
    bootstrap: str, topic: str, timeout_s: float = 30.0
) -> list[tuple[bytes | None, dict[str, Any], int, int]]:
    """Every message of a topic as (key, decoded value, partition, offset); [] if no topic."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "logger": QUIET,
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10).topics.get(topic)
        if metadata is None or not metadata.partitions:
            return []
        partitions = sorted(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        out = []
        deadline = time.monotonic() + timeout_s
        while at_end != set(partitions):
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            for message in consumer.consume(1000, 0.2):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    at_end.add(message.partition())
                    continue
                at_end.discard(message.partition())
                value = msgspec.json.decode(message.value())
                out.append((message.key(), value, message.partition(), message.offset()))
        return out
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (partitions without one are left out)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "logger": QUIET})
    try:
        partitions = sorted(consumer.list_topics(timeout=10).topics[topic].partitions)
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}
    finally:
        consumer.close()


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    """Polls ``condition`` until it holds; fails naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The high watermark (next offset) of every partition of a topic."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets", "logger": QUIET})
    try:
        partitions = sorted(consumer.list_topics(timeout=10).topics[topic].partitions)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def test_the_mock_cluster_round_trips_keyed_messages(kafka_cluster: MockCluster) -> None:
    values = [msgspec.json.encode({"n": i}) for i in range(50)]
    keys: list[bytes | None] = [f"card-{i % 5}".encode() for i in range(50)]
    kafka_cluster.produce("round-trip", values, keys)
    messages = read_topic(kafka_cluster.bootstrap, "round-trip")
    assert sorted(v["n"] for _, v, _, _ in messages) == list(range(50))
    partition_of: dict[bytes | None, set[int]] = {}
    for key, _, partition, _ in messages:
        partition_of.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partition_of.values())  # one key, one partition
    assert sum(end_offsets(kafka_cluster.bootstrap, "round-trip").values()) == 50
