"""Raw input -> validated :class:`TxBatch` + dead letters, for every input format.

JSON lines are decoded with msgspec and checked record by record
(:func:`fraudstream.schema.validate_record` is the authority). Parquet batches take a
columnar fast path: vectorized checks flag every row that might be invalid, and only flagged
rows are re-checked record by record, so both paths always agree on what is valid and why.

Arrow column types and what a row of them means (the same on both paths):

* a ``timestamp`` column of a timestamp type (any unit, with or without a time zone) holds
  instants; it is read as epoch milliseconds, floored to the millisecond (event time has
  millisecond resolution in the contract), a naive one read as UTC;
* decimal ``timestamp`` / ``amount`` / ``lat`` / ``lon`` / ``lng`` columns are read as
  ``float(value)``, exactly as Python rounds a ``Decimal``;
* dictionary-encoded, large and view string columns and all-null columns of a known field
  are read as the plain values they hold;
* anything else (bool amounts, binary ids, structs, ...) reaches ``validate_record`` as the
  Python value Arrow gives for it, and a value Python cannot hold at all (a timestamp in year
  20000, a nanosecond time) as an :class:`Unconvertible` in a known field (rejected) and as
  Arrow's text of it in any other.

Dead letters of a converted row (timestamps, decimals) show the row as the input held it.

Card numbers (README "Security") are scrubbed here, where every source's records enter: both
paths tokenize them in every string field before lengths are checked
(:func:`fraudstream.schema.validate_record`, :mod:`fraudstream.io.card_columns`), and a dead
letter's raw line has them masked (:func:`fraudstream.cardnumbers.mask_raw_text`).

Every record is held to the decoder's :class:`~fraudstream.io.limits.RecordLimits` (size
and nesting depth) on every path: a line over them, or a record whose unknown fields nest
too deeply, is a dead letter saying so, whatever else is wrong with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.cardnumbers import mask_raw_text
from fraudstream.engine.batch import TxBatch
from fraudstream.io.card_columns import candidate_rows, scrub_column
from fraudstream.io.json_columns import Block, parse_block, parse_lines
from fraudstream.io.limits import RecordLimits, decode_record, nests_deeper
from fraudstream.schema import (
    KNOWN_FIELDS,
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    TEXT_FIELDS,
    CardTokenizer,
    InvalidRecord,
    ValidTx,
    mask_card_numbers,
    validate_record,
)

MAX_RAW_KEPT = 4096  # bytes of a bad line kept in the dead-letter record
_DEFAULT_LIMITS = RecordLimits()


class Unconvertible:
    """An Arrow value Python cannot hold (a timestamp in year 20000, a nanosecond time of day)
    in a known field: :func:`validate_record` rejects it for its type, dead letters show
    ``text``, Arrow's text of the value."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Unconvertible({self.text!r})"


def _encode_other(value: Any) -> Any:
    return value.text if isinstance(value, Unconvertible) else str(value)


_json = msgspec.json.Decoder()
_encode = msgspec.json.Encoder(enc_hook=_encode_other)


def _in_position_order(batch: TxBatch, checked: TxBatch) -> TxBatch:
    """The rows checked as columns and those checked one by one, back in input order."""
    merged = TxBatch.concat([batch, checked])
    return merged.take(np.argsort(merged.position, kind="stable"))


def block_lines(data: bytes) -> int:
    """How many lines a block of whole lines holds (the last may lack its line end)."""
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


@dataclass(frozen=True, slots=True)
class ParsedBlock:
    """A block of whole JSON lines with Arrow's reading of it (:func:`.parse_block` of its
    body; ``None`` when Arrow declined it or it is too short to try).

    Made by whoever reads the block, possibly on a reader thread working one block ahead
    (:mod:`fraudstream.io.read_ahead`): Arrow releases the GIL, so the parse of the next
    block overlaps the pipeline's work on this one. :meth:`Decoder.block` gives the same
    result for a block and for its ``ParsedBlock``.

    ``raw`` is the block's bytes, or, when Arrow read every row and none is suspect, a
    function that reads them again (a child process parsed the block: the bytes are then
    only needed if a row turns out invalid, and reading 33 MB costs ~30 ms).
    """

    raw: bytes | Callable[[], bytes]
    lines: int  # :func:`block_lines` of the block
    columns: tuple[pa.Table, np.ndarray[Any, Any]] | None
    limits: RecordLimits = _DEFAULT_LIMITS  # what Arrow was given only lines within

    @property
    def data(self) -> bytes:
        """The block's bytes (read now, if they were left where they are)."""
        return self.raw if isinstance(self.raw, bytes) else self.raw()

    @classmethod
    def of(
        cls, data: bytes, threads: bool = True, limits: RecordLimits = _DEFAULT_LIMITS
    ) -> ParsedBlock:
        """``data`` read by Arrow (on its own threads, or only on the calling one)."""
        columns, lines = read_columns(data, threads, limits=limits)
        return cls(data, lines, columns, limits)


