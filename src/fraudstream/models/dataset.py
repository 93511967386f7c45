"""Feature tables from the live pipeline: the exact values each decision used.

:func:`attach` puts streaming features (fed by a label file) and optionally a model into a
pipeline; ``fraudstream run --model/--labels`` and ``fraudstream features`` both use it, so a
training table is what production computed, row for row. :class:`FeatureCollector` takes the
feature columns of every decided batch and writes them as Parquet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fraudstream.decide import Decisions
from fraudstream.features import FeatureConfig, StreamingFeatures
from fraudstream.features.catalog import DETECTOR_FEATURES
from fraudstream.features.engine import warm_up
from fraudstream.io.labels import LabelFeed, read_labels
from fraudstream.models.artifact import ModelArtifact
from fraudstream.models.stage import ModelStage

__all__ = ["FeatureCollector", "attach"]


def attach(
    pipeline: Any,
    labels: str | Path | None = None,
    model: str | Path | None = None,
    weight: float = 1.0,
    config: FeatureConfig | None = None,
) -> ModelStage:
    """Streaming features (and a model) inside ``pipeline``; returns the stage."""
    feed = LabelFeed(read_labels(labels)) if labels is not None else None
    artifact = ModelArtifact.load(model) if model is not None else None
    stage = ModelStage(StreamingFeatures(config, feed), artifact, weight)
    warm_up()
    if artifact is not None:  # the first prediction loads the model's own code paths
        artifact.predict(np.zeros((1, len(artifact.features))))
    pipeline.model_stage = stage
    return stage


class FeatureCollector:
    """Collects, per decision, the transaction's keys and the feature values used."""

    def __init__(self, stage: ModelStage) -> None:
        self.names = [*stage.features.names, *DETECTOR_FEATURES]
        if stage.model is not None:
            self.names.append("model_probability")
        self.batches: list[pa.RecordBatch] = []

    def __call__(self, decisions: Decisions) -> None:
        tx = decisions.tx
        n = len(decisions)
        columns: dict[str, Any] = {
            "transaction_id": tx.transaction_id,
            "card_id": tx.card_id,
            "merchant_id": tx.merchant_id,
            "timestamp": pa.array(tx.timestamp_ms, pa.int64()),
            "decision_time": pa.array(decisions.time_ms, pa.int64()),
        }
        for name in self.names:
            column = decisions.features.get(name)
            if column is None:
                values = np.full(n, np.nan)
            elif isinstance(column, np.ndarray):
                values = column.astype(np.float64)
            else:
                values = column.to_numpy(zero_copy_only=False).astype(np.float64)
            columns[name] = pa.array(values, pa.float64())
        self.batches.append(pa.RecordBatch.from_pydict(columns))

    def table(self) -> pa.Table:
        """Everything collected, in decision order."""
        if not self.batches:
            schema = pa.schema(
                [("transaction_id", pa.string()), ("card_id", pa.string()),
                 ("merchant_id", pa.string()), ("timestamp", pa.int64()),
                 ("decision_time", pa.int64())]
                + [(name, pa.float64()) for name in self.names]
            )  # fmt: skip
            return schema.empty_table()
        return pa.Table.from_batches(self.batches)

    def write(self, path: str | Path) -> int:
        """Writes the table as Parquet; returns the rows written."""
        table = self.table()
        pq.write_table(table, path, compression="zstd")
        return int(table.num_rows)
