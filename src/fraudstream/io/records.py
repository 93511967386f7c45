"""Decisions as output records: JSON-ready dicts and Arrow tables (DESIGN.md's contracts).

Decision: transaction_id, card_id, user_id, event_time, decision, score, reasons,
shadow_reasons, rule_version, model, features, processed_at, latency_ms. Enriched (seed 002's
``card-transactions-enriched``): the transaction, the geo-velocity pair fields at the top
level, ``features`` with the rest, and the decision.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import compress
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.decide import TIERS, Decisions, Reasons
from fraudstream.engine.batch import FEW_ROWS, TxBatch
from fraudstream.engine.pylists import python_list
from fraudstream.schema import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS

GEO_FIELDS = (
    "previous_transaction_id",
    "previous_timestamp",
    "previous_lat",
    "previous_lon",
    "distance_km",
    "speed_kmh",
    "max_speed_kmh",
    "first_name",
    "last_name",
)
_TIER_ARRAY = pa.array(TIERS, pa.string())


def iso_ms(epoch_ms: float) -> str:
    """``2019-01-01T00:06:00.000Z`` from epoch milliseconds: exact for every millisecond of
    years 1-9999 (the schema's range), a fraction of a millisecond dropped toward the past.

    >>> iso_ms(1546301160000)
    '2019-01-01T00:06:00.000Z'
    >>> iso_ms(-62135596800000), iso_ms(-14831769599999)
    ('0001-01-01T00:00:00.000Z', '1500-01-01T00:00:00.001Z')
    """
    ms = math.floor(epoch_ms)  # integers from here: a float's seconds can be a ms off
    moment = _EPOCH + timedelta(milliseconds=ms)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{ms % 1000:03d}Z"
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso_ms_many(epoch_ms: np.ndarray[Any, Any]) -> list[str]:
    """``[iso_ms(t) for t in epoch_ms.tolist()]``, without a ``datetime`` per value (numpy's
    text of whole milliseconds is the same, four-digit years included).

    >>> _iso_ms_many(np.array([1546301160000, -1, -62135596800000]))
    ['2019-01-01T00:06:00.000Z', '1969-12-31T23:59:59.999Z', '0001-01-01T00:00:00.000Z']
    """
    if epoch_ms.dtype.kind not in "iu":
        return [iso_ms(t) for t in epoch_ms.tolist()]
    inside = epoch_ms <= MAX_TIMESTAMP_MS
    if epoch_ms.dtype.kind == "i":
        inside &= epoch_ms >= MIN_TIMESTAMP_MS
    moments = np.where(inside, epoch_ms, 0).astype(np.int64).astype("datetime64[ms]")
    texts: list[str] = np.strings.add(np.datetime_as_string(moments, unit="ms"), "Z").tolist()
    if not inside.all():  # past year 9999 or before year 1: iso_ms says what is wrong
        for k in np.flatnonzero(~inside).tolist():
            texts[k] = iso_ms(int(epoch_ms[k]))
    return texts


def _python_columns(features: dict[str, Any]) -> dict[str, list[Any]]:
    """Feature columns as Python lists: NaN and infinities as None, so left out of a record's
    features (JSON has neither; a string "Infinity" in a number's place breaks a reader, and
    the reason says "infinitely many")."""
    out: dict[str, list[Any]] = {}
    for name, column in features.items():
        if isinstance(column, pa.Array):
            out[name] = python_list(column)
        else:
            values = column.tolist()
            if column.dtype.kind == "f" and len(values) <= FEW_ROWS:
                out[name] = [v if math.isfinite(v) else None for v in values]
                continue
            if column.dtype.kind == "f":
                odd = ~np.isfinite(column)
                if odd.any():
                    for k in np.flatnonzero(odd).tolist():
                        values[k] = None
            out[name] = values
    return out


def _latency_ms(decisions: Decisions) -> list[float]:
    processed, arrival = decisions.processed_at_ms, decisions.tx.arrival_ms
    if len(arrival) <= FEW_ROWS:
        # numpy's round to 3 places, spelled in Python: half to even of the value x 1000
        return [round(max(processed - a, 0.0) * 1000) / 1000 for a in arrival.tolist()]
    rounded: list[float] = np.round(np.maximum(processed - arrival, 0.0), 3).tolist()
    return rounded


def _null_is_none(kind: pa.DataType) -> bool:
    """Whether ``to_pylist`` gives None exactly at the nulls of an Arrow array of ``kind``
    (not so for dictionary, union, run-end or extension arrays: their values may be null)."""
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_temporal(kind)
    )


def _none_rows(column: Any, values: list[Any]) -> np.ndarray[Any, Any] | None:
    """The rows where ``values`` (``column`` as :func:`_python_columns` wrote it) is None, as a
    mask; None when there are none. Read off the column where that is exact, else looked up."""
    if isinstance(column, pa.Array):
        if _null_is_none(column.type):
            if column.null_count == 0:
                return None
            return np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)
    elif column.dtype.kind in "biu":
        return None
    elif column.dtype.kind == "f":
        odd = ~np.isfinite(column)  # NaN and infinities are written as None
        return odd if odd.any() else None
    if None not in values:  # identity is tried first: False means no value `is None`
        return None
    return np.fromiter((v is None for v in values), np.bool_, len(values))


def _feature_dicts(
    names: list[str],
    columns: list[list[Any]],
    gaps: list[np.ndarray[Any, Any] | None],
    n: int,
) -> list[dict[str, Any]]:
    """Per row, ``{name: value}`` for the features whose value is not None, in column order.

    ``gaps[c]`` marks the rows where ``columns[c]`` is None (None: no row). Columns None in
    every row are dropped; rows group by which of the other columns they lack, and each row is
    one ``dict(zip(...))`` of its group's columns, without a test per value.

    >>> gap, every = np.array([False, True]), np.array([True, True])
    >>> _feature_dicts(["a", "b", "c"], [[1, None], [2, 3], [None, None]], [gap, None, every], 2)
    [{'a': 1, 'b': 2}, {'b': 3}]
    """
    kept = [c for c, gap in enumerate(gaps) if gap is None or not gap.all()]
    if not kept:
        return [{} for _ in range(n)]
    kept_names = [names[c] for c in kept]
    rows = zip(*(columns[c] for c in kept), strict=True)
    partial = [k for k, c in enumerate(kept) if gaps[c] is not None]
    if not partial:
        return [dict(zip(kept_names, row, strict=True)) for row in rows]
    lacking = np.stack([gap for gap in (gaps[c] for c in kept) if gap is not None], axis=1)
    first, group = _row_patterns(lacking)
    selectors = []
    for pattern in lacking[first].tolist():
        present = [True] * len(kept)
        for k, lacks in zip(partial, pattern, strict=True):
            present[k] = not lacks
        selectors.append(present)
    return [
        dict(compress(zip(kept_names, row, strict=True), selectors[g]))
        for row, g in zip(rows, group.tolist(), strict=True)
    ]


def _row_patterns(
    mask: np.ndarray[Any, Any],
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """For a 2-d boolean ``mask``: the first row of each distinct row pattern, and each row's
    pattern number (rows packed into 64-bit words: a plain sort, not a sort of byte records).

    >>> first, group = _row_patterns(np.array([[True, False], [False, False], [True, False]]))
    >>> first.tolist(), group.tolist()
    ([1, 0], [1, 0, 1])
    """
    packed = np.packbits(mask, axis=1, bitorder="little")
    words = np.zeros((len(mask), -(-packed.shape[1] // 8) * 8), dtype=np.uint8)
    words[:, : packed.shape[1]] = packed
    codes = words.view(np.uint64)
    if codes.shape[1] == 1:
        _, first, group = np.unique(codes[:, 0], return_index=True, return_inverse=True)
    else:
        _, first, group = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    return first, group.reshape(-1)


def _row_reasons(reasons: Any, n: int) -> list[list[dict[str, str]]]:
    """``[reasons.get(row, []) for row in range(n)]``; a :class:`Reasons` is read as its flat
    columns at once (one dict per entry, one slice per row) instead of row by row."""
    if type(reasons) is not Reasons:
        return [reasons.get(row, []) for row in range(n)]
    bounds = reasons.offsets.tolist()
    entries = [
        {"rule": rule, "message": message}
        for rule, message in zip(reasons.rules, reasons.messages, strict=True)
    ]
    return [entries[bounds[row] : bounds[row + 1]] for row in range(n)]


def decision_dicts(decisions: Decisions) -> list[dict[str, Any]]:
    """One dict per decision, in processing order (null features left out).

    Built column by column (timestamps formatted by numpy, NaN/inf patched where numpy finds
    them, feature dicts zipped) so the per-alert cost stays small on the job's main thread.
    """
    tx = decisions.tx
    n = len(decisions)
    features = _python_columns(decisions.features)
    if n <= FEW_ROWS:
        columns = features.items()
        feature_rows = [
            {name: value for name, values in columns if (value := values[i]) is not None}
            for i in range(n)
        ]
        times = [iso_ms(t) for t in tx.timestamp_ms.tolist()]
    else:
        names = list(features)
        gaps = [_none_rows(decisions.features[name], features[name]) for name in names]
        feature_rows = _feature_dicts(names, [features[name] for name in names], gaps, n)
        times = _iso_ms_many(np.asarray(tx.timestamp_ms))
    ids = python_list(tx.transaction_id)
    cards = python_list(tx.card_id)
    users = python_list(tx.user_id)
    scores = decisions.score.tolist()
    tiers = decisions.tier.tolist()
    latency = _latency_ms(decisions)
    processed = iso_ms(decisions.processed_at_ms)
    reasons = _row_reasons(decisions.reasons, n)
    shadow = (
        _row_reasons(decisions.shadow_reasons, n)
        if decisions.shadow_reasons is not None
        else [[] for _ in range(n)]
    )
    version = decisions.rule_version
    probability = features.get("model_probability") if decisions.model else None
    return [
        {
            "transaction_id": ids[i],
            "card_id": cards[i],
            "user_id": users[i],
            "event_time": times[i],
            "decision": TIERS[tiers[i]],
            "score": scores[i],
            "reasons": reasons[i],
            "shadow_reasons": shadow[i],
            "rule_version": version,
            "model": None if probability is None else _model(decisions, i, probability[i]),
            "features": feature_rows[i],
            "processed_at": processed,
            "latency_ms": latency[i],
        }
        for i in range(n)
    ]


def _model(decisions: Decisions, row: int, probability: float | None) -> dict[str, Any]:
    """The decision's ``model`` field (DESIGN.md): name, version, probability and, when the
    model gave a reason, its top contributions (as the reason says them)."""
    name, version = decisions.model or ("", "")
    top = [r["message"] for r in decisions.reasons.get(row, []) if r.get("rule") == "model"]
    return {
        "name": name,
        "version": version,
        "probability": probability,
        "top_contributions": top[0].split("top: ", 1)[-1] if top else None,
    }


def duplicate_letters(batch: TxBatch) -> list[dict[str, Any]]:
    """Dead letters for records whose transaction id was already processed."""
    letters = []
    for i in range(len(batch)):
        record = batch.record(i)
        letters.append(
            {
                "source": "input",
                "position": int(batch.position[i]),
                "reason": (
                    f"duplicate: transaction_id {record['transaction_id']!r} "
                    "was already processed; not decided twice"
                ),
                "raw": record,
            }
        )
    return letters


def enriched_dicts(decisions: Decisions) -> list[dict[str, Any]]:
    """The enriched stream: transaction + geo pair fields + features + decision."""
    tx = decisions.tx
    base = decision_dicts(decisions)
    out = []
    for i, decision in enumerate(base):
        record = tx.record(i)
        features = decision["features"]
        for name in GEO_FIELDS:
            record[name] = features.pop(name, None)
        record["event_time"] = decision["event_time"]
        record["features"] = features
        record["decision"] = decision["decision"]
        record["score"] = decision["score"]
        record["reasons"] = decision["reasons"]
        record["processed_at"] = decision["processed_at"]
        out.append(record)
    return out


def _nullable(values: np.ndarray[Any, Any]) -> pa.Array:
    """A numpy column as Arrow, NaN as null (a packed validity bitmap, no per-value pass)."""
    if values.dtype.kind != "f":
        return pa.array(values)
    valid = ~np.isnan(values)
    if valid.all():
        return pa.array(values)
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    data = np.ascontiguousarray(values, dtype=np.float64)
    return pa.Array.from_buffers(pa.float64(), len(values), [bitmap, pa.py_buffer(data)])


def decision_table(decisions: Decisions) -> pa.Table:
    """Decisions as an Arrow table (Parquet output), without per-row Python for approvals."""
    tx = decisions.tx
    n = len(decisions)
    feature_fields = []
    feature_arrays = []
    for name, column in sorted(decisions.features.items()):
        array = column if isinstance(column, pa.Array) else _nullable(column)
        feature_fields.append(pa.field(name, array.type))
        feature_arrays.append(array)
    features = (
        pa.StructArray.from_arrays(feature_arrays, fields=feature_fields)
        if feature_arrays
        else pa.nulls(n, pa.struct([]))
    )
    reasons = decisions.reasons.arrow()
    shadow = (
        decisions.shadow_reasons
        if decisions.shadow_reasons is not None
        else Reasons(np.zeros(n + 1, dtype=np.int64), [], [])
    ).arrow()
    return pa.table(
        {
            "transaction_id": tx.transaction_id,
            "card_id": tx.card_id,
            "user_id": tx.user_id,
            "event_time": pa.array(tx.timestamp_ms, pa.int64()).cast(pa.timestamp("ms", "UTC")),
            "decision": _TIER_ARRAY.take(pa.array(decisions.tier.astype(np.int64))),
            "score": pa.array(decisions.score),
            "reasons": reasons,
            "shadow_reasons": shadow,
            "rule_version": pa.array(np.full(n, decisions.rule_version, dtype=np.int64)),
            "features": features,
            "processed_at": pa.array(
                np.full(n, int(decisions.processed_at_ms), dtype=np.int64)
            ).cast(pa.timestamp("ms", "UTC")),
            "latency_ms": pa.array(_latency_ms(decisions)),
        }
    )


def late_dicts(
    batch: TxBatch, watermark: int | npt.NDArray[np.int64], allowed_lateness_ms: int
) -> list[dict[str, Any]]:
    """Late records with why they were not decided; ``watermark``: the one each arrived
    behind (or one for all)."""
    out = []
    for i in range(len(batch)):
        record = batch.record(i)
        arrived = watermark if isinstance(watermark, int) else int(watermark[i])
        behind = arrived - record["timestamp"]
        out.append(
            {
                "position": int(batch.position[i]),
                "reason": (
                    f"late: event time {iso_ms(record['timestamp'])} arrived more than "
                    f"{allowed_lateness_ms} ms behind the watermark (now {behind} ms behind)"
                ),
                "record": record,
            }
        )
    return out
