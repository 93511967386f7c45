"""The Kinesis source on moto: every shard, positions that resume exactly, resharding followed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import msgspec
import pytest
from aws_support import create_stream, put_records, unique
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.config import ConfigError
from fraudstream.io.aws import kinesis_source
from fraudstream.io.aws.kinesis_source import KinesisSource
from fraudstream.io.decode import Decoder
from fraudstream.io.files import IDLE
from fraudstream.schema import CardTokenizer

T0 = 1_767_225_600_000


def _records(prefix: str, count: int, cards: int = 10, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "transaction_id": f"{prefix}-{i}",
            "card_id": f"card-{i % cards}",
            "timestamp": T0 + 1_000 * i,
            "amount": 10.0 + i % 7,
        }
        for i in range(start, start + count)
    ]


def _source(stream: str, **settings: Any) -> KinesisSource:
    settings.setdefault("poll_interval_s", 0.01)
    settings.setdefault("relist_interval_s", 0.2)
    return KinesisSource(f"kinesis://{stream}", **settings)


def _items(source: KinesisSource) -> Iterator[Any]:
    return iter(source.batches(Decoder(CardTokenizer.from_environment(), "test")))


def _ids(item: Any) -> list[str]:
    batch, _dead = item
    return [str(t) for t in batch.transaction_id.to_pylist()]


def _read_until(items: Iterator[Any], wanted: set[str], limit: int = 2_000) -> list[str]:
    """Reads batches until every id of ``wanted`` was seen; returns all ids read, in order."""
    seen: list[str] = []
    for _ in range(limit):
        item = next(items)
        if item is not IDLE:
            seen += _ids(item)
        if wanted <= set(seen):
            return seen
    raise AssertionError(f"never read {sorted(wanted - set(seen))[:5]}")


def test_reads_every_shard_and_a_position_resumes_exactly_after_what_was_yielded(
    aws: str,
) -> None:
    stream = unique("tx")
    kinesis = create_stream(stream, shards=4)
    records = _records("a", 400, cards=37)
    put_records(kinesis, stream, records)
    first = _source(stream, batch_records=15, stop_at_end=True)
    items = _items(first)
    before: list[str] = []
    while len(before) < 150:
        item = next(items)
        if item is not IDLE:
            before += _ids(item)
    position = first.position()  # between batches: what was yielded has been processed
    assert position["format"] == "kinesis" and len(position["shards"]) == 4
    assert first.aligner.holding()  # some records are read but held for the merge ...

    second = _source(stream, batch_records=1_000, stop_at_end=True)
    second.seek(position)
    after = [tid for item in _items(second) if item is not IDLE for tid in _ids(item)]
    # ... and the position does not cover them: nothing lost, nothing read twice.
    assert sorted(before + after) == sorted(r["transaction_id"] for r in records)
    assert not set(before) & set(after)


def test_shards_are_merged_in_event_time_order(aws: str) -> None:
    stream = unique("tx")
    kinesis = create_stream(stream, shards=4)
    records = _records("o", 300, cards=23)
    put_records(kinesis, stream, records)
    source = _source(stream, batch_records=7, stop_at_end=True)
    times: list[int] = []
    for item in _items(source):
        if item is not IDLE:
            times += item[0].timestamp_ms.tolist()
    assert len(times) == 300 and times == sorted(times)


def test_a_split_shard_is_read_to_its_end_then_its_children(aws: str) -> None:
    stream = unique("tx")
    kinesis = create_stream(stream, shards=1)
    old = _records("old", 60)
    put_records(kinesis, stream, old)
    source = _source(stream, batch_records=25)
    items = _items(source)
    read = _read_until(items, {r["transaction_id"] for r in old})

    parent = kinesis.list_shards(StreamName=stream)["Shards"][0]
    middle = (int(parent["HashKeyRange"]["StartingHashKey"]) + int(
        parent["HashKeyRange"]["EndingHashKey"])) // 2  # fmt: skip
    kinesis.split_shard(
        StreamName=stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str(middle)
    )
    new = _records("new", 60, start=60)
    put_records(kinesis, stream, new)
    children = {s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]} - {
        parent["ShardId"]
    }
    assert len(children) == 2
    read += _read_until(items, {r["transaction_id"] for r in new})
    for _ in range(500):  # until the parent is read to its end and its children are read
        if children <= set(source.readers) and all(source.readers[c].at_tip for c in children):
            break
        item = next(items)
        if item is not IDLE:
            read += _ids(item)
    position = source.position()
    assert parent["ShardId"] in position["read_to_end"]
    assert children <= set(position["shards"])
    counts = Counter(read)
    assert all(counts[r["transaction_id"]] == 1 for r in new)
    # moto moves a split shard's records out and writes them again (AWS leaves them in the
    # parent), so old ones may come twice here; a run's dedup reports those as duplicates.
    assert {r["transaction_id"] for r in old} <= set(counts)

    # A source resuming from that position starts the children only (nothing read again).
    resumed = _source(stream, stop_at_end=True)
    resumed.seek(position)
    assert [t for item in _items(resumed) if item is not IDLE for t in _ids(item)] == []
    assert parent["ShardId"] not in resumed.readers and children <= set(resumed.readers)


def test_a_bad_record_is_a_dead_letter_at_its_sequence_number(aws: str) -> None:
    stream = unique("tx")
    kinesis = create_stream(stream, shards=1)
    put_records(kinesis, stream, _records("g", 3))
    bad = kinesis.put_record(StreamName=stream, Data=b"not json \xff", PartitionKey="x")
    kinesis.put_record(
        StreamName=stream, Data=msgspec.json.encode(_records("h", 1)[0]), PartitionKey="y"
    )
    dead = []
    ids = []
    for item in _items(_source(stream, stop_at_end=True)):
        if item is not IDLE:
            ids += _ids(item)
            dead += item[1]
    assert ids == ["g-0", "g-1", "g-2", "h-0"]
    assert len(dead) == 1
    assert dead[0].source == f"{stream}[{bad['ShardId']}]"
    assert dead[0].position == int(bad["SequenceNumber"])


def test_a_missing_stream_or_a_checkpoint_of_another_input_is_one_readable_error(
    aws: str,
) -> None:
    with pytest.raises(ConfigError, match="kinesis://no-such-stream"):
        _source("no-such-stream")
    stream = unique("tx")
    create_stream(stream, shards=1)
    with pytest.raises(ValueError, match="not Kinesis"):
        _source(stream).seek({"format": "kafka", "topic": "t", "offsets": {}})
    with pytest.raises(ValueError, match="stream 'other'"):
        _source(stream).seek({"format": "kinesis", "stream": "other", "shards": {}})
    assert boto3.client("kinesis").describe_stream_summary(StreamName=stream)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shards=st.integers(2, 4),
    times=st.lists(st.integers(0, 600_000), min_size=20, max_size=120),
    cards=st.integers(1, 12),
    batch=st.integers(1, 40),
    stop_after=st.integers(0, 30),
    in_order=st.booleans(),
)
def test_any_position_between_batches_resumes_with_nothing_lost_or_read_twice(
    aws: str,
    shards: int,
    times: list[int],
    cards: int,
    batch: int,
    stop_after: int,
    in_order: bool,
) -> None:
    """Whatever the shards, the event times (in order: shards then hold records for the
    merge) and the batch size: records yielded before a position plus records read after
    resuming from it are every record, once."""
    if in_order:
        times = sorted(times)
    stream = unique("prop")
    kinesis = create_stream(stream, shards=shards)
    records = [
        {"transaction_id": f"p-{i}", "card_id": f"card-{i % cards}", "timestamp": T0 + t,
         "amount": 1.0}
        for i, t in enumerate(times)
    ]  # fmt: skip
    put_records(kinesis, stream, records)
    first = _source(stream, batch_records=batch, stop_at_end=True)
    before: list[str] = []
    yielded = 0
    for item in _items(first):
        if item is not IDLE:
            before += _ids(item)
            yielded += 1
        if yielded >= stop_after:
            break
    second = _source(stream, stop_at_end=True)
    second.seek(first.position())
    after = [tid for item in _items(second) if item is not IDLE for tid in _ids(item)]
    assert sorted(before + after) == sorted(r["transaction_id"] for r in records)


class _FakeKinesis:
    """Shards in memory; ``before_read(shard)`` runs at the start of each GetRecords (a
    producer writing between two of the source's reads)."""

    def __init__(self, shards: list[str]) -> None:
        self.data: dict[str, list[bytes]] = {shard: [] for shard in shards}
        self.before_read: Any = lambda shard: None

    def list_shards(self, **_request: Any) -> dict[str, Any]:
        return {
            "Shards": [
                {"ShardId": s, "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
                for s in self.data
            ]
        }

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        after = request.get("StartingSequenceNumber", "0")  # sequence numbers count from 1
        return {"ShardIterator": f"{request['ShardId']}|{after}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803
        shard, after = ShardIterator.split("|")
        self.before_read(shard)
        start = int(after)
        data = self.data[shard][start : start + Limit]
        records = [{"SequenceNumber": str(start + 1 + i), "Data": d} for i, d in enumerate(data)]
        return {
            "Records": records,
            "NextShardIterator": f"{shard}|{start + len(data)}",
            "MillisBehindLatest": 0,  # as moto and Kinesis answer at the tip
        }


def test_a_shard_that_was_at_its_tip_before_the_others_records_came_still_holds_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records written (in time order, to both shards) after shard 0 answered "nothing" but
    before shard 1 is read: shard 1's must wait for shard 0's older ones, not be released
    ahead of them (a live run's clock then drops those as late, never deciding them)."""
    shards = ["shardId-000000000000", "shardId-000000000001"]
    kinesis = _FakeKinesis(shards)
    monkeypatch.setattr(kinesis_source, "client", lambda service: kinesis)
    records = _records("w", 40, cards=2)

    def write_all_once(shard: str) -> None:
        if shard == shards[1] and not any(kinesis.data.values()):
            for record in records:
                kinesis.data[shards[int(record["card_id"][-1])]].append(msgspec.json.encode(record))

    kinesis.before_read = write_all_once
    source = KinesisSource(
        "kinesis://live", stop_at_end=True, poll_interval_s=0.0, relist_interval_s=3600
    )
    ids = [t for item in _items(source) if item is not IDLE for t in _ids(item)]
    assert ids == [r["transaction_id"] for r in records]  # every record, in event-time order
