"""The model in the loop on Flink: streaming features in the sequencer, scoring in decide.

The embedded pipeline scores a micro-batch in one place (``Pipeline.process``): streaming
features from per-customer and per-terminal rings, then the model over those and the
detectors' features, then ``combine`` and the ``model`` reason. The Flink job splits that
where the state is:

- :class:`SequencedFeatures` runs in the sequencer (parallelism 1, every released record in
  processing order, the embedded order), so the rings see the same records in the same
  order as the embedded pipeline's. Its state (rings, key spaces, how far the labels were
  read) is part of the sequencer's snapshot, i.e. Flink ``ValueState``: checkpointed and
  restored with it. The feature columns travel with the card parts to the decide join.
- :class:`ModelSpec` (the loaded artifact, its weight, the labels) is pickled into the job;
  :meth:`ModelSpec.stage` builds, in the decide operator, the embedded
  :class:`~fraudstream.models.stage.ModelStage` over :class:`ShippedFeatures` (the columns
  arrived with the parts), so predictions, the noisy-or input and the ``model`` reason
  with its top contributions are computed by the very same code as in ``fraudstream run``.
  Scoring keeps no state: decide can run at any parallelism.

Labels (``--labels``, a file) feed the sequencer's features as they feed the embedded ones:
before each micro-batch (each part of it the embedded pipeline decides separately, see
:meth:`SequencedFeatures.compute`) the labels known by its latest time are marked. A fraud
counts for a decision only if it was known by the decision's time, so fraud labels give the
same features however the stream is cut; a not-fraud label that overturns an earlier fraud
label takes effect per micro-batch, so there both runtimes agree when they cut the same
micro-batches (bounded files read in chunks: the default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow.compute as pc

from fraudstream.config import ConfigError
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.expiry import NEVER, StateExpiry, returning
from fraudstream.engine.keys import KeySpace
from fraudstream.features import StreamingFeatures
from fraudstream.features.checkpoint import restore_features, snapshot_features
from fraudstream.features.engine import warm_up
from fraudstream.features.timeline import fraud_named
from fraudstream.io.labels import LabelFeed, Labels, read_labels
from fraudstream.models.artifact import ModelArtifact
from fraudstream.models.stage import ModelStage

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

__all__ = ["BatchKeys", "ModelSpec", "SequencedFeatures", "ShippedFeatures", "take_rows"]


@dataclass(frozen=True)
class ModelSpec:
    """What `run --model/--labels` attaches: the model artifact (or none: features only),
    its weight and the label file, loaded once by the client and pickled into the job."""

    artifact: ModelArtifact | None
    weight: float = 1.0
    labels: Labels | None = None  # only the sequencer needs them (see :meth:`lean`)

    @classmethod
    def load(
        cls, path: str | Path | None, weight: float = 1.0, labels: str | Path | None = None
    ) -> ModelSpec:
        """Loads and checks the artifact and labels; a :class:`ConfigError` (one line)."""
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"--model-weight must be within [0, 1], got {weight}")
        known = read_labels(labels) if labels is not None else None
        if path is None:
            return cls(None, weight, known)
        try:
            artifact = ModelArtifact.load(path)
            artifact.predict(np.zeros((1, len(artifact.features))))  # loads its code paths
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - xgboost / joblib / pickle: any load error
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"--model {path}: cannot load the model: {first}") from None
        return cls(artifact, weight, known)

    def lean(self) -> ModelSpec:
        """This spec without the labels (what the operators after the sequencer get)."""
        return ModelSpec(self.artifact, self.weight)

    def keyed(self) -> ModelSpec:
        """This spec with only the labels that can mark a known fraud (what the keyed job's
        terminal and user stages fold, :class:`~fraudstream.features.timeline.LabelTimeline`)."""
        labels = fraud_named(self.labels) if self.labels is not None else None
        return ModelSpec(self.artifact, self.weight, labels)

    def stage(self) -> ModelStage:
        """The embedded model stage, fed by features that arrive with the parts."""
        return ModelStage(ShippedFeatures(), self._artifact(), self.weight)  # type: ignore[arg-type]

    def embedded_stage(self) -> ModelStage:
        """The model stage with its own streaming features, as `run --model --labels`
        attaches it (the fused job at parallelism 1 runs the whole pipeline)."""
        feed = LabelFeed(self.labels) if self.labels is not None else None
        warm_up()
        return ModelStage(StreamingFeatures(None, feed), self._artifact(), self.weight)

    def _artifact(self) -> ModelArtifact | None:
        artifact = self.artifact
        if artifact is not None and artifact.info.kind == "xgboost":
            artifact.model.set_param({"nthread": 1})  # a pickled booster forgets it
        return artifact


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

    def __init__(self, labels: Labels | None = None, state_ttl_ms: int | None = None) -> None:
        self.features = StreamingFeatures(None, LabelFeed(labels) if labels is not None else None)
        self.customers = KeySpace()
        self.terminals = KeySpace()
        self.expiry = StateExpiry(state_ttl_ms) if state_ttl_ms else None
        self.seen = np.empty(0, dtype=np.int64)  # each customer's last time (state TTL)

    def compute(self, ready: TxBatch) -> dict[str, F64]:
        """The features of released records, in processing order (event time).

        With a state TTL the embedded pipeline decides a batch in parts, cut where a card or
        user comes back inside the current part after more than the TTL
        (``StateExpiry.cuts``); before each part its
        returning users start over (their customer features too) and each part takes the
        labels due by its latest time: so does this.
        """
        time_ms = np.ascontiguousarray(ready.timestamp_ms, dtype=np.int64)
        if self.expiry is not None and len(ready):
            keys = {"card": _codes(ready.card_id), "user": _codes(ready.user_id)}
            cuts = self.expiry.cuts(keys, time_ms)
            if len(cuts):
                pieces = [
                    self.compute(ready.take(rows)) for rows in np.split(np.arange(len(ready)), cuts)
                ]
                return {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}
        customers = self.customers.slots(ready.user_id)
        if self.expiry is not None:
            self._expire(customers, time_ms, self.expiry.ttl_ms)
        return self.features.compute(
            ready.transaction_id,
            customers,
            self.terminals.slots(ready.merchant_id),
            time_ms,
            ready.amount,
            ready.timestamp_ms,
        )

    def _expire(self, customers: npt.NDArray[np.int32], time_ms: I64, ttl_ms: int) -> None:
        """``StateExpiry.expire`` for the customers: back after more than the TTL (since
        their last record, in an earlier part or batch), they start over (no key comes back
        inside a part: the cuts saw to that)."""
        if len(self.seen) < len(self.customers):
            grown = np.full(max(len(self.customers), 2 * len(self.seen), 1024), NEVER, np.int64)
            grown[: len(self.seen)] = self.seen
            self.seen = grown
        known = customers >= 0
        stale = returning(self.seen, customers[known], time_ms[known], ttl_ms)
        self.features.forget_customers(stale)

    def snapshot(self) -> dict[str, Any]:
        """The feature state (compact: each ring's live entries, see
        :func:`~fraudstream.features.checkpoint.snapshot_features`), both key spaces and
        each customer's last time."""
        return {
            "features": snapshot_features(self.features),
            "customers": {k: v.copy() for k, v in self.customers.snapshot().items()},
            "terminals": {k: v.copy() for k, v in self.terminals.snapshot().items()},
            "seen": self.seen.copy(),
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Loads a :meth:`snapshot`."""
        restore_features(self.features, dict(snapshot["features"]))
        self.customers.restore(snapshot["customers"])
        self.terminals.restore(snapshot["terminals"])
        self.seen = np.array(snapshot["seen"], dtype=np.int64)


def _codes(column: Any) -> npt.NDArray[np.int32]:
    """Equal keys -> equal codes (nulls: -1, like key-space slots), for the TTL cuts."""
    codes = pc.dictionary_encode(column).indices.fill_null(-1)
    return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int32)


def take_rows(columns: Mapping[str, F64], rows: npt.NDArray[np.int64]) -> dict[str, F64]:
    """The feature columns at ``rows`` (one part's share of a released micro-batch)."""
    return {name: column[rows] for name, column in columns.items()}
