"""``fraudstream run`` outputs hold DESIGN.md's contracts, as JSON lines and as Parquet.

A small simulated demo stream (3,000 transactions, the seed-002 profiles) is decided three
times by the command line: outputs as .jsonl, outputs as .parquet, and decisions to standard
output. Decision records carry exactly the contract's fields; alerts are exactly the
non-approve decisions; enriched records are the transaction (unknown fields included) plus the
geo-velocity pair fields at the top level, features and the decision; Parquet holds the same;
and replaying the same file gives the same decisions.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

from fraudstream.simulate.demo import demo_records

ROOT = Path(__file__).resolve().parents[2]
FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))
SEED_PROFILES = ROOT / "examples" / "profiles.yaml"
SEED_NAMES = {
    "user_1": ("Lena", "Whitaker"),
    "user_2": ("Elias", "Monroe"),
    "user_3": ("Nina", "Langston"),
    "user_4": ("Jordan", "Blake"),
}
DECISION_FIELDS = {
    "transaction_id",
    "card_id",
    "user_id",
    "event_time",
    "decision",
    "score",
    "reasons",
    "shadow_reasons",
    "rule_version",
    "model",
    "features",
    "processed_at",
    "latency_ms",
}
GEO_FIELDS = (
    "previous_transaction_id",
    "previous_timestamp",
    "previous_lat",
    "previous_lon",
    "distance_km",
    "speed_kmh",
    "max_speed_kmh",
    "first_name",
    "last_name",
)
PAIR_FIELDS = GEO_FIELDS[:6]
TIERS = {"approve", "review", "decline"}
VOLATILE = ("processed_at", "latency_ms")


def env() -> dict[str, str]:
    out = dict(os.environ)
    out.update(FRAUDSTREAM_TOKEN_KEY="test", OMP_NUM_THREADS="1")
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def fraudstream(*args: str) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(
        [FRAUDSTREAM, *args], capture_output=True, env=env(), timeout=300, check=False
    )
    stderr = done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr[-3000:]
    assert done.returncode == 0, stderr[-3000:]
    return done


def stable(decision: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in decision.items() if k not in VOLATILE}


@dataclass
class Runs:
    records: list[dict[str, Any]]
    jsonl: dict[str, Path]
    parquet: dict[str, Path]
    stdout_decisions: list[dict[str, Any]]
    stdout_stderr: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory: Any) -> Runs:
    tmp = tmp_path_factory.mktemp("outputs")
    records = demo_records(count=3000)
    source = tmp / "demo.jsonl"
    encoder = msgspec.json.Encoder()
    source.write_bytes(b"".join(encoder.encode(r) + b"\n" for r in records))
    outputs = {}
    for suffix in ("jsonl", "parquet"):
        paths = {
            name: tmp / suffix / f"{name}.{suffix}"
            for name in ("decisions", "alerts", "enriched", "dead-letters")
        }
        fraudstream(
            "run",
            "--input",
            str(source),
            "--profiles",
            str(SEED_PROFILES),
            *(arg for name, path in paths.items() for arg in (f"--{name}", str(path))),
            "--quiet",
        )
        outputs[suffix] = paths
    done = fraudstream(
        "run", "--input", str(source), "--profiles", str(SEED_PROFILES), "--decisions", "-"
    )
    lines = done.stdout.splitlines()
    return Runs(
        records,
        outputs["jsonl"],
        outputs["parquet"],
        [json.loads(line) for line in lines if line.strip()],
        done.stderr.decode("utf-8", "replace"),
    )


def iso_ms(ms: int) -> str:
    from fraudstream.io.records import iso_ms as to_iso

    return to_iso(ms)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a)))


# --- JSON lines --------------------------------------------------------------------------------


def test_every_transaction_has_one_decision(runs: Runs) -> None:
    decisions = read_jsonl(runs.jsonl["decisions"])
    assert [d["transaction_id"] for d in decisions] == [r["transaction_id"] for r in runs.records]
    assert read_jsonl(runs.jsonl["dead-letters"]) == []


def test_decision_records_have_exactly_the_contract_fields(runs: Runs) -> None:
    records = {r["transaction_id"]: r for r in runs.records}
    rule_ids = set()
    for decision in read_jsonl(runs.jsonl["decisions"]):
        assert set(decision) == DECISION_FIELDS, decision
        record = records[decision["transaction_id"]]
        assert decision["card_id"] == record["card_id"]
        assert decision["user_id"] == record["user_id"]
        assert decision["event_time"] == iso_ms(record["timestamp"])
        assert decision["decision"] in TIERS
        assert isinstance(decision["score"], int | float) and 0 <= decision["score"] <= 1
        assert isinstance(decision["reasons"], list)
        for reason in decision["reasons"]:
            assert set(reason) == {"rule", "message"}, reason
            assert isinstance(reason["message"], str) and reason["message"].strip()
            rule_ids.add(reason["rule"])
        if decision["decision"] != "approve":
            assert decision["reasons"], decision
        assert decision["model"] is None or isinstance(decision["model"], dict)
        assert isinstance(decision["features"], dict)
        datetime.fromisoformat(decision["processed_at"])
        assert isinstance(decision["latency_ms"], int | float) and decision["latency_ms"] >= 0
    assert rule_ids, "the demo stream should fire some rules"
    assert rule_ids <= {
        "small_then_large",
        "geo_velocity",
        "zip_mismatch",
        "amount_anomaly",
        "velocity",
        "card_testing",
        "spend_deviation",
        "unusual_hour",
        "new_device",
        "ip_country_mismatch",
        "anonymous_network",
    }


def test_alerts_are_exactly_the_non_approve_decisions(runs: Runs) -> None:
    decisions = read_jsonl(runs.jsonl["decisions"])
    alerts = read_jsonl(runs.jsonl["alerts"])
    expected = [d for d in decisions if d["decision"] != "approve"]
    assert expected, "the demo stream should raise alerts"
    assert alerts == expected


def test_enriched_records_carry_transaction_pair_fields_features_and_decision(runs: Runs) -> None:
    decisions = {d["transaction_id"]: d for d in read_jsonl(runs.jsonl["decisions"])}
    enriched = read_jsonl(runs.jsonl["enriched"])
    assert [e["transaction_id"] for e in enriched] == [r["transaction_id"] for r in runs.records]
    previous: dict[str, dict[str, Any]] = {}
    for record, out in zip(runs.records, enriched, strict=True):
        for name, value in record.items():  # the transaction, unknown fields included
            assert name in out, (name, out)
            if isinstance(value, float):
                assert out[name] == pytest.approx(value), name
            else:
                assert out[name] == value, name
        assert "scenario" in out and "is_fraud" in out
        for name in GEO_FIELDS:
            assert name in out, (name, sorted(out))
            assert name not in out["features"], name
        decision = decisions[out["transaction_id"]]
        assert out["decision"] == decision["decision"]
        assert out["score"] == decision["score"]
        assert out["reasons"] == decision["reasons"]
        assert isinstance(out["features"], dict)
        names = SEED_NAMES.get(record["user_id"], (None, None))
        assert (out["first_name"], out["last_name"]) == names, record["user_id"]
        before = previous.get(record["user_id"])
        if before is None:
            assert all(out[name] is None for name in PAIR_FIELDS), out
        else:
            assert out["previous_transaction_id"] == before["transaction_id"]
            assert out["previous_timestamp"] == before["timestamp"]
            assert out["previous_lat"] == pytest.approx(before["lat"])
            assert out["previous_lon"] == pytest.approx(before["lon"])
            distance = haversine_km(before["lat"], before["lon"], record["lat"], record["lon"])
            assert out["distance_km"] == pytest.approx(distance, rel=1e-9, abs=1e-6)
            elapsed_h = (record["timestamp"] - before["timestamp"]) / 3_600_000
            if elapsed_h > 0:
                assert out["speed_kmh"] == pytest.approx(distance / elapsed_h, rel=1e-9, abs=1e-6)
        previous[record["user_id"]] = record
    seed_users = {r["user_id"] for r in runs.records} & set(SEED_NAMES)
    assert seed_users, "the demo stream should include the seed-002 users"


def test_enriched_max_speed_is_the_profile_value_for_seed_users(runs: Runs) -> None:
    speeds = {"user_1": 10.0, "user_2": 100.0, "user_3": 1000.0, "user_4": 99999.0}
    seen = set()
    for out in read_jsonl(runs.jsonl["enriched"]):
        if out["user_id"] in speeds and out["previous_transaction_id"] is not None:
            assert out["max_speed_kmh"] == speeds[out["user_id"]]
            seen.add(out["user_id"])
    assert seen


# --- Parquet -----------------------------------------------------------------------------------


def test_parquet_outputs_hold_the_same_decisions_as_jsonl(runs: Runs) -> None:
    for name in ("decisions", "alerts", "enriched"):
        jsonl = [(d["transaction_id"], d["decision"]) for d in read_jsonl(runs.jsonl[name])]
        table = pq.read_table(runs.parquet[name])
        parquet = list(
            zip(
                table.column("transaction_id").to_pylist(),
                table.column("decision").to_pylist(),
                strict=True,
            )
        )
        assert parquet == jsonl, name
    decisions = pq.read_table(runs.parquet["decisions"])
    jsonl = read_jsonl(runs.jsonl["decisions"])
    assert decisions.column("score").to_pylist() == [d["score"] for d in jsonl]
    reasons = decisions.column("reasons").to_pylist()
    assert reasons == [d["reasons"] for d in jsonl]
    assert pq.read_table(runs.parquet["dead-letters"]).num_rows == 0


def test_parquet_enriched_keeps_unknown_fields(runs: Runs) -> None:
    table = pq.read_table(runs.parquet["enriched"])
    assert table.column("scenario").to_pylist() == [r["scenario"] for r in runs.records]
    assert table.column("is_fraud").to_pylist() == [r["is_fraud"] for r in runs.records]
    for name in GEO_FIELDS:
        assert name in table.column_names, name


# --- standard output and replay ---------------------------------------------------------------


def test_decisions_to_stdout_are_json_lines(runs: Runs) -> None:
    assert len(runs.stdout_decisions) == len(runs.records)
    for decision in runs.stdout_decisions:
        assert set(decision) == DECISION_FIELDS


def test_replaying_the_same_file_gives_identical_decisions(runs: Runs) -> None:
    first = [stable(d) for d in read_jsonl(runs.jsonl["decisions"])]
    again = [stable(d) for d in runs.stdout_decisions]
    assert again == first


def test_scores_and_tiers_agree_within_each_run(runs: Runs) -> None:
    """Every alert's tier follows from its score with the default thresholds (0.5 / 0.9),
    and the same transaction gets the same tier in every output."""
    tiers: dict[str, set[str]] = defaultdict(set)
    for decision in read_jsonl(runs.jsonl["decisions"]):
        expected = (
            "decline"
            if decision["score"] >= 0.9
            else "review"
            if decision["score"] >= 0.5
            else "approve"
        )
        assert decision["decision"] == expected, decision
        tiers[decision["transaction_id"]].add(decision["decision"])
    for out in read_jsonl(runs.jsonl["enriched"]):
        tiers[out["transaction_id"]].add(out["decision"])
    assert all(len(t) == 1 for t in tiers.values())


# --- Parquet sinks over records that differ -----------------------------------------------------


def run_in_process(source: Path, directory: Path, suffix: str, batch_rows: int) -> None:
    from fraudstream.engine.pipeline import Pipeline
    from fraudstream.io.files import FileSource
    from fraudstream.run import Outputs, Runner
    from fraudstream.schema import CardTokenizer

    outputs = Outputs(
        decisions=str(directory / f"decisions.{suffix}"),
        alerts=str(directory / f"alerts.{suffix}"),
        enriched=str(directory / f"enriched.{suffix}"),
    )
    runner = Runner(Pipeline(), outputs, CardTokenizer(b"test"))
    runner.run(FileSource(source, "jsonl", batch_rows=batch_rows))


@pytest.fixture(scope="module")
def mixed_source(tmp_path_factory: Any) -> tuple[Path, list[dict[str, Any]]]:
    """A first record without coordinates or extra fields, then demo records that have them."""
    records = demo_records(count=400, users=10, seed=11)
    first = {
        "transaction_id": "first",
        "card_id": "card-x",
        "timestamp": records[0]["timestamp"] - 1_000,
        "amount": 3.0,
    }
    records = [first, *records]
    path = tmp_path_factory.mktemp("mixed") / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path, records


@pytest.mark.parametrize("batch_rows", [65_536, 4], ids=["one-batch", "many-batches"])
def test_parquet_outputs_keep_fields_the_first_record_lacks(
    mixed_source: tuple[Path, list[dict[str, Any]]], tmp_path: Path, batch_rows: int
) -> None:
    source, records = mixed_source
    run_in_process(source, tmp_path, "jsonl", batch_rows)
    run_in_process(source, tmp_path, "parquet", batch_rows)
    for name in ("decisions", "alerts", "enriched"):
        jsonl = read_jsonl(tmp_path / f"{name}.jsonl")
        table = pq.read_table(tmp_path / f"{name}.parquet")
        assert table.column("transaction_id").to_pylist() == [d["transaction_id"] for d in jsonl]
        assert table.column("decision").to_pylist() == [d["decision"] for d in jsonl]
    enriched = pq.read_table(tmp_path / "enriched.parquet")
    for name in ("lat", "lon", "zipcode", "scenario", "is_fraud", *GEO_FIELDS):
        assert name in enriched.column_names, name
    assert enriched.column("lat").to_pylist() == [r.get("lat") for r in records]
    assert enriched.column("scenario").to_pylist() == [r.get("scenario") for r in records]


def test_outputs_that_fail_to_open_close_what_was_opened(tmp_path: Path) -> None:
    from fraudstream.run import Outputs

    outputs = Outputs(
        decisions=str(tmp_path / "decisions.jsonl"),
        store="postgresql+psycopg://nobody:secret@127.0.0.1:1/none",  # nothing listens on port 1
    )
    with pytest.raises(Exception, match="127.0.0.1"):
        outputs.open()
    assert outputs.sinks["decisions"].handle.closed  # type: ignore[attr-defined]
