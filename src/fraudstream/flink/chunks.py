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

from fraudstream.flink.uris import local_path
from fraudstream.io.decode import ParsedBlock
from fraudstream.io.parse_process import ParseProcess, read_range
from fraudstream.io.read_ahead import AheadReader

__all__ = [
    "CHILD_MIN_BYTES",
    "Chunk",
    "chunk_reader",
    "plan_chunks",
    "read_block",
]

# Chunks smaller than this parse in a few milliseconds: not worth a child process's start.
CHILD_MIN_BYTES = 262_144


@dataclass(frozen=True, slots=True)
class Chunk:
    """Lines ``[start, end)`` (bytes) of ``path``.

    Line numbers (dead letters' positions) are counted by the reader as it reads the file's
    chunks in order, from line 1 at ``start == 0``: cutting a file then only seeks, never
    reads it (the client cuts while the JVM starts, on the same two cores).
    """

    index: int
    path: str
    start: int
    end: int
    last: bool
    first_line: int = 0  # the chunk's first line number, when the plan counted lines

    @property
    def first_of_file(self) -> bool:
        """Whether the chunk starts its file (its first line is line 1)."""
        return self.start == 0

    def to_json(self) -> str:
        """The descriptor as the source sends it (a JSON array)."""
        return json.dumps([self.index, self.path, self.start, self.end, self.last, self.first_line])

    @classmethod
    def from_json(cls, text: str) -> Chunk:
        """A descriptor from :meth:`to_json`."""
        index, path, start, end, last, first_line = json.loads(text)
        return cls(index, path, start, end, last, first_line)


def plan_chunks(paths: list[str], hint: int, count_lines: bool = False) -> list[Chunk]:
    """Every file cut at line ends into chunks of at least ``hint`` bytes (the last: less);
    with ``count_lines``, each chunk knows its first line number (reading the files), so
    chunks can be decoded in any order and on any subtask.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as f:
    ...     _ = f.write(b"aaaa\\nbb\\ncccccc\\nd\\n")
    >>> [(c.start, c.end, c.last) for c in plan_chunks([f.name], 6)]
    [(0, 8, False), (8, 15, False), (15, 17, True)]
    >>> read_block(plan_chunks([f.name], 6)[1])
    b'cccccc\\n'
    """
    chunks: list[Chunk] = []
    files = [p for path in paths for p in _files(local_path(path))]
    for number, path in enumerate(files):
        size = path.stat().st_size
        start, line = 0, 1
        with path.open("rb") as handle:
            while start < size:
                handle.seek(max(start + hint - 1, start))
                handle.readline()
                end = min(handle.tell(), size)
                chunks.append(Chunk(len(chunks), str(path), start, end, False, line))
                if count_lines:
                    line += read_range(str(path), start, end).count(b"\n")
                start = end
        if number == len(files) - 1 and chunks:
            last = chunks[-1]
            chunks[-1] = Chunk(last.index, last.path, last.start, last.end, True, last.first_line)
    return chunks


def read_block(chunk: Chunk) -> bytes:
    """The chunk's bytes: whole lines, as the embedded file source reads them."""
    return read_range(chunk.path, chunk.start, chunk.end)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return [path]


def chunk_reader(plan: list[Chunk]) -> AheadReader[Chunk, ParsedBlock]:
    """Reads a chunk of ``plan`` as a :class:`ParsedBlock`, the plan's next two chunks being
    read and parsed meanwhile (a chunk not in the plan is read in line): the first chunk on a
    worker thread (while the operator loads its kernels), the others, when they hold
    ``CHILD_MIN_BYTES`` or more, in a child process (:mod:`fraudstream.io.parse_process`),
    which shares no GIL with the pipeline deciding the chunk before. Two ahead: the child
    starts on the second chunk at once instead of after the first one is parsed, and a chunk
    that parses slowly (a busy core) does not stall the pipeline. Arrow's own threads are not
    used: both cores are busy already."""
    worth_it = len(plan) > 1 and plan[1].end - plan[1].start >= CHILD_MIN_BYTES
    process = ParseProcess() if worth_it else None

    def parsed(chunk: Chunk) -> ParsedBlock:
        if process is None or chunk.index == 0:
            return ParsedBlock.of(read_block(chunk), threads=False)
        return process.parse(chunk.path, chunk.start, chunk.end)

    def following(chunk: Chunk) -> Chunk | None:
        index = chunk.index + 1
        in_plan = chunk.index < len(plan) and plan[chunk.index] == chunk
        return plan[index] if in_plan and index < len(plan) else None

    reader = AheadReader(parsed, following, process.close if process is not None else None, depth=2)
    if plan:
        reader.start(plan[0])  # while the job starts
    return reader
