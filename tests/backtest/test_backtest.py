"""`fraudstream backtest` against two `fraudstream run`s: every figure of its report (per rule,
per tier, the changed transactions, the whole decision, alerts per day) equals what the
decisions each run writes say, with one shared detector pass and with two pipelines."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app

CANDIDATE = """\
decision: {review_threshold: 0.4}
rules:
  - id: velocity
    enabled: false
  - id: big_amount
    when: amount > 200
    score: 0.5
  - id: busy_terminal
    when: "count(by=merchant_id, over='1d') >= 4 and amount > 60"
    outcome: review
  - id: night
    when: hour < 5 and amount > 100
    score: 0.3
    mode: shadow
  - id: spend_deviation
    mode: shadow
"""
# velocity with another window: its detector differs from the defaults' (two pipelines)
OTHER_DETECTOR = CANDIDATE.replace(
    "  - id: velocity\n    enabled: false\n",
    "  - id: velocity\n    thresholds: {window_s: 3600}\n",
)
DAY_MS = 86_400_000


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("history")
    transactions, labels = where / "history.parquet", where / "labels.parquet"
    invoke(
        "simulate", "--scenario", "handbook", "--customers", "150", "--terminals", "300",
        "--days", "20", "--output", str(transactions), "--labels-out", str(labels),
    )  # fmt: skip
    return transactions, labels


def decisions_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def expected_rules(
    decided: list[dict[str, Any]], fraud: set[str], amount: dict[str, float], days: float
) -> dict[str, dict[str, Any]]:
    frauds = sum(d["transaction_id"] in fraud for d in decided)
    hits: dict[str, list[str]] = {}
    for d in decided:
        for field in ("reasons", "shadow_reasons"):
            for reason in d[field]:
                hits.setdefault(reason["rule"], []).append(d["transaction_id"])
    out = {}
    for rule, ids in hits.items():
        tp = [i for i in ids if i in fraud]
        out[rule] = {
            "alerts": len(ids),
            "true_positives": len(tp),
            "false_positives": len(ids) - len(tp),
            "precision": ratio(len(tp), len(ids)),
            "recall": ratio(len(tp), frauds),
            "alerts_per_day": len(ids) / days,
            "caught_amount": sum(amount[i] for i in tp),
        }
    return out


def check_rules(shown: list[dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    by_id = {row["id"]: row for row in shown}
    for rule, figures in expected.items():
        row = by_id[rule]
        for name, value in figures.items():
            assert row[name] == pytest.approx(value, rel=1e-6, abs=0.01), (rule, name)
    for rule, row in by_id.items():  # a rule that never fired: zeros
        if rule not in expected:
            assert row["alerts"] == row["true_positives"] == 0, rule
            assert row["caught_amount"] == 0


@pytest.mark.parametrize(
    ("candidate_text", "passes"),
    [(CANDIDATE, "one detector pass"), (OTHER_DETECTOR, "two pipelines")],
    ids=["shared", "two"],
)
def test_backtest_report_equals_two_runs(
    tmp_path: Path, history: tuple[Path, Path], candidate_text: str, passes: str
) -> None:
    transactions, labels = history
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(candidate_text)
    batches = ["--batch-rows", "997"]  # many micro-batches
    invoke("run", "--quiet", "--input", str(transactions), "--rules", str(candidate),
           "--decisions", str(tmp_path / "candidate.jsonl"), *batches)  # fmt: skip
    invoke("run", "--quiet", "--input", str(transactions),
           "--decisions", str(tmp_path / "baseline.jsonl"), *batches)  # fmt: skip
    report_path = tmp_path / "report.json"
    page = tmp_path / "report.html"
    shown = invoke("backtest", "--input", str(transactions), "--labels", str(labels),
                   "--rules", str(candidate), "--report", str(report_path), "--html", str(page),
                   *batches)  # fmt: skip
    assert passes in shown and "candidate rules" in shown
    report = json.loads(report_path.read_text())

    after = decisions_of(tmp_path / "candidate.jsonl")
    before = decisions_of(tmp_path / "baseline.jsonl")
    assert [d["transaction_id"] for d in after] == [d["transaction_id"] for d in before]
    table = pq.read_table(labels).to_pylist()
    last: dict[str, tuple[int, bool]] = {}
    for label in table:
        time = label["label_time"]
        time = time if isinstance(time, int) else int(time.timestamp() * 1000)
        seen = last.get(label["transaction_id"])
        if seen is None or time >= seen[0]:
            last[label["transaction_id"]] = (time, bool(label["is_fraud"]))
    fraud = {tid for tid, (_, is_fraud) in last.items() if is_fraud}
    amount = {
        row["transaction_id"]: row["amount"]
        for row in pq.read_table(transactions, columns=["transaction_id", "amount"]).to_pylist()
    }
    times = [epoch_ms(d["event_time"]) for d in after]
    days = max((max(times) - min(times)) / DAY_MS, 1.0)
    frauds = sum(d["transaction_id"] in fraud for d in after)

    assert report["transactions"] == len(after)
    assert report["frauds"] == frauds > 0
    assert report["days"] == pytest.approx(days)
    check_rules(report["rules"], expected_rules(after, fraud, amount, days))
    check_rules(report["baseline_rules"], expected_rules(before, fraud, amount, days))
    assert {r["id"]: r["mode"] for r in report["rules"]}["night"] == "shadow"

    for name, decided in (("candidate", after), ("baseline", before)):
        tiers = Counter(d["decision"] for d in decided)
        assert report["tiers"][name] == {t: tiers[t] for t in ("approve", "review", "decline")}
        alerts = [d for d in decided if d["decision"] != "approve"]
        caught = [d for d in alerts if d["transaction_id"] in fraud]
        figures = report["decision"][name]
        assert figures["alerts"] == len(alerts)
        assert figures["true_positives"] == len(caught)
        assert figures["precision"] == pytest.approx(ratio(len(caught), len(alerts)))
        assert figures["recall"] == pytest.approx(ratio(len(caught), frauds))

    changed = [
        {"transaction_id": a["transaction_id"], "before": b["decision"], "after": a["decision"]}
        for a, b in zip(after, before, strict=True)
        if a["decision"] != b["decision"]
    ]
    assert changed and report["changed"] == changed
    assert report["changed_count"] == len(changed)

    per_day: Counter[tuple[str, str]] = Counter()
    for d in after:
        for reason in d["reasons"] + d["shadow_reasons"]:
            per_day[(reason["rule"], d["event_time"][:10])] += 1
    series = {(p["rule"], p["day"]): p["alerts"] for p in report["alerts_per_day"]["candidate"]}
    assert series == dict(per_day)
    text = page.read_text()
    assert "<svg" in text and "alerts per day" in text and "big_amount" in text


def test_a_bad_argument_is_one_line(tmp_path: Path, history: tuple[Path, Path]) -> None:
    transactions, labels = history
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(CANDIDATE)
    bad.write_text("rules:\n  - id: velocity\n    mode: loud\n")
    for args, message in (
        (["--labels", str(tmp_path / "none.parquet"), "--rules", str(good)], "no such file"),
        (["--labels", str(labels), "--rules", str(bad)], "mode must be one of live, shadow"),
    ):
        result = CliRunner().invoke(app, ["backtest", "--input", str(transactions), *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output


def test_no_fraud_labelled_means_no_true_positive(
    tmp_path: Path, history: tuple[Path, Path]
) -> None:
    transactions, _ = history
    empty = tmp_path / "labels.csv"
    empty.write_text("transaction_id,is_fraud,label_time\nnot-in-the-history,1,0\n")
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(CANDIDATE)
    report_path = tmp_path / "report.json"
    invoke("backtest", "-q", "--input", str(transactions), "--labels", str(empty),
           "--rules", str(candidate), "--report", str(report_path))  # fmt: skip
    report = json.loads(report_path.read_text())
    assert report["frauds"] == 0 and report["decision"]["candidate"]["recall"] is None
    assert all(r["true_positives"] == 0 for r in report["rules"])
