"""Processing time on the keyed job: arrival order and arrival times, as `run --time processing`.

The stage-level tests play the keyed job's processing-time dataflow without Flink: each chunk's
records go at once (nothing waits for a watermark, nothing is late) to their card key group,
then to their user key group, and must be decided as the embedded runtime decides them in
processing time. The Flink test runs the walkthrough (seed 003) through `fraudstream flink
run --time processing`: one alert, on card 3's 871.15.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from flink_helpers import FRAUDSTREAM, read_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline, TimeConfig
from fraudstream.flink.keyed import CardStage, UserStage, release_order
from fraudstream.flink.stages import PipelineParts, StageResult, shard_of
from fraudstream.flink.transport import pack_result, take_part, unpack_result
from fraudstream.io.records import decision_dicts
from fraudstream.profiles import ProfileTable
from fraudstream.reference import IpReference
from fraudstream.rules import RuleSet
from fraudstream.schema import CardTokenizer, validate_record
from fraudstream.simulate.walkthrough import walkthrough_records

PROCESSING = TimeConfig(mode="processing")
ARRIVAL_T0_MS = 1_700_000_000_000
KEY_GROUPS = 8
WALL_CLOCK = ("processed_at", "latency_ms")
NO_WATERMARK = -(2**63)


def stream(seed: int, count: int) -> list[dict[str, Any]]:
    """Records in any event-time order (processing time ignores it), some sent twice."""
    rng = random.Random(seed)
    out = []
    for k in range(count):
        card = rng.randrange(10)
        out.append(
            {
                "transaction_id": f"t{k:04d}",
                "card_id": f"card-{card}",
                "user_id": f"user-{card // 2}",
                "timestamp": 1_767_225_600_000 + rng.randrange(3_600_000),
                "amount": rng.choice([0.5, 0.9, 12.0, 75.0, 620.0, 2_400.0]),
                "lat": rng.choice([52.52, 48.85, 40.71]),
                "lon": rng.choice([13.40, 2.35, -74.0]),
                "merchant_id": f"m{rng.randrange(4)}",
                "device_id": rng.choice(["d1", "d2", f"d{k}"]),
                "country": rng.choice(["DE", "FR", None]),
            }
        )
    for _ in range(count // 20):
        i = rng.randrange(len(out) - 3)
        out.insert(i + rng.randrange(1, 4), dict(out[i]))
    return out


def decode(records: list[dict[str, Any]], step_ms: int) -> TxBatch:
    tokenize = CardTokenizer(b"test")
    rows = [validate_record(r, tokenize) for r in records]
    arrival = ARRIVAL_T0_MS + step_ms * np.arange(len(rows), dtype=np.float64)
    return TxBatch.from_valid(rows, np.arange(1, len(rows) + 1, dtype=np.int64), arrival)


def chunks(batch: TxBatch, size: int) -> list[TxBatch]:
    return [batch.take(np.arange(s, min(s + size, len(batch)))) for s in range(0, len(batch), size)]


def comparable(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["transaction_id"]: {k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rows}


def embedded(batch: TxBatch, size: int) -> tuple[dict[str, Any], list[int]]:
    pipeline = Pipeline(RuleSet.default(), ProfileTable(), PROCESSING, IpReference.default())
    steps = [pipeline.submit(part, ARRIVAL_T0_MS) for part in chunks(batch, size)]
    decided, duplicates = [], []
    for step in [*steps, pipeline.flush(ARRIVAL_T0_MS)]:
        if step.decisions is not None:
            decided.extend(decision_dicts(step.decisions))
        duplicates.extend(step.duplicates.position.tolist())
    return comparable(decided), sorted(duplicates)


def keyed(batch: TxBatch, size: int) -> tuple[dict[str, Any], list[int]]:
    """The keyed job's dataflow: the arrival watermark passes one chunk at a time, so each
    key group gets the chunk's parts together (sorted by arrival and position)."""
    parts = PipelineParts(RuleSet.default(), ProfileTable(), PROCESSING, IpReference.default())
    card_stage, user_stage = CardStage(parts), UserStage(parts)
    cards: list[dict[str, bytes]] = [{} for _ in range(KEY_GROUPS)]
    users: list[dict[str, bytes]] = [{} for _ in range(KEY_GROUPS)]
    decided, duplicates = [], []
    for part in chunks(batch, size):
        waiting: dict[int, list[StageResult]] = {}
        to_card = shard_of(part.card_id, KEY_GROUPS)
        for g in np.unique(to_card).tolist():
            tx = part.take(np.flatnonzero(to_card == g))
            tx = tx.take(release_order(tx, processing=True))
            values = cards[g]
            result, repeated, new = card_stage.process(
                tx, lambda keys, v=values: [v.get(k) for k in keys], NO_WATERMARK, ARRIVAL_T0_MS
            )
            values.update(new)
            duplicates.extend(repeated.position.tolist())
            assert result.tx is not None
            to_user = shard_of(result.tx.user_id, KEY_GROUPS)
            for u in np.unique(to_user).tolist():
                mine = unpack_result(take_part(pack_result(result), np.flatnonzero(to_user == u)))
                waiting.setdefault(u, []).append(mine)
        for u, results in waiting.items():
            values = users[u]
            decisions, new, _ = user_stage.process(
                results, lambda keys, v=values: [v.get(k) for k in keys], NO_WATERMARK,
                ARRIVAL_T0_MS,
            )  # fmt: skip
            values.update(new)
            decided.extend(decision_dicts(decisions))
    return comparable(decided), sorted(duplicates)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), size=st.sampled_from([1, 13, 64, 500]))
