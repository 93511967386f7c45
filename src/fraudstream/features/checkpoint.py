"""The streaming features' state as plain arrays, for checkpoints.

:func:`snapshot_features` returns every array of a :class:`StreamingFeatures` (rings, counters,
running statistics, transaction index, how far the label feed has been read, labels still
waiting for their transaction) under flat names; :func:`restore_features` loads them into a
fresh instance built with the same configuration and label file, so a restored pipeline
computes the same features as one that never stopped. The rings are kept compact (the live
entries of the keys that hold any), so the size follows the transactions within the feature
horizon, not the busiest key's ring width times every key.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from fraudstream.engine.keys import KeySpace
from fraudstream.features.engine import StreamingFeatures
from fraudstream.io.labels import Labels

__all__ = ["restore_features", "snapshot_features"]

_RING_COUNTERS = ("count", "head", "newest", "marked")


def _live(head: Any, count: Any, width: int) -> tuple[Any, Any]:
    """(rows, columns) of every live ring entry: key ``s``'s entries ``head[s]`` to
    ``count[s] - 1``, entry ``j`` at column ``j % width`` (the kernels' layout)."""
    head = np.asarray(head, dtype=np.int64)
    lengths = np.maximum(np.asarray(count, dtype=np.int64) - head, 0)
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths  # each key's first entry in the packed order
    entry = head[rows] + np.arange(len(rows), dtype=np.int64) - starts[rows]
    return rows, entry & (width - 1)


def _key_space(prefix: str, space: KeySpace | None, out: dict[str, Any]) -> None:
    if space is not None:
        for name, array in space.snapshot().items():
            out[f"{prefix}.{name}"] = array.copy()


def snapshot_features(features: StreamingFeatures) -> dict[str, Any]:
    """Copies of every array of the feature state (plain arrays, no Python objects: they go
    into a checkpoint's ``.npz``, which is read without pickle)."""
    out: dict[str, Any] = {}
    for prefix, rings in (("customers", features.customers), ("terminals", features.terminals)):
        # Compact: the rings are a (keys x width) table whose width is the busiest key's,
        # mostly fill. Kept: the keys up to the last one holding entries, and of each key's
        # ring its live entries only (head to count: the only ones a kernel reads).
        rows = max(int(np.flatnonzero(rings.count).max(initial=-1)) + 1, 1)
        out[f"{prefix}.width"] = np.array([rings.width])
        for name in _RING_COUNTERS:
            out[f"{prefix}.{name}"] = getattr(rings, name)[:rows].copy()
        where = _live(out[f"{prefix}.head"], out[f"{prefix}.count"], rings.width)
        for name, array in rings.arrays.items():
            out[f"{prefix}.live.{name}"] = array[where]
    customers = len(out["customers.count"])  # per-customer statistics: the same rows
    out["stats"] = features.stats[:customers].copy()
    out["last_ms"] = features.last_ms[:customers].copy()
    for name in ("seq_customer", "seq_terminal", "seq_known"):
        out[name] = getattr(features, name).copy()
    _key_space("transactions", features.transactions, out)
    _key_space("named", features.named, out)
    _key_space("fraud_labelled", features.fraud_labelled, out)
    pending = features.pending
    ids = [text.encode() for text in pending.transaction_id.to_pylist()]
    out["pending.id_lengths"] = np.array([len(raw) for raw in ids], dtype=np.int64)
    out["pending.id_bytes"] = np.frombuffer(b"".join(ids), dtype=np.uint8).copy()
    out["pending.is_fraud"] = pending.is_fraud.copy()
    out["pending.label_time"] = pending.label_time.copy()
    feed = features.labels  # not `if feed`: a feed whose labels were all handed out is empty
    out["labels.read"] = np.array([feed.position if feed is not None else 0])
    out["counters"] = np.array([features.labels_applied, features.labels_ignored])
    return out


def restore_features(features: StreamingFeatures, arrays: dict[str, Any]) -> None:
    """Loads a :func:`snapshot_features` into ``features`` (same config and label file)."""
    for prefix, rings in (("customers", features.customers), ("terminals", features.terminals)):
        rings.width = width = int(arrays[f"{prefix}.width"][0])
        for name in _RING_COUNTERS:
            setattr(rings, name, np.array(arrays[f"{prefix}.{name}"]))
        where = _live(rings.head, rings.count, width)
        for name, (dtype, fill) in rings.fields.items():  # laid out again, fill elsewhere
            ring = np.full((len(rings.count), width), fill, dtype=dtype)
            ring[where] = arrays[f"{prefix}.live.{name}"]
            rings.arrays[name] = ring
    for name in ("stats", "last_ms", "seq_customer", "seq_terminal", "seq_known"):
        setattr(features, name, np.array(arrays[name]))
    for name in ("transactions", "named", "fraud_labelled"):
        space = getattr(features, name)
        if space is not None:
            space.restore({k: arrays[f"{name}.{k}"] for k in ("offsets", "bytes")})
    raw = np.asarray(arrays["pending.id_bytes"], dtype=np.uint8).tobytes()
    ends = np.cumsum(arrays["pending.id_lengths"]).tolist()
    ids = [raw[a:b].decode() for a, b in zip([0, *ends][:-1], ends, strict=True)]
    features.pending = Labels(
        pa.array(ids, pa.string()),
        np.array(arrays["pending.is_fraud"], dtype=np.bool_),
        np.array(arrays["pending.label_time"], dtype=np.int64),
    )
    if features.labels is not None:
        features.labels.position = int(arrays["labels.read"][0])
    features.labels_applied, features.labels_ignored = (int(v) for v in arrays["counters"])
