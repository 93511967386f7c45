"""Models end to end on a small handbook simulation: point-in-time features, train, evaluate,
scoring in the loop with model reasons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.engine.checkpoint import CheckpointStore
from fraudstream.engine.pipeline import Pipeline, StepResult
from fraudstream.features.catalog import BOOK_FEATURES
from fraudstream.io.decode import Decoder
from fraudstream.models.dataset import attach
from fraudstream.schema import CardTokenizer
from fraudstream.simulate.handbook import DAY_MS, HandbookConfig, handbook_labels, handbook_table

runner = CliRunner()
# 140 days from 2018-04-01 cover the handbook protocol (train 07-25..31, test 08-08..14).
CONFIG = HandbookConfig(customers=150, terminals=1_500, days=140, seed=3)


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("handbook")
    table = handbook_table(CONFIG)
    paths = {
        "tx": base / "tx.parquet",
        "labels": base / "labels.parquet",
        "features": base / "features.parquet",
        "models": base / "models",
    }
    pq.write_table(table.drop(["is_fraud", "fraud_scenario"]), paths["tx"])
    pq.write_table(handbook_labels(table), paths["labels"])
    invoke(
        "features", "--input", str(paths["tx"]), "--labels", str(paths["labels"]),
        "--output", str(paths["features"]),
    )  # fmt: skip
    return paths


def test_features_equal_what_the_live_run_decided_with(
    data: dict[str, Path], tmp_path: Path
) -> None:
    """`fraudstream features` writes exactly the values `run` attached to its decisions."""
    decisions = tmp_path / "decisions.parquet"
    invoke(
        "run", "--input", str(data["tx"]), "--labels", str(data["labels"]),
        "--decisions", str(decisions), "--quiet",
    )  # fmt: skip
    live = pq.read_table(decisions)
    written = pq.read_table(data["features"])
    assert live.num_rows == written.num_rows > 10_000
    assert live.column("transaction_id").equals(written.column("transaction_id"))
    live_features = live.column("features").combine_chunks()
    for name in (*BOOK_FEATURES, "customer_amount_ratio", "terminal_known_frauds_30d"):
        ours = written.column(name).to_numpy()
        theirs = live_features.field(name).to_numpy(zero_copy_only=False).astype(float)
        assert np.array_equal(ours, theirs, equal_nan=True), name
    assert written.column("terminal_risk_7d").to_numpy().max() > 0  # labels did arrive


def test_no_label_later_than_a_decision_influences_it(
    data: dict[str, Path], tmp_path: Path
) -> None:
    """Every label known after time T is flipped: features decided up to T do not move."""
    labels = pq.read_table(data["labels"])
    times = labels.column("label_time").to_numpy()
    cut = int(np.quantile(times, 0.5))
    later = times > cut
    fraud = labels.column("is_fraud").to_numpy(zero_copy_only=False)
    flipped = np.where(later, ~fraud, fraud)
    perturbed = tmp_path / "perturbed.parquet"
    pq.write_table(labels.set_column(1, "is_fraud", pa.array(flipped)), perturbed)
    out = tmp_path / "features.parquet"
    invoke(
        "features", "--input", str(data["tx"]), "--labels", str(perturbed), "--output", str(out),
    )  # fmt: skip
    before = pq.read_table(data["features"]).to_pandas()
    after = pq.read_table(out).to_pandas()
    early = before["decision_time"].to_numpy() <= cut
    assert early.sum() > 1_000 and (~early).sum() > 1_000
    risk = [c for c in before.columns if c.startswith(("terminal_risk", "terminal_known"))]
    risk.append("customer_known_frauds_30d")
    for name in risk:
        a, b = before[name].to_numpy(), after[name].to_numpy()
        assert np.array_equal(a[early], b[early], equal_nan=True), name
    # ... and the perturbation did reach the later decisions (the test can fail)
    assert not np.array_equal(
        before["terminal_risk_7d"].to_numpy()[~early], after["terminal_risk_7d"].to_numpy()[~early]
    )


def test_train_saves_a_versioned_artifact(data: dict[str, Path]) -> None:
    target = data["models"] / "xgb"
    invoke(
        "train", "--features", str(data["features"]), "--labels", str(data["labels"]),
        "--kind", "xgboost", "--output", str(target), "--class-balance", "balanced",
    )  # fmt: skip
    meta = json.loads((target / "model.json").read_text())
    assert (target / "model.ubj").is_file()
    assert meta["kind"] == "xgboost" and meta["class_balance"] == "balanced"
    assert set(BOOK_FEATURES) <= set(meta["features"])
    assert meta["training_window"]["train"] == "2018-07-25..2018-07-31"
    assert meta["version"] and meta["libraries"]["xgboost"]
    assert 0.5 < meta["metrics"]["test_auc_roc"] <= 1.0
    assert meta["metrics"]["train_frauds"] > 0


def test_evaluate_prints_ours_next_to_the_book(data: dict[str, Path], tmp_path: Path) -> None:
    plot, figures = tmp_path / "pr.png", tmp_path / "eval.json"
    output = invoke(
        "evaluate", "--features", str(data["features"]), "--labels", str(data["labels"]),
        "--kinds", "logistic_regression,xgboost", "--plot", str(plot), "--json", str(figures),
    )  # fmt: skip
    assert "book AP" in output and "0.606" in output  # the handbook's LR figure
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    rows = json.loads(figures.read_text())["rows"]
    assert {(r["features"], r["model"]) for r in rows} == {
        (f, m) for f in ("book", "ours") for m in ("logistic_regression", "xgboost")
    }
    for row in rows:
        assert 0.5 < row["auc_roc"] <= 1 and 0 < row["average_precision"] <= 1
        assert 0 <= row["card_precision_at_100"] <= 1


def test_run_with_a_model_gives_model_reasons(data: dict[str, Path], tmp_path: Path) -> None:
    model = data["models"] / "lr"
    invoke(
        "train", "--features", str(data["features"]), "--labels", str(data["labels"]),
        "--kind", "logistic_regression", "--output", str(model),
    )  # fmt: skip
    alerts = tmp_path / "alerts.jsonl"
    invoke(
        "run", "--input", str(data["tx"]), "--labels", str(data["labels"]), "--model", str(model),
        "--alerts", str(alerts), "--quiet",
    )  # fmt: skip
    records = [json.loads(line) for line in alerts.read_text().splitlines()]
    with_model = [r for r in records if any(x["rule"] == "model" for x in r["reasons"])]
    assert len(with_model) > 50
    reason = next(x for x in with_model[0]["reasons"] if x["rule"] == "model")
    assert reason["message"].startswith("fraud probability ")
    assert "top: " in reason["message"] and " = " in reason["message"]
    probability = with_model[0]["features"]["model_probability"]
    assert with_model[0]["score"] >= probability - 1e-6  # the model is one noisy-or input
    info = json.loads((model / "model.json").read_text())
    for record in records:  # DESIGN.md: model = {name, version, probability, top contributions}
        assert record["model"]["name"] == info["name"]
        assert record["model"]["version"] == info["version"]
        assert record["model"]["probability"] == record["features"]["model_probability"]
    assert with_model[0]["model"]["top_contributions"] == reason["message"].split("top: ")[1]


def test_bad_model_and_labels_are_one_line_errors(tmp_path: Path, data: dict[str, Path]) -> None:
    result = runner.invoke(app, ["run", "--input", str(data["tx"]), "--model", str(tmp_path)])
    assert result.exit_code == 2 and "not a model artifact" in result.output
    bad = tmp_path / "labels.csv"
    bad.write_text("transaction_id,is_fraud,label_time\ntx1,2,0\n")
    result = runner.invoke(app, ["run", "--input", str(data["tx"]), "--labels", str(bad)])
    assert result.exit_code == 2 and "is_fraud must be 0 or 1" in result.output


def test_label_delay_is_the_books() -> None:
    table = handbook_table(HandbookConfig(customers=5, terminals=20, days=3, seed=1))
    labels = handbook_labels(table)
    assert labels.column("label_time").to_numpy().min() >= (
        table.column("timestamp").to_numpy().min() + 7 * DAY_MS
    )


def test_a_checkpoint_carries_the_streaming_features(data: dict[str, Path], tmp_path: Path) -> None:
    """`run --model --labels --checkpoint-dir`: a run restored from a checkpoint half-way
    scores every later transaction as the uninterrupted run does (rings, label feed and
    pending labels are in the checkpoint)."""
    model = tmp_path / "lr"
    invoke(
        "train", "--features", str(data["features"]), "--labels", str(data["labels"]),
        "--kind", "logistic_regression", "--output", str(model),
    )  # fmt: skip
    table = pq.read_table(data["tx"])
    decoder = Decoder(CardTokenizer(b"models-checkpoint"))
    batches = [
        decoder.table(table.slice(start, 4_000), start, 0.0)[0]
        for start in range(0, table.num_rows, 4_000)
    ]

    def fresh() -> Pipeline:
        pipeline = Pipeline(state_ttl_ms=30 * DAY_MS)
        attach(pipeline, data["labels"], model)
        return pipeline

    def scores(steps: list[StepResult]) -> dict[str, tuple[float, float, float]]:
        out = {}
        for d in (s.decisions for s in steps if s.decisions is not None):
            seen, p = d.features["customer_tx_seen"], d.features["model_probability"]
            for row, tx in enumerate(d.tx.transaction_id.to_pylist()):
                out[tx] = (float(d.score[row]), float(seen[row]), float(p[row]))
        return out

    whole = fresh()
    expected = scores([whole.submit(b, now_ms=0.0) for b in batches] + [whole.flush(now_ms=0.0)])
    half = len(batches) // 2
    first = fresh()
    steps = [first.submit(b, now_ms=0.0) for b in batches[:half]]
    store = CheckpointStore(str(tmp_path / "checkpoints"))
    store.write(store.next_id(), first.snapshot(), {"run_id": "r"})
    second = fresh()
    second.restore(store.read(store.latest() or 0)[1])
    steps += [second.submit(b, now_ms=0.0) for b in batches[half:]] + [second.flush(now_ms=0.0)]
    assert len(expected) == table.num_rows
    assert scores(steps) == expected
    invoke(  # and the command takes checkpoints with a model now
        "run", "--input", str(data["tx"]), "--labels", str(data["labels"]), "--model", str(model),
        "--checkpoint-dir", str(tmp_path / "cli-checkpoints"), "--quiet",
    )  # fmt: skip
    assert CheckpointStore(str(tmp_path / "cli-checkpoints")).latest() is not None


def test_evaluate_over_several_runs_gives_mean_and_spread(
    data: dict[str, Path], tmp_path: Path
) -> None:
    """Two runs (the same simulation twice here): the table shows mean ± spread, the JSON
    each run's figures; the recommended row is `train`'s default model; a cutoff of 8 keeps
    at least as many test rows as the default 7."""
    figures = tmp_path / "eval.json"
    two = ["--features", str(data["features"]), "--labels", str(data["labels"])] * 2
    output = invoke(
        "evaluate", *two, "--kinds", "logistic_regression,recommended", "--feature-sets", "book",
        "--json", str(figures),
    )  # fmt: skip
    assert "± 0.000" in output, output  # the same run twice: no spread
    payload = json.loads(figures.read_text())
    assert [(r["features"], r["model"]) for r in payload["rows"]] == [
        ("book", "logistic_regression"), ("ours", "recommended")
    ]  # fmt: skip
    assert len(payload["runs"]) == 2 and payload["protocol"]["known_cutoff_days"] == "7"
    for row in payload["rows"]:
        assert row["average_precision_std"] == 0.0 and 0 < row["average_precision"] <= 1
    book_code = tmp_path / "eval8.json"
    invoke(
        "evaluate", "--features", str(data["features"]), "--labels", str(data["labels"]),
        "--kinds", "logistic_regression", "--known-cutoff-days", "8", "--json", str(book_code),
    )  # fmt: skip
    assert (
        json.loads(book_code.read_text())["runs"][0]["test_rows"] >= payload["runs"][0]["test_rows"]
    )
    for extra, message in (
        (["--labels", str(data["labels"])], "--labels: give one per --features"),
        (["--known-cutoff-days", "0"], "--known-cutoff-days must be >= 1"),
    ):
        result = runner.invoke(app, ["evaluate", *two, *extra])
        assert result.exit_code == 2 and message in result.output, result.output
