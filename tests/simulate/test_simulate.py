"""Tests of the transaction simulators: walkthrough (seed 003), demo (seed 002), workload."""

from __future__ import annotations

import csv
import itertools
import json
import math
import time
from collections import Counter, defaultdict, deque
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

import fraudstream.simulate as simulate
from fraudstream.simulate.demo import (
    ANONYMOUS_IP_PREFIX,
    DEMO_USERS,
    FRAUD_SCENARIOS,
    PROFILE_FIELDS,
    SCENARIOS,
    demo_profiles,
    demo_records,
    haversine_km,
    ip_country,
    write_profiles,
)
from fraudstream.simulate.walkthrough import WALKTHROUGH_AMOUNTS, walkthrough_records
from fraudstream.simulate.workload import benchmark_table, write_table

ROOT = Path(__file__).resolve().parents[2]
START = 1_546_300_800_000
SIX_MIN = 6 * 60 * 1000


# --------------------------------------------------------------------------- walkthrough


def test_walkthrough_amounts_are_the_flink_source() -> None:
    assert len(WALKTHROUGH_AMOUNTS) == 50
    assert WALKTHROUGH_AMOUNTS[:3] == (188.23, 374.79, 112.15)
    assert WALKTHROUGH_AMOUNTS[12] == 0.219
    assert WALKTHROUGH_AMOUNTS[17] == 0.77
    assert WALKTHROUGH_AMOUNTS[22] == 0.80
    assert WALKTHROUGH_AMOUNTS[27] == 871.15
    assert WALKTHROUGH_AMOUNTS[-1] == 292.44
    # Only account 3 (positions 2, 7, 12, ...) has small amounts and the only large one.
    small = [i for i, a in enumerate(WALKTHROUGH_AMOUNTS) if a < 1.0]
    large = [i for i, a in enumerate(WALKTHROUGH_AMOUNTS) if a > 500.0]
    assert small == [12, 17, 22] and large == [27]
    assert {i % 5 + 1 for i in small + large} == {3}


def test_walkthrough_first_loop() -> None:
    records = list(walkthrough_records(50))
    assert [r["amount"] for r in records] == list(WALKTHROUGH_AMOUNTS)
    assert [r["transaction_id"] for r in records] == [f"wt-{k}" for k in range(1, 51)]
    assert [r["card_id"] for r in records] == [str((k - 1) % 5 + 1) for k in range(1, 51)]
    assert [r["timestamp"] for r in records] == [START + k * SIX_MIN for k in range(50)]
    record_28 = records[27]
    assert record_28["card_id"] == "3"
    assert record_28["amount"] == 871.15
    assert record_28["timestamp"] == START + 27 * 6 * 60 * 1000
    assert record_28["scenario"] == "small_then_large" and record_28["is_fraud"] is True
    others = records[:27] + records[28:]
    assert all(r["scenario"] == "normal" and r["is_fraud"] is False for r in others)
    # Record 23 (0.80) is account 3's transaction just before 871.15, 30 minutes earlier.
    assert records[22]["card_id"] == "3" and records[22]["amount"] == 0.80
    assert record_28["timestamp"] - records[22]["timestamp"] == 30 * 60 * 1000


def test_walkthrough_loops() -> None:
    records = list(walkthrough_records(125))
    assert len(records) == 125
    for k, record in enumerate(records, start=1):
        assert record["amount"] == WALKTHROUGH_AMOUNTS[(k - 1) % 50]
        assert record["card_id"] == str((k - 1) % 5 + 1)
        assert record["transaction_id"] == f"wt-{k}"
        assert record["timestamp"] == START + (k - 1) * SIX_MIN
    frauds = [r["transaction_id"] for r in records if r["is_fraud"]]
    assert frauds == ["wt-28", "wt-78"]
    forever = list(itertools.islice(walkthrough_records(None), 1000))
    assert len(forever) == 1000
    assert forever[:125] == records
    assert list(walkthrough_records(0)) == []
    with pytest.raises(ValueError):
        next(walkthrough_records(-1))


# --------------------------------------------------------------------------- pacing


def test_paced_keeps_order_and_count() -> None:
    began = time.monotonic()
    assert list(simulate.paced(range(20), per_second=400.0)) == list(range(20))
    assert time.monotonic() - began < 30.0  # generous: only that it does not hang


