"""Bounded files as chunks: the Flink source emits chunk descriptors, the sequencer reads them.

A backtest reads whole files, so the job's source does not need to send every line through
Flink one by one: the client cuts each file into byte ranges at line ends (the embedded file
source's cut: a chunk ends with the line that brings it to ``hint`` bytes, so both runtimes
see the same micro-batches) and Flink's bounded collection source sends one small descriptor
per chunk. The sequencer reads a chunk's lines itself and records in Flink state the index of
the next chunk it expects, so a chunk replayed after a restart is skipped: exactly once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fraudstream.io.decode import ParsedBlock
from fraudstream.io.read_ahead import AheadReader

__all__ = ["Chunk", "chunk_reader", "plan_chunks", "read_block"]


@dataclass(frozen=True, slots=True)
class Chunk:
    """Lines ``[start, end)`` (bytes) of ``path``; its first line is line ``first_line``."""

    index: int
    path: str
    start: int
    end: int
    first_line: int
    last: bool

    def to_json(self) -> str:
        """The descriptor as the source sends it (a JSON array)."""
        return json.dumps([self.index, self.path, self.start, self.end, self.first_line, self.last])

    @classmethod
    def from_json(cls, text: str) -> Chunk:
        """A descriptor from :meth:`to_json`."""
        index, path, start, end, first_line, last = json.loads(text)
        return cls(index, path, start, end, first_line, last)


def plan_chunks(paths: list[str], hint: int) -> list[Chunk]:
    """Every file cut at line ends into chunks of at least ``hint`` bytes (the last: less).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as f:
    ...     _ = f.write(b"aaaa\\nbb\\ncccccc\\nd\\n")
    >>> [(c.start, c.end, c.first_line) for c in plan_chunks([f.name], 6)]
    [(0, 8, 1), (8, 15, 3), (15, 17, 4)]
    >>> read_block(plan_chunks([f.name], 6)[1])
    b'cccccc\\n'
    """
    chunks: list[Chunk] = []
    files = [p for path in paths for p in _files(Path(path))]
    for number, path in enumerate(files):
        size = path.stat().st_size
        start, line = 0, 1
        with path.open("rb") as handle:
            while start < size:
                handle.seek(max(start + hint - 1, start))
                handle.readline()
                end = min(handle.tell(), size)
                handle.seek(start)
                lines = handle.read(end - start).count(b"\n")
                if end == size and not _ends_with_newline(path, size):
                    lines += 1
                chunks.append(Chunk(len(chunks), str(path), start, end, line, False))
                start, line = end, line + lines
        if number == len(files) - 1 and chunks:
            last = chunks[-1]
            chunks[-1] = Chunk(last.index, last.path, last.start, last.end, last.first_line, True)
    return chunks


def read_block(chunk: Chunk) -> bytes:
    """The chunk's bytes: whole lines, as the embedded file source reads them."""
    with open(chunk.path, "rb") as handle:
        handle.seek(chunk.start)
        return handle.read(chunk.end - chunk.start)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return [path]


def _ends_with_newline(path: Path, size: int) -> bool:
    with path.open("rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) == b"\n"


def chunk_reader(plan: list[Chunk]) -> AheadReader[Chunk, ParsedBlock]:
    """Reads a chunk of ``plan`` as a :class:`ParsedBlock`, the plan's next chunk being read
    and parsed on a worker thread meanwhile (a chunk not in the plan is read in line)."""

    def following(chunk: Chunk) -> Chunk | None:
        index = chunk.index + 1
        in_plan = chunk.index < len(plan) and plan[chunk.index] == chunk
        return plan[index] if in_plan and index < len(plan) else None

    reader = AheadReader(_parsed, following)
    if plan:
        reader.start(plan[0])  # while the job starts
    return reader


def _parsed(chunk: Chunk) -> ParsedBlock:
    # Arrow's own threads only for the first chunk: the pipeline has nothing to do meanwhile.
    return ParsedBlock.of(read_block(chunk), threads=chunk.index == 0)
