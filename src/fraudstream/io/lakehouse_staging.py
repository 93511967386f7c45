"""Lakehouse rows staged in part files and appended to Iceberg exactly once.

A runtime that cannot commit to Iceberg at its own checkpoints stages rows instead: Flink's
Python operators have no checkpoint-complete hook, but Flink's ``FileSink`` makes a part file
visible (renames it from a hidden in-progress name) only when the checkpoint holding it has
completed. Each micro-batch's lakehouse rows (:func:`~fraudstream.io.lakehouse.lakehouse_rows`,
the embedded sink's own rows) travel as one line, an Arrow IPC stream in base64, so every
type survives (the features struct, timestamps, nulls).

:func:`commit_staged` sweeps a staging directory: every visible part not yet in the table is
appended, all in one snapshot whose summary lists the parts it holds
(``fraudstream.staged-parts``); then the parts are deleted. A crash after the append and
before the delete leaves parts the next sweep finds listed, and only deletes. Hidden
(in-progress) files belong to no completed checkpoint and are never read. So each row of a
completed checkpoint reaches the table exactly once, whoever sweeps: the job's own committer,
the client when the job ends, or ``fraudstream flink lakehouse-commit``. (Expiring the
table's snapshots while a sweep runs could drop the listing of parts it just committed and
not yet deleted: expire between sweeps, or with the job stopped.)

>>> import pyarrow as pa
>>> rows = pa.table({"transaction_id": ["tx-1"], "score": [0.5]})
>>> rows_of_line(rows_line(rows)).equals(rows)
True
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pyiceberg.table import Table

from fraudstream.config import ConfigError
from fraudstream.io.lakehouse import append_rows, open_table

STAGED_PARTS_PROPERTY = "fraudstream.staged-parts"
PART_PREFIX = "lakehouse"
PART_SUFFIX = ".rows"
STAGING_NAME = "flink-staging"
__all__ = [
    "PART_PREFIX",
    "PART_SUFFIX",
    "STAGED_PARTS_PROPERTY",
    "StagedCommit",
    "commit_staged",
    "in_progress",
    "rows_line",
    "rows_of_line",
    "staging_dir",
    "visible_parts",
]


def rows_line(rows: pa.Table) -> str:
    """``rows`` as one line of text: an Arrow IPC stream in base64 (no newline in it)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")


def rows_of_line(line: str) -> pa.Table:
    """The rows a :func:`rows_line` line holds."""
    return pa.ipc.open_stream(base64.b64decode(line)).read_all()


def staging_dir(location: str, staging: str | None = None) -> str:
    """Where a lakehouse's rows wait for their commit: ``staging`` when given, else
    ``DIR/flink-staging`` for a directory lakehouse or ``FILE.flink-staging`` beside a
    catalog file (an absolute path: every TaskManager of this machine sees the same one).

    >>> staging_dir("/data/lake")
    '/data/lake/flink-staging'
    >>> staging_dir("catalog:prod", "s3://bucket/staging")
    's3://bucket/staging'
    """
    if staging:
        return staging
    if location.startswith("catalog:"):
        raise ConfigError(
            f"--lakehouse {location}: give --lakehouse-staging DIR, a directory every "
            "TaskManager and the client can reach, for the rows waiting for their commit"
        )
    path = Path(location).resolve()
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        return str(path.with_name(path.name + "." + STAGING_NAME))
    return str(path / STAGING_NAME)


def visible_parts(staging: str) -> list[str]:
    """The committed part files (their names, oldest name first), not hidden ones."""
    if not os.path.isdir(staging):
        return []
    return sorted(
        name
        for name in os.listdir(staging)
        if name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX)
    )


def in_progress(staging: str) -> bool:
    """Whether parts are still being written (hidden: not yet in a completed checkpoint)."""
    return os.path.isdir(staging) and any(
        name.startswith("." + PART_PREFIX) for name in os.listdir(staging)
    )


@dataclass(frozen=True)
class StagedCommit:
    """What one sweep did: parts appended (and their rows), parts found already committed."""

    appended_parts: int = 0
    rows: int = 0
    already_committed: int = 0


def committed_parts(table: Table) -> set[str]:
    """Every part name listed by the table's snapshots."""
    names: set[str] = set()
    for snapshot in table.snapshots():
        listed = (
            None
            if snapshot.summary is None
            else snapshot.summary.additional_properties.get(STAGED_PARTS_PROPERTY)
        )
        if listed:
            names.update(json.loads(listed))
    return names


def commit_staged(
    location: str, staging: str, properties: dict[str, str] | None = None
) -> StagedCommit:
    """Appends every visible part of ``staging`` not yet in the lakehouse (one snapshot, its
    summary listing the parts and ``properties``), then deletes the parts."""
    parts = visible_parts(staging)
    if not parts:
        return StagedCommit()
    with _sweeping(staging):
        parts = visible_parts(staging)  # another sweeper may have taken some meanwhile
        tables = {name: _read_part(os.path.join(staging, name)) for name in parts}
        table = _open(location, [rows for rows in tables.values() if rows is not None])
        done = committed_parts(table) if table is not None else set()
        new = [name for name in parts if name not in done]
        new_rows = [rows for name in new if (rows := tables[name]) is not None]
        appended = 0
        if new_rows:  # (then the table exists: _open created it from these rows' schema)
            assert table is not None
            batch = pa.concat_tables(new_rows, promote_options="permissive")
            listing = {STAGED_PARTS_PROPERTY: json.dumps(new, separators=(",", ":"))}
            append_rows(table, batch, {**(properties or {}), **listing})
            appended = batch.num_rows
        for name in parts:
            os.remove(os.path.join(staging, name))
        return StagedCommit(len(new), appended, len(parts) - len(new))


def _open(location: str, rows: list[pa.Table]) -> Table | None:
    """The table, or None when it does not exist yet and nothing would create it."""
    try:
        return open_table(location, rows[0].schema if rows else None)
    except ConfigError:
        return None


def _read_part(path: str) -> pa.Table | None:
    """A part's rows (None for an empty part)."""
    with open(path, encoding="ascii") as handle:
        tables = [rows_of_line(line) for line in handle if line.strip()]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


@contextmanager
def _sweeping(staging: str) -> Iterator[None]:
    """One sweeper at a time per staging directory (an advisory lock beside the parts)."""
    with open(os.path.join(staging, ".sweep.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
