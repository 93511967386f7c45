"""Training: logistic regression, random forest and XGBoost on streaming features.

Class imbalance (under 1 % frauds) is handled by weighting: ``balanced`` gives the frauds
the weight of the genuine transactions (``class_weight`` for scikit-learn,
``scale_pos_weight`` for XGBoost); ``none`` trains unweighted, as the handbook's baselines do.
Every model treats a missing value (a customer's first transaction has no history) the same
way in training and in scoring: XGBoost natively, the others through a median imputer kept in
the artifact.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream.config import ConfigError
from fraudstream.models.artifact import KINDS, ModelArtifact, ModelInfo, finite
from fraudstream.models.evaluate import Protocol

__all__ = ["BALANCES", "DEFAULT_PARAMS", "RECOMMENDED", "train_model", "validation_protocol"]

F64 = npt.NDArray[np.float64]
BALANCES = ("balanced", "none")
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "logistic_regression": {"C": 1.0, "max_iter": 2000},
    # the book's forest: 100 trees of unlimited depth
    "random_forest": {"n_estimators": 100, "max_depth": None, "min_samples_leaf": 1},
    "xgboost": {"n_estimators": 100, "max_depth": 6, "learning_rate": 0.3, "base_score": 0.5},
}

# The recommended model (``fraudstream train`` without --kind), chosen on the handbook
# protocol over simulator seeds 0-4 (docs/models.md): gradient-boosted trees, early-stopped
# on the week before the training week.
RECOMMENDED: dict[str, Any] = {
    "kind": "xgboost",
    "feature_set": "ours",
    "class_balance": "none",
    # exact splits: quantile bins cannot split amounts at 220 exactly (4,096 bins gained +0.02
    # AP over 256, exact splits +0.002 over 4,096); depth 3 at learning rate 0.1 scores as
    # depth 4 at 0.05 did over the seeds with half the trees, so it predicts 2x faster
    "params": {"n_estimators": 600, "max_depth": 3, "learning_rate": 0.1,
               "tree_method": "exact", "early_stopping_rounds": 50},
}  # fmt: skip


def validation_protocol(protocol: Protocol) -> Protocol:
    """The validation week for early stopping: the week before the training week, whose
    labels are long known when the model is trained (its test part is unused)."""
    start = protocol.train_start - timedelta(days=protocol.train_days)
    return replace(protocol, train_start=start)


def train_model(
    kind: str,
    x: F64,
    y: npt.NDArray[np.bool_],
    features: list[str],
    *,
    name: str | None = None,
    class_balance: str = "balanced",
    training_window: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    validation: tuple[F64, npt.NDArray[np.bool_]] | None = None,
) -> ModelArtifact:
    """Fits one model on ``x`` (rows x ``features``) and labels ``y``.

    With ``validation`` (rows, labels) XGBoost stops adding trees once the validation
    set's average precision has not improved for ``early_stopping_rounds`` (default 30) and
    keeps the trees up to its best round; the other kinds ignore it.
    """
    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if class_balance not in BALANCES:
        raise ConfigError(f"--class-balance must be balanced or none, got {class_balance!r}")
    y = np.asarray(y, dtype=np.bool_)
    x = finite(np.asarray(x, dtype=np.float64))
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise ConfigError(
            f"training needs both frauds and genuine transactions; got {positives:,} frauds "
            f"of {len(y):,} (is the label file right, and the training window?)"
        )
    chosen = {**DEFAULT_PARAMS[kind], **(params or {})}
    balanced = class_balance == "balanced"
    model: Any
    if kind == "xgboost":
        import xgboost

        weight = (len(y) - positives) / positives if balanced else 1.0
        train = xgboost.DMatrix(x, label=y.astype(np.float64), missing=np.nan)
        booster_params = {
            "objective": "binary:logistic",
            "eval_metric": "aucpr",
            "max_depth": chosen["max_depth"],
            "eta": chosen["learning_rate"],
            "base_score": chosen["base_score"],
            "scale_pos_weight": weight,
            "tree_method": chosen.get("tree_method", "hist"),
            "nthread": 1,
            "seed": seed,
        }
        for extra in ("subsample", "colsample_bytree", "min_child_weight", "max_bin"):
            if extra == "max_bin" and booster_params["tree_method"] == "exact":
                continue  # exact splits need no bins
            if extra in chosen:
                booster_params[extra] = chosen[extra]
        if validation is None:
            model = xgboost.train(booster_params, train, num_boost_round=chosen["n_estimators"])
        else:
            rounds = int(chosen.get("early_stopping_rounds", 30))
            chosen["early_stopping_rounds"] = rounds
            valid = xgboost.DMatrix(
                finite(np.asarray(validation[0], dtype=np.float64)),
                label=np.asarray(validation[1], dtype=np.float64),
                missing=np.nan,
            )
            model = xgboost.train(
                booster_params, train, num_boost_round=chosen["n_estimators"],
                evals=[(valid, "validation")], early_stopping_rounds=rounds, verbose_eval=False,
            )  # fmt: skip
            best = int(model.best_iteration) + 1
            model = model[:best]  # only the trees up to the best validation round
            chosen["n_estimators"] = best
    else:
        from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]
        from sklearn.impute import SimpleImputer  # type: ignore[import-untyped]
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
        from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]
        from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

        weights = "balanced" if balanced else None
        steps: list[tuple[str, Any]] = [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True))
        ]
        if kind == "logistic_regression":
            steps.append(("scale", StandardScaler()))
            steps.append(
                ("model", LogisticRegression(class_weight=weights, random_state=seed, **chosen))
            )
        else:
            steps.append(
                (
                    "model",
                    RandomForestClassifier(
                        class_weight=weights, random_state=seed, n_jobs=1, **chosen
                    ),
                )
            )
        model = Pipeline(steps)
        model.fit(x, y)
    info = ModelInfo(
        name=name or kind,
        kind=kind,
        features=list(features),
        training_window=training_window or {},
        class_balance=class_balance,
        params=chosen,
    )
    info.metrics = {"train_rows": float(len(y)), "train_frauds": float(positives)}
    return ModelArtifact(info, model)