def read_columns(
    data: Block,
    threads: bool = True,
    length: int | None = None,
    limits: RecordLimits = _DEFAULT_LIMITS,
) -> tuple[tuple[pa.Table, np.ndarray[Any, Any]] | None, int]:
    """What :meth:`ParsedBlock.of` finds in a block (``data``'s first ``length`` bytes):
    Arrow's reading of it (``None``: declined, or too short to try) and its line count."""
    length = len(data) if length is None else length
    columns = parse_block(data, threads, length, limits) if _tried(data, length) else None
    # Arrow's table has one row per line (parse_block checks it): no second count
    lines = columns[0].num_rows if columns is not None else block_lines(bytes(data[:length]))
    return columns, lines


def _tried(data: Block, length: int | None = None) -> bool:
    """Whether a block is long enough to offer to Arrow (its body: without the last line end)."""
    length = len(data) if length is None else length
    return length - (length > 0 and data[length - 1] == ord("\n")) >= COLUMNAR_MIN_ROWS


class _SplitLines(Sequence[bytes]):
    """A block's first ``size`` lines, read and split only if a line is asked for (a suspect
    row, a dead letter)."""

    def __init__(self, block: ParsedBlock, size: int) -> None:
        self.block = block
        self.size = size
        self.split: list[bytes] | None = None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: Any) -> Any:
        if self.split is None:
            self.split = self.block.data.split(b"\n")
        return self.split[index]


@dataclass(slots=True)
class DeadLetter:
    """An input that could not be accepted, with why and where."""

    source: str
    position: int
    reason: str
    raw: str

    def to_dict(self) -> dict[str, Any]:
        """The dead-letter record written to the dead-letter output."""
        return {
            "source": self.source,
            "position": self.position,
            "reason": self.reason,
            "raw": self.raw,
        }


def _encoded(record: Any) -> bytes | str:
    """A decoded record as JSON for a dead letter (its repr if it is not JSON-able)."""
    try:
        return _encode.encode(record)
    except (TypeError, ValueError, OverflowError):
        try:
            return repr(record)
        except (RecursionError, ValueError):  # nested past any limit, digits past Python's
            return f"<a {type(record).__name__} that cannot be shown>"
    except RecursionError:
        return f"<a {type(record).__name__} nested too deeply to show>"


def _raw_text(raw: bytes | str) -> str:
    """What a dead letter keeps of its input: its first ``MAX_RAW_KEPT`` characters (never
    cut inside a run of digits), invalid UTF-8 replaced, card numbers masked."""
    if isinstance(raw, bytes) and len(raw) > MAX_RAW_KEPT:
        # a line past the size limit arrives already cut: say where, not how much more
        text = raw[:MAX_RAW_KEPT].decode("utf-8", "replace")
        return mask_raw_text(text, MAX_RAW_KEPT, f"...[cut after {MAX_RAW_KEPT} bytes]")
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return mask_raw_text(text, MAX_RAW_KEPT)


