"""File and standard-input sources, and JSON-lines / Parquet / stdout sinks.

Sources yield validated micro-batches (and the dead letters of each). A live source
(standard input) yields what has arrived as soon as it arrives, and ``IDLE`` when nothing
came for the idle timeout, so the runtime can advance time without dummy records.

No input stops a source: a line over the decoder's record size limit is never held whole
(its first ``max_record_bytes + 1`` bytes are kept for the dead letter, the rest is skipped
up to its line end), and a CSV row the csv module refuses is a dead letter like any other.
"""

from __future__ import annotations

import csv
import itertools
import os
import select
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Union

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from fraudstream.engine.batch import TxBatch
from fraudstream.io.decode import DeadLetter, Decoder, ParsedBlock
from fraudstream.io.read_ahead import read_ahead

if TYPE_CHECKING:
    from fraudstream.io.aws.kinesis_sink import KinesisSink
    from fraudstream.io.aws.sqs_sns import SnsAlertSink, SqsAlertSink
    from fraudstream.io.kafka_sink import KafkaSink
    from fraudstream.io.parquet_parts import ParquetParts

Format = Literal["jsonl", "csv", "parquet"]
IDLE = None
Item = tuple[TxBatch, list[DeadLetter]] | None
BATCH_ROWS = 262_144


def guess_format(path: str) -> Format:
    """The input format from a file name (JSON lines unless .csv or .parquet)."""
    lower = path.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith(".csv"):
        return "csv"
    return "jsonl"


