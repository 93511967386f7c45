"""docs/models.md "Bring your own data", run as written: its CSV, its script, its commands.

The guide's five-row CSV goes through the guide's conversion script and `fraudstream score`;
a handbook simulation written in the same CSV columns goes through the script and every
command of the guide (features, train without --kind, score), and the scores are checked
against the model run directly on the feature table.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.models.artifact import ModelArtifact
from fraudstream.simulate.handbook import HandbookConfig, handbook_table

GUIDE = Path(__file__).parents[2] / "docs" / "models.md"
runner = CliRunner()


def guide_blocks() -> dict[str, str]:
    """The worked example's code blocks by language (csv, python, bash)."""
    text = GUIDE.read_text()
    section = text.split("### A worked example from a plain CSV", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S))


def guide_commands(bash: str) -> list[list[str]]:
    """The `fraudstream ...` lines of the guide, as argument lists (without the program)."""
    commands = []
    for line in bash.replace("\\\n", " ").splitlines():
        words = shlex.split(line)
        if words and words[0] == "fraudstream":
            commands.append(words[1:])
    return commands


def invoke(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def book_csv(path: Path) -> None:
    """A small handbook simulation in the handbook's own CSV columns (as the guide shows)."""
    table = handbook_table(HandbookConfig(customers=150, terminals=1_500, days=140, seed=3))
    frame = table.select(["transaction_id", "timestamp", "card_id", "merchant_id", "amount"])
    out = frame.to_pandas()
    out = out.assign(
        TRANSACTION_ID=out["transaction_id"].str[2:].astype(int),
        TX_DATETIME=(
            __import__("pandas")
            .to_datetime(out["timestamp"], unit="ms")
            .dt.strftime("%Y-%m-%d %H:%M:%S")
        ),
        CUSTOMER_ID=out["card_id"].str[1:].astype(int),
        TERMINAL_ID=out["merchant_id"].str[1:].astype(int),
        TX_AMOUNT=out["amount"],
        TX_FRAUD=table.column("is_fraud").to_numpy(zero_copy_only=False).astype(int),
    )
    columns = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT"]
    out[[*columns, "TX_FRAUD"]].to_csv(path, index=False)


@pytest.fixture(scope="module")
def worked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's whole example on a simulation: every file it makes, in one directory."""
    blocks = guide_blocks()
    base = tmp_path_factory.mktemp("byod")
    book_csv(base / "book_transactions.csv")
    header = (base / "book_transactions.csv").read_text().split("\n", 1)[0]
    assert header == blocks["csv"].split("\n", 1)[0]  # the guide's columns, as shown
    here = Path.cwd()
    os.chdir(base)
    try:
        (base / "convert.py").write_text(blocks["python"])
        runpy.run_path(str(base / "convert.py"))
        for command in guide_commands(blocks["bash"]):
            invoke(command)
    finally:
        os.chdir(here)
    return base


def test_the_guide_runs_end_to_end(worked: Path) -> None:
    scores = pq.read_table(worked / "scores.parquet")
    rows = len((worked / "transactions.csv").read_text().splitlines()) - 1
    assert scores.column_names == ["transaction_id", "score", "top_contributions"]
    assert scores.num_rows == rows > 10_000
    score = scores.column("score").to_numpy()
    assert np.all((score >= 0) & (score <= 1))
    # the recommended model: early-stopped gradient boosting on our features
    info = json.loads((worked / "model" / "model.json").read_text())
    assert info["name"] == "recommended" and info["kind"] == "xgboost"
    assert "customer_amount_ratio" in info["features"]  # our features, not only the book's
    assert 0 < info["params"]["n_estimators"] <= 600
    assert info["metrics"]["test_average_precision"] > 0.3  # it learned something
    # scores are the model's probability on the features the pipeline computed, row for row
    features = pq.read_table(worked / "features.parquet")
    assert features.column("transaction_id").equals(scores.column("transaction_id"))
    model = ModelArtifact.load(worked / "model")
    x = np.column_stack([features.column(n).to_numpy() for n in model.features])
    assert np.allclose(model.predict(x), score, rtol=1e-6, atol=1e-9)
    # frauds score higher than genuine transactions
    labels = {
        line.split(",")[0]: line.split(",")[1]
        for line in (worked / "labels.csv").read_text().splitlines()[1:]
    }
    fraud = np.array([labels[t] == "1" for t in scores.column("transaction_id").to_pylist()])
    assert score[fraud].mean() > 5 * score[~fraud].mean()
    top = scores.column("top_contributions").to_pylist()
    assert all(text.count(" = ") == 3 for text in top[:100])


def test_the_guides_own_rows_score(worked: Path, tmp_path: Path) -> None:
    """The five rows the guide prints, through its script and `score` (CSV out)."""
    blocks = guide_blocks()
    (tmp_path / "book_transactions.csv").write_text(blocks["csv"])
    here = Path.cwd()
    os.chdir(tmp_path)
    try:
        runpy.run_path(str(worked / "convert.py"))
    finally:
        os.chdir(here)
    out = tmp_path / "scores.csv"
    invoke(
        ["score", "--input", str(tmp_path / "transactions.csv"), "--labels",
         str(tmp_path / "labels.csv"), "--model", str(worked / "model"), "--output", str(out)]
    )  # fmt: skip
    lines = out.read_text().splitlines()
    assert lines[0] == '"transaction_id","score","top_contributions"'
    assert [line.split(",")[0] for line in lines[1:]] == [f'"tx{k}"' for k in range(5)]


def test_score_without_contributions_and_bad_arguments(worked: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    invoke(
        ["score", "--input", str(worked / "transactions.csv"), "--model", str(worked / "model"),
         "--output", str(out), "--top", "0"]
    )  # fmt: skip
    table = pq.read_table(out)
    assert table.column_names == ["transaction_id", "score"]
    assert pc.min(table.column("score")).as_py() >= 0
    for args, message in (
        (["--top", "-1"], "--top must be >= 0"),
        (["--model", str(tmp_path)], "not a model artifact"),
    ):
        base = ["score", "--input", str(worked / "transactions.csv"), "--model",
                str(worked / "model"), "--output", str(out)]  # fmt: skip
        if args[0] == "--model":
            base[4] = args[1]
            args = []
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output
