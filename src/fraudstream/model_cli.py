"""Commands for models: ``features``, ``train``, ``evaluate`` and the handbook simulation.

    fraudstream simulate --scenario handbook --output hb.parquet --labels-out labels.parquet
    fraudstream features --input hb.parquet --labels labels.parquet --output features.parquet
    fraudstream evaluate --features features.parquet --labels labels.parquet --plot pr.png
    fraudstream train --features features.parquet --labels labels.parquet --output models/rec
    fraudstream score --input hb.parquet --labels labels.parquet --model models/rec \\
        --output scores.parquet
    fraudstream run --input hb.parquet --labels labels.parquet --model models/xgb ...
"""

from __future__ import annotations

import json
import sys
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fraudstream.cli.common import err, fail
from fraudstream.cli_options import DEFAULT_STATE_TTL_HOURS, ProfilesOption, RulesOption
from fraudstream.config import ConfigError

__all__ = ["register", "simulate_handbook"]


class FeatureSet(StrEnum):
    """Which features a model uses."""

    book = "book"
    ours = "ours"


def simulate_handbook(
    customers: int, terminals: int, days: int, seed: int, output: str, labels_out: str | None
) -> None:
    """The handbook simulation to Parquet (or JSON lines on stdout); counts vs the book."""
    import msgspec
    import pyarrow.parquet as pq

    from fraudstream.simulate.handbook import (
        BOOK,
        HandbookConfig,
        handbook_labels,
        handbook_table,
        scenario_counts,
    )

    config = HandbookConfig(customers, terminals, days, seed=seed)
    try:
        config.check()
    except ValueError as exc:
        fail(str(exc))
    table = handbook_table(config)
    if output == "-":
        encoder = msgspec.json.Encoder()
        out = sys.stdout.buffer
        for batch in table.to_batches(65_536):
            out.write(b"".join(encoder.encode(r) + b"\n" for r in batch.to_pylist()))
        out.flush()
    elif output.endswith(".parquet"):
        pq.write_table(table, output, compression="zstd")
    else:
        with open(output, "wb") as handle:
            encoder = msgspec.json.Encoder()
            for batch in table.to_batches(65_536):
                handle.write(b"".join(encoder.encode(r) + b"\n" for r in batch.to_pylist()))
    if labels_out:
        pq.write_table(handbook_labels(table), labels_out, compression="zstd")
    counts = scenario_counts(table)
    full = (customers, terminals, days) == (5_000, 10_000, 183)
    summary = Table(title="handbook simulation", title_justify="left")
    for column in ("", "ours", "book (full size)", "ours / book"):
        summary.add_column(column, justify="right" if column else "left")
    names: dict[str | int, str] = {
        "transactions": "transactions",
        "frauds": "frauds",
        1: "  scenario 1 (amount > 220)",
        2: "  scenario 2 (terminals)",
        3: "  scenario 3 (customers)",
    }
    for key, label in names.items():
        ratio = f"{counts[key] / BOOK[key]:.3f}" if full else "-"
        summary.add_row(label, f"{counts[key]:,}", f"{BOOK[key]:,}", ratio)
    rate = counts["frauds"] / max(counts["transactions"], 1)
    summary.add_row("fraud rate", f"{rate:.2%}", f"{BOOK['frauds'] / BOOK['transactions']:.2%}", "")
    err.print(summary)


