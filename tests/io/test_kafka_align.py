"""Partition alignment: each partition's order kept, merged by event time, nothing lost."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.engine.batch import TxBatch
from fraudstream.io.decode import DeadLetter
from fraudstream.io.kafka_align import PartitionAligner
from fraudstream.schema import CardTokenizer, ValidTx, validate_record

TOKENS = CardTokenizer(b"test")


def batch(partition: int, offsets: list[int], times: list[int]) -> TxBatch:
    rows: list[ValidTx] = [
        validate_record(
            {"transaction_id": f"p{partition}-{o}", "card_id": f"c{partition}", "timestamp": t,
             "amount": 1.0},
            TOKENS,
        )
        for o, t in zip(offsets, times, strict=True)
    ]  # fmt: skip
    return TxBatch.from_valid(rows, np.asarray(offsets, np.int64), np.zeros(len(rows)))


def test_records_wait_for_the_slowest_partition_then_merge_by_time() -> None:
    aligner = PartitionAligner()
    aligner.add(0, batch(0, [0, 1, 2], [100, 200, 300]), [], [0, 1, 2])
    assert aligner.release(active={0, 1}) is None  # partition 1 may still send older ones
    dead = DeadLetter("t[1]", 1, "invalid JSON: x", "{")
    aligner.add(1, batch(1, [0, 2], [150, 250]), [dead], [0, 1, 2])
    released = aligner.release(active={0, 1})
    assert released is not None
    merged, letters = released
    assert merged.transaction_id.to_pylist() == ["p0-0", "p1-0", "p0-1", "p1-2"]
    assert letters == [dead]  # offset 1 of partition 1 comes before its released offset 2
    assert aligner.first_unreleased(0) == 2 and aligner.first_unreleased(1) is None
    # Partition 1 reports its end: it no longer holds partition 0 back.
    rest = aligner.release(active={0})
    assert rest is not None and rest[0].transaction_id.to_pylist() == ["p0-2"]
    assert aligner.holding() == 0


def test_a_partition_at_its_end_holds_back_what_was_read_after_it_said_so() -> None:
    aligner = PartitionAligner()
    aligner.add(0, batch(0, [0], [100]), [], [0], stamp=1)
    assert aligner.release(active={0}) is not None  # partition 0 alone so far
    # Partition 0 answers "nothing" (stamp 2); then partition 1 sends records (stamp 3),
    # written after that answer along with older ones of partition 0 not read yet.
    aligner.add(1, batch(1, [0, 1], [150, 400]), [], [0, 1], stamp=3)
    assert aligner.release(active={1}, ended_at={0: 2}) is None  # up to 100 only: nothing
    assert aligner.first_unreleased(1) == 0
    # Asked again (stamp 4), partition 0 sends those older records: merged in time order.
    aligner.add(0, batch(0, [1, 2], [300, 500]), [], [1, 2], stamp=4)
    released = aligner.release(active={0, 1})
    assert released is not None
    assert released[0].transaction_id.to_pylist() == ["p1-0", "p0-1", "p1-1"]
    # Both at their end after what they sent: the rest goes.
    rest = aligner.release(active=set(), ended_at={0: 5, 1: 6})
    assert rest is not None and rest[0].transaction_id.to_pylist() == ["p0-2"]
    assert aligner.holding() == 0


streams = st.dictionaries(
    st.integers(0, 3),
    st.lists(st.tuples(st.integers(0, 1_000), st.booleans()), min_size=1, max_size=20),
    min_size=1,
    max_size=4,
)


@settings(max_examples=60, deadline=None)
@given(streams, st.data())
def test_every_message_comes_out_once_in_partition_order(
    messages: dict[int, list[tuple[int, bool]]], data: st.DataObject
) -> None:
    aligner = PartitionAligner(max_buffered=data.draw(st.integers(1, 50)))
    pending = {p: list(enumerate(items)) for p, items in messages.items()}
    out_ids: list[str] = []
    out_dead: list[tuple[str, int]] = []
    active = set(pending)
    while any(pending.values()) or aligner.holding():
        for partition, items in pending.items():  # a few messages from some partitions
            if not items:
                continue
            take = data.draw(st.integers(1, len(items)))
            chunk, pending[partition] = items[:take], items[take:]
            good = [(o, t) for o, (t, ok) in chunk if ok]
            letters = [
                DeadLetter(f"t[{partition}]", o, "invalid JSON", "x")
                for o, (_, ok) in chunk
                if not ok
            ]
            aligner.add(
                partition,
                batch(partition, [o for o, _ in good], [t for _, t in good]),
                letters,
                [o for o, _ in chunk],
            )
            if not pending[partition]:
                active.discard(partition)  # read to its end
        force = not any(pending.values()) and data.draw(st.booleans())
        released = aligner.release(active, force=force)
        if released is None:
            continue
        out_ids += released[0].transaction_id.to_pylist()
        out_dead += [(d.source, d.position) for d in released[1]]
        for partition in messages:  # what is buffered is after what was released
            first = aligner.first_unreleased(partition)
            if first is not None:
                assert all(
                    int(i.split("-")[1]) < first for i in out_ids if i.startswith(f"p{partition}-")
                )
    expected = [
        f"p{p}-{o}" for p, items in messages.items() for o, (_, ok) in enumerate(items) if ok
    ]
    assert sorted(out_ids) == sorted(expected)  # each once
    for partition in messages:  # each partition in offset order
        mine = [int(i.split("-")[1]) for i in out_ids if i.startswith(f"p{partition}-")]
        assert mine == sorted(mine)
    dead_expected = [
        (f"t[{p}]", o) for p, items in messages.items() for o, (_, ok) in enumerate(items) if not ok
    ]
    assert sorted(out_dead) == sorted(dead_expected)