def test_paced_has_no_drift() -> None:
    """A fake clock: every sleep oversleeps 4 ms and every consumer step takes 3 ms."""
    now = [100.0]
    slept: list[float] = []

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds + 0.004

    released = []
    for item in simulate.paced(range(200), 10.0, clock=lambda: now[0], sleep=fake_sleep):
        released.append((item, now[0] - 100.0))
        now[0] += 0.003
    assert [item for item, _ in released] == list(range(200))
    for k, (_, at) in enumerate(released):
        # Never early, and late by at most one oversleep: errors do not accumulate.
        assert k * 0.1 - 1e-9 <= at <= k * 0.1 + 0.0041
    assert len(slept) == 199


def test_paced_rejects_bad_rate() -> None:
    with pytest.raises(ValueError):
        simulate.paced([1], per_second=0.0)


# --------------------------------------------------------------------------- demo


@pytest.fixture(scope="module")
def demo() -> list[dict[str, Any]]:
    return demo_records()


@pytest.fixture(scope="module")
def profiles() -> dict[str, dict[str, Any]]:
    return {p["user_id"]: p for p in demo_profiles()}


def _reference_fires(
    records: list[dict[str, Any]], profiles: dict[str, dict[str, Any]]
) -> dict[str, set[str]]:
    """The standard detectors of DESIGN.md with their default thresholds, written plainly."""
    fired: dict[str, set[str]] = defaultdict(set)
    history: dict[str, tuple[str, int, float]] = {}
    previous: dict[str, dict[str, Any]] = {}
    small_at: dict[str, int | None] = {}
    recent: dict[str, deque[int]] = defaultdict(deque)
    tiny: dict[str, deque[tuple[int, str]]] = defaultdict(deque)
    for r in records:
        tid, card, user = r["transaction_id"], r["card_id"], r["user_id"]
        ts, amount = r["timestamp"], r["amount"]
        past = history.get(card)
        if past is None:
            history[card] = (r["zipcode"], ts, amount)
        elif ts - past[1] < 600_000 and r["zipcode"] != past[0]:
            fired[tid].add("zip_mismatch")
        elif amount > 8 * past[2]:
            fired[tid].add("amount_anomaly")
        else:
            history[card] = (r["zipcode"], ts, (past[2] + amount) / 2)
        before = previous.get(user)
        if before is not None:
            km = haversine_km(before["lat"], before["lon"], r["lat"], r["lon"])
            elapsed = ts - before["timestamp"]
            speed = (math.inf if km > 0 else 0.0) if elapsed == 0 else km / (elapsed / 3.6e6)
            if speed > profiles[user]["max_speed_kmh"]:
                fired[tid].add("geo_velocity")
        previous[user] = r
        flag = small_at.get(card)
        if flag is not None and amount > 500.0 and ts - flag <= 60_000:
            fired[tid].add("small_then_large")
        small_at[card] = ts if amount < 1.0 else None
        window = recent[card]
        window.append(ts)
        while window[0] <= ts - 30_000:
            window.popleft()
        if len(window) >= 5:
            fired[tid].add("velocity")
        cheap = tiny[card]
        if amount <= 2.0:
            cheap.append((ts, r["merchant_id"]))
        while cheap and cheap[0][0] <= ts - 600_000:
            cheap.popleft()
        if amount <= 2.0 and len(cheap) >= 3 and len({m for _, m in cheap}) >= 3:
            fired[tid].add("card_testing")
    return fired


def _episodes(
    records: list[dict[str, Any]], scenario: str, gap_ms: int
) -> list[list[dict[str, Any]]]:
    """Consecutive records of one scenario on one card, split where more than gap_ms apart."""
    groups: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for r in records:
        if r["scenario"] != scenario:
            continue
        runs = groups[r["card_id"]]
        if runs and r["timestamp"] - runs[-1][-1]["timestamp"] <= gap_ms:
            runs[-1].append(r)
        else:
            runs.append([r])
    return [run for runs in groups.values() for run in runs]


def test_demo_shape(demo: list[dict[str, Any]]) -> None:
    assert len(demo) == 20_000
    ids = [r["transaction_id"] for r in demo]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "tx-000001" and ids[-1] == "tx-020000"
    stamps = [r["timestamp"] for r in demo]
    assert stamps == sorted(stamps)
    assert stamps[0] >= 1_767_225_600_000
    assert 7 <= (stamps[-1] - stamps[0]) / 86_400_000 <= 90  # a few transactions a day
    for r in demo:
        assert isinstance(r["transaction_id"], str) and isinstance(r["card_id"], str)
        assert isinstance(r["user_id"], str) and isinstance(r["timestamp"], int)
        assert isinstance(r["amount"], float) and math.isfinite(r["amount"]) and r["amount"] >= 0
        assert -90 <= r["lat"] <= 90 and -180 <= r["lon"] <= 180
        for name in ("zipcode", "merchant_id", "merchant_category", "country", "channel"):
            assert isinstance(r[name], str) and r[name]
        assert r["channel"] in ("pos", "online")
        assert r["device_id"].startswith("dev-") and r["merchant_id"].startswith("m-")
        assert r["card_id"].startswith("card-")
        assert r["scenario"] in SCENARIOS
        assert r["is_fraud"] is (r["scenario"] != "normal")


