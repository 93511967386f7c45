"""Duplicate transaction ids within the horizon; memory stays bounded beyond it."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.engine import ids as id_runs
from fraudstream.engine.ids import IdSet
from fraudstream.engine.pipeline import Dedup


def ids(*values: str) -> pa.Array:
    return pa.array(list(values), pa.string())


def test_duplicates_within_and_across_batches_and_generations() -> None:
    dedup = Dedup(horizon=3)
    assert dedup.admit(ids("a", "b", "a")).tolist() == [2]
    assert dedup.admit(ids("c", "b")).tolist() == [1]  # "c" fills the generation: it rotates
    assert dedup.admit(ids("a", "d")).tolist() == [0]  # "a" is in the previous generation
    assert "a" in dedup and "zz" not in dedup
    # The current generation (a again, d, e, f) rotates: b and c, seen only in the oldest
    # one, are forgotten; "a" was seen again, so it is still known.
    dedup.admit(ids("e", "f"))
    assert dedup.admit(ids("b")).tolist() == []
    assert dedup.admit(ids("a", "e")).tolist() == [0, 1]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.text(max_size=30), max_size=40), max_size=12))
def test_id_set_is_an_exact_set(batches: list[list[str]]) -> None:
    """Against Python's set: bytes compared exactly, growth and rehash included."""
    check_exact_set(batches)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), max_size=9), max_size=20))
def test_id_set_runs_merge_exactly(batches: list[list[str]]) -> None:
    """With runs a few ids long, every merge (tiny into small, small into big) happens; a
    snapshot taken and restored between batches changes nothing."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(id_runs, "TINY_RUN", 2)
        patch.setattr(id_runs, "SMALL_RUN", 5)
        check_exact_set([[f"{a}{len(batch)}" for a in batch] for batch in batches], restore=True)


def check_exact_set(batches: list[list[str]], restore: bool = False) -> None:
    id_set = IdSet(expected_ids=1)
    seen: set[str] = set()
    for batch in batches:
        column = pa.array(batch, pa.string())
        assert id_set.contains(column).tolist() == [value in seen for value in batch]
        expected = []
        for value in batch:
            expected.append(value in seen)
            seen.add(value)
        assert id_set.admit(column).tolist() == expected
        if restore:
            copy = IdSet(expected_ids=1)
            copy.restore({k: v.copy() for k, v in id_set.snapshot().items()})
            id_set = copy
    assert len(id_set) == len(seen)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "tx-" + "9" * 30]), max_size=4),
        max_size=30,
    ),
    st.integers(1, 6),
)
def test_dedup_of_one_id_batches_is_the_generations_model(
    batches: list[list[str]], horizon: int
) -> None:
    """An authorization's one-id batch takes its own path: the duplicates found, batch by
    batch of one to four ids, are those of the two generations held as Python sets."""
    dedup = Dedup(horizon=horizon)
    current: set[str] = set()
    previous: set[str] = set()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(id_runs, "TINY_RUN", 2)  # one-id batches merge into every run
        patch.setattr(id_runs, "SMALL_RUN", 3)
        for batch in batches:
            expected = []
            for row, value in enumerate(batch):
                if value in current or value in previous:
                    expected.append(row)
                current.add(value)
            assert dedup.admit(ids(*batch)).tolist() == expected
            if len(current) >= horizon:
                previous, current = current, set()
