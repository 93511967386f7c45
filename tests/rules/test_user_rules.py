"""User rules: errors that name the rule and the column, outcomes, reasons, live reload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fraudstream.config import ConfigError
from fraudstream.engine.pipeline import Pipeline
from fraudstream.rules import AuditLog, RuleSet, RulesFileWatcher
from fraudstream.run import decide_records

FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))
T0 = 1_700_000_000_000  # 22:13 UTC


def rules(*entries: dict[str, Any], lists: dict[str, Any] | None = None) -> RuleSet:
    return RuleSet.from_document({"rules": list(entries), "lists": lists or {}})


def tx(i: int, **fields: Any) -> dict[str, Any]:
    return {"transaction_id": f"t{i}", "card_id": f"c{i}", "timestamp": T0 + i * 1_000,
            "amount": 10.0, **fields}  # fmt: skip


@pytest.mark.parametrize(
    ("when", "error"),
    [
        ("amont > 5", "rule 'r': when column 1: unknown field 'amont'"),
        ("amount > 5 and foo(amount)", "rule 'r': when column 16: unknown function foo()"),
        ("device_id in list('nope')", "rule 'r': when column 1: unknown list 'nope' (lists: none)"),
        ("hour < 6 and amount + device_id > 3", "column 14: + needs numbers, got number and text"),
        ("count(by=card_id, over='1 week') > 3", "column 24: bad window '1 week'"),
        ("count(by=card_id, over='1h')", "when column 1: is a number, not a condition"),
        ("amount >", "rule 'r': when column 9: the expression ends early"),
        ("__import__('os')", "rule 'r': when column 1: unknown function __import__()"),
        ("amount.real > 1", "rule 'r': when column 1: unknown field amount.real"),
        ("fired('nope')", "column 1: fired('nope'): no standard rule of that id"),
        ("sum(device_id, by=card_id, over='1h') > 1", "sum() takes a numeric transaction field"),
        ("profile.shoe_size > 1", "column 1: unknown field 'profile.shoe_size'"),
        ("-" * 3000 + "amount > 1", "rule 'r': when column 1: nested too deeply"),
        ("not " * 100 + "amount > 1", "rule 'r': when column 257: nested more than 64 deep"),
        ("amount > 1 " + "or amount > 1 " * 400, "rule 'r': when column 4001: an expression is"),
    ],
)
def test_errors_name_the_rule_and_the_column(when: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        rules({"id": "r", "when": when, "score": 0.5})
    assert error in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_rule_needs_a_score_or_an_outcome_and_a_free_id() -> None:
    with pytest.raises(ConfigError, match="give a score, an outcome or both"):
        rules({"id": "r", "when": "amount > 1"})
    with pytest.raises(ConfigError, match="standard rule or detector name"):
        rules({"id": "velocity", "when": "amount > 1", "score": 0.5})
    with pytest.raises(ConfigError, match="outcome must be one of"):
        rules({"id": "r", "when": "amount > 1", "outcome": "block"})


def test_outcomes_beat_the_score_decline_first() -> None:
    rule_set = rules(
        {"id": "big", "when": "amount >= 100", "score": 0.95},  # declines by score alone
        {"id": "allow", "when": "merchant_id == 'm-1'", "outcome": "approve"},
        {"id": "look", "when": "channel == 'online'", "outcome": "review"},
        {"id": "block", "when": "device_id in list('bad')", "outcome": "decline"},
        lists={"bad": ["d-666"]},
    )
    records = [
        tx(1, amount=100.0),  # score: decline
        tx(2, amount=100.0, merchant_id="m-1"),  # approve beats the score
        tx(3, amount=5.0, channel="online"),  # review beats the score (approve)
        tx(4, amount=5.0, channel="online", merchant_id="m-1"),  # approve beats review
        tx(5, merchant_id="m-1", device_id="d-666", channel="online"),  # decline beats all
    ]
    decisions = decide_records(records, rules=rule_set)
    assert [d["decision"] for d in decisions] == [
        "decline", "approve", "review", "approve", "decline",
    ]  # fmt: skip
    assert [r["rule"] for r in decisions[4]["reasons"]] == ["block", "allow", "look"]
    assert decisions[0]["reasons"] == [{"rule": "big", "message": "amount 100 (>= 100)"}]


def test_reasons_show_the_values() -> None:
    rule_set = rules(
        {"id": "shared", "when": "distinct_count(card_id, by=device_id, over='1h') >= 3",
         "score": 0.8},
        {"id": "odd", "when": "not (amount < 5) and profile.home_country is null "
         "and merchant_id.startswith('m-') and amount * 2 > 15", "score": 0.1},
    )  # fmt: skip
    records = [tx(i, device_id="d-9", merchant_id="m-7") for i in range(3)]
    last = decide_records(records, rules=rule_set)[-1]
    assert last["reasons"] == [
        {"rule": "shared", "message": "3 distinct card_id on device_id d-9 within 1h (>= 3)"},
        {"rule": "odd", "message": "amount 10 (not < 5); profile.home_country null (is null); "
         "merchant_id m-7 (starts with 'm-'); amount * 2 = 20 (> 15)"},
    ]  # fmt: skip


def test_null_compares_false_and_aggregates_of_a_missing_key_are_null() -> None:
    rule_set = rules(
        {"id": "no_device", "when": "count(by=device_id, over='1h') is null", "score": 0.1},
        {"id": "low", "when": "lat < 100", "score": 0.1},
        {"id": "not_low", "when": "not (lat < 100)", "score": 0.1},
    )
    decisions = decide_records([tx(1), tx(2, device_id="d", lat=1.0, lon=2.0)], rules=rule_set)
    assert [sorted(r["rule"] for r in d["reasons"]) for d in decisions] == [
        ["no_device", "not_low"], ["low"],
    ]  # fmt: skip


def test_without_user_rules_nothing_new_runs() -> None:
    assert Pipeline().user_rules is None
    assert Pipeline(rules({"id": "r", "when": "amount > 1", "score": 0.1})).user_rules


def write(path: Path, text: str, stamp: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(stamp, stamp))


def test_a_bad_reload_keeps_the_old_rules_and_is_audited_a_list_file_reloads(
    tmp_path: Path,
) -> None:
    rules_path, list_path = tmp_path / "rules.yaml", tmp_path / "bad.txt"
    write(list_path, "d-1\n", 1_000_000_000)
    good = ("lists: {bad: {file: bad.txt}}\nrules:\n  - id: block\n"
            "    when: \"device_id in list('bad')\"\n    outcome: decline\n")  # fmt: skip
    write(rules_path, good, 1_000_000_000)
    current = RuleSet.load(rules_path)
    pipeline = Pipeline(current)
    audit, errors = tmp_path / "audit.jsonl", []
    watcher = RulesFileWatcher(rules_path, pipeline.apply_rules, current, AuditLog(audit),
                               errors.append)  # fmt: skip

    write(rules_path, good.replace("device_id in", "devce_id in"), 2_000_000_000)
    assert watcher.poll() is False
    assert pipeline.rules == current
    assert errors == [f"rules not reloaded: {rules_path}: rule 'block': when column 1: "
                      "unknown field 'devce_id'"]  # fmt: skip
    entry = json.loads(audit.read_text().splitlines()[-1])
    assert entry["after"] is None and "column 1: unknown field 'devce_id'" in entry["note"]

    write(rules_path, good, 3_000_000_000)
    assert watcher.poll() is False  # back to what runs: nothing to apply
    write(list_path, "d-1\nd-2\n", 4_000_000_000)
    assert watcher.poll() is True
    assert pipeline.rules.list_values() == {"bad": ("d-1", "d-2")}


def test_the_cli_says_one_line(tmp_path: Path) -> None:
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text('rules:\n  - id: r\n    when: "amount > 5 and hour <"\n    score: 1\n')
    stream = tmp_path / "in.jsonl"
    stream.write_text(json.dumps(tx(1)) + "\n")
    done = subprocess.run(
        [FRAUDSTREAM, "run", "--input", str(stream), "--rules", str(rules_path)],
        capture_output=True, text=True, timeout=300, check=False, stdin=subprocess.DEVNULL,
        env={**os.environ, "FRAUDSTREAM_TOKEN_KEY": "t", "COLUMNS": "300"},
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "rule 'r': when column" in lines[0] and "Traceback" not in done.stderr


def test_a_rule_set_with_user_rules_round_trips_through_its_document(tmp_path: Path) -> None:
    (tmp_path / "mcc.txt").write_text("5944\n# a comment\n\n7995\n")
    (tmp_path / "rules.yaml").write_text(
        "lists:\n  mcc: {file: mcc.txt}\n  bad: [d-1, 7]\nrules:\n  - id: velocity\n"
        "    enabled: false\n  - id: r\n    when: \"merchant_category in list('mcc')\"\n"
        "    score: 0.4\n    outcome: review\n    description: risky\n"
    )
    loaded = RuleSet.load(tmp_path / "rules.yaml")
    assert loaded.list_values() == {"mcc": ("5944", "7995"), "bad": ("d-1", "7")}
    assert RuleSet.from_document(loaded.to_document()) == loaded


def test_the_feature_names_rules_know_are_those_the_pipeline_exposes() -> None:
    import numpy as np
    import pyarrow as pa

    from fraudstream.engine.batch import TxBatch
    from fraudstream.rules.check import FEATURES
    from fraudstream.schema import CardTokenizer, validate_record

    rows = [validate_record(tx(i, lat=1.0, lon=2.0, ip="192.0.2.1"), CardTokenizer(b"t"))
            for i in range(3)]  # fmt: skip
    pipeline = Pipeline()
    decisions = pipeline.submit(TxBatch.from_valid(rows, np.arange(3), np.zeros(3)), 0).decisions
    assert decisions is not None
    exposed = {
        name: "text" if isinstance(v, pa.Array) and pa.types.is_string(v.type) else "number"
        for name, v in decisions.features.items()
    }
    assert exposed == FEATURES