def test_demo_scenarios(demo: list[dict[str, Any]]) -> None:
    counts = Counter(r["scenario"] for r in demo)
    assert set(counts) == set(SCENARIOS)
    fraud = sum(counts[s] for s in FRAUD_SCENARIOS)
    assert 0.015 <= fraud / len(demo) <= 0.025
    for small in (2000, 2500):
        assert {r["scenario"] for r in demo_records(count=small, seed=11)} == set(SCENARIOS)
    assert {r["scenario"] for r in demo_records(count=3000, fraud_rate=0.0)} == {"normal"}


def test_demo_deterministic() -> None:
    first = demo_records(count=3000, users=50, seed=3)
    assert first == demo_records(count=3000, users=50, seed=3)
    assert first != demo_records(count=3000, users=50, seed=4)
    assert demo_profiles(users=50, seed=3) == demo_profiles(users=50, seed=3)


def test_demo_small_counts() -> None:
    for count in (0, 1, 7, 100, 1999):
        records = demo_records(count=count, users=20)
        assert len(records) == count
        assert len({r["transaction_id"] for r in records}) == count
    with pytest.raises(ValueError):
        demo_records(count=10, fraud_rate=0.9)


def test_seed_users(demo: list[dict[str, Any]], profiles: dict[str, dict[str, Any]]) -> None:
    expected = {
        "user_1": ("Lena", "Whitaker", 10),
        "user_2": ("Elias", "Monroe", 100),
        "user_3": ("Nina", "Langston", 1000),
        "user_4": ("Jordan", "Blake", 99999),
    }
    for user_id, (first, last, speed) in expected.items():
        p = profiles[user_id]
        assert (p["first_name"], p["last_name"], p["max_speed_kmh"]) == (first, last, speed)
    assert [(u["user_id"], u["first_name"], u["last_name"]) for u in DEMO_USERS] == [
        (k, v[0], v[1]) for k, v in expected.items()
    ]
    per_user = Counter(r["user_id"] for r in demo)
    assert all(per_user[u] >= 10 for u in expected)
    assert any(r["user_id"] == "user_1" and r["scenario"] == "impossible_travel" for r in demo)
    assert set(per_user) <= set(profiles)


def test_profiles_contract() -> None:
    profiles = demo_profiles(users=200, seed=7)
    assert len(profiles) == 204
    assert len({p["user_id"] for p in profiles}) == 204
    for p in profiles:
        assert list(p) == list(PROFILE_FIELDS)
        assert p["review_threshold"] is None and p["decline_threshold"] is None
        assert p["max_speed_kmh"] > 0 and p["first_name"] and p["last_name"]
        assert -90 <= p["home_lat"] <= 90 and -180 <= p["home_lon"] <= 180
        assert len(p["home_country"]) == 2
    speeds = Counter(p["max_speed_kmh"] for p in profiles[4:])
    assert len(speeds) >= 3  # walkers, drivers, flyers


def test_demo_frauds_are_caught_by_the_standard_detectors(
    demo: list[dict[str, Any]], profiles: dict[str, dict[str, Any]]
) -> None:
    fired = _reference_fires(demo, profiles)
    every_record = {
        "impossible_travel": "geo_velocity",
        "zip_mismatch": "zip_mismatch",
        "amount_anomaly": "amount_anomaly",
    }
    for r in demo:
        rule = every_record.get(r["scenario"])
        if rule is not None:
            assert rule in fired[r["transaction_id"]], r
            if rule == "geo_velocity":
                assert profiles[r["user_id"]]["max_speed_kmh"] < 1000
    pairs = _episodes(demo, "small_then_large", 60_000)
    assert pairs and all(len(p) == 2 for p in pairs)
    for small, large in pairs:
        assert small["amount"] < 1.0 and 600 <= large["amount"] <= 2000
        assert large["timestamp"] - small["timestamp"] <= 30_000
        assert "small_then_large" in fired[large["transaction_id"]]
    bursts = _episodes(demo, "velocity", 60_000)
    assert bursts
    for burst in bursts:
        assert 6 <= len(burst) <= 8
        assert burst[-1]["timestamp"] - burst[0]["timestamp"] < 20_000
        assert "velocity" in fired[burst[-1]["transaction_id"]]
    tests = _episodes(demo, "card_testing", 10 * 60_000)
    assert tests
    for run in tests:
        assert 3 <= len(run) <= 5
        assert run[-1]["timestamp"] - run[0]["timestamp"] < 5 * 60_000
        assert all(0.5 <= r["amount"] <= 2.0 for r in run)
        assert len({r["merchant_id"] for r in run}) == len(run)
        assert "card_testing" in fired[run[-1]["transaction_id"]]
        assert not any("velocity" in fired[r["transaction_id"]] for r in run)


