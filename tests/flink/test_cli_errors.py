"""`fraudstream flink run` refuses bad arguments with one readable line, before any JVM starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fraudstream.cli import app


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--input", "missing.jsonl", "--alerts", "out"], "input not found: missing.jsonl"),
        (["--input", "{tx}"], "give at least one output"),
        (["--input", "{tx}", "--alerts", "o", "--target", "remote"], "needs --jobmanager"),
        (["--input", "{tx}", "--alerts", "o", "--kafka-servers", "b:9092"], "Kafka connector"),
        (["--input", "{tx}", "--alerts", "o", "--parallelism", "8", "--shards", "4"], "--shards"),
        (["--input", "{tx}", "--alerts", "o", "--rules", "{rules}"], "rules"),
        (["--input", "{tx}", "--alerts", "o", "--detach"], "--detach needs --target remote"),
        (["--input", "{tx}", "--alerts", "o", "--from-savepoint", "nope"], "savepoint not found"),
        (["--input", "{tx}", "--alerts", "o", "--max-parallelism", "16"], "--max-parallelism"),
        (["--input", "{tx}", "--alerts", "o", "--allowed-lateness-ms", "-1"], "must be >= 0"),
    ],
)
def test_bad_arguments_get_one_line(tmp_path: Path, arguments: list[str], message: str) -> None:
    tx = tmp_path / "tx.jsonl"
    tx.write_text('{"transaction_id": "t1", "card_id": "c", "timestamp": 0, "amount": 1}\n')
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: velocity\n    thresholds: {window_s: -3}\n")
    args = [a.format(tx=tx, rules=rules) for a in arguments]
    result = CliRunner().invoke(app, ["flink", "run", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
