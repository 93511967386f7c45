"""The model in the loop on Flink: streaming features in the sequencer, scoring in decide.

The embedded pipeline scores a micro-batch in one place (``Pipeline.process``): streaming
features from per-customer and per-terminal rings, then the model over those and the
detectors' features, then ``combine`` and the ``model`` reason. The Flink job splits that
where the state is:

- :class:`SequencedFeatures` runs in the sequencer (parallelism 1, every released record in
  processing order, the embedded order), so the rings see the same records in the same
  order as the embedded pipeline's. Its state (rings, key spaces) is part of the
  sequencer's snapshot, i.e. Flink ``ValueState``: checkpointed and restored with it. The
  feature columns travel with the card parts to the decide join.
- :class:`ModelSpec` (the loaded artifact and its weight) is pickled into the job;
  :meth:`ModelSpec.stage` builds, in the decide operator, the embedded
  :class:`~fraudstream.models.stage.ModelStage` over :class:`ShippedFeatures` (the columns
  arrived with the parts), so predictions, the noisy-or input and the ``model`` reason
  with its top contributions are computed by the very same code as in ``fraudstream run``.
  Scoring keeps no state: decide can run at any parallelism.

Labels (``--labels``) are not supported on Flink: they are applied per micro-batch, "known
by the batch's latest decision time", so their effect depends on where batches are cut,
and the two runtimes cut differently (records vs bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from fraudstream.config import ConfigError
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.keys import KeySpace
from fraudstream.features import StreamingFeatures
from fraudstream.features.checkpoint import restore_features, snapshot_features
from fraudstream.models.artifact import ModelArtifact
from fraudstream.models.stage import ModelStage

F64 = npt.NDArray[np.float64]

__all__ = ["ModelSpec", "SequencedFeatures", "ShippedFeatures", "take_rows"]


@dataclass(frozen=True)
class ModelSpec:
    """The model artifact (loaded once by the client, pickled into the job) and its weight."""

    artifact: ModelArtifact
    weight: float = 1.0

    @classmethod
    def load(cls, path: str | Path, weight: float = 1.0) -> ModelSpec:
        """Loads and checks an artifact; a :class:`ConfigError` (one line) if it is not one."""
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"--model-weight must be within [0, 1], got {weight}")
        try:
            artifact = ModelArtifact.load(path)
            artifact.predict(np.zeros((1, len(artifact.features))))  # loads its code paths
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - xgboost / joblib / pickle: any load error
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"--model {path}: cannot load the model: {first}") from None
        return cls(artifact, weight)

    def stage(self) -> ModelStage:
        """The embedded model stage, fed by features that arrive with the parts."""
        artifact = self.artifact
        if artifact.info.kind == "xgboost":  # a pickled booster forgets its thread count
            artifact.model.set_param({"nthread": 1})
        return ModelStage(ShippedFeatures(), artifact, self.weight)  # type: ignore[arg-type]


class ShippedFeatures:
    """The :class:`ModelStage` features source in decide: the sequencer computed them already.

    :meth:`ModelStage.score` asks its features source for a batch's columns and adds them to
    the batch's features; on Flink those columns are already there (scattered from the card
    parts by :func:`~fraudstream.flink.stages.assemble`), so there is nothing to add.
    """

    names: tuple[str, ...] = ()

    def compute(self, *_batch: Any) -> dict[str, F64]:
        """No columns to add: they came with the parts."""
        return {}


class BatchKeys(NamedTuple):
    """What :meth:`ModelStage.score` reads of the detector input besides the features."""

    user: Any
    merchant: Any
    time_ms: Any


class SequencedFeatures:
    """The embedded streaming features over the sequencer's released records.

    Customers are user ids and terminals merchant ids, as in the embedded pipeline (its
    user and merchant key spaces); only the slot numbers differ, which no feature sees.
    """

    def __init__(self) -> None:
        self.features = StreamingFeatures()
        self.customers = KeySpace()
        self.terminals = KeySpace()

    def compute(self, ready: TxBatch) -> dict[str, F64]:
        """The features of released records, in processing order (event time)."""
        return self.features.compute(
            ready.transaction_id,
            self.customers.slots(ready.user_id),
            self.terminals.slots(ready.merchant_id),
            np.ascontiguousarray(ready.timestamp_ms, dtype=np.int64),
            ready.amount,
            ready.timestamp_ms,
        )

    def snapshot(self) -> dict[str, Any]:
        """Copies of the rings, counters and both key spaces."""
        return {
            "features": snapshot_features(self.features),
            "customers": {k: v.copy() for k, v in self.customers.snapshot().items()},
            "terminals": {k: v.copy() for k, v in self.terminals.snapshot().items()},
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Loads a :meth:`snapshot`."""
        restore_features(self.features, dict(snapshot["features"]))
        self.customers.restore(snapshot["customers"])
        self.terminals.restore(snapshot["terminals"])


def take_rows(columns: Mapping[str, F64], rows: npt.NDArray[np.int64]) -> dict[str, F64]:
    """The feature columns at ``rows`` (one part's share of a released micro-batch)."""
    return {name: column[rows] for name, column in columns.items()}