class Decoder:
    """Validates raw records from one source into batches and dead letters, each record
    held to ``limits``."""

    def __init__(
        self, tokenize: CardTokenizer, source: str = "input", limits: RecordLimits | None = None
    ) -> None:
        self.tokenize = tokenize
        self.source = source
        self.limits = limits or _DEFAULT_LIMITS

    def records(
        self,
        records: Sequence[Any],
        positions: Sequence[int],
        arrival_ms: Sequence[float],
        raws: Sequence[bytes | str] | None = None,
    ) -> tuple[TxBatch, list[DeadLetter]]:
        """Validates decoded records (dicts); ``raws`` is what dead letters show."""
        good: list[ValidTx] = []
        good_positions: list[int] = []
        good_arrival: list[float] = []
        dead: list[DeadLetter] = []
        tokenize = self.tokenize
        limits = self.limits
        for index, record in enumerate(records):
            try:
                # nested too deeply says so whatever else is wrong (one reason on every path),
                # and before validation walks the record (scrubbing its extras recurses)
                if limits.too_deep(record):
                    raise InvalidRecord(limits.too_deep_reason)
                good.append(validate_record(record, tokenize))
            except InvalidRecord as exc:
                raw = raws[index] if raws is not None else _encoded(record)
                reason = mask_card_numbers(str(exc))  # a reason may quote the bad value
                dead.append(DeadLetter(self.source, positions[index], reason, _raw_text(raw)))
                continue
            good_positions.append(positions[index])
            good_arrival.append(arrival_ms[index])
        batch = TxBatch.from_valid(
            good, np.asarray(good_positions, np.int64), np.asarray(good_arrival, np.float64)
        )
        return batch, dead

    def lines(
        self, lines: Sequence[bytes], positions: Sequence[int], arrival_ms: Sequence[float]
    ) -> tuple[TxBatch, list[DeadLetter]]:
        """JSON lines: each must be one JSON object.

        A big block arriving at once is parsed by Arrow into columns
        (:mod:`fraudstream.io.json_columns`); the lines Arrow leaves in doubt, and every
        block it declines, are decoded one by one with msgspec.
        """
        if len(lines) >= COLUMNAR_MIN_ROWS and len(set(arrival_ms)) == 1:
            parsed = parse_lines(lines, self.limits)
            if parsed is not None:
                return self._parsed(*parsed, lines, positions, arrival_ms[0])
        return self._one_by_one(lines, positions, arrival_ms)

    def block(
        self, data: bytes | ParsedBlock, first_position: int, arrival_ms: float
    ) -> tuple[TxBatch, list[DeadLetter]]:
        """Whole JSON lines as read from a file (``data`` ends at a line end or at the end of
        the input); its line k has position ``first_position + k``, blank lines are skipped.

        Equal to :meth:`lines` on the block's non-blank lines (without their line ends), but
        a block Arrow can read goes to it as it is, never split into Python lines. A
        :class:`ParsedBlock` brings Arrow's reading with it.
        """
        if not isinstance(data, ParsedBlock) or data.limits != self.limits:
            raw = data.data if isinstance(data, ParsedBlock) else data
            data = ParsedBlock.of(raw, limits=self.limits)
        block = data
        parsed = block.columns
        if parsed is not None and parsed[0].num_rows >= COLUMNAR_MIN_ROWS:
            n = parsed[0].num_rows
            positions = range(first_position, first_position + n)
            return self._parsed(*parsed, _SplitLines(block, n), positions, arrival_ms)
        body = block.data[:-1] if block.data.endswith(b"\n") else block.data
        lines, positions_kept = [], []
        split = body.split(b"\n") if body else []
        for k, line in enumerate(split):
            if line.strip():
                lines.append(line.rstrip(b"\r"))
                positions_kept.append(first_position + k)
        arrivals = [arrival_ms] * len(lines)
        declined = _tried(block.data) and parsed is None
        if declined and len(lines) == len(split) and b"\r" not in body:
            # the very lines Arrow just declined: do not ask it again
            return self._one_by_one(lines, positions_kept, arrivals)
        return self.lines(lines, positions_kept, arrivals)

    def _parsed(
        self,
        table: pa.Table,
        suspect: np.ndarray[Any, Any],
        lines: Sequence[bytes],
        positions: Sequence[int],
        arrival_ms: float,
    ) -> tuple[TxBatch, list[DeadLetter]]:
        """Arrow's columns of a block, checked as columns; suspect rows one by one."""
        if "transaction_id" not in table.column_names or "timestamp" not in table.column_names:
            return self._one_by_one(lines, positions, [arrival_ms] * len(lines))
        try:
            fast = _columnar(table, self.tokenize)
        except pa.ArrowException:
            fast = None
        if fast is None:
            return self._one_by_one(lines, positions, [arrival_ms] * len(lines))
        columns, flagged = fast
        suspect = suspect | flagged
        position_array = np.asarray(positions, dtype=np.int64)
        clean = np.flatnonzero(~suspect)
        batch = _batch_from_columns(
            columns, clean, position_array[clean], arrival_ms, table, self.tokenize
        )
        suspects = np.flatnonzero(suspect).tolist()
        if not suspects:
            return batch, []
        checked, dead = self._one_by_one(
            [lines[i] for i in suspects], [positions[i] for i in suspects],
            [arrival_ms] * len(suspects),
        )  # fmt: skip
        return _in_position_order(batch, checked), dead

    def _one_by_one(
        self, lines: Sequence[bytes], positions: Sequence[int], arrival_ms: Sequence[float]
    ) -> tuple[TxBatch, list[DeadLetter]]:
        """Each line decoded by msgspec (then checked as columns when there are many)."""
        records: list[Any] = []
        kept_pos: list[int] = []
        kept_arrival: list[float] = []
        kept_raw: list[bytes] = []
        dead: list[DeadLetter] = []
        decode = _json.decode
        limits = self.limits
        max_bytes = limits.max_record_bytes
        for line, position, arrival in zip(lines, positions, arrival_ms, strict=True):
            try:
                if len(line) > max_bytes:
                    raise InvalidRecord(limits.too_long_reason)
                try:
                    records.append(decode(line))
                except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                    records.append(decode_record(line, limits))  # the reason; or a BOM
            except InvalidRecord as exc:
                reason = mask_card_numbers(str(exc))
                dead.append(DeadLetter(self.source, position, reason, _raw_text(line)))
                continue
            kept_pos.append(position)
            kept_arrival.append(arrival)
            kept_raw.append(line)
        if len(records) >= COLUMNAR_MIN_ROWS and len(set(kept_arrival)) == 1:
            batch, more_dead = self._dicts(records, kept_pos, kept_arrival[0], kept_raw)
        else:  # a few live lines: record by record is quicker than building columns
            batch, more_dead = self.records(records, kept_pos, kept_arrival, kept_raw)
        dead.extend(more_dead)
        dead.sort(key=lambda d: d.position)
        return batch, dead

    def _dicts(
        self,
        records: list[Any],
        positions: list[int],
        arrival_ms: float,
        raws: list[bytes],
    ) -> tuple[TxBatch, list[DeadLetter]]:
        """Decoded JSON objects, checked as columns; only suspect rows one by one.

        Each known field becomes an Arrow column when its values have the plain JSON types
        (strings; numbers; integer timestamps); a value of any other type (an ISO timestamp,
        a number as text, a bool, an object) makes its row suspect. Suspect rows, and rows
        the columnar checks flag, get :func:`validate_record` on the original object, so the
        result is exactly the record path's.
        """
        n = len(records)
        suspect = np.zeros(n, dtype=bool)
        rows: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            if type(record) is dict:
                rows.append(record)
            else:
                suspect[index] = True
                rows.append({})
        present = set().union(*(r.keys() for r in rows)) if rows else set()
        # each row's unknown fields (its own: linear in the input, however many names the
        # rows hold between them); one nested too deeply makes its row suspect, and the
        # record path says why
        extras_of: list[dict[str, Any] | None] = [None] * n
        if present - KNOWN_FIELDS:
            max_depth = self.limits.max_depth
            for index, row in enumerate(rows):
                extra = {k: v for k, v in row.items() if k not in KNOWN_FIELDS}
                if extra:
                    extras_of[index] = extra
                    if any(type(v) in _CONTAINERS for v in extra.values()):
                        suspect[index] |= nests_deeper(extra, max_depth)
        columns: dict[str, pa.Array] = {}
        for name in KNOWN_FIELDS & present:
            values = [r.get(name) for r in rows]
            array, bad = _coerce(values, _FIELD_KIND.get(name, "text"))
            suspect |= bad
            columns[name] = array
        if "transaction_id" not in columns or "timestamp" not in columns:
            return self.records(records, positions, [arrival_ms] * n, raws)
        table = pa.table(columns)
        try:
            fast = _columnar(table, self.tokenize)
        except pa.ArrowException:
            fast = None
        if fast is None:
            return self.records(records, positions, [arrival_ms] * n, raws)
        checked_columns, flagged = fast
        suspect |= flagged
        position_array = np.asarray(positions, dtype=np.int64)
        clean = np.flatnonzero(~suspect)
        batch = _batch_from_columns(
            checked_columns, clean, position_array[clean], arrival_ms, table, self.tokenize
        )
        if present - KNOWN_FIELDS and len(clean):
            extras = np.empty(len(clean), dtype=object)
            scrub = self.tokenize.scrub_value
            extras[:] = [scrub(extras_of[i]) or None for i in clean.tolist()]
            batch.extras = extras
        suspects = np.flatnonzero(suspect).tolist()
        if not suspects:
            return batch, []
        checked, dead = self.records(
            [records[i] for i in suspects],
            [positions[i] for i in suspects],
            [arrival_ms] * len(suspects),
            [raws[i] for i in suspects],
        )
        return _in_position_order(batch, checked), dead

    def table(
        self, table: pa.Table | pa.RecordBatch, first_position: int, arrival_ms: float
    ) -> tuple[TxBatch, list[DeadLetter]]:
        """A Parquet (or any Arrow) batch; positions are row numbers from ``first_position``."""
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        table = table.combine_chunks()
        n = table.num_rows
        positions = np.arange(first_position, first_position + n, dtype=np.int64)
        prepared = _prepare(table)
        fast = None
        unique = len(set(table.column_names)) == len(table.column_names)  # else: a name twice
        # a column whose type nests as deep as the limit may hold rows past it: row by row
        shallow = max(map(_type_depth, table.schema.types), default=0) < self.limits.max_depth
        if unique and shallow:
            try:
                fast = _columnar(prepared.table, self.tokenize)
            except pa.ArrowException:  # a column the checks did not foresee
                fast = None
        if fast is None:  # unusual column types: check every row the careful way
            return self._careful(prepared, np.arange(n), positions, arrival_ms)
        columns, suspect = fast
        suspects = np.flatnonzero(suspect)
        clean = np.flatnonzero(~suspect)
        batch = _batch_from_columns(
            columns, clean, positions[clean], arrival_ms, prepared.table, self.tokenize
        )
        if len(suspects) == 0:
            return batch, []
        checked, dead = self._careful(prepared, suspects, positions[suspects], arrival_ms)
        return _in_position_order(batch, checked), dead

    def _careful(
        self,
        prepared: _Prepared,
        rows: np.ndarray[Any, Any],
        positions: np.ndarray[Any, Any],
        arrival_ms: float,
    ) -> tuple[TxBatch, list[DeadLetter]]:
        """``validate_record`` on the given rows of a prepared table."""
        every = len(rows) == prepared.table.num_rows
        records = _pylist(prepared.table, None if every else rows)
        if prepared.exact_ms:  # epoch ms beyond int64, as Python ints
            for record, row in zip(records, rows.tolist(), strict=True):
                exact = prepared.exact_ms.get(row)
                if exact is not None:
                    record["timestamp"] = exact
        batch, dead = self.records(records, positions.tolist(), [arrival_ms] * len(records))
        if prepared.changed and dead:  # show the rows as the input held them
            first = int(positions[0]) - int(rows[0])  # position = first + row
            held = np.array([d.position - first for d in dead], np.int64)
            for letter, original in zip(dead, _pylist(prepared.original, held), strict=True):
                letter.raw = _raw_text(_encoded(original))
        return batch, dead


