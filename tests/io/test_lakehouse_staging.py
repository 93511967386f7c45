"""Lakehouse rows staged in part files (Flink's lakehouse): each visible part reaches the table
exactly once, whatever sweeps it and wherever a sweep crashes; hidden parts never do."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_lakehouse import decided, ids_of

from fraudstream.config import ConfigError
from fraudstream.decide import Decisions
from fraudstream.io.lakehouse import lakehouse_rows, open_table
from fraudstream.io.lakehouse_staging import (
    STAGED_PARTS_PROPERTY,
    commit_staged,
    in_progress,
    rows_line,
    rows_of_line,
    staging_dir,
)

BATCHES = decided(1200)  # batches of 500, 500 and 200 decisions, over four days


def stage(staging: Path, name: str, batches: list[Decisions], visible: bool = True) -> None:
    """A part file as Flink's FileSink leaves it: hidden while in progress, then renamed."""
    staging.mkdir(parents=True, exist_ok=True)
    lines = "".join(rows_line(lakehouse_rows(d, "flink", 0)) + "\n" for d in batches)
    hidden = staging / f".lakehouse-{name}.rows.inprogress.0"
    hidden.write_text(lines)
    if visible:
        hidden.rename(staging / f"lakehouse-{name}.rows")


def ids(batches: list[Decisions]) -> list[str]:
    return sorted(tid for d in batches for tid in d.tx.transaction_id.to_pylist())


def test_a_batch_survives_the_line_whole() -> None:
    rows = lakehouse_rows(BATCHES[0], "flink", 0)
    line = rows_line(rows)
    assert "\n" not in line
    assert rows_of_line(line).equals(rows)  # features struct, timestamps, nulls, lists


def test_visible_parts_are_committed_once_and_removed(tmp_path: Path) -> None:
    lake, staging = tmp_path / "lake", tmp_path / "lake" / "flink-staging"
    stage(staging, "a-0", BATCHES[:1])
    stage(staging, "b-0", BATCHES[1:2])
    stage(staging, "c-0", BATCHES[2:], visible=False)  # its checkpoint has not completed
    done = commit_staged(str(lake), str(staging))
    assert (done.appended_parts, done.rows, done.already_committed) == (2, 1000, 0)
    assert ids_of(lake) == ids(BATCHES[:2])
    assert in_progress(str(staging)) and not list(staging.glob("lakehouse-*"))
    [snapshot] = open_table(str(lake)).snapshots()
    assert snapshot.summary is not None
    listed = snapshot.summary.additional_properties[STAGED_PARTS_PROPERTY]
    assert listed == '["lakehouse-a-0.rows","lakehouse-b-0.rows"]'
    assert commit_staged(str(lake), str(staging)).rows == 0  # nothing new: no snapshot
    assert len(open_table(str(lake)).snapshots()) == 1


def test_a_sweep_that_crashed_after_its_commit_only_deletes_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake, staging = tmp_path / "lake", tmp_path / "staging"
    stage(staging, "a-0", BATCHES[:2])

    def crash(path: str) -> None:
        raise OSError("killed before the delete")

    monkeypatch.setattr(os, "remove", crash)
    with pytest.raises(OSError):
        commit_staged(str(lake), str(staging))
    monkeypatch.undo()
    assert ids_of(lake) == ids(BATCHES[:2])  # committed, the part still there
    stage(staging, "b-0", BATCHES[2:])
    done = commit_staged(str(lake), str(staging))
    assert (done.appended_parts, done.already_committed) == (1, 1)
    assert ids_of(lake) == ids(BATCHES)  # each once


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, len(BATCHES) - 1)),
        st.tuples(st.just("finish"), st.integers(0, 7)),
        st.tuples(st.just("sweep"), st.booleans()),  # True: crash before the delete
    ),
    max_size=8,
)


@settings(max_examples=15, deadline=None)
@given(OPERATIONS)
def test_every_finished_part_lands_exactly_once_whatever_crashes(
    operations: list[tuple[str, object]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        lake, staging = Path(directory) / "lake", Path(directory) / "staging"
        staging.mkdir()
        hidden: list[tuple[str, int]] = []  # parts in progress: name, batch index
        finished: list[int] = []
        for step, (operation, argument) in enumerate(operations):
            if operation == "write":
                name = f"p{step}-0"
                stage(staging, name, [BATCHES[int(str(argument))]], visible=False)
                hidden.append((name, int(str(argument))))
            elif operation == "finish" and hidden:
                name, index = hidden.pop(int(str(argument)) % len(hidden))
                (staging / f".lakehouse-{name}.rows.inprogress.0").rename(
                    staging / f"lakehouse-{name}.rows"
                )
                finished.append(index)
            elif operation == "sweep":
                _sweep(lake, staging, crash=bool(argument))
                if finished:  # only finished parts, none twice (a batch may be staged twice)
                    committed = Counter(ids_of(lake))
                    assert committed <= Counter(ids([BATCHES[i] for i in finished]))
        _sweep(lake, staging, crash=False)
        expected = ids([BATCHES[i] for i in finished])
        assert (ids_of(lake) if expected else []) == expected


def _sweep(lake: Path, staging: Path, crash: bool) -> None:
    if not crash:
        commit_staged(str(lake), str(staging))
        return
    remove = os.remove

    def killed(path: str) -> None:
        raise OSError("killed")

    os.remove = killed  # type: ignore[assignment]
    try:
        commit_staged(str(lake), str(staging))
    except OSError:
        pass
    finally:
        os.remove = remove


def test_where_rows_wait(tmp_path: Path) -> None:
    assert staging_dir(str(tmp_path / "lake")) == str(tmp_path / "lake" / "flink-staging")
    catalog = tmp_path / "catalog.yaml"
    assert staging_dir(str(catalog)) == str(tmp_path / "catalog.yaml.flink-staging")
    with pytest.raises(ConfigError, match="--lakehouse-staging"):
        staging_dir("catalog:prod")
