"""``fraudstream evaluate``: the handbook's protocol for every model, next to the book's figures.

Trains each model kind on the protocol's training week (book features and ours), scores the
test week, prints one table (ours next to the handbook's AUC ROC / AP / CP@100), draws the
precision-recall curves (matplotlib, Agg backend) and optionally keeps the artifacts and the
figures as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from fraudstream.config import ConfigError
from fraudstream.model_cli import (
    FeatureSet,
    KnownCutoffOption,
    _feature_names,
    _frame,
    protocol_from_options,
)

__all__ = ["evaluate_command", "plot_pr_curves"]

err = Console(stderr=True, soft_wrap=True)
out = Console(width=160)  # the table is wide: never squeezed to a narrow terminal


def plot_pr_curves(curves: dict[str, tuple[Any, Any, float]], path: Path) -> None:
    """Precision-recall curves, one line per model, to a PNG/SVG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5), dpi=120)
    for name, (recall, precision, ap) in curves.items():
        axes.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f})", linewidth=1.2)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_title("Precision-recall on the handbook's test week")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _fit(
    kind: str, names: list[str], train: Any, valid: Any, class_balance: str, protocol: Any
) -> Any:
    """One model on the training rows; ``kind`` "recommended" is `train`'s default model."""
    from fraudstream.models.train import RECOMMENDED, train_model

    x, y = train[names].to_numpy(float), train["is_fraud"].to_numpy()
    if kind != "recommended":
        return train_model(
            kind, x, y, names, name=kind, class_balance=class_balance,
            training_window=protocol.window(),
        )  # fmt: skip
    validation = None
    if len(valid) and valid["is_fraud"].any():
        validation = (valid[names].to_numpy(float), valid["is_fraud"].to_numpy())
    return train_model(
        RECOMMENDED["kind"], x, y, names, name="recommended",
        class_balance=RECOMMENDED["class_balance"], training_window=protocol.window(),
        params=dict(RECOMMENDED["params"]), validation=validation,
    )  # fmt: skip


