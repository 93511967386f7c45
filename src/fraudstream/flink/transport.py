"""The keyed job's parts on the wire: one Arrow IPC stream (one record batch) per part.

A part crosses a network shuffle (decoder -> card key groups -> user key groups) and waits
in Flink state until the watermark releases it. Pickling it column by column cost a
Python object per column and a copy per slice; one record batch is one call to write and
a zero-copy read, and a part cut out of a larger one is a slice of it, not a take.

Columns: the transaction's (as :class:`~fraudstream.engine.batch.TxBatch` holds them), then
for a card stage's answer ``fired:<rule>`` (bool), ``feature:<name>`` and
``message:<rule>`` (text, null where the rule said nothing).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.engine.batch import TxBatch
from fraudstream.flink.stages import StageResult, shard_of

I64 = npt.NDArray[np.int64]
TX_FIELDS = tuple(f.name for f in fields(TxBatch) if f.name != "extras")
EXTRAS = "extras"
FIRED, FEATURE, MESSAGE = "fired:", "feature:", "message:"

__all__ = [
    "pack_result",
    "bucket_parts",
    "pack_tx",
    "part_times",
    "slices",
    "take_part",
    "result_batch",
    "tx_batch",
    "unpack_result",
    "unpack_tx",
]

_extras_encode = msgspec.msgpack.Encoder().encode
_extras_decode = msgspec.msgpack.Decoder().decode


def tx_batch(tx: TxBatch) -> pa.RecordBatch:
    """The transactions as one record batch (numbers zero-copy; extras as msgpack)."""
    names = list(TX_FIELDS)
    arrays: list[Any] = [getattr(tx, name) for name in TX_FIELDS]
    if tx.extras is not None:
        names.append(EXTRAS)
        arrays.append(
            pa.array([None if e is None else _extras_encode(e) for e in tx.extras], pa.binary())
        )
    return pa.RecordBatch.from_arrays([pa.array(a) for a in arrays], names=names)


def result_batch(result: StageResult) -> pa.RecordBatch:
    """A card stage's answer, with its transactions, as one record batch."""
    assert result.tx is not None
    batch = tx_batch(result.tx)
    names, arrays = list(batch.schema.names), list(batch.columns)
    n = len(result.seq)
    for rule, mask in result.fired.items():
        names.append(FIRED + rule)
        arrays.append(pa.array(mask, pa.bool_()))
    for name, column in result.features.items():
        names.append(FEATURE + name)
        arrays.append(column if isinstance(column, pa.Array) else pa.array(column))
    for rule, (rows, texts) in result.messages.items():
        said: list[str | None] = [None] * n
        for row, text in zip(rows.tolist(), texts, strict=True):
            said[row] = text
        names.append(MESSAGE + rule)
        arrays.append(pa.array(said, pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def _read(data: bytes) -> pa.RecordBatch:
    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_next_batch()


def pack_result(result: StageResult) -> bytes:
    """A card stage's answer (with its transactions) as the bytes of one part."""
    return _ipc(result_batch(result))


def pack_tx(tx: TxBatch) -> bytes:
    """``tx`` as the bytes of one part.

    >>> from fraudstream.testing import tx_batch as make
    >>> unpack_tx(pack_tx(make(ids=["a", "b"], times=[5, 1]))).timestamp_ms.tolist()
    [5, 1]
    """
    return _ipc(tx_batch(tx))


def slices(batch: pa.RecordBatch, keys: npt.NDArray[np.int64]) -> Iterator[tuple[int, bytes]]:
    """``batch`` cut by ``keys`` (one per row, each key's rows together): (key, the part's
    bytes), in the batch's order."""
    bounds = [0, *(np.flatnonzero(np.diff(keys)) + 1).tolist(), len(keys)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        if end > start:
            yield int(keys[start]), _ipc(batch.slice(start, end - start))


def bucket_parts(
    batch: pa.RecordBatch, column: pa.Array, keys: tuple[int, ...]
) -> Iterator[tuple[int, bytes]]:
    """``batch`` cut by key group of ``column`` (its card or user id column): (the key
    group's int key, the part's bytes), key groups in ``keys`` order, rows in ``batch`` order.

    >>> from fraudstream.testing import tx_batch as make
    >>> tx = make(ids=["a", "b", "c"], times=[1, 2, 3])
    >>> [(key, unpack_tx(part).transaction_id.to_pylist())
    ...  for key, part in bucket_parts(tx_batch(tx), pa.array(["x", "y", "x"]), (10, 20))]
    [(10, ['b']), (20, ['a', 'c'])]
    """
    bucket = shard_of(column, len(keys))
    order = np.argsort(bucket, kind="stable")
    key_of_row = np.asarray(keys, dtype=np.int64)[bucket[order]]
    yield from slices(batch.take(pa.array(order, pa.int64())), key_of_row)


def _numbers(column: pa.Array) -> Any:
    # read-only where zero-copy: the stages concatenate or take before anything writes
    return column.to_numpy(zero_copy_only=False)


def _column(column: pa.Array) -> Any:
    """Text stays Arrow (as in a TxBatch); numbers and flags become numpy."""
    if pa.types.is_string(column.type) or pa.types.is_binary(column.type):
        return column
    return _numbers(column)


def _tx_of(batch: pa.RecordBatch) -> TxBatch:
    values: dict[str, Any] = {}
    for name in TX_FIELDS:
        values[name] = _column(batch.column(name))
    extras = None
    if EXTRAS in batch.schema.names:
        extras = np.empty(len(batch), dtype=object)
        extras[:] = [
            None if e is None else _extras_decode(e) for e in batch.column(EXTRAS).to_pylist()
        ]
    return TxBatch(**values, extras=extras)


def unpack_tx(data: bytes) -> TxBatch:
    """The transactions of a part made by :func:`pack_tx`."""
    return _tx_of(_read(data))


def take_part(data: bytes, rows: I64) -> bytes:
    """The part of ``rows`` of a part (either kind), in that order."""
    return _ipc(_read(data).take(pa.array(rows, pa.int64())))


def part_times(data: bytes, arrival: bool = False) -> I64:
    """The event times of a part's records (``arrival``: their arrival times, whole
    milliseconds, for processing time), without unpacking the rest."""
    if arrival:
        return _numbers(_read(data).column("arrival_ms")).astype(np.int64)  # type: ignore[no-any-return]
    return _numbers(_read(data).column("timestamp_ms"))  # type: ignore[no-any-return]


def unpack_result(data: bytes) -> StageResult:
    """A card stage's answer for a part made from :func:`result_batch` (rows 0..n-1)."""
    batch = _read(data)
    n = len(batch)
    fired: dict[str, Any] = {}
    features: dict[str, Any] = {}
    messages: dict[str, tuple[I64, list[str]]] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if name.startswith(FIRED):
            fired[name[len(FIRED) :]] = _numbers(column)
        elif name.startswith(FEATURE):
            features[name[len(FEATURE) :]] = _column(column)
        elif name.startswith(MESSAGE):
            rows = np.flatnonzero(_numbers(pc.is_valid(column)))
            texts = column.take(pa.array(rows, pa.int64())).to_pylist()
            messages[name[len(MESSAGE) :]] = (rows.astype(np.int64), texts)
    seq = np.arange(n, dtype=np.int64)
    return StageResult("card", 0, n, seq, _tx_of(batch), fired, features, messages)