def _frame(features: Path, labels: Path | None) -> Any:
    """The feature table joined with the truth (labels; unlabelled = genuine), with days."""
    import numpy as np
    import pyarrow.parquet as pq

    from fraudstream.io.labels import read_labels

    if not features.is_file():
        raise ConfigError(f"--features {features}: no such file")
    frame = pq.read_table(features).to_pandas()
    if labels is not None:
        truth = read_labels(labels).table().to_pandas()
        truth = truth.drop_duplicates("transaction_id", keep="last")
        frame = frame.merge(truth[["transaction_id", "is_fraud"]], on="transaction_id", how="left")
    elif "is_fraud" not in frame.columns:
        raise ConfigError("--labels is needed (the feature table has no is_fraud column)")
    frame["is_fraud"] = frame["is_fraud"].fillna(False).astype(bool)
    frame["day"] = (frame["timestamp"].to_numpy() // 86_400_000).astype(np.int64)
    return frame


def _feature_names(frame: Any, feature_set: FeatureSet) -> list[str]:
    from fraudstream.features.catalog import BOOK_FEATURES, OUR_FEATURES

    wanted = BOOK_FEATURES if feature_set is FeatureSet.book else OUR_FEATURES
    missing = [name for name in BOOK_FEATURES if name not in frame.columns]
    if missing:
        raise ConfigError(f"--features: missing columns {', '.join(missing)}")
    return [name for name in wanted if name in frame.columns]


def _train_start(text: str) -> date:
    """``--train-start`` as a date; a ConfigError naming the option otherwise."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--train-start must be a date like 2018-07-25, got {text!r}") from None


KnownCutoffOption = Annotated[
    int,
    typer.Option(
        help="A test day D leaves out the cards with a fraud up to day D - this (7; the "
        "handbook's published code: 8)."
    ),
]


def protocol_from_options(train_start: str, train_days: int, delay_days: int, cutoff: int) -> Any:
    """The evaluation protocol from the options; a ConfigError naming a bad one."""
    from fraudstream.models.evaluate import Protocol

    if train_days < 1 or delay_days < 0:
        raise ConfigError("--train-days must be >= 1 and --delay-days >= 0")
    if cutoff < 1:
        raise ConfigError(f"--known-cutoff-days must be >= 1, got {cutoff}")
    return Protocol(_train_start(train_start), train_days, delay_days, known_cutoff_days=cutoff)


FeaturesPath = Annotated[
    Path, typer.Option("--features", help="Table from `fraudstream features`.")
]
LabelsPath = Annotated[
    Path | None, typer.Option("--labels", help="Labels (transaction_id, is_fraud, label_time).")
]


def features_command(
    input: Annotated[str, typer.Option("--input", "-i", help="Transactions file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Features Parquet file.")],
    labels: LabelsPath = None,
    rules: RulesOption = None,
    profiles: ProfilesOption = None,
    model: Annotated[Path | None, typer.Option(help="Also score with this model.")] = None,
    state_ttl_hours: Annotated[
        float,
        typer.Option(
            help="As `run --state-ttl-hours`: a customer back after this long starts over "
            "(0: never). Keep it equal to the live run's."
        ),
    ] = DEFAULT_STATE_TTL_HOURS,
) -> None:
    """Write, for every transaction, the feature values the live pipeline used for it."""
    from fraudstream.assembly import build_pipeline, state_ttl_ms
    from fraudstream.cli.common import run_with_progress
    from fraudstream.cli_options import TimeMode
    from fraudstream.io.files import FileSource, guess_format
    from fraudstream.models.dataset import FeatureCollector, attach
    from fraudstream.run import Outputs, Runner
    from fraudstream.schema import CardTokenizer

    try:
        path = Path(input)
        if not path.is_file():
            raise ConfigError(f"--input {input}: no such file")
        pipeline = build_pipeline(
            rules, profiles, TimeMode.event, 0, 300_000, 1_000, None, None,
            state_ttl_ms(state_ttl_hours),
        )  # fmt: skip
        stage = attach(pipeline, labels, model)
        collector = FeatureCollector(stage)
        runner = Runner(pipeline, Outputs(), CardTokenizer.from_environment(), collector)
        summary = run_with_progress(runner, FileSource(path, guess_format(input)), False)
        rows = collector.write(output)
    except ConfigError as exc:
        fail(str(exc))
        return
    err.print(
        f"{rows:,} feature rows -> {output} ({summary.dead_letters:,} dead letters, "
        f"{stage.features.labels_applied:,} labels applied, {summary.throughput:,.0f} tx/s)"
    )


def train_command(
    features: FeaturesPath,
    output: Annotated[Path, typer.Option("--output", "-o", help="Artifact directory.")],
    labels: LabelsPath = None,
    kind: Annotated[
        str | None,
        typer.Option(
            help="logistic_regression, random_forest or xgboost; without it the recommended "
            "model (see docs/models.md)."
        ),
    ] = None,
    feature_set: Annotated[
        FeatureSet | None,
        typer.Option(help="book (15) or ours (the default)."),
    ] = None,
    class_balance: Annotated[
        str | None, typer.Option(help="balanced or none (default: the kind's own).")
    ] = None,
    train_start: Annotated[str, typer.Option(help="First training day.")] = "2018-07-25",
    train_days: Annotated[int, typer.Option(help="Training days.")] = 7,
    delay_days: Annotated[int, typer.Option(help="Label delay before the test days.")] = 7,
    known_cutoff_days: KnownCutoffOption = 7,
    n_estimators: Annotated[
        int | None, typer.Option(help="Trees (forest, XGBoost); default 100.")
    ] = None,
    max_depth: Annotated[
        int | None, typer.Option(help="Tree depth (forest 20, XGBoost 6).")
    ] = None,
) -> None:
    """Train a model on a feature table; saves a versioned artifact with test metrics.

    Without --kind it trains the recommended model: XGBoost on our features, early-stopped
    on the week before the training week.
    """
    from fraudstream.models.evaluate import metrics, split
    from fraudstream.models.train import RECOMMENDED, train_model, validation_protocol

    try:
        protocol = protocol_from_options(train_start, train_days, delay_days, known_cutoff_days)
        recommended = kind is None
        chosen_kind = RECOMMENDED["kind"] if kind is None else kind
        chosen_set = feature_set or FeatureSet(RECOMMENDED["feature_set"])
        balance = class_balance or (RECOMMENDED["class_balance"] if recommended else "none")
        params: dict[str, Any] = dict(RECOMMENDED["params"]) if recommended else {}
        for name, value in (("n_estimators", n_estimators), ("max_depth", max_depth)):
            if value is not None:
                if value < 1 or chosen_kind == "logistic_regression":
                    raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, for trees only")
                params[name] = value
        frame = _frame(features, labels)
        names = _feature_names(frame, chosen_set)
        train, test = split(frame, protocol)
        validation = None
        if recommended:
            valid, _ = split(frame, validation_protocol(protocol))
            if len(valid) and valid["is_fraud"].any():
                validation = (valid[names].to_numpy(float), valid["is_fraud"].to_numpy())
        artifact = train_model(
            chosen_kind, train[names].to_numpy(float), train["is_fraud"].to_numpy(), names,
            name="recommended" if recommended else f"{chosen_kind}-{chosen_set.value}",
            class_balance=balance, training_window=protocol.window(), params=params,
            validation=validation,
        )  # fmt: skip
        if len(test) and test["is_fraud"].any():
            figures = metrics(test, artifact.predict(test[names].to_numpy(float)))
            artifact.info.metrics.update({f"test_{k}": round(v, 4) for k, v in figures.items()})
        artifact.save(output)
    except ConfigError as exc:
        fail(str(exc))
        return
    err.print(f"model {artifact.info.name} version {artifact.info.version} -> {output}")
    err.print(json.dumps(artifact.info.metrics, indent=2))


def score_command(
    input: Annotated[str, typer.Option("--input", "-i", help="Transactions file.")],
    model: Annotated[Path, typer.Option(help="Model artifact directory.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Scores file (.parquet, or .csv).")
    ],
    labels: LabelsPath = None,
    top: Annotated[
        int, typer.Option(help="Top feature contributions per row (0: none, faster).")
    ] = 3,
    rules: RulesOption = None,
    profiles: ProfilesOption = None,
    state_ttl_hours: Annotated[
        float, typer.Option(help="As `run --state-ttl-hours`.")
    ] = DEFAULT_STATE_TTL_HOURS,
) -> None:
    """Score every transaction with a model: transaction_id, score, top contributions.

    The features are the live pipeline's (with --labels, known frauds count from their
    label_time on), so a score here is the one `run --model` would use.
    """
    from fraudstream.assembly import TimeMode, build_pipeline, state_ttl_ms
    from fraudstream.cli.common import run_with_progress
    from fraudstream.io.files import FileSource, guess_format
    from fraudstream.models.dataset import attach
    from fraudstream.models.scores import ScoreCollector
    from fraudstream.run import Outputs, Runner
    from fraudstream.schema import CardTokenizer

    try:
        path = Path(input)
        if not path.is_file():
            raise ConfigError(f"--input {input}: no such file")
        if top < 0:
            raise ConfigError(f"--top must be >= 0, got {top}")
        pipeline = build_pipeline(
            rules, profiles, TimeMode.event, 0, 300_000, 1_000, None, None,
            state_ttl_ms(state_ttl_hours),
        )  # fmt: skip
        stage = attach(pipeline, labels, model)
        assert stage.model is not None
        collector = ScoreCollector(stage.model, top)
        runner = Runner(pipeline, Outputs(), CardTokenizer.from_environment(), collector)
        summary = run_with_progress(runner, FileSource(path, guess_format(input)), False)
        rows = collector.write(output)
    except ConfigError as exc:
        fail(str(exc))
        return
    err.print(
        f"{rows:,} scores -> {output} ({summary.dead_letters:,} dead letters, "
        f"{stage.features.labels_applied:,} labels applied, {summary.throughput:,.0f} tx/s)"
    )


def serve_model_command(
    model: Annotated[Path, typer.Option(help="Model artifact directory.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8890,
) -> None:
    """Serve a model artifact over HTTP (GET /v1/model, POST /v1/score) for other systems."""
    import uvicorn

    from fraudstream.models.artifact import ModelArtifact
    from fraudstream.models.serve import model_app
    from fraudstream.web.serve import TOKEN_VARIABLE, api_token

    try:
        artifact = ModelArtifact.load(model)
    except ConfigError as exc:
        fail(str(exc))
        return
    token, generated = api_token()
    if generated:
        err.print(f"{TOKEN_VARIABLE} not set; this run's token: {token}", highlight=False)
    err.print(
        f"model {artifact.info.name} {artifact.info.version} on http://{host}:{port}/v1/score"
    )
    uvicorn.run(model_app(artifact, token), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    """Adds the model commands to the ``fraudstream`` app."""
    from fraudstream.models.report import evaluate_command

    app.command("features")(features_command)
    app.command("train")(train_command)
    app.command("score")(score_command)
    app.command("evaluate")(evaluate_command)
    app.command("serve-model")(serve_model_command)
