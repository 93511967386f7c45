"""Shadow rules and rule versions through the CLI: `fraudstream run` numbers every rule set it
applies and writes the version and the shadow rules' findings on every decision;
`fraudstream rules history` lists the versions; `fraudstream rules rollback N` rewrites the
rules file, which a running pipeline reloads under that same version, keeping its state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.engine.pipeline import Pipeline
from fraudstream.io.decode import Decoder
from fraudstream.rules import AuditLog, RuleSet, RulesFileWatcher
from fraudstream.rules.versions import RuleVersions
from fraudstream.schema import CardTokenizer

T0 = 1_767_225_600_000
SHADOW = """\
rules:
  - id: amount_anomaly
    enabled: false
  - id: small_then_large
    mode: shadow
  - id: big
    when: amount > 500
    score: 0.6
    mode: shadow
"""
LIVE = "rules:\n  - id: velocity\n    score: 0.6\n"


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def write_history(path: Path) -> Path:
    records = [
        {"transaction_id": "t1", "card_id": "c", "amount": 0.5, "timestamp": T0},
        {"transaction_id": "t2", "card_id": "c", "amount": 900.0, "timestamp": T0 + 5_000},
        {"transaction_id": "t3", "card_id": "d", "amount": 20.0, "timestamp": T0 + 9_000},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def decisions(path: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["transaction_id"]: row for row in rows}


def test_run_writes_shadow_reasons_and_versions_and_rollback_restores(tmp_path: Path) -> None:
    history = write_history(tmp_path / "history.jsonl")
    rules = tmp_path / "rules.yaml"
    rules.write_text(SHADOW)
    out = tmp_path / "first.jsonl"
    summary = tmp_path / "summary.json"
    invoke("run", "-q", "--input", str(history), "--rules", str(rules), "--decisions", str(out),
           "--summary-json", str(summary))  # fmt: skip
    first = decisions(out)
    large = first["t2"]
    assert [r["rule"] for r in large["shadow_reasons"]] == ["small_then_large", "big"]
    assert large["reasons"] == [] and large["decision"] == "approve" and large["score"] == 0
    assert {d["rule_version"] for d in first.values()} == {1}
    assert json.loads(summary.read_text())["shadow_fired_by_rule"] == {
        "small_then_large": 1, "big": 1
    }  # fmt: skip

    rules.write_text(LIVE)
    invoke("run", "-q", "--input", str(history), "--rules", str(rules),
           "--decisions", str(tmp_path / "second.jsonl"))  # fmt: skip
    second = decisions(tmp_path / "second.jsonl")
    assert second["t2"]["rule_version"] == 2 and second["t2"]["decision"] == "decline"

    listed = invoke("rules", "history", "--rules", str(rules), "--json")
    shown = [json.loads(line) for line in listed.splitlines()]
    assert [v["version"] for v in shown] == [2, 1]
    assert "small_then_large.mode: 'shadow' -> 'live'" in shown[0]["changes"]
    assert "rules" not in shown[0]  # the documents stay in the file

    invoke("rules", "rollback", "1", "--rules", str(rules), "--who", "lee", "--note", "back")
    assert RuleSet.load(rules) == RuleVersions(tmp_path / "rules.yaml.versions.jsonl").rules(1)
    invoke("run", "-q", "--input", str(history), "--rules", str(rules),
           "--decisions", str(tmp_path / "third.jsonl"))  # fmt: skip
    third = decisions(tmp_path / "third.jsonl")
    assert third["t2"]["rule_version"] == 3  # the rollback's version, not a fourth
    assert third["t2"]["shadow_reasons"] == first["t2"]["shadow_reasons"]
    assert "rollback" in invoke("rules", "history", "--rules", str(rules))
    latest = json.loads(invoke("rules", "history", "--rules", str(rules), "--json").split("\n")[0])
    assert (latest["version"], latest["who"]) == (3, "lee")
    assert latest["note"] == "rollback to version 1: back"
    audit = [
        json.loads(line) for line in (tmp_path / "rules.yaml.audit.jsonl").read_text().splitlines()
    ]
    assert audit[-1]["who"] == "lee" and audit[-1]["source"] == "rollback"

    refused = CliRunner().invoke(app, ["rules", "rollback", "9", "--rules", str(rules)])
    assert refused.exit_code == 2
    assert "no rule version 9 (versions: 1..3)" in refused.output
    assert "Traceback" not in refused.output
    audit = [
        json.loads(line) for line in (tmp_path / "rules.yaml.audit.jsonl").read_text().splitlines()
    ]
    assert audit[-1]["after"] is None and "no rule version 9" in audit[-1]["note"]


def test_a_rollback_while_a_pipeline_runs_keeps_its_state(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(LIVE)
    versions = RuleVersions(tmp_path / "rules.yaml.versions.jsonl")
    pipeline = Pipeline(RuleSet.load(rules), versions=versions)
    watcher = RulesFileWatcher(
        rules,
        lambda changed: pipeline.apply_rules(changed, "file:test", str(rules)),
        pipeline.rules,
        AuditLog(tmp_path / "rules.yaml.audit.jsonl"),
    )
    decoder = Decoder(CardTokenizer.from_environment())

    def decide(record: dict[str, Any]) -> dict[str, Any]:
        from fraudstream.io.records import decision_dicts

        batch, dead = decoder.records([record], [1], [0.0])
        assert not dead
        result = pipeline.submit(batch, 0.0)
        assert result.decisions is not None
        return decision_dicts(result.decisions)[0]

    assert (
        decide({"transaction_id": "a", "card_id": "c", "amount": 0.5, "timestamp": T0})[
            "rule_version"
        ]
        == 1
    )
    rules.write_text(SHADOW)
    assert watcher.poll()
    assert pipeline.rule_version == 2
    invoke("rules", "rollback", "1", "--rules", str(rules))  # another process, same files
    assert watcher.poll()
    large = decide(
        {"transaction_id": "b", "card_id": "c", "amount": 900.0, "timestamp": T0 + 5_000}
    )
    assert large["rule_version"] == 3  # the rollback's own number
    assert [r["rule"] for r in large["reasons"]][:1] == ["small_then_large"]  # state kept
    assert [v["version"] for v in RuleVersions(versions.path).history()] == [3, 2, 1]