def test_demo_normal_traffic_is_quiet(
    demo: list[dict[str, Any]], profiles: dict[str, dict[str, Any]]
) -> None:
    fired = _reference_fires(demo, profiles)
    normal = [r for r in demo if r["scenario"] == "normal"]
    seed_001 = sum(
        bool(fired[r["transaction_id"]] & {"zip_mismatch", "amount_anomaly"}) for r in normal
    )
    assert seed_001 == 0
    for rule in ("velocity", "card_testing", "small_then_large"):
        assert not any(rule in fired[r["transaction_id"]] for r in normal)
    # Geo-velocity fires on normal records only on the way back from an impossible_travel.
    last: dict[str, dict[str, Any]] = {}
    for r in demo:
        if r["scenario"] == "normal" and "geo_velocity" in fired[r["transaction_id"]]:
            assert last[r["user_id"]]["scenario"] == "impossible_travel"
        last[r["user_id"]] = r


def test_demo_networks_and_devices(demo: list[dict[str, Any]]) -> None:
    devices: dict[str, set[str]] = defaultdict(set)
    for r in demo:
        if r["scenario"] == "normal":
            assert ip_country(r["ip"]) == r["country"]
            devices[r["user_id"]].add(r["device_id"])
    for r in demo:
        if r["scenario"] == "anonymous_network":
            assert r["ip"].startswith(ANONYMOUS_IP_PREFIX) and ip_country(r["ip"]) == "ANON"
        else:
            assert not r["ip"].startswith(ANONYMOUS_IP_PREFIX)
        if r["scenario"] == "new_device":
            assert r["device_id"] not in devices[r["user_id"]]
            assert r["channel"] == "online"


def test_demo_reissues_tested_cards(demo: list[dict[str, Any]]) -> None:
    compromised: dict[str, int] = {}
    for r in demo:
        if r["scenario"] in ("card_testing", "small_then_large"):
            compromised[r["card_id"]] = r["timestamp"]
    assert compromised
    for r in demo:
        last = compromised.get(r["card_id"])
        if last is not None:
            assert r["timestamp"] <= last
        assert r["card_id"].startswith(f"card-{int(r['user_id'].split('_')[1]):04d}-")


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".csv"])
def test_write_profiles(tmp_path: Path, suffix: str) -> None:
    profiles = demo_profiles(users=3)
    path = write_profiles(tmp_path / f"profiles{suffix}", profiles)
    text = path.read_text(encoding="utf-8")
    if suffix == ".yaml":
        assert yaml.safe_load(text)["profiles"] == profiles
    elif suffix == ".json":
        assert json.loads(text)["profiles"] == profiles
    else:
        rows = list(csv.DictReader(text.splitlines()))
        assert [r["user_id"] for r in rows] == [p["user_id"] for p in profiles]
        assert float(rows[0]["max_speed_kmh"]) == 10.0 and rows[0]["review_threshold"] == ""
    with pytest.raises(ValueError):
        write_profiles(tmp_path / "profiles.txt", profiles)


def test_example_profiles_file() -> None:
    data = yaml.safe_load((ROOT / "examples" / "profiles.yaml").read_text(encoding="utf-8"))
    assert data["profiles"] == demo_profiles(users=0)
    names = [(p["first_name"], p["last_name"], p["max_speed_kmh"]) for p in data["profiles"]]
    assert names == [
        ("Lena", "Whitaker", 10),
        ("Elias", "Monroe", 100),
        ("Nina", "Langston", 1000),
        ("Jordan", "Blake", 99999),
    ]


# --------------------------------------------------------------------------- workload


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return benchmark_table(n=30_000, cards=600, seed=5)


