"""Editing the rules file changes the running pipeline, and the change is audited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline
from fraudstream.rules import AuditLog, RuleSet, RulesFileWatcher
from fraudstream.schema import CardTokenizer, validate_record

T0 = 1_700_000_000_000


def burst(prefix: str, start_ms: int, count: int) -> TxBatch:
    tokenize = CardTokenizer(b"test")
    rows = [
        validate_record(
            {
                "transaction_id": f"{prefix}-{i}",
                "card_id": "c1",
                "timestamp": start_ms + i * 1_000,
                "amount": 20.0,
            },
            tokenize,
        )
        for i in range(count)
    ]
    return TxBatch.from_valid(rows, np.arange(count), np.zeros(count))


def write_rules(path: Path, min_transactions: int, stamp: int) -> None:
    path.write_text(
        f"rules:\n  - id: velocity\n    score: 0.95\n"
        f"    thresholds: {{min_transactions: {min_transactions}, window_s: 30}}\n"
    )
    os.utime(path, ns=(stamp, stamp))  # a distinct modification time, whatever the clock


def test_a_changed_file_applies_to_the_next_batch_and_is_audited(tmp_path: Path) -> None:
    rules_path = tmp_path / "rules.yaml"
    write_rules(rules_path, 10, 1_000_000_000)
    rules = RuleSet.load(rules_path)
    pipeline = Pipeline(rules)
    audit = tmp_path / "audit.jsonl"
    watcher = RulesFileWatcher(rules_path, pipeline.apply_rules, rules, AuditLog(audit))

    first = pipeline.submit(burst("a", T0, 5), now_ms=0).decisions
    assert first is not None and not first.fired["velocity"].any()  # 5 < 10
    assert watcher.poll() is False  # unchanged file: nothing to do

    write_rules(rules_path, 3, 2_000_000_000)
    assert watcher.poll() is True
    second = pipeline.submit(burst("b", T0 + 100_000, 3), now_ms=0).decisions
    assert second is not None and second.fired["velocity"].tolist() == [False, False, True]

    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert len(entries) == 1
    (entry,) = entries
    assert entry["who"].startswith("file:") and entry["source"] == str(rules_path)
    before = {r["id"]: r for r in entry["before"]["rules"]}["velocity"]
    after = {r["id"]: r for r in entry["after"]["rules"]}["velocity"]
    assert before["thresholds"]["min_transactions"] == 10
    assert after["thresholds"]["min_transactions"] == 3


def test_a_broken_file_keeps_the_running_rules_and_is_logged_as_refused(tmp_path: Path) -> None:
    rules_path = tmp_path / "rules.yaml"
    write_rules(rules_path, 4, 1_000_000_000)
    rules = RuleSet.load(rules_path)
    applied: list[RuleSet] = []
    errors: list[str] = []
    audit = tmp_path / "audit.jsonl"
    watcher = RulesFileWatcher(rules_path, applied.append, rules, AuditLog(audit), errors.append)
    rules_path.write_text("rules: [ {id: velocity, score: 7} ]\n")
    os.utime(rules_path, ns=(3_000_000_000, 3_000_000_000))
    assert watcher.poll() is False
    assert applied == [] and watcher.current == rules
    assert len(errors) == 1 and "score" in errors[0]
    (entry,) = [json.loads(line) for line in audit.read_text().splitlines()]
    assert entry["after"] is None and entry["note"].startswith("refused:")


def test_the_command_reloads_its_rules_file_while_reading_stdin(tmp_path: Path) -> None:
    rules_path = tmp_path / "rules.yaml"
    write_rules(rules_path, 10, 1_000_000_000)
    exe = Path(sys.executable).parent / "fraudstream"
    alerts = tmp_path / "alerts.jsonl"
    decisions = tmp_path / "decisions.jsonl"
    process = subprocess.Popen(
        [str(exe), "run", "--input", "-", "--rules", str(rules_path), "--alerts", str(alerts)]
        + ["--decisions", str(decisions)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, FRAUDSTREAM_TOKEN_KEY="test"),
    )
    assert process.stdin is not None

    def send(prefix: str, start_ms: int) -> None:
        assert process.stdin is not None
        for i in range(6):
            record = {
                "transaction_id": f"{prefix}-{i}",
                "card_id": "c1",
                "timestamp": start_ms + i * 1_000,
                "amount": 20.0,
            }
            process.stdin.write((json.dumps(record) + "\n").encode())
        process.stdin.flush()

    send("before", T0)
    for _ in range(600):  # until the first burst is decided under the old rules (<= 60 s)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        if decisions.exists() and len(decisions.read_text().splitlines()) >= 6:
            break
        time.sleep(0.1)
    write_rules(rules_path, 3, 2_000_000_000)
    send("after", T0 + 600_000)
    process.stdin.close()
    code = process.wait(timeout=60)
    assert process.stderr is not None
    problems = process.stderr.read().decode()
    process.stderr.close()
    assert code == 0, problems
    alerted = [json.loads(line)["transaction_id"] for line in alerts.read_text().splitlines()]
    assert alerted and all(tid.startswith("after-") for tid in alerted), alerted
    audit = rules_path.with_name("rules.yaml.audit.jsonl")
    assert len(audit.read_text().splitlines()) == 1