class FileSource:
    """A JSON-lines, CSV or Parquet file read in micro-batches, with progress in bytes."""

    live = False

    def __init__(self, path: Path, fmt: Format, batch_rows: int = BATCH_ROWS) -> None:
        self.path = path
        self.format = fmt
        self.batch_rows = batch_rows
        self.total_bytes = path.stat().st_size
        self.done_bytes = 0
        # Checkpoint position after the last batch yielded: JSON lines -> byte offset and
        # line number; CSV -> data rows read; Parquet -> rows read.
        self._offset = 0
        self._line = 0
        self._rows = 0

    def position(self) -> dict[str, Any]:
        """Where reading stands after the last batch yielded (for a checkpoint)."""
        return {
            "format": self.format,
            "file": self.path.name,
            "offset": self._offset,
            "line": self._line,
            "rows": self._rows,
        }

    def seek(self, position: dict[str, Any]) -> None:
        """Resumes right after ``position`` (taken from an earlier run over the same file)."""
        if position.get("format") != self.format:
            raise ValueError(
                f"checkpoint was taken on a {position.get('format')} input, not {self.format}"
            )
        offset = int(position.get("offset", 0))
        if offset > self.total_bytes:
            raise ValueError(
                f"checkpoint position {offset} is past the end of {self.path} "
                f"({self.total_bytes} bytes): is it the same file?"
            )
        self._offset = offset
        self._line = int(position.get("line", 0))
        self._rows = int(position.get("rows", 0))
        self.done_bytes = offset

    def commit(self, position: dict[str, Any]) -> None:
        """Nothing to do: a file is read again from the checkpoint's position."""

    def batches(self, decoder: Decoder) -> Iterator[Item]:
        """Validated batches in file order."""
        if self.format == "parquet":
            yield from self._parquet(decoder)
        elif self.format == "csv":
            yield from self._csv(decoder)
        else:
            yield from self._jsonl(decoder)

    def _jsonl(self, decoder: Decoder) -> Iterator[Item]:
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            # the next block is read and parsed while this one is decided
            limits = decoder.limits

            def parse_ahead(read: tuple[bytes, int]) -> tuple[ParsedBlock, int]:
                data, offset = read
                return ParsedBlock.of(data, threads=False, limits=limits), offset

            blocks = self._blocks(handle, limits.max_record_bytes)
            for block, offset in read_ahead(blocks, parse_ahead):
                first = self._line + 1
                self._line += block.lines
                self.done_bytes = self._offset = offset
                yield decoder.block(block, first, time.time() * 1000)

    def _blocks(self, handle: IO[bytes], max_line: int) -> Iterator[tuple[bytes, int]]:
        """Blocks of whole lines up to the one that reaches the read size (as readlines(hint)
        cuts), each with the offset after it. That last line is read on for at most
        ``max_line + 1`` bytes: the rest of a longer one is skipped (it is refused anyway)."""
        while data := handle.read(self.batch_rows * 128):
            if not data.endswith(b"\n"):
                data += _rest_of_line(handle, max_line)
            yield data, handle.tell()

    def _csv(self, decoder: Decoder) -> Iterator[Item]:
        max_bytes = decoder.limits.max_record_bytes
        if csv.field_size_limit() < max_bytes:  # the csv module's own cap on one field
            csv.field_size_limit(max_bytes)
        # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first header
        with self.path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
            rows: list[dict[str, Any]] = []
            positions: list[int] = []
            dead: list[DeadLetter] = []
            read = _csv_rows(csv.DictReader(handle), max_bytes, decoder.limits.too_long_reason)
            for _ in itertools.islice(read, self._rows):  # resuming: skip rows already read
                pass
            for line, row in read:
                if isinstance(row, str):  # refused before it was a record: why
                    dead.append(DeadLetter(decoder.source, line, row, ""))
                else:
                    rows.append(row)
                    positions.append(line)
                if len(rows) + len(dead) >= self.batch_rows:
                    self._rows += len(rows) + len(dead)
                    yield self._csv_batch(decoder, rows, positions, dead)
                    self.done_bytes = min(self.total_bytes, self.done_bytes + 1)
                    rows, positions, dead = [], [], []
            if rows or dead:
                self._rows += len(rows) + len(dead)
                yield self._csv_batch(decoder, rows, positions, dead)
            self.done_bytes = self.total_bytes

    @staticmethod
    def _csv_batch(
        decoder: Decoder,
        rows: list[dict[str, Any]],
        positions: list[int],
        refused: list[DeadLetter],
    ) -> Item:
        now = time.time() * 1000
        batch, dead = decoder.records(rows, positions, [now] * len(rows))
        if refused:
            dead = sorted(dead + refused, key=lambda letter: letter.position)
        return batch, dead

    def _parquet(self, decoder: Decoder) -> Iterator[Item]:
        parquet = pq.ParquetFile(self.path)
        total_rows = max(parquet.metadata.num_rows, 1)
        # Resuming: start at the row group holding the next row, then drop the rows before it.
        first_group, skip = 0, self._rows
        groups = parquet.metadata.num_row_groups
        while first_group < groups and skip >= parquet.metadata.row_group(first_group).num_rows:
            skip -= parquet.metadata.row_group(first_group).num_rows
            first_group += 1
        position = self._rows + 1
        batches = parquet.iter_batches(
            batch_size=self.batch_rows,
            row_groups=range(first_group, groups),
            use_threads=False,
        )
        for record_batch in batches:
            if skip:
                dropped = min(skip, record_batch.num_rows)
                record_batch = record_batch.slice(dropped)
                skip -= dropped
                if record_batch.num_rows == 0:
                    continue
            item = decoder.table(record_batch, position, time.time() * 1000)
            position += record_batch.num_rows
            self._rows = position - 1
            self.done_bytes = int(self.total_bytes * (position - 1) / total_rows)
            yield item


