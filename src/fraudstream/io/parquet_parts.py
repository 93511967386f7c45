"""Parquet output of a checkpointed run: a directory of part files, one per checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fraudstream.io.files import ParquetSink

__all__ = ["ParquetParts"]


class ParquetParts:
    """Parquet output of a checkpointed run: a directory of part files, one per checkpoint.

    A Parquet file cannot be cut back after a crash (its footer comes last), so each
    checkpoint closes the current part (``part-00000.parquet``, ...); the commit marker is the
    number of finished parts, and a resumed run deletes any part after it. Readers (pyarrow,
    DuckDB, pandas) read the directory as one dataset.
    """

    def __init__(self, target: str, resume: dict[str, Any] | None = None) -> None:
        self.target = Path(target)
        if self.target.is_file():
            raise ValueError(f"{target}: a checkpointed Parquet output is a directory of parts")
        self.target.mkdir(parents=True, exist_ok=True)
        self.parts = int(resume.get("parts", 0)) if resume is not None else 0
        for part in self.target.glob("part-*.parquet"):
            if int(part.stem.split("-")[1]) >= self.parts:
                part.unlink()  # written after the checkpoint we resume from (or a fresh run)
        for partial in self.target.glob(".part-*.inprogress"):
            partial.unlink()  # a part a crash left unfinished
        self.schema: pa.Schema | None = None
        if self.parts:
            self.schema = pq.read_schema(self._name(0))
        self.current: ParquetSink | None = None
        self.count = 0

    def _name(self, index: int) -> Path:
        return self.target / f"part-{index:05d}.parquet"

    def _part(self) -> ParquetSink:
        if self.current is None:
            # Hidden while written: dataset readers skip names starting with "."
            partial = self.target / f".{self._name(self.parts).name}.inprogress"
            self.current = ParquetSink(str(partial), self.schema)
        return self.current

    def write_table(self, table: pa.Table) -> None:
        """Appends a table to the current part."""
        self._part().write_table(table)
        self.count += table.num_rows

    def write_dicts(self, records: list[dict[str, Any]]) -> None:
        """Appends records to the current part."""
        self._part().write_dicts(records)
        self.count += len(records)

    def checkpoint(self) -> dict[str, Any]:
        """Finishes the current part (if any rows) and returns the number of parts."""
        part = self.current
        if part is not None and part.writer is not None:
            self.schema = part.schema
            part.close()
            final = self._name(self.parts)
            with open(part.target, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(part.target, final)
            self.parts += 1
        self.current = None
        return {"parts": self.parts}

    def flush(self) -> None:
        """Rows become readable when their part is finished at a checkpoint."""

    def close(self) -> None:
        """Finishes the current part."""
        self.checkpoint()
