"""Kafka end to end on librdkafka's mock cluster: produce, then consume -> decide -> produce.

    python benchmarks/kafka_throughput.py [--records 100000] [--cards 10000]

The benchmark workload (seeded, the throughput benchmark's generator) as JSON lines is sent
to ``card-transactions`` (4 partitions, keyed by card) with the Kafka sink's producer, then
``fraudstream``'s Kafka source (a consumer group) feeds the pipeline, whose alerts and
enriched transactions go to ``fraud-alerts`` and ``card-transactions-enriched``. The same
records from the JSON-lines file, with the same outputs as files, are the reference.

The mock brokers run as threads of this process, so they share its CPU with the client and
the pipeline: the figures are a floor for what a real cluster on other machines gives.
Times start at the first batch (the group join, about 3 s on the mock, is left out).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import md5_head, record, workload  # noqa: E402

QUIET = logging.getLogger("benchmark.kafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


class Timed:
    """A source wrapper that notes when the first batch arrives."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.live = source.live
        self.total_bytes = self.done_bytes = 0
        self.first_at: float | None = None

    def batches(self, decoder: Any) -> Iterator[Any]:
        for item in self.source.batches(decoder):
            if self.first_at is None and item is not None:
                self.first_at = time.perf_counter()
            yield item

    def position(self) -> dict[str, Any]:
        return dict(self.source.position())

    def seek(self, position: dict[str, Any]) -> None:
        self.source.seek(position)

    def commit(self, position: dict[str, Any]) -> None:
        self.source.commit(position)


def decide(source: Any, alerts: str, enriched: str | None) -> tuple[Any, float]:
    from fraudstream.engine.pipeline import Pipeline, warm_up
    from fraudstream.run import Outputs, Runner
    from fraudstream.schema import CardTokenizer

    warm_up()
    pipeline = Pipeline()  # default time settings: the source aligns the partitions
    outputs = Outputs(alerts=alerts, enriched=enriched)
    timed = Timed(source)
    runner = Runner(pipeline, outputs, CardTokenizer(b"benchmark"))
    summary = runner.run(timed)
    seconds = time.perf_counter() - (timed.first_at or time.perf_counter())
    return summary, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The mock keeps about 10 MB per partition (older messages are deleted, as retention
    # would): 4 partitions hold some 180,000 of these records.
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--cards", type=int, default=10_000)
    args = parser.parse_args()

    from confluent_kafka import Producer

    from fraudstream.io.files import FileSource
    from fraudstream.io.kafka import KafkaURI
    from fraudstream.io.kafka_sink import KafkaSink
    from fraudstream.io.kafka_source import KafkaSource

    path = workload(args.records, args.cards, ".jsonl")
    lines = path.read_bytes().splitlines()
    keys = [line.split(b'"card_id":"', 1)[1].split(b'"', 1)[0] for line in lines]
    print(f"workload: {len(lines):,} records over {args.cards:,} cards ({path.name})")

    owner = Producer({"test.mock.num.brokers": 3, "logger": QUIET})
    brokers = owner.list_topics(timeout=10).brokers.values()
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers)

    sink = KafkaSink(KafkaURI.parse(f"kafka://{bootstrap}/card-transactions"))
    started = time.perf_counter()
    for value, key in zip(lines, keys, strict=True):
        sink.send(value, key)
    sink.flush()
    produce_s = time.perf_counter() - started
    print(f"produce        {len(lines) / produce_s:>10,.0f} msg/s  ({produce_s:.2f} s)")

    rows: dict[str, dict[str, float]] = {"produce": {"tx_s": len(lines) / produce_s}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, enriched in (("alerts only", False), ("alerts + enriched", True)):
            group = "bench-" + ("enriched" if enriched else "alerts")
            # The mock answers a fetch only after fetch.wait.max.ms even when it has data (a
            # real broker answers once fetch.min.bytes, 1 byte, is there): keep it short.
            uri = KafkaURI.parse(f"kafka://{bootstrap}/card-transactions?fetch.wait.max.ms=10")
            source = KafkaSource(uri, group, stop_at_end=True, idle_timeout_ms=600_000)
            try:
                summary, seconds = decide(
                    source,
                    f"kafka://{bootstrap}/fraud-alerts-{group}",
                    f"kafka://{bootstrap}/enriched-{group}" if enriched else None,
                )
            finally:
                source.close()
            kafka_tx_s = summary.records / seconds
            file_summary, file_seconds = decide(
                FileSource(path, "jsonl"),
                f"{tmp}/alerts.jsonl",
                f"{tmp}/enriched.jsonl" if enriched else None,
            )
            file_tx_s = file_summary.records / file_seconds
            assert summary.late == file_summary.late == 0
            assert summary.records == file_summary.records == len(lines), (
                summary.records,
                file_summary.records,
            )
            ratio = kafka_tx_s / file_tx_s
            alerts = summary.tiers["review"] + summary.tiers["decline"]
            print(
                f"{label:<18} kafka {kafka_tx_s:>9,.0f} tx/s   file {file_tx_s:>9,.0f} tx/s"
                f"   kafka/file {ratio:.2f}   alerts {alerts:,}"
            )
            rows[label] = {"kafka_tx_s": kafka_tx_s, "file_tx_s": file_tx_s, "ratio": ratio}
    owner.flush(5)
    record(
        "kafka_throughput",
        {"records": len(lines), "cards": args.cards, "md5_head": md5_head(path), "runs": rows},
    )


if __name__ == "__main__":
    main()
