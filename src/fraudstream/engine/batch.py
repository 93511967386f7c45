"""A micro-batch of valid transactions, held as columns.

Numbers are numpy arrays (the detectors' kernels read them directly); text is Arrow string
arrays (cheap to take, encode and write). Nothing per record is a Python object except the
optional ``extras`` (unknown input fields, carried through to the enriched output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.schema import TEXT_FIELDS, ValidTx

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Up to this many rows (an authorization request's batch) the per-batch steps that have a
# plain-Python path take it: a NumPy or Arrow call costs 1-3 us whatever its length, and a
# step makes one per column.
FEW_ROWS = 16


@dataclass(slots=True)
class TxBatch:
    """Columns of valid transactions; ``position`` is the source position of each record."""

    transaction_id: pa.Array
    card_id: pa.Array
    user_id: pa.Array
    timestamp_ms: I64
    amount: F64
    lat: F64
    lon: F64
    currency: pa.Array
    zipcode: pa.Array
    merchant_id: pa.Array
    merchant_category: pa.Array
    country: pa.Array
    channel: pa.Array
    device_id: pa.Array
    ip: pa.Array
    position: I64
    arrival_ms: F64
    extras: npt.NDArray[np.object_] | None = None

    def __len__(self) -> int:
        return len(self.timestamp_ms)

    @classmethod
    def empty(cls) -> TxBatch:
        """A batch with no rows (its columns shared: nothing can be written to an empty one)."""
        return cls(**_EMPTY_COLUMNS)

    @classmethod
    def from_valid(cls, rows: Sequence[ValidTx], position: I64, arrival_ms: F64) -> TxBatch:
        """Columns from validated records (the JSON lines / CSV / HTTP path)."""
        if not rows:
            text = pa.array([], pa.string())
            empty_f = np.empty(0, np.float64)
            texts = dict.fromkeys(("currency", *TEXT_FIELDS), text)
            return cls(
                transaction_id=text,
                card_id=text,
                user_id=text,
                timestamp_ms=np.empty(0, np.int64),
                amount=empty_f,
                lat=empty_f,
                lon=empty_f,
                position=position,
                arrival_ms=arrival_ms,
                **texts,
            )
        columns = list(zip(*rows, strict=True))
        extras_column = columns[15]
        extras = None
        if any(e is not None for e in extras_column):
            extras = np.empty(len(rows), dtype=object)
            extras[:] = extras_column
        n = len(rows)
        if n <= FEW_ROWS:
            # An authorization request's batch: the text columns as one Arrow array, sliced
            # (each conversion has a fixed cost that dominates a batch of one).
            texts = pa.array([v for k in _TEXT_COLUMNS for v in columns[k]], pa.string())
            text = {name: texts.slice(i * n, n) for i, name in enumerate(_TEXT_NAMES)}
        else:  # (one flat list of every value would cost more than it saves)
            text = {name: pa.array(columns[k], pa.string()) for k, name in _TEXT_PLACES}
        return cls(
            timestamp_ms=np.array(columns[3], dtype=np.int64),
            amount=np.array(columns[4], dtype=np.float64),
            lat=np.array(columns[6], dtype=np.float64),
            lon=np.array(columns[7], dtype=np.float64),
            position=position,
            arrival_ms=arrival_ms,
            extras=extras,
            **text,
        )

    def take(self, indices: npt.NDArray[np.integer[Any]]) -> TxBatch:
        """The rows at ``indices``, in that order."""
        values: dict[str, Any] = {}
        arrow_indices = pa.array(indices, type=pa.int64())
        for f in fields(self):
            column = getattr(self, f.name)
            if column is None:
                values[f.name] = None
            elif isinstance(column, pa.Array):
                values[f.name] = column.take(arrow_indices)
            else:
                values[f.name] = column[indices]
        return TxBatch(**values)

    @staticmethod
    def concat(batches: Sequence[TxBatch]) -> TxBatch:
        """One batch holding the rows of all ``batches`` in order."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return TxBatch.empty()
        if len(batches) == 1:
            return batches[0]
        values: dict[str, Any] = {}
        for f in fields(TxBatch):
            columns = [getattr(b, f.name) for b in batches]
            if f.name == "extras":
                if all(c is None for c in columns):
                    values[f.name] = None
                    continue
                parts = []
                for b, c in zip(batches, columns, strict=True):
                    if c is None:
                        c = np.empty(len(b), dtype=object)
                    parts.append(c)
                values[f.name] = np.concatenate(parts)
            elif isinstance(columns[0], pa.Array):
                values[f.name] = pa.concat_arrays(columns)
            else:
                values[f.name] = np.concatenate(columns)
        return TxBatch(**values)

    def record(self, row: int) -> dict[str, Any]:
        """One row as a contract transaction dict (for late records and enriched output)."""
        out: dict[str, Any] = {
            "transaction_id": self.transaction_id[row].as_py(),
            "card_id": self.card_id[row].as_py(),
            "user_id": self.user_id[row].as_py(),
            "timestamp": int(self.timestamp_ms[row]),
            "amount": float(self.amount[row]),
            "currency": self.currency[row].as_py(),
        }
        if not np.isnan(self.lat[row]):
            out["lat"] = float(self.lat[row])
            out["lon"] = float(self.lon[row])
        for name in TEXT_FIELDS:
            value = getattr(self, name)[row].as_py()
            if value is not None:
                out[name] = value
        if self.extras is not None and self.extras[row]:
            out.update(self.extras[row])
        return out


# ValidTx's text fields: their columns, and their places in the tuple
_TEXT_NAMES = ("transaction_id", "card_id", "user_id", "currency", *TEXT_FIELDS)
_TEXT_COLUMNS = tuple(ValidTx._fields.index(name) for name in _TEXT_NAMES)
_TEXT_PLACES = tuple(zip(_TEXT_COLUMNS, _TEXT_NAMES, strict=True))

# An in-order step releases its records and an empty "late" batch: built once, not per step.
_EMPTY_COLUMNS = {
    field.name: getattr(
        TxBatch.from_valid([], np.empty(0, np.int64), np.empty(0, np.float64)), field.name
    )
    for field in fields(TxBatch)
}