def _spread(values: list[float]) -> str:
    """``mean`` for one run, ``mean +- standard deviation`` over several."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def evaluate_command(
    features: Annotated[
        list[Path],
        typer.Option(
            "--features",
            help="Table from `fraudstream features`; repeat it (with --labels in the same "
            "order) for several simulations: the figures become mean ± spread.",
        ),
    ],
    labels: Annotated[
        list[Path] | None,
        typer.Option("--labels", help="Labels (transaction_id, is_fraud, label_time)."),
    ] = None,
    kinds: Annotated[
        str,
        typer.Option(
            help="Comma-separated: logistic_regression,random_forest,xgboost (the book's "
            "settings) and recommended (`train`'s default model, on our features)."
        ),
    ] = "logistic_regression,random_forest,xgboost,recommended",
    feature_sets: Annotated[str, typer.Option(help="Comma-separated: book,ours.")] = "book,ours",
    class_balance: Annotated[str, typer.Option(help="none (the book's) or balanced.")] = "none",
    train_start: Annotated[str, typer.Option(help="First training day.")] = "2018-07-25",
    known_cutoff_days: KnownCutoffOption = 7,
    plot: Annotated[Path | None, typer.Option(help="Write the PR curves here (.png/.svg).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Figures as JSON.")] = None,
    save_models: Annotated[
        Path | None, typer.Option(help="Keep every trained artifact under this directory.")
    ] = None,
) -> None:
    """Train and test every model with the handbook's protocol; ours next to the book's."""
    from sklearn.metrics import precision_recall_curve  # type: ignore[import-untyped]

    from fraudstream.models.evaluate import BOOK_FIGURES, metrics, split
    from fraudstream.models.train import validation_protocol

    try:
        protocol = protocol_from_options(train_start, 7, 7, known_cutoff_days)
        label_paths: list[Path | None] = list(labels or [])
        if label_paths and len(label_paths) != len(features):
            raise ConfigError(
                f"--labels: give one per --features ({len(features)}), got {len(label_paths)}"
            )
        label_paths = label_paths or [None] * len(features)
        wanted_kinds = [k.strip() for k in kinds.split(",") if k.strip()]
        sets: list[FeatureSet] = []
        for set_name in [s.strip() for s in feature_sets.split(",") if s.strip()]:
            try:
                sets.append(FeatureSet(set_name))
            except ValueError:
                raise ConfigError(f"--feature-sets: book or ours, got {set_name!r}") from None
        combos = [(s, k) for s in sets for k in wanted_kinds if k != "recommended"]
        if "recommended" in wanted_kinds:
            combos.append((FeatureSet.ours, "recommended"))
        runs: list[dict[str, Any]] = []
        curves: dict[str, tuple[Any, Any, float]] = {}
        for number, (feature_path, label_path) in enumerate(
            zip(features, label_paths, strict=True)
        ):
            frame = _frame(feature_path, label_path)
            train, test = split(frame, protocol)
            valid, _ = split(frame, validation_protocol(protocol))
            if not len(test) or not test["is_fraud"].any() or not train["is_fraud"].any():
                raise ConfigError(
                    f"{feature_path}: the protocol's windows ({protocol.window()}) hold no frauds"
                )
            rows: list[dict[str, Any]] = []
            for feature_set, kind in combos:
                names = _feature_names(frame, feature_set)
                err.print(f"{feature_path}: {kind} on {len(names)} features ({feature_set}) ...")
                artifact = _fit(kind, names, train, valid, class_balance, protocol)
                scores = artifact.predict(test[names].to_numpy(float))
                figures = metrics(test, scores)
                artifact.info.metrics.update({f"test_{k}": round(v, 4) for k, v in figures.items()})
                if save_models is not None:
                    artifact.save(save_models / f"run{number}" / f"{kind}-{feature_set}")
                if number == 0:
                    precision, recall, _ = precision_recall_curve(
                        test["is_fraud"].to_numpy(), scores
                    )
                    ap = figures["average_precision"]
                    curves[f"{kind} ({feature_set})"] = (recall, precision, ap)
                rows.append(
                    {"features": str(feature_set), "model": kind, "n_features": len(names),
                     **figures}
                )  # fmt: skip
            runs.append(
                {"features_file": str(feature_path), "rows": rows, "test_rows": len(test),
                 "test_frauds": int(np.sum(test["is_fraud"]))}
            )  # fmt: skip
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    metric_names = ("auc_roc", "average_precision", "card_precision_at_100")
    summary: list[dict[str, Any]] = []
    for k, first in enumerate(runs[0]["rows"]):
        values = {m: [run["rows"][k][m] for run in runs] for m in metric_names}
        summary.append(
            {"features": first["features"], "model": first["model"],
             "n_features": first["n_features"],
             **{m: float(np.mean(v)) for m, v in values.items()},
             **{f"{m}_std": float(np.std(v)) for m, v in values.items()}, "values": values}
        )  # fmt: skip
    sizes = ", ".join(f"{run['test_rows']:,} tx / {run['test_frauds']:,} frauds" for run in runs)
    table = Table(
        title=(
            f"handbook protocol: train {protocol.window()['train']}, "
            f"delay {protocol.delay_days} d, test {protocol.window()['test']}, known "
            f"compromised cards (frauds up to D-{protocol.known_cutoff_days}) removed; "
            f"{len(runs)} run(s), mean ± std; test sets: {sizes}"
        ),
        title_justify="left",
    )
    for column in ("features", "model", "AUC ROC", "AP", "CP@100", "book AUC", "book AP",
                   "book CP@100", "AP vs book", "CP vs book"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("features", "model") else "right")
    for row in summary:
        book = BOOK_FIGURES.get(row["model"])
        shown = [_spread(row["values"][m]) for m in metric_names]
        if book is None:
            shown += ["-"] * 5
        else:
            shown += [f"{v:.3f}" for v in book]
            shown += [
                f"{row['average_precision'] - book[1]:+.3f}",
                f"{row['card_precision_at_100'] - book[2]:+.3f}",
            ]
        table.add_row(f"{row['features']} ({row['n_features']})", row["model"], *shown)
    tuned = BOOK_FIGURES["xgboost (tuned)"]
    table.add_row("book", "xgboost, tuned", "-", "-", "-", *[f"{v:.3f}" for v in tuned], "", "")
    out.print(table)
    best = max(summary, key=lambda r: r["average_precision"])
    out.print(
        f"best: {best['model']} ({best['features']}) AP {best['average_precision']:.3f}, "
        f"CP@100 {best['card_precision_at_100']:.3f} (book's tuned XGBoost: AP {tuned[1]:.3f}, "
        f"CP@100 {tuned[2]:.3f})"
    )
    if plot is not None:
        plot_pr_curves(curves, plot)
        err.print(f"precision-recall curves (first run) -> {plot}")
    if json_out is not None:
        for row in summary:
            del row["values"]
        payload = {
            "protocol": protocol.window(),
            "class_balance": class_balance,
            "rows": summary,
            "runs": runs,
        }
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
