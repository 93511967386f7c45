"""A block of JSON lines parsed straight into Arrow columns (the fast path of ``Decoder.lines``).

Decoding every line into a Python dict costs about 6 µs a record; Arrow's JSON reader
(C++, multi-threaded, GIL released) parses the whole block into columns in under 1 µs a
record. It is only a shortcut: the block goes the record-by-record way whenever Arrow could
read it differently from msgspec, and single rows whose values Arrow may have changed are
marked *suspect* (re-decoded one by one by the caller), so results stay those of the
record path. What makes a block decline (``None``):

* invalid UTF-8 anywhere (Python's codec decides), any parse error: malformed JSON, a
  field whose JSON type changes within the block (a number as text in a known field), a
  field given twice in one object;
* unknown fields the block's first lines do not hold, or more than
  :data:`MAX_UNKNOWN_FIELDS` of them there: Arrow gives every row a cell in every column,
  so a block of lines with fields of their own would cost it rows x fields (2,000 lines
  of 10 unique fields took 6.5 s and 0.6 GB; a 32 MB block of them, hours);
* a line that does not start with ``{`` (blank, a byte-order mark, leading spaces), holds
  a carriage return, or breaks a :class:`~fraudstream.io.limits.RecordLimits` (longer than
  its bytes, or possibly nested deeper than its levels: Arrow's reader slows to seconds a
  line and then crashes on deep nesting), or a row count that is not one row per line (two
  objects on a line, a Kafka value holding a line end): positions would no longer match
  lines.

Rows made suspect: non-finite numbers (Arrow reads ``NaN`` and ``Infinity``, which are not
JSON), negative zeros and amounts of 2**53 or more (msgspec reads ``-0`` and big integers as
ints), and any row whose unknown fields (kept as ``extras``) are null, nested, timestamps,
or whole floating numbers (``1`` and ``1.0`` share a float column). The one difference
left: a row's extras keep the block's field order, not the line's (JSON objects are
unordered).
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.json as paj

from fraudstream.io.limits import RecordLimits
from fraudstream.schema import KNOWN_FIELDS

__all__ = ["Block", "parse_block", "parse_lines"]

# What a block can be read from: bytes, or a reused buffer with ``find`` (bytearray, mmap).
Block = bytes | bytearray | mmap.mmap

_NUMBERS = {"timestamp": pa.int64(), "amount": pa.float64(), "lat": pa.float64()}
_NUMBERS.update(lon=pa.float64(), lng=pa.float64())
_SCHEMA = pa.schema([(name, _NUMBERS.get(name, pa.string())) for name in sorted(KNOWN_FIELDS)])
_PARSE = paj.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="infer")
# Arrow's own threads help a caller waiting for the parse; a reader thread working ahead of
# the pipeline leaves the other core to it instead.
_READ = {True: paj.ReadOptions(use_threads=True), False: paj.ReadOptions(use_threads=False)}
_NEWLINE, _OPEN_BRACE, _COLON = ord("\n"), ord("{"), ord(":")
_EXACT_FLOAT = 2.0**53
_DEFAULT_LIMITS = RecordLimits()
# Arrow's work grows with rows x distinct fields (every row gets a cell in every column):
# 2,000 lines of 10 fields never seen elsewhere took it 6.5 s, a 32 MB block of them would
# take hours. So a block's unknown fields are learnt from its first lines, and it is read
# with just those (and the known ones); one holding more, or others further on, goes the
# record-by-record way, which is linear.
_PREFIX_LINES = 128  # the first lines: at most this many, ending within _PREFIX_BYTES
_PREFIX_BYTES = 16 * 1024  # (or the first line alone, when it is longer)
_PREFIX_KEYS = 2_048  # more ':' than this in them: maybe as many fields, declined unread
MAX_UNKNOWN_FIELDS = 64
_PLAIN_EXTRAS = (pa.string(), pa.bool_(), pa.int64())


def parse_lines(
    lines: Sequence[bytes], limits: RecordLimits = _DEFAULT_LIMITS
) -> tuple[pa.Table, npt.NDArray[np.bool_]] | None:
    """The lines as a table (one row per line) and a mask of rows to decode one by one.

    Known fields come typed (text, int64 timestamp, float64 numbers); a known field that is
    null on every row is left out (null and absent mean the same for a known field). Returns
    ``None`` when the block must go the record-by-record way (see the module doc).

    >>> table, suspect = parse_lines([b'{"transaction_id":"t1","amount":5}',
    ...                               b'{"transaction_id":"t2","amount":-0}'])
    >>> table.column("amount").to_pylist(), suspect.tolist()
    ([5.0, -0.0], [False, True])
    >>> parse_lines([b'{"amount":5}', b'{"amount":"5"}']) is None  # a type change
    True
    """
    if not lines or max(map(len, lines)) > limits.max_record_bytes:
        return None
    parsed = parse_block(b"\n".join(lines), limits=limits)
    if parsed is None or parsed[0].num_rows != len(lines):  # a line held a line end
        return None
    return parsed


def parse_block(
    data: Block,
    threads: bool = True,
    length: int | None = None,
    limits: RecordLimits = _DEFAULT_LIMITS,
) -> tuple[pa.Table, npt.NDArray[np.bool_]] | None:
    """:func:`parse_lines` of the lines of ``data``, without splitting: a file's block of whole
    lines (the last line end may be missing) goes to Arrow as it was read (on Arrow's
    threads, or on this one). The block is ``data``'s first ``length`` bytes (all of them by
    default): a reused buffer (a ``bytearray`` or an ``mmap``) serves as well as ``bytes``,
    and the table refers to none of it.

    Every line must start with ``{`` (so none is blank or starts with a byte-order mark:
    Arrow skips blank lines, then a line holding two objects could go unnoticed) and none may
    hold a carriage return (Arrow reads it as a line end); every line must keep ``limits``.
    Nothing is copied and every check but the carriage-return and bracket searches (~1 ms
    ``memchr`` each) runs in numpy or Arrow, which release the GIL: a reader thread parsing
    ahead (:mod:`fraudstream.io.read_ahead`) leaves the pipeline's thread alone.
    """
    length = len(data) if length is None else length
    size = length - 1 if length and data[length - 1] == _NEWLINE else length  # body only
    if not size:
        return None
    if data.find(b"\r", 0, size) >= 0:  # memchr: a fifth of numpy's compare
        return None
    raw = np.frombuffer(data, dtype=np.uint8, count=size)
    ends = np.flatnonzero(raw == _NEWLINE)
    starts = np.concatenate(([0], ends + 1))
    if starts[-1] >= size or not (raw[starts] == _OPEN_BRACE).all():
        return None
    if int(np.diff(ends, prepend=-1, append=size).max()) - 1 > limits.max_record_bytes:
        return None
    if not limits.block_within(raw, starts, arrays=data.find(b"[", 0, size) >= 0):
        return None
    body = pa.py_buffer(data).slice(0, size)
    if not _valid_utf8(body):  # Arrow keeps invalid UTF-8 as it is; msgspec refuses it
        return None
    try:
        table = _read_json(body, threads, ends)
    except (pa.ArrowException, ValueError):
        return None
    n = len(starts)
    if table.num_rows != n:  # a line held two objects
        return None
    suspect = np.zeros(n, dtype=bool)
    kept = []
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if name in KNOWN_FIELDS:
            if column.null_count == n:
                continue
            if name in _NUMBERS and name != "timestamp":
                values = _floats(column, 1.0)
                suspect |= ~np.isfinite(values) | ((values == 0) & np.signbit(values))
                if name == "amount":
                    suspect |= values >= _EXACT_FLOAT
        else:
            suspect |= _uncertain_extra(column)
        kept.append(name)
    return table.select(kept), suspect


class _FieldsSeen:
    """The known fields the blocks read lately held. A hint: see :func:`_read_json`."""

    hint: frozenset[str] | None = None


def _read_json(body: pa.Buffer, threads: bool, ends: npt.NDArray[np.intp]) -> pa.Table:
    """Arrow's table of a block with every known field typed, as the full schema reads it
    (``ends``: where its lines end).

    The block's unknown fields are those of its first lines, as Arrow infers them
    (:data:`MAX_UNKNOWN_FIELDS` at most), and the block is read with just those: a row
    holding another makes the read fail (the block goes record by record). Their order and
    types are the ones inference over the whole block gives when no later row holds another.

    Arrow's reader takes ~20 % longer when its schema names fields no row holds (it fills
    their null columns: the full schema has 18 fields, a card feed uses about 13). So a
    block is read first with the known fields the blocks before held, and again with them
    all when that read fails (a row holds another known field). Only the time depends on the
    hint: a known field no row holds is a column of nulls, which :func:`parse_block` drops,
    and the order of the rest is the schema's either way.
    """
    unknown = _unknown_fields(body, ends)
    seen = _FieldsSeen.hint
    if seen is not None:
        try:
            return _read_with(body, threads, seen, unknown)
        except (pa.ArrowException, ValueError):
            pass
    table = _read_with(body, threads, KNOWN_FIELDS, unknown)
    held = {name for name in table.column_names if table.column(name).null_count < table.num_rows}
    _FieldsSeen.hint = frozenset(held & KNOWN_FIELDS)
    return table


def _unknown_fields(body: pa.Buffer, ends: npt.NDArray[np.intp]) -> list[pa.Field]:
    """The unknown fields of a block's first lines, typed by Arrow's inference; ValueError
    when there are more than :data:`MAX_UNKNOWN_FIELDS` (the block goes record by record)."""
    lines = max(1, min(int(np.searchsorted(ends, _PREFIX_BYTES)), _PREFIX_LINES))
    cut = int(ends[lines - 1]) if len(ends) >= lines else body.size
    if np.count_nonzero(np.frombuffer(body, dtype=np.uint8, count=cut) == _COLON) > _PREFIX_KEYS:
        raise ValueError("too many fields in a block's first lines to read them as columns")
    first = paj.read_json(
        pa.BufferReader(body.slice(0, cut)), read_options=_READ[False], parse_options=_PARSE
    )
    unknown = [field for field in first.schema if field.name not in KNOWN_FIELDS]
    if len(unknown) > MAX_UNKNOWN_FIELDS:
        raise ValueError(f"more than {MAX_UNKNOWN_FIELDS} unknown fields in a block's first lines")
    return unknown


def _read_with(
    body: pa.Buffer, threads: bool, known: frozenset[str], unknown: list[pa.Field]
) -> pa.Table:
    """The block read with the ``known`` fields typed, then ``unknown``; any other fails."""
    schema = pa.schema([field for field in _SCHEMA if field.name in known] + unknown)
    options = paj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    return paj.read_json(pa.BufferReader(body), read_options=_READ[threads], parse_options=options)


def _valid_utf8(body: pa.Buffer) -> bool:
    """Whether Python's codec would decode ``body`` (Arrow's validation, without the GIL:
    both refuse overlong forms, surrogates and code points past U+10FFFF)."""
    offsets = pa.py_buffer(np.array([0, body.size], dtype=np.int64))
    text = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, body])
    try:
        text.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def _uncertain_extra(column: pa.Array) -> npt.NDArray[np.bool_]:
    """Rows whose value of an unknown field may not be what msgspec gives."""
    missing = _nulls(column)
    if column.type in _PLAIN_EXTRAS:
        return missing
    if column.type == pa.float64():
        values = _floats(column, 0.0)
        whole: npt.NDArray[np.bool_] = ~np.isfinite(values) | (values == np.floor(values))
        return missing | whole  # whole: was it `1` or `1.0`? (and NaN is not JSON)
    return np.ones(
        len(column), dtype=bool
    )  # null, nested, timestamps inferred from text: one by one


# Arrow's own conversions to numpy (to_numpy, np.asarray) import pandas on first use to
# recognise its objects: a quarter of a second in the child process that parses blocks and
# has no other use for it. These read the column's buffers instead.


def _nulls(column: pa.Array) -> npt.NDArray[np.bool_]:
    """Which rows of ``column`` are null (from its validity bitmap)."""
    n = len(column)
    if column.null_count == 0:
        return np.zeros(n, dtype=bool)
    if column.null_count == n:
        return np.ones(n, dtype=bool)
    bits = np.frombuffer(column.buffers()[0], dtype=np.uint8)
    valid = np.unpackbits(bits, count=column.offset + n, bitorder="little")[column.offset :]
    nulls: npt.NDArray[np.bool_] = valid == 0
    return nulls


def _floats(column: pa.Array, fill: float) -> npt.NDArray[np.float64]:
    """A float64 column's values, its nulls read as ``fill``."""
    n = len(column)
    if column.null_count == n:
        return np.full(n, fill)
    data = column.buffers()[1]
    values = np.frombuffer(data, dtype=np.float64, count=n, offset=8 * column.offset)
    if column.null_count:
        values = np.where(_nulls(column), fill, values)
    return values
