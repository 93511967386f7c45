"""Profiles from the compacted ``users-config`` topic: an upsert applies to the next transaction.

A traveller moves 100 km every hour (100 km/h). With a max speed of 1,000 km/h nothing
fires; after an upsert to 50 km/h on the topic the next move fires ``geo_velocity`` with
the new limit; a tombstone falls back to the default limit; a bad profile changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from test_kafka_support import (
    FAST_GROUP,
    MockCluster,
    wait_for,
)

from fraudstream.engine.pipeline import Pipeline, TimeConfig
from fraudstream.io.decode import Decoder
from fraudstream.io.kafka import KafkaURI
from fraudstream.io.kafka_profiles import KafkaProfileFeed
from fraudstream.io.kafka_source import KafkaSource
from fraudstream.io.records import decision_dicts
from fraudstream.profiles import ProfileTable
from fraudstream.rules import RuleSet
from fraudstream.schema import CardTokenizer

HOUR_MS = 3_600_000
KM_PER_DEGREE = 111.195  # along a meridian, R = 6371 km


def move(n: int) -> dict[str, Any]:
    """The traveller's n-th transaction: n hours and n * 100 km north of the start."""
    return {
        "transaction_id": f"move-{n}",
        "card_id": "card-traveller",
        "user_id": "traveller",
        "timestamp": 1_767_225_600_000 + n * HOUR_MS,
        "amount": 20.0,
        "lat": n * 100 / KM_PER_DEGREE,
        "lon": 10.0,
    }


def profile(max_speed_kmh: float) -> bytes:
    return msgspec.json.encode(
        {"user_id": "traveller", "first_name": "Ada", "last_name": "Lovelace",
         "max_speed_kmh": max_speed_kmh}
    )  # fmt: skip


class Harness:
    """A source and a pipeline stepped by hand: the feed is polled between batches."""

    def __init__(self, cluster: MockCluster, feed: KafkaProfileFeed, pipeline: Pipeline) -> None:
        self.cluster = cluster
        self.feed = feed
        self.pipeline = pipeline
        uri = KafkaURI.parse(cluster.uri("card-transactions", FAST_GROUP))
        self.source = KafkaSource(uri, "traveller-group", idle_timeout_ms=600_000)
        self.items: Iterator[Any] = self.source.batches(Decoder(CardTokenizer(b"test")))

    def decide(self, *records: dict[str, Any]) -> list[dict[str, Any]]:
        self.cluster.produce(
            "card-transactions",
            [msgspec.json.encode(r) for r in records],
            [b"card-traveller"] * len(records),
        )
        out: list[dict[str, Any]] = []
        while len(out) < len(records):
            item = next(self.items)
            self.feed.poll()  # what the run does between batches
            if item is not None:
                result = self.pipeline.submit(item[0])
                if result.decisions is not None:
                    out += decision_dicts(result.decisions)
        return out


def test_a_users_config_upsert_applies_to_the_next_transaction(
    kafka_cluster: MockCluster,
) -> None:
    rejected: list[str] = []
    kafka_cluster.produce("users-config", [profile(1000.0)], [b"traveller"])
    kafka_cluster.produce("card-transactions", [b'{"warm": "up"}'], [b"x"])  # topic exists
    pipeline = Pipeline(RuleSet.default(), ProfileTable(), TimeConfig())
    feed = KafkaProfileFeed(
        KafkaURI.parse(kafka_cluster.uri("users-config")), pipeline.profiles, rejected.append
    )
    assert feed.load() == 1
    harness = Harness(kafka_cluster, feed, pipeline)
    try:
        first, second = harness.decide(move(0), move(1))
        assert second["features"]["speed_kmh"] == pytest.approx(100.0, rel=1e-3)
        assert second["features"]["max_speed_kmh"] == 1000.0
        assert "geo_velocity" not in {r["rule"] for r in second["reasons"]}

        kafka_cluster.produce("users-config", [profile(50.0)], [b"traveller"])
        wait_for(lambda: feed.poll() == 1, 20, "the upsert to be read")
        (third,) = harness.decide(move(2))
        assert third["features"]["max_speed_kmh"] == 50.0
        assert "geo_velocity" in {r["rule"] for r in third["reasons"]}

        bad = [b"not json", b'{"max_speed_kmh": -5}']
        kafka_cluster.produce("users-config", bad, [None, b"traveller"])
        wait_for(lambda: feed.poll() == 0 and feed.rejected == 2, 20, "the bad profiles")
        assert len(rejected) == 2 and "users-config[" in rejected[0]
        (fourth,) = harness.decide(move(3))
        assert fourth["features"]["max_speed_kmh"] == 50.0  # unchanged by the bad ones

        kafka_cluster.produce("users-config", [None], [b"traveller"])
        wait_for(lambda: feed.poll() == 1, 20, "the tombstone to be read")
        (fifth,) = harness.decide(move(4))
        assert fifth["features"]["max_speed_kmh"] != 50.0  # the default limit again
        assert pipeline.profiles.get("traveller")["first_name"] is None
        assert "geo_velocity" not in {r["rule"] for r in fifth["reasons"]}
    finally:
        harness.source.close()
        feed.close()


def test_a_new_feed_reads_the_compacted_topic_from_the_beginning(
    kafka_cluster: MockCluster,
) -> None:
    values = [profile(float(speed)) for speed in (10, 20, 30)]
    kafka_cluster.produce("users-config", values, [b"traveller"] * 3)
    table = ProfileTable()
    feed = KafkaProfileFeed(KafkaURI.parse(kafka_cluster.uri("users-config")), table)
    try:
        assert feed.load() == 3 and feed.poll() == 0
        assert table.get("traveller") is not None
        assert table.get("traveller")["max_speed_kmh"] == 30.0  # the last one wins
    finally:
        feed.close()
