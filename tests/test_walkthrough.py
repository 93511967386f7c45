"""The Flink walkthrough's acceptance (seed 003): `Alert{id=3}` once per loop in processing time.

The walkthrough's source loops 50 amounts over accounts 1..5, 6 minutes of event time apart and
100 ms of wall-clock time apart. Account 3's 0.80 (wt-23) is followed by its 871.15 (wt-28)
about 0.5 s later in wall-clock time (one alert), but 30 minutes later in event time (none).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline, StepResult, TimeConfig
from fraudstream.schema import CardTokenizer, validate_record
from fraudstream.simulate.walkthrough import walkthrough_records

FRAUDSTREAM = Path(sys.executable).parent / "fraudstream"
ARRIVAL_T0_MS = 1_700_000_000_000  # an arbitrary wall-clock start for arrival stamps
ARRIVAL_STEP_MS = 100  # the walkthrough's 100 ms sleep per record
HANG_GUARD_S = 300  # only stops a hung pipe; never asserted on


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def shell(command: str, cwd: Path) -> None:
    result = subprocess.run(
        command,
        shell=True,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        executable="/bin/bash",
    )
    assert result.returncode == 0, f"{command}\nstdout:{result.stdout}\nstderr:{result.stderr}"


def test_the_fraud_record_is_wt_28() -> None:
    records = {r["transaction_id"]: r for r in walkthrough_records(50)}
    assert records["wt-28"]["amount"] == 871.15
    assert records["wt-28"]["card_id"] == "3"
    assert records["wt-23"]["amount"] == 0.80
    assert records["wt-23"]["card_id"] == "3"
    assert records["wt-28"]["timestamp"] - records["wt-23"]["timestamp"] == 30 * 60 * 1000


def test_cli_pipe_in_processing_time_alerts_account_3_once(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    fs = shlex.quote(str(FRAUDSTREAM))
    shell(
        f"set -o pipefail; {fs} simulate --scenario flink-walkthrough --count 50 "
        f"| {fs} run --input - --time processing --alerts {shlex.quote(str(out))}",
        tmp_path,
    )
    alerts = read_jsonl(out)
    assert len(alerts) == 1, alerts
    (alert,) = alerts
    assert alert["card_id"] == "3"
    assert alert["transaction_id"] == "wt-28"
    assert alert["decision"] in ("review", "decline")
    rules = [reason["rule"] for reason in alert["reasons"]]
    assert "small_then_large" in rules
    message = next(r["message"] for r in alert["reasons"] if r["rule"] == "small_then_large")
    assert "871.15" in message and "0.80" in message
    assert alert["features"]["small_amount"] == 0.80


def test_cli_pipe_fast_in_event_time_alerts_nothing(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    fs = shlex.quote(str(FRAUDSTREAM))
    shell(
        f"set -o pipefail; {fs} simulate --scenario flink-walkthrough --count 50 --fast "
        f"| {fs} run --input - --alerts {shlex.quote(str(out))}",
        tmp_path,
    )
    assert out.exists()
    assert read_jsonl(out) == []


# --- the same, in process ------------------------------------------------------------------


def walkthrough_batch(count: int) -> TxBatch:
    tokenize = CardTokenizer(b"test")
    rows = [validate_record(r, tokenize) for r in walkthrough_records(count)]
    arrival = ARRIVAL_T0_MS + ARRIVAL_STEP_MS * np.arange(count, dtype=np.float64)
    return TxBatch.from_valid(rows, np.arange(count, dtype=np.int64), arrival)


def alerts_of(results: list[StepResult]) -> list[tuple[str, str, list[str]]]:
    found = []
    for result in results:
        decisions = result.decisions
        if decisions is None:
            continue
        for row in decisions.alerts().tolist():
            found.append(
                (
                    decisions.tx.transaction_id[row].as_py(),
                    decisions.tx.card_id[row].as_py(),
                    [reason["rule"] for reason in decisions.reasons[row]],
                )
            )
    return found


def run_in_process(
    count: int, mode: Literal["event", "processing"], batch_size: int
) -> list[tuple[str, str, list[str]]]:
    pipeline = Pipeline(time_config=TimeConfig(mode=mode))
    batch = walkthrough_batch(count)
    results = []
    for start in range(0, count, batch_size):
        chunk = batch.take(np.arange(start, min(count, start + batch_size)))
        results.append(pipeline.submit(chunk, now_ms=ARRIVAL_T0_MS))
    results.append(pipeline.flush(now_ms=ARRIVAL_T0_MS))
    return alerts_of(results)


def test_in_process_processing_time_gives_the_single_alert() -> None:
    for batch_size in (1, 7, 50):
        alerts = run_in_process(50, "processing", batch_size)
        assert [(tid, card) for tid, card, _ in alerts] == [("wt-28", "3")], batch_size
        assert "small_then_large" in alerts[0][2]


def test_in_process_processing_time_alerts_once_per_loop() -> None:
    alerts = run_in_process(150, "processing", 10)
    assert [(tid, card) for tid, card, _ in alerts] == [
        ("wt-28", "3"),
        ("wt-78", "3"),
        ("wt-128", "3"),
    ]
    assert all("small_then_large" in rules for _, _, rules in alerts)


def test_in_process_event_time_alerts_nothing() -> None:
    for batch_size in (1, 50):
        assert run_in_process(50, "event", batch_size) == []