def test_keyed_stages_decide_in_processing_time_as_embedded(seed: int, size: int) -> None:
    batch = decode(stream(seed, 200), step_ms=700)
    want = embedded(batch, size)
    got = keyed(batch, size)
    assert got[0] == want[0]  # every decision: tier, score, reasons, features
    assert got[1] == want[1]  # the same copies are the duplicates


def test_keyed_stages_alert_the_walkthrough_once_per_loop() -> None:
    batch = decode(walkthrough_records(150), step_ms=100)  # the walkthrough's 10 records/s
    for size in (1, 10, 150):
        decided, _ = keyed(batch, size)
        alerts = sorted(tid for tid, row in decided.items() if row["decision"] != "approve")
        assert alerts == ["wt-128", "wt-28", "wt-78"], size


def test_flink_walkthrough_in_processing_time_alerts_card_3_once(tmp_path: Path) -> None:
    records = subprocess.run(
        [FRAUDSTREAM, "simulate", "--scenario", "flink-walkthrough", "--count", "50", "--fast"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    source = tmp_path / "walkthrough.jsonl"
    source.write_bytes(records)
    common = ["--input", str(source), "--target", "local", "--quiet"]
    # with --labels the streaming features join (terminal and customer stages, arrival clock)
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"transaction_id": "wt-3", "is_fraud": true, "label_time": 0}\n')
    runs = (("processing", ["wt-28"], []), ("event", [], []),
            ("processing", ["wt-28"], ["--labels", str(labels)]))  # fmt: skip
    for mode, expected, extra in runs:
        out = tmp_path / f"{mode}-{len(extra)}"
        result = subprocess.run(
            [FRAUDSTREAM, "flink", "run", *common, "--time", mode, "--graph", "keyed", *extra,
             "--alerts", str(out / "alerts"), "--checkpoint-dir", str(out / "checkpoints")],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        alerts = read_jsonl(out / "alerts") if (out / "alerts").exists() else []
        assert [a["transaction_id"] for a in alerts] == expected, mode
        for alert in alerts:
            assert alert["card_id"] == "3"
            assert ("customer_tx_1d" in alert["features"]) == bool(extra)
            rules = [reason["rule"] for reason in alert["reasons"]]
            assert "small_then_large" in rules
            message = next(
                r["message"] for r in alert["reasons"] if r["rule"] == "small_then_large"
            )
            assert "871.15" in message and "0.80" in message


def test_processing_time_on_another_graph_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text('{"transaction_id": "a", "card_id": "c", "timestamp": 1, "amount": 1}\n')
    result = subprocess.run(
        [FRAUDSTREAM, "flink", "run", "--input", str(source), "--time", "processing",
         "--graph", "fused", "--alerts", str(tmp_path / "alerts")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--time processing runs on the keyed job" in result.stderr
    assert "not on --graph fused" in result.stderr
    assert "Traceback" not in result.stderr


def test_flink_walkthrough_paced_live_alerts_card_3_once(tmp_path: Path) -> None:
    """The walkthrough written into a watched directory at 10 records/s while the keyed job
    (its lines batched by Flink SQL) runs in processing time: one alert, card 3's 871.15."""
    records = subprocess.run(
        [FRAUDSTREAM, "simulate", "--scenario", "flink-walkthrough", "--count", "50", "--fast"],
        check=True, capture_output=True,
    ).stdout.splitlines(keepends=True)  # fmt: skip
    watched, out = tmp_path / "incoming", tmp_path / "out"
    watched.mkdir()
    checkpoints = out / "checkpoints"
    log = tmp_path / "job.stderr"
    with log.open("wb") as stderr:
        job = subprocess.Popen(
            [FRAUDSTREAM, "flink", "run", "--input", str(watched), "--monitor-interval-ms",
             "200", "--time", "processing", "--target", "local", "--checkpoint-dir",
             str(checkpoints), "--checkpoint-interval-ms", "500", "--decisions",
             str(out / "decisions"), "--alerts", str(out / "alerts"), "--quiet"],
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    try:
        # Paced from the job's first checkpoint on: it runs, and watches the directory.
        wait_for(lambda: any(checkpoints.glob("*/chk-*")), job, log)
        for k, record in enumerate(records):
            hidden = watched / f".{k:03d}.jsonl"  # the source skips hidden files until renamed
            hidden.write_bytes(record)
            hidden.rename(watched / f"{k:03d}.jsonl")
            time.sleep(0.1)  # the walkthrough's pace: 10 records/s
        wait_for(lambda: count_decided(out / "decisions") >= len(records), job, log)
    finally:
        os.killpg(job.pid, signal.SIGTERM)  # an unbounded job: stopped here
        try:
            job.wait(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    alerts = read_jsonl(out / "alerts")
    assert [(a["transaction_id"], a["card_id"]) for a in alerts] == [("wt-28", "3")]
    assert "small_then_large" in [reason["rule"] for reason in alerts[0]["reasons"]]


HANG_GUARD_S = 300  # only stops a hung job; never asserted on


def count_decided(directory: Path) -> int:
    return len(read_jsonl(directory)) if directory.is_dir() else 0


def wait_for(condition: Any, job: subprocess.Popen[bytes], log: Path) -> None:
    """Polls ``condition`` until it holds; fails if the job ends or hangs first."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        if job.poll() is not None:
            raise AssertionError(f"the job ended: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("the job hung")
        time.sleep(0.2)
