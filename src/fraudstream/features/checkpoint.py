"""The streaming features' state as plain arrays, for checkpoints.

:func:`snapshot_features` returns every array of a :class:`StreamingFeatures` (rings, counters,
running statistics, transaction index, how far the label feed has been read, labels still
waiting for their transaction) under flat names; :func:`restore_features` loads them into a
fresh instance built with the same configuration and label file, so a restored pipeline
computes the same features as one that never stopped.
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


def _key_space(prefix: str, space: KeySpace | None, out: dict[str, Any]) -> None:
    if space is not None:
        for name, array in space.snapshot().items():
            out[f"{prefix}.{name}"] = array.copy()


def snapshot_features(features: StreamingFeatures) -> dict[str, Any]:
    """Copies of every array of the feature state (plain arrays, no Python objects: they go
    into a checkpoint's ``.npz``, which is read without pickle)."""
    out: dict[str, Any] = {}
    for prefix, rings in (("customers", features.customers), ("terminals", features.terminals)):
        out[f"{prefix}.width"] = np.array([rings.width])
        for name, array in rings.arrays.items():
            out[f"{prefix}.ring.{name}"] = array.copy()
        for name in _RING_COUNTERS:
            out[f"{prefix}.{name}"] = getattr(rings, name).copy()
    for name in ("stats", "last_ms", "seq_customer", "seq_terminal", "seq_known"):
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
        rings.width = int(arrays[f"{prefix}.width"][0])
        for name in rings.arrays:
            rings.arrays[name] = np.array(arrays[f"{prefix}.ring.{name}"])
        for name in _RING_COUNTERS:
            setattr(rings, name, np.array(arrays[f"{prefix}.{name}"]))
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
