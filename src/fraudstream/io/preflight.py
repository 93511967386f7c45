"""Checks an input file as a whole before a run reads it: the format it is read as, and, for
CSV and Parquet, the required columns in its header.

A wrong file as a whole (a CSV read as Parquet, JSON lines read as CSV, a CSV without an
``amount`` column) would otherwise make every record a dead letter, or stop the run in the
Parquet reader; this says so in one line, with what to do. Single bad records still go to
the dead letters: JSON lines are not checked here, since every line stands alone.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fraudstream.config import ConfigError
from fraudstream.schema import REQUIRED

__all__ = ["check_input_file", "looks_like"]

# a card column may be named as any of these (schema.normalise takes the first present)
CARD_COLUMNS = ("card_id", "account_id", "card_number")
SNIFF_BYTES = 64 * 1024
FORMAT_HINT = "give --format jsonl, csv or parquet to say which it is"


def looks_like(head: bytes) -> str:
    """What the first bytes of a file look like: parquet, jsonl, csv or text.

    >>> looks_like(b"PAR1..."), looks_like(b'{"amount": 1}\\n'), looks_like(b"a,b\\n1,2\\n")
    ('parquet', 'jsonl', 'csv')
    """
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith((b"{", b"[")):
        return "jsonl"
    first = text.split(b"\n", 1)[0]
    if b"," in first:
        return "csv"
    return "text"


def missing_columns(columns: list[str]) -> list[str]:
    """The required fields a header lacks (a card column may be any of its aliases).

    >>> missing_columns(["transaction_id", "card_number", "timestamp"])
    ['amount']
    """
    present = {column.strip() for column in columns}
    missing = [name for name in REQUIRED if name != "card_id" and name not in present]
    if not present.intersection(CARD_COLUMNS):
        missing.insert(1, "card_id (or account_id, card_number)")
    return missing


def check_input_file(path: Path, fmt: str, option: str = "--input") -> None:
    """Raises :class:`ConfigError` (one line: what, where, what to do) when ``path`` is no
    input file of format ``fmt``."""
    if path.is_dir():
        raise ConfigError(
            f"{option} {path}: a directory; give a .jsonl, .csv or .parquet file (or - for stdin)"
        )
    if not path.is_file():
        raise ConfigError(f"{option} {path}: no such file")
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head:
        return  # an empty file decides nothing and says so in its summary
    seen = looks_like(head)
    if fmt == "parquet":
        _check_parquet(path, seen, option)
    elif fmt == "csv":
        if seen in ("jsonl", "parquet"):
            raise ConfigError(
                f"{option} {path}: read as CSV but it looks like {_named(seen)}; "
                f"use --format {seen}"
            )
        header = next(csv.reader(io.StringIO(head.decode("utf-8", "replace"))), [])
        missing = missing_columns(header)
        if missing:
            raise ConfigError(
                f"{option} {path}: the CSV header has no {', '.join(missing)} column"
                f" (columns: {', '.join(header[:12])}); every record needs "
                f"{', '.join(REQUIRED)}"
            )
    elif fmt == "jsonl" and seen == "parquet":
        raise ConfigError(
            f"{option} {path}: read as JSON lines but it is Parquet; use --format parquet"
        )


def _check_parquet(path: Path, seen: str, option: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        guess = (
            f"it looks like {_named(seen)}; use --format {seen}"
            if seen in ("csv", "jsonl")
            else FORMAT_HINT
        )
        reason = str(exc).split(".")[0]
        raise ConfigError(f"{option} {path}: not a Parquet file ({reason}); {guess}") from None
    missing = missing_columns(list(schema.names))
    if missing:
        raise ConfigError(
            f"{option} {path}: the Parquet file has no {', '.join(missing)} column; every "
            f"record needs {', '.join(REQUIRED)}"
        )


def _named(kind: str) -> str:
    return {"jsonl": "JSON lines", "csv": "CSV", "parquet": "Parquet"}.get(kind, kind)
