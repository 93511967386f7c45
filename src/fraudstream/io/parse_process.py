"""Arrow's parse of a file's block in a child process: reading ahead without sharing the GIL.

A reader thread (:mod:`fraudstream.io.read_ahead`) parses block k+1 while the pipeline
decides block k. Arrow's parse itself releases the GIL, but the checks around it and the
pipeline's own Python code take turns on one interpreter. Measured in the fused Flink job on
two cores, a 33 MB chunk took 0.22-0.36 s to parse beside the pipeline against 0.19 s alone,
and the pipeline's 0.15 s a chunk grew to 0.16-0.25 s. Here a child Python process runs the
same work as :meth:`ParsedBlock.of` on its own core (reading every block into one reused
buffer); the table comes back as an Arrow IPC file in shared memory (``/dev/shm``), mapped
without a copy. The caller reads the block's bytes only when a row needs them: Arrow
declined the block, a row is suspect, or the decoder refuses a row (its dead letter shows
the line). The file must not change while it is read, as for any bounded input cut into
chunks before the job starts.

The result is the one :meth:`ParsedBlock.of` gives for the same bytes (a property test
holds the two equal). When anything goes wrong with the child (it cannot start, dies,
answers an error), the block is parsed in line and the child is not used again: only
slower, never different.

Protocol: one JSON line per request on the child's stdin (``path``, ``start``, ``end``:
the block's bytes; ``out``: where to write the table), one JSON line per answer on its
stdout (``lines``; ``suspect``, the packed suspect mask, when Arrow read the block; or
``error``). The child ends when its stdin closes, so it never outlives its parent.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from fraudstream.io.decode import ParsedBlock, read_columns
from fraudstream.io.limits import RecordLimits

__all__ = ["ParseProcess", "read_range"]

_SHARED_MEMORY = "/dev/shm"
_DEFAULT_LIMITS = RecordLimits()


def read_range(path: str, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of ``path``."""
    with open(path, "rb") as handle:
        handle.seek(start)
        return handle.read(end - start)


class ParseProcess:
    """A child process parsing byte ranges of files into :class:`ParsedBlock` (thread-safe:
    one request at a time)."""

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._numbers = itertools.count()
        self._directory: str | None = None
        self.broken: str | None = None  # why the child is no longer used (None: it is)
        self._start()

    def _start(self) -> None:
        try:
            shared = _SHARED_MEMORY if os.path.isdir(_SHARED_MEMORY) else None
            self._directory = tempfile.mkdtemp(prefix="fraudstream-parse-", dir=shared)
            package = str(Path(__file__).resolve().parents[2])
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [package, env.get("PYTHONPATH")]))
            self._child = subprocess.Popen(
                [self.python, "-m", "fraudstream.io.parse_process", self._directory],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        except (OSError, ValueError) as error:
            self._give_up(f"cannot start {self.python}: {error}")

    def parse(
        self, path: str, start: int, end: int, limits: RecordLimits = _DEFAULT_LIMITS
    ) -> ParsedBlock:
        """:meth:`ParsedBlock.of` of bytes ``[start, end)`` of ``path`` (Arrow on one thread)."""
        with self._lock:
            if self.broken is None:
                try:
                    return self._ask(path, start, end, limits)
                except Exception as error:  # noqa: BLE001 - any failure: parse in line
                    self._give_up(f"{type(error).__name__}: {error}")
        return ParsedBlock.of(read_range(path, start, end), threads=False, limits=limits)

    def _ask(self, path: str, start: int, end: int, limits: RecordLimits) -> ParsedBlock:
        child = self._child
        assert child is not None and child.stdin is not None and child.stdout is not None
        out = os.path.join(str(self._directory), f"{next(self._numbers)}.arrow")
        request = {"path": path, "start": start, "end": end, "out": out}
        request.update(max_record_bytes=limits.max_record_bytes, max_depth=limits.max_depth)
        child.stdin.write(json.dumps(request).encode() + b"\n")
        child.stdin.flush()
        answer = json.loads(child.stdout.readline() or b'{"error": "the child ended"}')
        if "error" in answer:
            raise RuntimeError(answer["error"])
        if answer.get("suspect") is None:
            return ParsedBlock(read_range(path, start, end), answer["lines"], None, limits)
        try:
            with pa.memory_map(out) as source:
                table = pa.ipc.open_file(source).read_all()  # maps, does not copy
        finally:
            os.unlink(out)
        packed = np.frombuffer(base64.b64decode(answer["suspect"]), dtype=np.uint8)
        suspect = np.unpackbits(packed, count=table.num_rows).astype(bool)
        # Arrow read every row: the bytes are wanted only for a suspect or invalid row (a
        # bounded file's chunk does not change while the job reads it).
        raw = functools.partial(read_range, path, start, end)
        columns = (table, suspect)
        return ParsedBlock(raw() if suspect.any() else raw, answer["lines"], columns, limits)

    def _give_up(self, why: str) -> None:
        self.broken = why
        self._stop()

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):  # a dead child's pipe: broken
                        stream.close()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def close(self) -> None:
        """Ends the child (it finishes the block it is on) and removes its files."""
        with self._lock:
            if self.broken is None:
                self.broken = "closed"
            self._stop()


