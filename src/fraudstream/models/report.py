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
    FeaturesPath,
    LabelsPath,
    _feature_names,
    _frame,
    _train_start,
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


def evaluate_command(
    features: FeaturesPath,
    labels: LabelsPath = None,
    kinds: Annotated[
        str, typer.Option(help="Comma-separated: logistic_regression,random_forest,xgboost.")
    ] = "logistic_regression,random_forest,xgboost",
    feature_sets: Annotated[str, typer.Option(help="Comma-separated: book,ours.")] = "book,ours",
    class_balance: Annotated[str, typer.Option(help="none (the book's) or balanced.")] = "none",
    train_start: Annotated[str, typer.Option(help="First training day.")] = "2018-07-25",
    plot: Annotated[Path | None, typer.Option(help="Write the PR curves here (.png/.svg).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Figures as JSON.")] = None,
    save_models: Annotated[
        Path | None, typer.Option(help="Keep every trained artifact under this directory.")
    ] = None,
) -> None:
    """Train and test every model with the handbook's protocol; ours next to the book's."""
    from sklearn.metrics import precision_recall_curve  # type: ignore[import-untyped]

    from fraudstream.models.evaluate import BOOK_FIGURES, Protocol, metrics, split
    from fraudstream.models.train import train_model

    try:
        protocol = Protocol(_train_start(train_start))
        frame = _frame(features, labels)
        train, test = split(frame, protocol)
        if not len(test) or not test["is_fraud"].any() or not train["is_fraud"].any():
            raise ConfigError(
                f"the protocol's windows ({protocol.window()}) hold no frauds in this table"
            )
        rows: list[dict[str, Any]] = []
        curves: dict[str, tuple[Any, Any, float]] = {}
        for set_name in [s.strip() for s in feature_sets.split(",") if s.strip()]:
            try:
                feature_set = FeatureSet(set_name)
            except ValueError:
                raise ConfigError(f"--feature-sets: book or ours, got {set_name!r}") from None
            names = _feature_names(frame, feature_set)
            for kind in [k.strip() for k in kinds.split(",") if k.strip()]:
                err.print(f"training {kind} on {len(names)} features ({set_name}) ...")
                artifact = train_model(
                    kind, train[names].to_numpy(float), train["is_fraud"].to_numpy(), names,
                    name=f"{kind}-{set_name}", class_balance=class_balance,
                    training_window=protocol.window(),
                )  # fmt: skip
                scores = artifact.predict(test[names].to_numpy(float))
                figures = metrics(test, scores)
                artifact.info.metrics.update({f"test_{k}": round(v, 4) for k, v in figures.items()})
                if save_models is not None:
                    artifact.save(save_models / f"{kind}-{set_name}")
                precision, recall, _ = precision_recall_curve(test["is_fraud"].to_numpy(), scores)
                curves[f"{kind} ({set_name})"] = (recall, precision, figures["average_precision"])
                rows.append(
                    {"features": set_name, "model": kind, "n_features": len(names), **figures}
                )
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    table = Table(
        title=(
            f"handbook protocol: train {protocol.window()['train']}, "
            f"delay {protocol.delay_days} d, "
            f"test {protocol.window()['test']} ({len(test):,} tx, {int(test['is_fraud'].sum()):,} "
            f"frauds; known compromised cards removed)"
        ),
        title_justify="left",
    )
    for column in ("features", "model", "AUC ROC", "AP", "CP@100", "book AUC", "book AP",
                   "book CP@100", "AP vs book", "CP vs book"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("features", "model") else "right")
    for row in rows:
        book = BOOK_FIGURES.get(row["model"])
        ours = (row["auc_roc"], row["average_precision"], row["card_precision_at_100"])
        shown = [f"{v:.3f}" for v in ours]
        if book is None:
            shown += ["-"] * 5
        else:
            shown += [f"{v:.3f}" for v in book]
            shown += [f"{ours[1] - book[1]:+.3f}", f"{ours[2] - book[2]:+.3f}"]
        table.add_row(f"{row['features']} ({row['n_features']})", row["model"], *shown)
    tuned = BOOK_FIGURES["xgboost (tuned)"]
    table.add_row("book", "xgboost, tuned", "-", "-", "-", *[f"{v:.3f}" for v in tuned], "", "")
    out.print(table)
    best = max(rows, key=lambda r: r["average_precision"])
    out.print(
        f"best: {best['model']} ({best['features']}) AP {best['average_precision']:.3f}, "
        f"CP@100 {best['card_precision_at_100']:.3f} (book's tuned XGBoost: AP {tuned[1]:.3f}, "
        f"CP@100 {tuned[2]:.3f})"
    )
    if plot is not None:
        plot_pr_curves(curves, plot)
        err.print(f"precision-recall curves -> {plot}")
    if json_out is not None:
        payload = {
            "protocol": protocol.window(),
            "class_balance": class_balance,
            "rows": rows,
            "test_rows": len(test),
            "test_frauds": int(np.sum(test["is_fraud"])),
        }
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
