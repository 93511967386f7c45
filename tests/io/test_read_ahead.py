"""Reading one block ahead changes when work happens, never what it gives."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.io.decode import Decoder
from fraudstream.io.files import FileSource
from fraudstream.io.read_ahead import AheadReader, read_ahead
from fraudstream.schema import CardTokenizer


@given(st.lists(st.integers()))
def test_read_ahead_is_map_in_order(items: list[int]) -> None:
    assert list(read_ahead(iter(items), lambda x: (x, x * 3))) == [(x, x * 3) for x in items]


def test_the_work_runs_on_a_worker_thread_one_item_ahead() -> None:
    asked: list[int] = []
    threads: set[str] = set()

    def work(x: int) -> int:
        threads.add(threading.current_thread().name)
        asked.append(x)
        return x

    results = read_ahead(iter(range(10)), work)
    assert next(results) == 0
    results.close()  # the caller holds result 0; the worker had taken item 1 at most
    assert asked in ([0], [0, 1])
    assert all(name.startswith("fraudstream-read-ahead") for name in threads)


def test_an_error_surfaces_at_its_item() -> None:
    def work(x: int) -> int:
        if x == 2:
            raise ValueError("bad block")
        return x

    results = read_ahead(iter(range(5)), work)
    assert [next(results), next(results)] == [0, 1]
    with pytest.raises(ValueError, match="bad block"):
        next(results)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=6), max_size=20),
    st.none() | st.integers(0, 6),
    st.integers(1, 3),
)
def test_ahead_reader_answers_like_the_work_whatever_is_asked(
    asked: list[int], started: int | None, depth: int
) -> None:
    """Items asked out of plan (a replay after a restart, a jump) get the work of the very item
    asked: a result made ahead for another item is never handed out, however far ahead."""

    def work(x: int) -> tuple[int, int]:
        return (x, x * x)

    reader = AheadReader(work, lambda x: x + 1 if x < 6 else None, depth=depth)
    if started is not None:
        reader.start(started)
    try:
        assert [reader.get(x) for x in asked] == [(x, x * x) for x in asked]
    finally:
        reader.close()


def test_two_ahead_the_second_item_is_worked_while_the_first_one_is() -> None:
    """Depth 2: starting a plan works its first two items at once (the Flink job's first
    chunk on a thread, the second in the child process), and each item asked starts the one
    two places after it."""
    first_started, second_started = threading.Event(), threading.Event()

    def work(x: int) -> int:
        if x == 0:
            first_started.set()
            assert second_started.wait(10), "item 1 did not start while item 0 was worked"
        if x == 1:
            second_started.set()
        return x

    reader = AheadReader(work, lambda x: x + 1 if x < 5 else None, depth=2)
    reader.start(0)
    assert reader.get(0) == 0 and first_started.is_set()
    assert [item for item, _ in reader._ahead] == [1, 2]
    assert reader.get(1) == 1
    assert [item for item, _ in reader._ahead] == [2, 3]
    assert [reader.get(x) for x in (2, 3, 4, 5)] == [2, 3, 4, 5]
    assert not reader._ahead
    reader.close()


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_in_plan_each_item_is_worked_once(depth: int) -> None:
    worked: list[int] = []
    reader = AheadReader(
        lambda x: worked.append(x) or x, lambda x: x + 1 if x < 4 else None, depth=depth
    )
    reader.start(0)
    assert [reader.get(x) for x in range(5)] == list(range(5))
    reader.close()
    assert sorted(worked) == list(range(5))


def test_the_file_source_position_is_that_of_the_block_yielded(tmp_path: Path) -> None:
    """The source reads ahead, but a checkpoint taken after a batch must name the line after
    that batch, not after the block being read ahead; resuming there repeats nothing."""
    path = tmp_path / "tx.jsonl"
    lines = [
        f'{{"transaction_id":"t{i}","card_id":"c{i % 7}","timestamp":{1_000 * i},"amount":5}}'
        for i in range(1, 301)
    ]
    path.write_text("\n".join(lines) + "\n")
    decoder = Decoder(CardTokenizer(b"test"))
    source = FileSource(path, "jsonl", batch_rows=1)  # blocks of 128 bytes: a few lines each
    positions, seen = [], 0
    for item in source.batches(decoder):
        assert item is not None
        seen += len(item[0])
        positions.append((seen, dict(source.position())))
    assert seen == 300 and len(positions) > 10
    for done, position in positions[:: max(1, len(positions) // 7)]:
        assert position["line"] == done
        resumed = FileSource(path, "jsonl", batch_rows=1)
        resumed.seek(position)
        rest = [item[0] for item in resumed.batches(decoder) if item is not None]
        ids = [t for batch in rest for t in batch.transaction_id.tolist()]
        assert ids == [f"t{i}" for i in range(done + 1, 301)]
