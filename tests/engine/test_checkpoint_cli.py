"""`fraudstream run --checkpoint-dir ... --resume`: the command-line side of checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.simulate.workload import benchmark_table, write_table


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", "--quiet", *args])
    return result.exit_code, result.output


def test_resume_after_a_finished_run_changes_nothing(tmp_path: Path) -> None:
    source = write_table(benchmark_table(4000, cards=50, seed=3), tmp_path / "tx.parquet")
    options = [
        "--input", str(source), "--alerts", str(tmp_path / "alerts.jsonl"),
        "--decisions", str(tmp_path / "decisions.parquet"),
        "--checkpoint-dir", str(tmp_path / "chk"), "--checkpoint-every-records", "1000",
        "--batch-rows", "500", "--summary-json", str(tmp_path / "summary.json"),
    ]  # fmt: skip
    code, output = run(*options)
    assert code == 0, output
    first = json.loads((tmp_path / "summary.json").read_text())
    alerts = (tmp_path / "alerts.jsonl").read_bytes()
    parts = sorted(p.name for p in (tmp_path / "decisions.parquet").iterdir())
    assert parts == [f"part-{i:05d}.parquet" for i in range(len(parts))] and len(parts) >= 4
    assert first["checkpoints"] == 5 and first["resumed_from"] is None  # 4 + the final one
    assert sorted(p.name for p in (tmp_path / "chk").iterdir()) == [
        "chk-00000003", "chk-00000004", "chk-00000005", "run.json",
    ]  # fmt: skip
    code, output = run(*options, "--resume")
    assert code == 0, output
    again = json.loads((tmp_path / "summary.json").read_text())
    assert again["resumed_from"] == 5
    for name in ("records", "decided", "decisions", "alerts_by_rule", "dead_letters", "late"):
        assert again[name] == first[name], name
    assert (tmp_path / "alerts.jsonl").read_bytes() == alerts
    assert sorted(p.name for p in (tmp_path / "decisions.parquet").iterdir()) == parts


def test_checkpoint_options_are_checked(tmp_path: Path) -> None:
    source = write_table(benchmark_table(10, cards=2, seed=1), tmp_path / "tx.jsonl")
    code, output = run("--input", str(source), "--resume")
    assert code == 2 and "need --checkpoint-dir" in output
    code, output = run(
        "--input", str(source), "--checkpoint-dir", str(tmp_path / "c"),
        "--checkpoint-interval-s", "0",
    )  # fmt: skip
    assert code == 2 and "interval must be > 0" in output
    code, output = run("--input", str(source), "--state-ttl-hours", "-1")
    assert code == 2 and "--state-ttl-hours" in output
