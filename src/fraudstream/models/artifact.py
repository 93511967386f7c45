"""A trained model as a versioned artifact: the model, its feature list, window and metrics.

An artifact is a directory::

    model.json     metadata: name, kind, version, feature list, training window,
                   class balance, metrics, library versions, created_at
    model.ubj      XGBoost booster (kind "xgboost"), or
    model.joblib   scikit-learn pipeline (kinds "logistic_regression", "random_forest")

:class:`ModelArtifact` predicts fraud probabilities for a feature matrix and explains rows:
XGBoost's exact tree SHAP values (``pred_contribs``), the linear model's coefficient x
standardised value, or, for the forest, each tree's path contributions (Saabas), so every
model gives per-feature contributions (XGBoost and the linear model in log-odds, the forest
in probability). XGBoost uses its fast path-contribution mode (``approx_contribs``), as the
forest does; ``exact=True`` asks for exact TreeSHAP.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream.config import ConfigError

__all__ = ["KINDS", "ModelArtifact", "ModelInfo", "finite", "library_versions"]

F64 = npt.NDArray[np.float64]
KINDS = ("logistic_regression", "random_forest", "xgboost")


def finite(x: F64) -> F64:
    """``x`` with infinities (an infinite speed: zero elapsed time) clipped to +-1e12.

    Used on every matrix a model sees, in training and in scoring alike; NaN stays missing.
    """
    return np.clip(x, -1e12, 1e12)


def library_versions() -> dict[str, str]:
    """Versions of what trained the model (a model is only reproducible with them)."""
    import numpy
    import sklearn  # type: ignore[import-untyped]
    import xgboost

    import fraudstream

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "xgboost": xgboost.__version__,
        "fraudstream": getattr(fraudstream, "__version__", "0"),
    }


@dataclass(slots=True)
class ModelInfo:
    """The artifact's metadata (model.json)."""

    name: str
    kind: str
    features: list[str]
    training_window: dict[str, str]
    class_balance: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=library_versions)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    version: str = ""


class ModelArtifact:
    """A loaded (or freshly trained) model with its metadata."""

    def __init__(self, info: ModelInfo, model: Any) -> None:
        if info.kind not in KINDS:
            raise ConfigError(f"model kind must be one of {', '.join(KINDS)}, got {info.kind!r}")
        self.info = info
        self.model = model
        self._linear: tuple[F64, F64, F64, F64, float] | None = None
        if info.kind == "logistic_regression":
            steps = model.named_steps
            self._linear = (
                np.asarray(steps["impute"].statistics_, dtype=np.float64),
                np.asarray(steps["scale"].mean_, dtype=np.float64),
                np.asarray(steps["scale"].scale_, dtype=np.float64),
                np.asarray(steps["model"].coef_[0], dtype=np.float64),
                float(steps["model"].intercept_[0]),
            )

    def _standardised(self, x: F64) -> F64:
        """The linear model's input: missing values imputed, then standardised (numpy only).

        The same arithmetic as its scikit-learn pipeline, without the per-call validation
        and copies that cost more than the model itself on the hot path.
        """
        assert self._linear is not None
        median, mean, scale, _, _ = self._linear
        filled = np.where(np.isnan(x), median, x)
        return (filled - mean) / scale

    @property
    def features(self) -> list[str]:
        """The feature names, in the column order the model expects."""
        return self.info.features

    def predict(self, x: F64, is_finite: bool = False) -> F64:
        """Fraud probability per row of ``x`` (NaN = missing value).

        ``is_finite`` says ``x`` went through :func:`finite` already (the pipeline builds it so).
        """
        if len(x) == 0:
            return np.empty(0, dtype=np.float64)
        if not is_finite:
            x = finite(x)
        if self.info.kind == "xgboost":
            out = self.model.inplace_predict(x)
            return np.asarray(out, dtype=np.float64)
        if self._linear is not None:
            # standardising folded into the weights: ((x - mean) / scale) @ coef + b
            median, mean, scale, coef, intercept = self._linear
            weights = coef / scale
            z = np.where(np.isnan(x), median, x) @ weights + (intercept - mean @ weights)
            return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -700.0, 700.0))), dtype=np.float64)
        return np.asarray(self.model.predict_proba(x)[:, 1], dtype=np.float64)

    def contributions(self, x: F64, exact: bool = False) -> F64:
        """Per-row, per-feature contributions to the score (rows x features)."""
        if len(x) == 0:
            return np.empty((0, len(self.features)))
        x = finite(x)
        kind = self.info.kind
        if kind == "xgboost":
            import xgboost

            # Saabas-style path contributions (approx_contribs): exact TreeSHAP costs ~10x more
            # per row, and these rows are on the hot path of alerting.
            contribs = self.model.predict(
                xgboost.DMatrix(x, missing=np.nan), pred_contribs=True, approx_contribs=not exact
            )
            return np.asarray(contribs[:, :-1], dtype=np.float64)  # last column: the bias
        if self._linear is not None:
            return np.asarray(self._standardised(x) * self._linear[3], dtype=np.float64)
        steps = dict(self.model.named_steps)
        prepared = x
        for _name, step in self.model.steps[:-1]:
            prepared = step.transform(prepared)
        return _forest_contributions(steps["model"], np.asarray(prepared, dtype=np.float64))

    # --- files ---------------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        """Writes the artifact; its version is a hash of the model bytes and metadata."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.info.kind == "xgboost":
            model_path = directory / "model.ubj"
            self.model.save_model(model_path)
        else:
            import joblib  # type: ignore[import-untyped]

            model_path = directory / "model.joblib"
            joblib.dump(self.model, model_path)
        digest = hashlib.sha256(model_path.read_bytes())
        digest.update(json.dumps(self.info.features).encode())
        stamp = self.info.created_at[:10].replace("-", "")
        self.info.version = f"{stamp}-{digest.hexdigest()[:10]}"
        (directory / "model.json").write_text(json.dumps(asdict(self.info), indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ModelArtifact:
        """Reads an artifact written by :meth:`save`; a readable error if it is not one."""
        directory = Path(directory)
        meta = directory / "model.json"
        if not meta.is_file():
            raise ConfigError(f"--model {directory}: not a model artifact (no model.json)")
        try:
            info = ModelInfo(**json.loads(meta.read_text()))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--model {directory}: model.json is not valid: {exc}") from None
        if info.kind == "xgboost":
            import xgboost

            booster = xgboost.Booster()
            booster.load_model(directory / "model.ubj")
            booster.set_param({"nthread": 1})
            return cls(info, booster)
        import joblib

        return cls(info, joblib.load(directory / "model.joblib"))


def _forest_contributions(forest: Any, x: F64) -> F64:
    """Saabas path contributions of a random forest, averaged over its trees."""
    out = np.zeros(x.shape, dtype=np.float64)
    for estimator in forest.estimators_:
        tree = estimator.tree_
        value = tree.value[:, 0, :]
        share = value[:, 1] / np.maximum(value.sum(axis=1), 1e-12)
        paths = estimator.decision_path(x)
        for row in range(len(x)):
            nodes = paths.indices[paths.indptr[row] : paths.indptr[row + 1]]
            for parent, child in zip(nodes[:-1], nodes[1:], strict=True):
                out[row, tree.feature[parent]] += share[child] - share[parent]
    return out / max(len(forest.estimators_), 1)