def test_benchmark_table_shape(table: pa.Table) -> None:
    assert table.num_rows == 30_000
    assert table.schema.names == [
        "transaction_id", "card_id", "user_id", "timestamp", "amount", "lat", "lon",
        "zipcode", "merchant_id", "device_id", "ip", "country", "channel",
    ]  # fmt: skip
    for name in table.schema.names:
        expected = {"timestamp": pa.int64(), "amount": pa.float64(), "lat": pa.float64()}
        assert table.schema.field(name).type == expected.get(
            name, pa.float64() if name == "lon" else pa.string()
        )
        assert table.column(name).null_count == 0
    assert pc.count_distinct(table["transaction_id"]).as_py() == table.num_rows
    stamps = table["timestamp"].to_numpy()
    assert (stamps[1:] >= stamps[:-1]).all()
    assert (stamps[-1] - stamps[0]) <= 30 * 86_400_000
    assert (stamps[-1] - stamps[0]) >= 25 * 86_400_000
    amounts = table["amount"].to_numpy()
    assert (amounts >= 0).all() and (amounts < 1.0).any() and (amounts > 500.0).any()
    assert 0.0005 < (amounts < 1.0).mean() < 0.01
    lat, lon = table["lat"].to_numpy(), table["lon"].to_numpy()
    assert (abs(lat) <= 90).all() and (abs(lon) <= 180).all()
    assert set(table["channel"].to_pylist()) == {"pos", "online"}


def test_benchmark_table_cards_and_users(table: pa.Table) -> None:
    owners: dict[str, set[str]] = defaultdict(set)
    for card, user in zip(table["card_id"].to_pylist(), table["user_id"].to_pylist(), strict=True):
        owners[card].add(user)
    assert all(len(users) == 1 for users in owners.values())
    assert 550 <= len(owners) <= 600
    users = {next(iter(u)) for u in owners.values()}
    assert 1.05 <= len(owners) / len(users) <= 1.4


def test_benchmark_table_deterministic(table: pa.Table) -> None:
    assert benchmark_table(n=30_000, cards=600, seed=5).equals(table)
    assert not benchmark_table(n=30_000, cards=600, seed=6).equals(table)
    empty = benchmark_table(n=0, cards=10)
    assert empty.num_rows == 0 and empty.schema.equals(table.schema)


def test_write_table_parquet_and_csv(tmp_path: Path, table: pa.Table) -> None:
    assert pq.read_table(write_table(table, tmp_path / "t.parquet")).equals(table)
    import pyarrow.csv as pcsv

    back = pcsv.read_csv(write_table(table, tmp_path / "t.csv"))
    assert back.num_rows == table.num_rows
    with pytest.raises(ValueError):
        write_table(table, tmp_path / "t.xml")


def test_write_table_jsonl(tmp_path: Path, table: pa.Table) -> None:
    path = write_table(table, tmp_path / "t.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == table.to_pylist()


def test_write_table_jsonl_awkward_values(tmp_path: Path) -> None:
    table = pa.table(
        {
            "s": pa.array(["plain", None, 'quote " and \\ back', "tab\tnew\nline", "ünï"]),
            "i": pa.array([1, None, -3, 0, 2**40], type=pa.int64()),
            "f": pa.array([5.0, None, float("nan"), float("inf"), 0.1]),
            "b": pa.array([True, False, None, True, False]),
            "d": pa.array(["x", "y", None, "x", "y"]).dictionary_encode(),
            "l": pa.array([[1], [], None, [2, 3], [4]]),
            "t": pa.array([0, 1, 2, None, 4], type=pa.timestamp("ms", tz="UTC")),
        }
    )
    path = write_table(table, tmp_path / "awkward.ndjson")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["s"] for r in rows] == ["plain", None, 'quote " and \\ back', "tab\tnew\nline", "ünï"]
    assert [r["i"] for r in rows] == [1, None, -3, 0, 2**40]
    assert [r["f"] for r in rows] == [5.0, None, None, None, 0.1]
    assert isinstance(rows[0]["f"], float)
    assert [r["b"] for r in rows] == [True, False, None, True, False]
    assert [r["d"] for r in rows] == ["x", "y", None, "x", "y"]
    assert [r["l"] for r in rows] == [[1], [], None, [2, 3], [4]]
    assert [r["t"] for r in rows] == [0, 1, 2, None, 4]
    empty = write_table(table.slice(0, 0), tmp_path / "empty.jsonl")
    assert empty.read_bytes() == b""