def _csv_rows(
    reader: csv.DictReader[str], max_bytes: int, too_long: str
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Each CSV row as (its line number, the record), or (its first line number, why it was
    refused): a row the csv module cannot read, or one longer than ``max_bytes``."""
    while True:
        first_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield first_line, f"record: {exc}"
            continue
        record = {k: (None if v == "" else v) for k, v in row.items() if k}
        size = sum(len(v) for v in record.values() if isinstance(v, str))
        yield reader.line_num, (too_long if size > max_bytes else record)


def _rest_of_line(handle: IO[bytes], max_line: int) -> bytes:
    """The rest of the line ``handle`` is in, or its first ``max_line + 1`` bytes and a line
    end when it is longer (the rest skipped, the handle left after its line end)."""
    rest = handle.readline(max_line + 1)
    if len(rest) <= max_line or rest.endswith(b"\n"):
        return rest
    more = b""
    while (more := handle.readline(1 << 20)) and not more.endswith(b"\n"):
        pass
    return rest + (b"\n" if more else b"")


class StdinSource:
    """JSON lines from a pipe, decided as they arrive (each line stamped on arrival)."""

    live = True
    total_bytes = 0
    done_bytes = 0

    def __init__(self, stream: IO[bytes] | None = None, idle_timeout_ms: int = 1_000) -> None:
        self.stream = stream or sys.stdin.buffer
        self.idle_timeout_s = idle_timeout_ms / 1000
        self._lines = 0

    def position(self) -> dict[str, Any]:
        """Lines read so far (a pipe cannot be read again, so this is for the record only)."""
        return {"format": "stdin", "line": self._lines}

    def seek(self, position: dict[str, Any]) -> None:
        """A pipe cannot rewind: resuming means the producer sends what follows the position."""
        self._lines = int(position.get("line", 0))

    def commit(self, position: dict[str, Any]) -> None:
        """Nothing to do for a pipe."""

    def batches(self, decoder: Decoder) -> Iterator[Item]:
        """Whatever lines are available, as soon as they are; IDLE after a quiet timeout."""
        fd = self.stream.fileno()
        max_line = decoder.limits.max_record_bytes
        partial = b""
        position = self._lines
        idle_reported = False
        while True:
            ready, _, _ = select.select([fd], [], [], self.idle_timeout_s)
            if not ready:
                if not idle_reported:
                    idle_reported = True
                    yield IDLE
                continue
            chunk = os.read(fd, 1 << 20)
            now = time.time() * 1000
            if not chunk:
                break
            idle_reported = False
            data = partial + chunk
            parts = data.split(b"\n")
            partial = parts.pop()
            if len(partial) > max_line:  # refused anyway: its head is enough to say so
                partial = partial[: max_line + 1]
            lines, positions = [], []
            for line in parts:
                position += 1
                if line.strip():
                    lines.append(line.rstrip(b"\r"))
                    positions.append(position)
            self._lines = position
            if lines:
                yield decoder.lines(lines, positions, [now] * len(lines))
        if partial.strip():
            position += 1
            self._lines = position
            yield decoder.lines([partial], [position], [time.time() * 1000])


# --- sinks -----------------------------------------------------------------------------------


class JsonLinesSink:
    """Records as JSON lines, to a file or standard output ('-').

    Checkpoints: :meth:`checkpoint` makes the file durable and returns its size; a resumed run
    opens it with that marker (``resume``) and truncates whatever came after it.
    """

    def __init__(self, target: str, resume: dict[str, Any] | None = None) -> None:
        self.target = target
        self._encoder = msgspec.json.Encoder()
        if target == "-":
            self.handle: IO[bytes] = sys.stdout.buffer
        else:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            if resume is None:
                self.handle = open(target, "wb")  # noqa: SIM115 - closed in close()
            else:
                size = int(resume.get("bytes", 0))
                have = path.stat().st_size if path.exists() else 0
                if have < size:
                    raise ValueError(
                        f"{target}: {have} bytes, but the checkpoint recorded {size}: "
                        "the output was changed since"
                    )
                os.truncate(target, size) if path.exists() else path.touch()
                self.handle = open(target, "ab")  # noqa: SIM115 - closed in close()
        self.count = 0

    def checkpoint(self) -> dict[str, Any]:
        """Flushes to disk; returns the commit marker (the file's size)."""
        self.handle.flush()
        if self.target == "-":
            return {}
        os.fsync(self.handle.fileno())
        return {"bytes": os.fstat(self.handle.fileno()).st_size}

    def write_dicts(self, records: list[dict[str, Any]]) -> None:
        """Appends records."""
        if not records:
            return
        encode = self._encoder.encode_into
        data = bytearray()
        for record in records:
            encode(record, data, -1)
            data.extend(b"\n")
        self.handle.write(data)
        self.count += len(records)

    def flush(self) -> None:
        """Pushes written records to the file or pipe."""
        self.handle.flush()

    def close(self) -> None:
        """Flushes and closes (standard output stays open)."""
        self.flush()
        if self.target != "-":
            self.handle.close()


class ParquetSink:
    """Records as a Parquet file, one row group per written batch."""

    def __init__(self, target: str, schema: pa.Schema | None = None) -> None:
        self.target = target
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        self.writer: pq.ParquetWriter | None = None
        self.schema = schema  # given: the file takes this schema (parts of one output)
        self.count = 0

    def write_table(self, table: pa.Table) -> None:
        """Appends a table (cast to the file's schema after the first)."""
        if table.num_rows == 0:
            return
        if self.writer is None and self.schema is not None:
            self._open(self.schema)
        if self.writer is None:
            self._open(table.schema)
        if self.writer is not None and table.schema != self.writer.schema:
            table = table.cast(self.writer.schema)
        assert self.writer is not None
        self.writer.write_table(table)
        self.count += table.num_rows

    def _open(self, schema: pa.Schema) -> None:
        if self.writer is None:
            # Ids are (nearly) unique per row: dictionary-encoding them only costs time.
            unique = {"transaction_id", "previous_transaction_id", "card_id", "user_id"}
            unique |= {"reasons", "raw", "more"}
            strings = []
            for f in schema:
                children = list(f.type) if pa.types.is_struct(f.type) else [f]
                prefix = f"{f.name}." if pa.types.is_struct(f.type) else ""
                strings += [
                    prefix + c.name
                    for c in children
                    if pa.types.is_string(c.type) and c.name not in unique
                ]
            # Dictionary-encode only text; float features do not repeat and statistics on
            # them cost more than they help a reader of decisions.
            self.writer = pq.ParquetWriter(
                self.target,
                schema,
                compression="lz4",
                use_dictionary=strings or False,
                write_statistics=["event_time"] if "event_time" in schema.names else False,
            )
            self.schema = schema

    def write_dicts(self, records: list[dict[str, Any]]) -> None:
        """Appends records; nested values are stored as JSON text.

        The file's columns are the union of the first batch's fields, plus ``more``: any
        field a later record brings, or a value that does not fit its column's type, is kept
        there as JSON text, so nothing is dropped.
        """
        if not records:
            return
        rows = [{k: _flat(v) for k, v in r.items()} for r in records]
        if self.writer is None and self.schema is None:
            names = list(dict.fromkeys(k for r in rows for k in r))
            columns = {}
            for name in names:
                values = [r.get(name) for r in rows]
                try:
                    columns[name] = pa.array(values)
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                    columns[name] = pa.array([_text(v) for v in values], pa.string())
            columns["more"] = pa.nulls(len(rows), pa.string())
            self.write_table(pa.table(columns))
            return
        schema = self.writer.schema if self.writer is not None else self.schema
        assert schema is not None
        known = [f for f in schema if f.name != "more"]
        more: list[dict[str, Any]] = [{} for _ in rows]
        arrays = []
        for field in known:
            values = [r.get(field.name) for r in rows]
            try:
                arrays.append(pa.array(values, type=field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                fitted = []
                for i, value in enumerate(values):
                    try:
                        pa.array([value], type=field.type)
                        fitted.append(value)
                    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                        more[i][field.name] = value
                        fitted.append(None)
                arrays.append(pa.array(fitted, type=field.type))
        in_schema = {f.name for f in known}
        for i, row in enumerate(rows):
            more[i].update({k: v for k, v in row.items() if k not in in_schema})
        arrays.append(pa.array([_text(m) if m else None for m in more], pa.string()))
        self.write_table(pa.Table.from_arrays(arrays, schema=schema))

    def flush(self) -> None:
        """Parquet data becomes readable at close; nothing to push before."""

    def close(self) -> None:
        """Finishes the file (an empty file if nothing was written)."""
        if self.writer is None:
            pq.write_table(pa.table({}), self.target)
        else:
            self.writer.close()


def _flat(value: Any) -> Any:
    return msgspec.json.encode(value).decode() if isinstance(value, dict | list) else value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


Sink = Union[  # noqa: UP007
    JsonLinesSink,
    ParquetSink,
    "ParquetParts",
    "KafkaSink",
    "KinesisSink",
    "SqsAlertSink",
    "SnsAlertSink",
]


def open_sink(
    target: str, *, checkpointed: bool = False, resume: dict[str, Any] | None = None
) -> Sink:
    """A sink for a path by suffix (.parquet -> Parquet, else JSON lines); '-' is stdout.

    ``checkpointed``: the output takes part in checkpoints (Parquet becomes a directory of
    parts); ``resume``: the sink's commit marker from the checkpoint a run resumes from.
    """
    if target.lower().startswith("kafka://"):  # a topic: kafka://host:port/topic
        from fraudstream.io.kafka_sink import open_kafka_sink

        return open_kafka_sink(target)
    if target.lower().startswith(("kinesis://", "sqs://", "sns://")):  # boto3: the aws extra
        from fraudstream.io.aws import open_aws_sink

        sink: Sink = open_aws_sink(target)
        return sink
    if target != "-" and target.lower().endswith((".parquet", ".pq")):
        if checkpointed:
            from fraudstream.io.parquet_parts import ParquetParts

            return ParquetParts(target, resume)
        return ParquetSink(target)
    return JsonLinesSink(target, resume)