class _ReadBuffer:
    """One buffer the child reads every block into: a fresh 33 MB ``bytes`` is a fresh
    memory mapping (glibc maps anything over 32 MiB), and its page faults made the read
    cost 30 ms instead of 5."""

    def __init__(self) -> None:
        self.buffer = mmap.mmap(-1, 1)

    def read(self, path: str, start: int, end: int) -> mmap.mmap:
        """Bytes ``[start, end)`` of ``path``, at the buffer's start."""
        size = end - start
        if size > len(self.buffer):
            self.buffer.close()
            self.buffer = mmap.mmap(-1, size)
        with open(path, "rb", buffering=0) as handle:
            handle.seek(start)
            view = memoryview(self.buffer)
            try:
                done = 0
                while done < size:
                    got = handle.readinto(view[done:size])
                    if not got:
                        raise EOFError(f"{path} ends before byte {end}")
                    done += got
            finally:
                view.release()
        return self.buffer


def _answer(request: dict[str, Any], buffer: _ReadBuffer) -> dict[str, Any]:
    """Parses a request's block (as :meth:`ParsedBlock.of` does) and writes the table where
    the request says."""
    path, start, end = request["path"], request["start"], request["end"]
    limits = RecordLimits(request["max_record_bytes"], request["max_depth"])
    columns, lines = read_columns(buffer.read(path, start, end), False, end - start, limits)
    if columns is None:
        return {"lines": lines, "suspect": None}
    table, suspect = columns
    with pa.OSFile(request["out"], "wb") as sink:
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    return {"lines": lines, "suspect": base64.b64encode(np.packbits(suspect).tobytes()).decode()}


def _serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The child's loop: a request line in, an answer line out, until stdin closes."""
    buffer = _ReadBuffer()
    for line in requests:
        try:
            answer = _answer(json.loads(line), buffer)
        except Exception as error:  # noqa: BLE001 - the parent parses in line instead
            answer = {"error": f"{type(error).__name__}: {error}"}
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.flush()


def main() -> None:
    """``python -m fraudstream.io.parse_process DIRECTORY``: serves stdin, then removes
    ``DIRECTORY`` (where the parent asked for tables)."""
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not break the protocol
    try:
        _serve(sys.stdin.buffer, answers)
    finally:
        if len(sys.argv) > 1:
            shutil.rmtree(sys.argv[1], ignore_errors=True)
        answers.close()
        # Nothing is left to flush or release: skip the interpreter's teardown (a fifth of a
        # second with Arrow loaded), which the parent's close() would wait for.
        os._exit(0)


if __name__ == "__main__":
    main()
