"""`fraudstream run --resume` continues the user rules' windows: a run stopped after the first
half of a file (checkpointed) and resumed once the file has grown decides the second half as
one run over the whole file does."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.simulate.workload import benchmark_table, write_table

RULES = """\
lists:
  watched: {file: watched.txt}
rules:
  - id: busy_card
    when: "count(by=card_id, over='7d') >= 6 and sum(amount, by=card_id, over='7d') > 300"
    score: 0.3
  - id: shared_merchant
    when: "distinct_count(card_id, by=merchant_id, over='2d') >= 2"
    score: 0.2
  - id: watched_device
    when: "device_id in list('watched') and max(amount, by=device_id, over='3d') > 50"
    outcome: review
"""


def run(*args: str) -> None:
    result = CliRunner().invoke(app, ["run", "--quiet", *args])
    assert result.exit_code == 0, result.output


def reasons(path: Path) -> dict[str, list[dict[str, str]]]:
    out = {}
    for line in path.read_text().splitlines():
        decision = json.loads(line)
        out[decision["transaction_id"]] = decision["reasons"]
    return out


def test_resume_keeps_the_windows(tmp_path: Path) -> None:
    whole = write_table(benchmark_table(3000, cards=40, seed=5), tmp_path / "whole.jsonl")
    lines = whole.read_text().splitlines(keepends=True)
    devices = sorted({json.loads(line)["device_id"] for line in lines[:50]})[:3]
    (tmp_path / "watched.txt").write_text("\n".join(devices) + "\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    common = ["--rules", str(rules), "--batch-rows", "200"]
    run("--input", str(whole), "--decisions", str(tmp_path / "once.jsonl"), *common)

    growing = tmp_path / "growing.jsonl"
    growing.write_text("".join(lines[:1500]))
    options = [
        "--input", str(growing), "--decisions", str(tmp_path / "resumed.jsonl"), *common,
        "--checkpoint-dir", str(tmp_path / "chk"), "--checkpoint-every-records", "400",
    ]  # fmt: skip
    run(*options)
    growing.write_text("".join(lines))  # the same first half, then the rest
    run(*options, "--resume")

    once, resumed = reasons(tmp_path / "once.jsonl"), reasons(tmp_path / "resumed.jsonl")
    assert resumed == once
    fired = {r["rule"] for rs in once.values() for r in rs}
    assert {"busy_card", "shared_merchant", "watched_device"} <= fired
