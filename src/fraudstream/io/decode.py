"""Raw input -> validated :class:`TxBatch` + dead letters, for every input format.

JSON lines are decoded with msgspec and checked record by record
(:func:`fraudstream.schema.validate_record` is the authority). Parquet batches take a
columnar fast path: vectorized checks flag every row that might be invalid, and only flagged
rows are re-checked record by record, so both paths always agree on what is valid and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.engine.batch import TxBatch
from fraudstream.schema import (
    KNOWN_FIELDS,
    MAX_ID_LENGTH,
    MAX_LINE_BYTES,
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

_json = msgspec.json.Decoder()
_encode = msgspec.json.Encoder()
MAX_RAW_KEPT = 4096  # bytes of a bad line kept in the dead-letter record


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


def _raw_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if len(text) > MAX_RAW_KEPT:
        text = text[:MAX_RAW_KEPT] + f"...[{len(text) - MAX_RAW_KEPT} more characters]"
    return mask_card_numbers(text)


class Decoder:
    """Validates raw records from one source into batches and dead letters."""

    def __init__(self, tokenize: CardTokenizer, source: str = "input") -> None:
        self.tokenize = tokenize
        self.source = source

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
        for index, record in enumerate(records):
            try:
                good.append(validate_record(record, tokenize))
            except InvalidRecord as exc:
                raw = raws[index] if raws is not None else _encode.encode(record)
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
        """JSON lines: each must be one JSON object."""
        records: list[Any] = []
        kept_pos: list[int] = []
        kept_arrival: list[float] = []
        kept_raw: list[bytes] = []
        dead: list[DeadLetter] = []
        decode = _json.decode
        for line, position, arrival in zip(lines, positions, arrival_ms, strict=True):
            if len(line) > MAX_LINE_BYTES:
                reason = f"record: line longer than {MAX_LINE_BYTES} bytes ({len(line)})"
                dead.append(DeadLetter(self.source, position, reason, _raw_text(line)))
                continue
            try:
                records.append(decode(line))
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                reason = f"invalid JSON: {exc}"
                dead.append(DeadLetter(self.source, position, reason, _raw_text(line)))
                continue
            kept_pos.append(position)
            kept_arrival.append(arrival)
            kept_raw.append(line)
        batch, more_dead = self.records(records, kept_pos, kept_arrival, kept_raw)
        dead.extend(more_dead)
        dead.sort(key=lambda d: d.position)
        return batch, dead

    def table(
        self, table: pa.Table | pa.RecordBatch, first_position: int, arrival_ms: float
    ) -> tuple[TxBatch, list[DeadLetter]]:
        """A Parquet (or any Arrow) batch; positions are row numbers from ``first_position``."""
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        table = table.combine_chunks()
        n = table.num_rows
        positions = np.arange(first_position, first_position + n, dtype=np.int64)
        fast = _columnar(table, self.tokenize)
        if fast is None:  # unusual column types: check every row the careful way
            rows = table.to_pylist()
            return self.records(rows, positions.tolist(), [arrival_ms] * n)
        columns, suspect = fast
        suspects = np.flatnonzero(suspect)
        clean = np.flatnonzero(~suspect)
        batch = _batch_from_columns(columns, clean, positions[clean], arrival_ms, table)
        if len(suspects) == 0:
            return batch, []
        rows = table.take(pa.array(suspects)).to_pylist()
        checked, dead = self.records(rows, positions[suspects].tolist(), [arrival_ms] * len(rows))
        merged = TxBatch.concat([batch, checked])
        order = np.argsort(merged.position, kind="stable")
        return merged.take(order), dead


def _column(table: pa.Table, *names: str) -> pa.Array | None:
    for name in names:
        if name in table.column_names:
            column = table.column(name)
            return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
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

    def text(name: str, *aliases: str, limit: int = MAX_TEXT_LENGTH) -> pa.Array | None:
        nonlocal suspect
        column = _column(table, name, *aliases)
        if column is None:
            return pa.nulls(n, pa.string())
        if pa.types.is_integer(column.type):
            column = pc.cast(column, pa.string())
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            return None
        column = pc.cast(column, pa.string())
        lengths = pc.binary_length(column).fill_null(1).to_numpy()
        suspect |= (lengths > limit) | (lengths == 0)
        return column

    ids = text("transaction_id", limit=MAX_ID_LENGTH)
    if "card_id" in table.column_names:
        card = text("card_id", limit=MAX_ID_LENGTH)
        if card is not None:
            for alias in ("account_id", "card_number"):  # rows relying on an alias
                if alias in table.column_names:
                    flag(pc.is_null(card))
    else:
        card = text("card_id", "account_id", "card_number", limit=MAX_ID_LENGTH)
    user = text("user_id", limit=MAX_ID_LENGTH)
    if ids is None or card is None or user is None:
        return None
    flag(pc.is_null(ids))
    flag(pc.is_null(card))
    timestamp = _column(table, "timestamp")
    amount = _column(table, "amount")
    if timestamp is None or amount is None:
        return None
    if pa.types.is_timestamp(timestamp.type):
        timestamp = pc.cast(pc.cast(timestamp, pa.timestamp("ms", "UTC")), pa.int64())
    if not pa.types.is_integer(timestamp.type) or not (
        pa.types.is_floating(amount.type) or pa.types.is_integer(amount.type)
    ):
        return None
    flag(pc.is_null(timestamp))
    ts = pc.cast(timestamp, pa.int64()).fill_null(0).to_numpy()
    suspect |= (ts < MIN_TIMESTAMP_MS) | (ts > MAX_TIMESTAMP_MS)
    flag(pc.is_null(amount))
    amounts = pc.cast(amount, pa.float64()).fill_null(0.0).to_numpy()
    suspect |= ~np.isfinite(amounts) | (amounts < 0)
    coords = []
    for names, limit in ((("lat",), 90.0), (("lon", "lng"), 180.0)):
        column = _column(table, *names)
        if column is None:
            coords.append(np.full(n, np.nan))
            continue
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            return None
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        values = np.where(np.isnan(values), np.nan, values)
        suspect |= np.isinf(values) | (np.abs(np.nan_to_num(values)) > limit)
        # NaN stored in the column (not null) is invalid; a null is "absent"
        suspect |= np.asarray(pc.is_nan(pc.cast(column, pa.float64())).fill_null(False))
        coords.append(values)
    if "lon" in table.column_names and "lng" in table.column_names:
        flag(pc.is_null(_column(table, "lon")))
    suspect |= np.isnan(coords[0]) != np.isnan(coords[1])
    currency = text("currency", limit=3)
    if currency is None:
        return None
    flag(pc.invert(pc.match_substring_regex(currency, r"^[A-Z]{3}$")).fill_null(False))
    texts = {}
    for name in TEXT_FIELDS:
        column = text(name)
        if column is None:
            return None
        texts[name] = column
    # Card numbers are tokenized per distinct value.
    card = _tokenize(card, tokenize)
    user = pc.coalesce(_tokenize(user, tokenize), card)
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


def _tokenize(column: pa.Array, tokenize: CardTokenizer) -> pa.Array:
    looks = pc.match_substring_regex(column, r"^\d{12,19}$").fill_null(False)
    if not pc.any(looks).as_py():
        return column
    encoded: Any = column.dictionary_encode()
    tokens = pa.array([None if v is None else tokenize(v) for v in encoded.dictionary.to_pylist()])
    return pc.take(tokens, encoded.indices)


def _batch_from_columns(
    columns: dict[str, Any],
    rows: np.ndarray[Any, Any],
    positions: np.ndarray[Any, Any],
    arrival_ms: float,
    table: pa.Table,
) -> TxBatch:
    take = pa.array(rows, pa.int64())
    extras_names = [c for c in table.column_names if c not in KNOWN_FIELDS]
    extras = None
    if extras_names and len(rows):
        extra_rows = table.select(extras_names).take(take).to_pylist()
        extras = np.empty(len(rows), dtype=object)
        extras[:] = extra_rows
    all_rows = len(rows) == table.num_rows

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
