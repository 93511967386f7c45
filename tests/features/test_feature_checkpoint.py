"""Feature state survives a checkpoint: stop, restore into a fresh engine, same features."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fraudstream.features import FeatureConfig, StreamingFeatures
from fraudstream.features.checkpoint import restore_features, snapshot_features
from fraudstream.features.kernels import DAY_MS
from fraudstream.io.labels import LabelFeed, Labels


def _inputs(n: int, seed: int) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = pa.array([f"t{i}" for i in range(n)])
    customer = rng.integers(0, 30, n).astype(np.int32)
    terminal = rng.integers(0, 50, n).astype(np.int32)
    times = np.sort(rng.integers(0, 60 * DAY_MS, n)).astype(np.int64)
    amount = np.round(rng.uniform(1, 200, n), 2)
    return ids, customer, terminal, times, amount


def _labels(times: np.ndarray) -> Labels:
    rows = np.arange(0, len(times), 7)  # every 7th transaction a fraud, known 7 days later
    return Labels(
        pa.array([f"t{i}" for i in rows]), np.ones(len(rows), bool), times[rows] + 7 * DAY_MS
    )


def test_restored_engine_computes_what_the_uninterrupted_one_does() -> None:
    ids, customer, terminal, times, amount = _inputs(3_000, 5)
    config = FeatureConfig(initial_width=4)
    whole = StreamingFeatures(config, LabelFeed(_labels(times)))
    expected = whole.compute(ids, customer, terminal, times, amount)

    first = StreamingFeatures(config, LabelFeed(_labels(times)))
    half = 1_700
    first.compute(ids.slice(0, half), customer[:half], terminal[:half], times[:half], amount[:half])
    saved = snapshot_features(first)
    assert first.customers.width > 4  # the rings widened: the snapshot must carry that
    rings = first.customers.nbytes() + first.terminals.nbytes()
    assert sum(np.asarray(v).nbytes for v in saved.values()) < rings  # live entries only
    restored = StreamingFeatures(config, LabelFeed(_labels(times)))
    restore_features(restored, saved)
    rest = restored.compute(
        ids.slice(half), customer[half:], terminal[half:], times[half:], amount[half:]
    )
    for name, column in expected.items():
        assert np.array_equal(column[half:], rest[name], equal_nan=True), name
    assert rest["terminal_risk_30d"].max() > 0


def test_a_feed_whose_labels_were_all_handed_out_restores_at_its_end() -> None:
    """An exhausted feed is empty (falsy): its position must still be saved, or a restore
    would hand every label out again."""
    ids, customer, terminal, times, amount = _inputs(500, 3)
    labels = Labels(pa.array(["t0"]), np.ones(1, bool), np.array([times[0]]))
    features = StreamingFeatures(FeatureConfig(), LabelFeed(labels))
    features.compute(ids, customer, terminal, times, amount)
    assert features.labels is not None and len(features.labels) == 0
    restored = StreamingFeatures(FeatureConfig(), LabelFeed(labels))
    restore_features(restored, snapshot_features(features))
    assert restored.labels is not None and restored.labels.position == 1
    assert restored.labels_applied == features.labels_applied == 1


def test_pending_labels_round_trip_as_plain_arrays() -> None:
    """Labels of transactions not seen yet are kept; the snapshot holds no Python objects
    (a checkpoint's .npz is read without pickle)."""
    ids, customer, terminal, times, amount = _inputs(50, 4)
    later = Labels(pa.array(["not-yet-é", "x", ""]), np.ones(3, bool), np.array([1, 2, 3]))
    features = StreamingFeatures(FeatureConfig(), LabelFeed(later))
    features.compute(ids, customer, terminal, times, amount)
    assert features.pending.transaction_id.to_pylist() == ["not-yet-é", "x", ""]
    saved = snapshot_features(features)
    assert all(np.asarray(v).dtype != object for v in saved.values())
    restored = StreamingFeatures(FeatureConfig(), LabelFeed(later))
    restore_features(restored, saved)
    assert restored.pending.transaction_id.to_pylist() == ["not-yet-é", "x", ""]