# --- preparing Arrow columns ------------------------------------------------------------------

_NUMERIC_FIELDS = frozenset(("timestamp", "amount", "lat", "lon", "lng"))
_CONTAINERS = (dict, list)


def _type_depth(kind: pa.DataType) -> int:
    """How many levels of structs, lists and maps an Arrow type nests (0: none).

    >>> _type_depth(pa.int64()), _type_depth(pa.list_(pa.struct([("a", pa.list_(pa.int8()))])))
    (0, 3)
    """
    deepest = 0
    pending = [(kind, 0)]
    while pending:
        current, depth = pending.pop()
        deepest = max(deepest, depth)
        if current.num_fields:  # structs, lists, maps, unions: their children one level down
            pending.extend((current.field(k).type, depth + 1) for k in range(current.num_fields))
    return deepest


_MS_DIVISOR = {"ms": 1, "us": 1_000, "ns": 1_000_000}
_SECONDS_LIMIT = 2**53  # |seconds| beyond this: epoch ms would not fit int64 (out of range anyway)
_EXACT_FLOAT = 2.0**53  # ints beyond this do not all survive float64


@dataclass(slots=True)
class _Prepared:
    """A batch with its known fields in the types the checks read (see the module doc)."""

    table: pa.Table
    original: pa.Table
    exact_ms: dict[int, int]  # row -> epoch ms of a timestamp[s] value too far out for int64
    changed: bool  # some values were converted (timestamps, decimals), not just re-typed


