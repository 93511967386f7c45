"""Decisions as output records: JSON-ready dicts and Arrow tables (DESIGN.md's contracts).

Decision: transaction_id, card_id, user_id, event_time, decision, score, reasons, model,
features, processed_at, latency_ms. Enriched (seed 002's ``card-transactions-enriched``): the
transaction, the geo-velocity pair fields at the top level, ``features`` with the rest, and
the decision.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from fraudstream.decide import TIERS, Decisions
from fraudstream.engine.batch import TxBatch

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
    """``2019-01-01T00:06:00.000Z`` from epoch milliseconds.

    >>> iso_ms(1546301160000)
    '2019-01-01T00:06:00.000Z'
    """
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _python_columns(features: dict[str, Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name, column in features.items():
        if isinstance(column, pa.Array):
            out[name] = column.to_pylist()
        else:
            values = column.tolist()
            if column.dtype.kind == "f":
                values = [None if v != v else v for v in values]
                values = [
                    v if v is None or not math.isinf(v) else ("Infinity" if v > 0 else "-Infinity")
                    for v in values
                ]
            out[name] = values
    return out


def _latency_ms(decisions: Decisions) -> np.ndarray[Any, Any]:
    return np.round(np.maximum(decisions.processed_at_ms - decisions.tx.arrival_ms, 0.0), 3)


def decision_dicts(decisions: Decisions) -> list[dict[str, Any]]:
    """One dict per decision, in processing order (null features left out)."""
    tx = decisions.tx
    n = len(decisions)
    features = _python_columns(decisions.features)
    names = list(features)
    columns = [features[name] for name in names]
    ids = tx.transaction_id.to_pylist()
    cards = tx.card_id.to_pylist()
    users = tx.user_id.to_pylist()
    times = tx.timestamp_ms.tolist()
    scores = decisions.score.tolist()
    tiers = decisions.tier.tolist()
    latency = _latency_ms(decisions).tolist()
    processed = iso_ms(decisions.processed_at_ms)
    reasons = decisions.reasons
    probability = features.get("model_probability") if decisions.model else None
    out = []
    for i in range(n):
        out.append(
            {
                "transaction_id": ids[i],
                "card_id": cards[i],
                "user_id": users[i],
                "event_time": iso_ms(times[i]),
                "decision": TIERS[tiers[i]],
                "score": scores[i],
                "reasons": reasons.get(i, []),
                "model": None if probability is None else _model(decisions, i, probability[i]),
                "features": {
                    name: column[i]
                    for name, column in zip(names, columns, strict=True)
                    if column[i] is not None
                },
                "processed_at": processed,
                "latency_ms": latency[i],
            }
        )
    return out


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
    return pa.table(
        {
            "transaction_id": tx.transaction_id,
            "card_id": tx.card_id,
            "user_id": tx.user_id,
            "event_time": pa.array(tx.timestamp_ms, pa.int64()).cast(pa.timestamp("ms", "UTC")),
            "decision": _TIER_ARRAY.take(pa.array(decisions.tier.astype(np.int64))),
            "score": pa.array(decisions.score),
            "reasons": reasons,
            "features": features,
            "processed_at": pa.array(
                np.full(n, int(decisions.processed_at_ms), dtype=np.int64)
            ).cast(pa.timestamp("ms", "UTC")),
            "latency_ms": pa.array(_latency_ms(decisions)),
        }
    )


def late_dicts(batch: TxBatch, watermark: int, allowed_lateness_ms: int) -> list[dict[str, Any]]:
    """Late records with why they were not decided."""
    out = []
    for i in range(len(batch)):
        record = batch.record(i)
        behind = watermark - record["timestamp"]
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