def _single(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if not isinstance(column, pa.ChunkedArray):
        return column
    if column.num_chunks == 1:
        return column.chunk(0)
    return column.combine_chunks()


def _prepare(table: pa.Table) -> _Prepared:
    """Known fields re-typed (dictionaries decoded, large strings, all-null columns) and
    converted (timestamp instants to epoch ms, decimals to floats)."""
    prepared = table
    exact: dict[int, int] = {}
    changed = False
    for index, field in enumerate(table.schema):
        name = field.name
        if name not in KNOWN_FIELDS:
            continue
        column = _single(table.column(index))
        try:
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            elif pa.types.is_run_end_encoded(column.type):
                column = pc.run_end_decode(column)
            kind = column.type
            if pa.types.is_null(kind):
                numeric = pa.int64() if name == "timestamp" else pa.float64()
                column = pa.nulls(len(column), numeric if name in _NUMERIC_FIELDS else pa.string())
            elif pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
                column = column.cast(pa.string())
            elif pa.types.is_decimal(kind) and name in _NUMERIC_FIELDS:
                column, changed = _decimal_floats(column), True
            elif pa.types.is_timestamp(kind) and name == "timestamp":
                exact.clear()  # of a column of the same name before: the last one counts
                column, changed = _epoch_ms(column, exact), True
        except pa.ArrowException:  # left as it is: the careful path will tell
            continue
        if column.type != field.type:
            prepared = prepared.set_column(index, name, column)
    return _Prepared(prepared, table, exact, changed)


def _epoch_ms(column: pa.Array, exact: dict[int, int]) -> pa.Array:
    """Epoch ms of a timestamp column, floored; ``exact`` gets those beyond int64."""
    unit = column.type.unit
    values = column.view(pa.int64()).fill_null(0).to_numpy()
    if unit == "s":
        far = np.flatnonzero((values > _SECONDS_LIMIT) | (values < -_SECONDS_LIMIT))
        exact.update((int(row), int(values[row]) * 1000) for row in far)
        ms = np.clip(values, -_SECONDS_LIMIT, _SECONDS_LIMIT) * 1000
    else:
        ms = values // _MS_DIVISOR[unit]  # floor division, also before 1970
    nulls = pc.is_null(column).to_numpy(zero_copy_only=False) if column.null_count else None
    return pa.array(ms, pa.int64(), mask=nulls)


def _decimal_floats(column: pa.Array) -> pa.Array:
    """``float(value)`` of each decimal. Arrow's decimal-to-float cast can be an ulp off;
    parsing the decimal's exact text is correctly rounded, as Python's ``float`` is."""
    try:
        return pc.cast(pc.cast(column, pa.string()), pa.float64())
    except pa.ArrowException:
        return pa.array([None if v is None else float(v) for v in column.to_pylist()], pa.float64())


_PY_ERRORS = (pa.ArrowException, ValueError, OverflowError, TypeError)


def _pylist(table: pa.Table, rows: np.ndarray[Any, Any] | None = None) -> list[dict[str, Any]]:
    """``table.to_pylist()`` (of ``rows`` only if given), never raising: values Python cannot
    hold are replaced (see the module doc); columns Arrow cannot ``take`` (view and run-end
    encoded types) are read whole."""
    if rows is not None:
        try:
            table = table.take(pa.array(rows, pa.int64()))
            rows = None
        except pa.ArrowException:
            pass
    if rows is None and not any(_nanosecond(field.type) for field in table.schema):
        try:
            records: list[dict[str, Any]] = table.to_pylist()
            return records
        except _PY_ERRORS:
            pass
    names = table.column_names
    columns = [_values(name, _single(table.column(k)), rows) for k, name in enumerate(names)]
    if not columns:
        return [{} for _ in range(table.num_rows if rows is None else len(rows))]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _values(name: str, column: pa.Array, rows: np.ndarray[Any, Any] | None) -> list[Any]:
    if rows is not None:
        try:
            column = column.take(pa.array(rows, pa.int64()))
        except pa.ArrowException:
            every = _values(name, column, None)
            return [every[row] for row in rows.tolist()]
    if _nanosecond(column.type):
        return _nanosecond_values(name, column)
    try:
        values: list[Any] = column.to_pylist()
        return values
    except _PY_ERRORS:
        pass
    try:
        texts = pc.cast(column, pa.string()).to_pylist()
    except pa.ArrowException:
        texts = [None] * len(column)
    values = []
    for k in range(len(column)):
        try:
            values.append(column[k].as_py())
        except _PY_ERRORS:
            text = texts[k] or f"<{column.type}>"
            values.append(Unconvertible(text) if name in KNOWN_FIELDS else text)
    return values


def _nanosecond(kind: pa.DataType) -> bool:
    """Types whose Python values depend on the Arrow version or on pandas being importable
    (nanosecond temporals go to pandas; half floats stay numpy in older Arrow): converted
    here, the same way everywhere."""
    temporal = pa.types.is_timestamp(kind) or pa.types.is_time64(kind) or pa.types.is_duration(kind)
    return (temporal and getattr(kind, "unit", "") == "ns") or pa.types.is_float16(kind)


def _nanosecond_values(name: str, column: pa.Array) -> list[Any]:
    """Half floats become floats. Whole microseconds become Python values; a value with
    nanoseconds Python cannot hold becomes its text (or Unconvertible for a known field), as
    the module doc says."""
    if pa.types.is_float16(column.type):  # older Arrow gives numpy half floats
        return [None if v is None else float(v) for v in column.to_pylist()]
    micro = pa.timestamp("us", column.type.tz) if pa.types.is_timestamp(column.type) else None
    if micro is None:
        micro = pa.time64("us") if pa.types.is_time64(column.type) else pa.duration("us")
    exact = pc.cast(column, micro, safe=False).to_pylist()
    counts = pc.cast(column, pa.int64()).to_pylist()
    values: list[Any] = []
    for k, (value, count) in enumerate(zip(exact, counts, strict=True)):
        if count is None or count % 1000 == 0:
            values.append(value)
        else:
            text = _text_of(column.slice(k, 1))
            values.append(Unconvertible(text) if name in KNOWN_FIELDS else text)
    return values


def _text_of(value: pa.Array) -> str:
    """Arrow's text of one value; an instant in a zone Arrow cannot look up is given in UTC."""
    try:
        return str(pc.cast(value, pa.string())[0].as_py())
    except pa.ArrowException:
        utc = value.cast(pa.timestamp(value.type.unit))
        return f"{pc.cast(utc, pa.string())[0].as_py()}Z"


# --- the columnar checks -----------------------------------------------------------------------


def _column(table: pa.Table, *names: str) -> pa.Array | None:
    for name in names:
        index = table.schema.get_field_index(name)  # a lookup, not a scan of every name
        if index >= 0:
            return _single(table.column(index))
    return None


def _columnar(
    table: pa.Table, tokenize: CardTokenizer
) -> tuple[dict[str, Any], np.ndarray[Any, Any]] | None:
    """Vectorized checks; returns typed columns and a mask of rows that need a careful look."""
    n = table.num_rows
    suspect = np.zeros(n, dtype=bool)
    out: dict[str, Any] = {}

    def flag(mask: Any) -> None:
        nonlocal suspect
        if mask.null_count:
            mask = mask.fill_null(True)  # nulls count as suspect too
        suspect |= mask.to_numpy(zero_copy_only=False)

    def text(
        name: str, *aliases: str, limit: int = MAX_TEXT_LENGTH, clean: Any = tokenize.scrub
    ) -> pa.Array | None:
        nonlocal suspect
        column = _column(table, name, *aliases)
        if column is None:
            return pa.nulls(n, pa.string())
        if pa.types.is_integer(column.type):
            column = pc.cast(column, pa.string())
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            return None
        column = pc.cast(column, pa.string())
        if clean is not None:  # card numbers tokenized before lengths count (validate_record)
            column = scrub_column(column, clean)
        lengths = pc.binary_length(column).fill_null(1).to_numpy()
        suspect |= (lengths > limit) | (lengths == 0)
        return column

    ids = text("transaction_id", limit=MAX_ID_LENGTH)
    present = set(table.column_names)  # once: a wide table has thousands
    if "card_id" in present:
        card = text("card_id", limit=MAX_ID_LENGTH, clean=tokenize)
        if card is not None:
            for alias in ("account_id", "card_number"):  # rows relying on an alias
                if alias in present:
                    flag(pc.is_null(card))
    else:
        card = text("card_id", "account_id", "card_number", limit=MAX_ID_LENGTH, clean=tokenize)
    user = text("user_id", limit=MAX_ID_LENGTH, clean=tokenize)
    if ids is None or card is None or user is None:
        return None
    flag(pc.is_null(ids))
    flag(pc.is_null(card))
    timestamp = _column(table, "timestamp")  # timestamp types are epoch ms by now
    amount = _column(table, "amount")
    if timestamp is None or amount is None:
        return None
    if not pa.types.is_integer(timestamp.type) or not (
        pa.types.is_floating(amount.type) or pa.types.is_integer(amount.type)
    ):
        return None
    flag(pc.is_null(timestamp))
    if timestamp.type == pa.uint64():  # beyond int64: out of range, said with the exact value
        flag(pc.greater(timestamp, pa.scalar(MAX_TIMESTAMP_MS, pa.uint64())))
    ts = pc.cast(timestamp, pa.int64(), safe=False).fill_null(0).to_numpy()
    suspect |= (ts < MIN_TIMESTAMP_MS) | (ts > MAX_TIMESTAMP_MS)
    flag(pc.is_null(amount))
    amounts = pc.cast(amount, pa.float64(), safe=False).fill_null(0.0).to_numpy()
    suspect |= ~np.isfinite(amounts) | (amounts < 0)
    if pa.types.is_integer(amount.type):  # a rounded float: let validate_record make it
        suspect |= amounts >= _EXACT_FLOAT
    coords = []
    for names, limit in ((("lat",), 90.0), (("lon", "lng"), 180.0)):
        column = _column(table, *names)
        if column is None:
            coords.append(np.full(n, np.nan))
            continue
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            return None
        floats = pc.cast(column, pa.float64(), safe=False)
        values = floats.to_numpy(zero_copy_only=False)  # a null is NaN: "absent"
        suspect |= np.isinf(values) | (np.abs(np.nan_to_num(values)) > limit)
        # NaN stored in the column (not null) is invalid; a null is "absent"
        suspect |= np.asarray(pc.is_nan(floats).fill_null(False))
        coords.append(values)
    if "lon" in present and "lng" in present:
        flag(pc.is_null(_column(table, "lon")))
    suspect |= np.isnan(coords[0]) != np.isnan(coords[1])
    currency = text("currency", limit=3, clean=None)  # 3 letters: never a card number
    if currency is None:
        return None
    flag(pc.invert(pc.match_substring_regex(currency, r"^[A-Z]{3}$")).fill_null(False))
    texts = {}
    for name in TEXT_FIELDS:
        column = text(name)
        if column is None:
            return None
        texts[name] = column
    user = pc.coalesce(user, card)
    out.update(
        transaction_id=ids,
        card_id=card,
        user_id=user,
        timestamp_ms=ts,
        amount=amounts,
        lat=coords[0],
        lon=coords[1],
        currency=currency.fill_null("USD"),
        **texts,
    )
    return out, suspect


COLUMNAR_MIN_ROWS = 64
_FIELD_KIND = {
    "timestamp": "integer",
    "amount": "number",
    "lat": "number",
    "lon": "number",
    "lng": "number",
}
_NONE = type(None)


def _coerce(values: list[Any], kind: str) -> tuple[pa.Array, np.ndarray[Any, Any]]:
    """An Arrow column of the plain-typed values, and a mask of rows to check one by one."""
    if kind == "text":
        allowed: tuple[type, ...] = (str, _NONE)
        arrow_type = pa.string()
    elif kind == "number":
        allowed = (int, float, _NONE)
        arrow_type = pa.float64()
    else:
        allowed = (int, _NONE)
        arrow_type = pa.int64()
    bad = np.fromiter((type(v) not in allowed for v in values), dtype=bool, count=len(values))
    if bad.any():
        values = [None if b else v for v, b in zip(values, bad.tolist(), strict=True)]
    try:
        return pa.array(values, type=arrow_type), bad
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # e.g. an integer beyond int64: every row of this column goes the careful way
        return pa.nulls(len(values), arrow_type), np.ones(len(values), dtype=bool)


def _batch_from_columns(
    columns: dict[str, Any],
    rows: np.ndarray[Any, Any],
    positions: np.ndarray[Any, Any],
    arrival_ms: float,
    table: pa.Table,
    tokenize: CardTokenizer,
) -> TxBatch:
    take = pa.array(rows, pa.int64())
    extras_names = [c for c in table.column_names if c not in KNOWN_FIELDS]
    all_rows = len(rows) == table.num_rows
    extras = None
    if extras_names and len(rows):
        extras_table = table.select(extras_names)
        extra_rows = _pylist(extras_table, None if all_rows else rows)
        maybe = candidate_rows(extras_table)[rows]  # only these can hold a card number
        for index in np.flatnonzero(maybe).tolist():
            extra_rows[index] = tokenize.scrub_value(extra_rows[index])
        extras = np.empty(len(rows), dtype=object)
        extras[:] = extra_rows

    def arrow(name: str) -> pa.Array:
        column = columns[name]
        return column if all_rows else column.take(take)

    def numbers(name: str) -> np.ndarray[Any, Any]:
        column: np.ndarray[Any, Any] = columns[name]
        return column if all_rows else column[rows]

    return TxBatch(
        transaction_id=arrow("transaction_id"),
        card_id=arrow("card_id"),
        user_id=arrow("user_id"),
        timestamp_ms=np.ascontiguousarray(numbers("timestamp_ms"), dtype=np.int64),
        amount=np.ascontiguousarray(numbers("amount"), dtype=np.float64),
        lat=np.ascontiguousarray(numbers("lat"), dtype=np.float64),
        lon=np.ascontiguousarray(numbers("lon"), dtype=np.float64),
        currency=arrow("currency"),
        **{name: arrow(name) for name in TEXT_FIELDS},
        position=np.ascontiguousarray(positions, dtype=np.int64),
        arrival_ms=np.full(len(rows), arrival_ms, dtype=np.float64),
        extras=extras,
    )
