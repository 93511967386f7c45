"""geo_velocity: haversine (R = 6371 km) speed between a user's consecutive located transactions.

The edge cases run the detector directly; the oracle runs a random multi-user stream through
the embedded pipeline and holds every speed and verdict to seed 002's Flink SQL, written as SQL
and run in DuckDB: LAG over the user's transactions in (timestamp, transaction_id) order.
"""

from __future__ import annotations

import math
import random
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from fraudstream.detectors.geo_velocity import GeoVelocity, haversine_km, reference_step
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.keys import KeySpace
from fraudstream.engine.pipeline import Pipeline, StepResult, TimeConfig
from fraudstream.profiles import ProfileTable
from fraudstream.schema import CardTokenizer, validate_record
from fraudstream.testing import detector_input

T0 = 1_700_000_000_000  # an arbitrary epoch ms
HOUR = 3_600_000
BERLIN = (52.52, 13.405)
PARIS = (48.8566, 2.3522)
BERLIN_PARIS_KM = haversine_km(*BERLIN, *PARIS)
NAN = math.nan


def run(d: GeoVelocity, state: Any = None, **columns: Any) -> Any:
    state = state if state is not None else d.new_state()
    n = len(columns["time_ms"])
    columns.setdefault("amount", [5.0] * n)
    return d.process(state, detector_input(**columns))


def test_berlin_paris_distance_is_about_878_km() -> None:
    assert 877 < BERLIN_PARIS_KM < 879
    assert haversine_km(*BERLIN, *BERLIN) == 0.0


def test_first_transaction_has_no_pair() -> None:
    out = run(GeoVelocity(), user=[0], time_ms=[T0], lat=[BERLIN[0]], lon=[BERLIN[1]])
    assert out.fired["geo_velocity"].tolist() == [False]
    assert np.isnan(out.features["speed_kmh"][0])
    assert np.isnan(out.features["distance_km"][0])
    assert out.features["previous_timestamp"][0].as_py() is None
    assert out.features["previous_transaction_id"].to_pylist() == [None]


def test_speed_is_distance_over_elapsed_hours() -> None:
    out = run(
        GeoVelocity(),
        user=[0, 0],
        time_ms=[T0, T0 + 2 * HOUR],
        lat=[BERLIN[0], PARIS[0]],
        lon=[BERLIN[1], PARIS[1]],
        max_speed_kmh=[440.0, 440.0],
        transaction_id=["a", "b"],
    )
    assert out.features["distance_km"][1] == pytest.approx(BERLIN_PARIS_KM, rel=1e-12)
    assert out.features["speed_kmh"][1] == pytest.approx(BERLIN_PARIS_KM / 2, rel=1e-12)
    assert out.fired["geo_velocity"].tolist() == [False, False]  # 439 km/h is not > 440
    assert out.features["previous_transaction_id"].to_pylist() == [None, "a"]
    assert out.features["previous_timestamp"][1].as_py() == T0
    assert out.features["previous_lat"][1] == BERLIN[0]
    assert out.features["previous_lon"][1] == BERLIN[1]


def test_speed_equal_to_max_does_not_fire() -> None:
    # Fires only when speed > max: at exactly the max speed it does not, just below it does.
    columns: dict[str, Any] = {
        "user": [0, 0],
        "time_ms": [T0, T0 + 2 * HOUR],
        "lat": [BERLIN[0], PARIS[0]],
        "lon": [BERLIN[1], PARIS[1]],
    }
    speed = float(run(GeoVelocity(), **columns).features["speed_kmh"][1])
    at_max = run(GeoVelocity(), max_speed_kmh=[speed, speed], **columns)
    assert at_max.fired["geo_velocity"].tolist() == [False, False]
    below = float(np.nextafter(speed, 0.0))
    just_below = run(GeoVelocity(), max_speed_kmh=[below, below], **columns)
    assert just_below.fired["geo_velocity"].tolist() == [False, True]


def test_zero_distance_is_speed_zero() -> None:
    out = run(
        GeoVelocity(),
        user=[0, 0],
        time_ms=[T0, T0 + HOUR],
        lat=[0.0, 0.0],
        lon=[0.0, 0.0],
        max_speed_kmh=[0.0, 0.0],
    )
    assert out.features["speed_kmh"][1] == 0.0
    assert out.fired["geo_velocity"].tolist() == [False, False]


def test_zero_elapsed_with_distance_is_infinite_and_fires() -> None:
    out = run(
        GeoVelocity(),
        user=[0, 0],
        time_ms=[T0, T0],
        lat=[BERLIN[0], PARIS[0]],
        lon=[BERLIN[1], PARIS[1]],
        max_speed_kmh=[99_999.0, 99_999.0],
    )
    assert math.isinf(out.features["speed_kmh"][1])
    assert out.fired["geo_velocity"].tolist() == [False, True]


def test_zero_distance_zero_elapsed_is_speed_zero_and_does_not_fire() -> None:
    out = run(
        GeoVelocity(),
        user=[0, 0],
        time_ms=[T0, T0],
        lat=[BERLIN[0], BERLIN[0]],
        lon=[BERLIN[1], BERLIN[1]],
        max_speed_kmh=[0.0, 0.0],
    )
    assert out.features["speed_kmh"][1] == 0.0
    assert out.fired["geo_velocity"].tolist() == [False, False]


def test_missing_coordinates_are_skipped_and_not_paired() -> None:
    # Berlin, (no coordinates), Paris one hour later: Paris pairs with Berlin, not the middle one.
    out = run(
        GeoVelocity(),
        user=[0, 0, 0],
        time_ms=[T0, T0 + HOUR - 1, T0 + HOUR],
        lat=[BERLIN[0], NAN, PARIS[0]],
        lon=[BERLIN[1], NAN, PARIS[1]],
        max_speed_kmh=[10.0] * 3,
        transaction_id=["berlin", "nowhere", "paris"],
    )
    assert out.fired["geo_velocity"].tolist() == [False, False, True]
    assert np.isnan(out.features["speed_kmh"][1])
    assert out.features["previous_transaction_id"].to_pylist() == [None, None, "berlin"]
    assert out.features["speed_kmh"][2] == pytest.approx(BERLIN_PARIS_KM, rel=1e-12)


def test_missing_coordinates_first_then_located_has_no_pair() -> None:
    out = run(
        GeoVelocity(),
        user=[0, 0],
        time_ms=[T0, T0 + 1],
        lat=[NAN, BERLIN[0]],
        lon=[NAN, BERLIN[1]],
    )
    assert out.fired["geo_velocity"].tolist() == [False, False]
    assert out.features["previous_transaction_id"].to_pylist() == [None, None]


def test_previous_transaction_comes_from_state_across_batches() -> None:
    d = GeoVelocity()
    state = d.new_state()
    run(
        d,
        state,
        user=[0, 1],
        time_ms=[T0, T0],
        lat=[BERLIN[0], PARIS[0]],
        lon=[BERLIN[1], PARIS[1]],
        transaction_id=["u0-a", "u1-a"],
    )
    # Next batch: user 1 twice (first from state, then from this batch), user 0 once.
    out = run(
        d,
        state,
        user=[1, 0, 1],
        time_ms=[T0 + HOUR, T0 + 60_000, T0 + 2 * HOUR],
        lat=[BERLIN[0], PARIS[0], BERLIN[0]],
        lon=[BERLIN[1], PARIS[1], BERLIN[1]],
        max_speed_kmh=[900.0, 900.0, 900.0],
        transaction_id=["u1-b", "u0-b", "u1-c"],
    )
    assert out.features["previous_transaction_id"].to_pylist() == ["u1-a", "u0-a", "u1-b"]
    assert out.features["previous_timestamp"].to_pylist() == [T0, T0, T0 + HOUR]
    assert out.fired["geo_velocity"].tolist() == [False, True, False]
    assert out.features["speed_kmh"][2] == 0.0


def test_default_max_speed_applies_without_a_profile() -> None:
    # 878 km in one hour: above a 10 km/h profile, below the 900 km/h default (NaN: no profile).
    d = GeoVelocity()
    out = run(
        d,
        user=[0, 1, 0, 1],
        time_ms=[T0, T0, T0 + HOUR, T0 + HOUR],
        lat=[BERLIN[0], BERLIN[0], PARIS[0], PARIS[0]],
        lon=[BERLIN[1], BERLIN[1], PARIS[1], PARIS[1]],
        max_speed_kmh=[10.0, NAN, 10.0, NAN],
    )
    assert out.fired["geo_velocity"].tolist() == [False, False, True, False]
    assert out.features["max_speed_kmh"][2:].tolist() == [10.0, 900.0]
    strict = run(
        GeoVelocity(default_max_speed_kmh=800.0),
        user=[1, 1],
        time_ms=[T0, T0 + HOUR],
        lat=[BERLIN[0], PARIS[0]],
        lon=[BERLIN[1], PARIS[1]],
        max_speed_kmh=[NAN, NAN],
    )
    assert strict.fired["geo_velocity"].tolist() == [False, True]


# --- through the pipeline ------------------------------------------------------------------


def to_batch(records: list[dict[str, Any]]) -> TxBatch:
    tokenize = CardTokenizer(b"test")
    rows = [validate_record(r, tokenize) for r in records]
    n = len(rows)
    return TxBatch.from_valid(rows, np.arange(n, dtype=np.int64), np.zeros(n))


def decided(results: list[StepResult]) -> dict[str, dict[str, Any]]:
    """transaction_id -> fired, speed, previous id, max speed, first name (in order)."""
    out: dict[str, dict[str, Any]] = {}
    for result in results:
        d = result.decisions
        if d is None:
            continue
        previous = d.features["previous_transaction_id"].to_pylist()
        first = d.features["first_name"].to_pylist() if "first_name" in d.features else None
        for row, tid in enumerate(d.tx.transaction_id.to_pylist()):
            out[tid] = {
                "fired": bool(d.fired["geo_velocity"][row]),
                "speed": float(d.features["speed_kmh"][row]),
                "previous": previous[row],
                "max_speed": float(d.features["max_speed_kmh"][row]),
                "first_name": first[row] if first else None,
            }
    return out


def test_profile_max_speed_and_default_in_the_pipeline() -> None:
    profiles = ProfileTable(KeySpace())
    profiles.upsert({"user_id": "user_1", "first_name": "Lena", "max_speed_kmh": 10})
    # The records arrive user by user, an hour apart in event time: wait for them.
    pipeline = Pipeline(profiles=profiles, time_config=TimeConfig(out_of_orderness_ms=2 * HOUR))
    records = []
    for k, user in enumerate(("user_1", "stranger")):
        for j, (lat, lon) in enumerate((BERLIN, PARIS)):
            records.append(
                {
                    "transaction_id": f"{user}-{j}",
                    "card_id": f"card-{k}",
                    "user_id": user,
                    "timestamp": T0 + j * HOUR,
                    "amount": 20.0,
                    "lat": lat,
                    "lon": lon,
                }
            )
    got = decided([pipeline.submit(to_batch(records), now_ms=T0), pipeline.flush(now_ms=T0)])
    assert got["user_1-1"]["fired"] is True
    assert got["user_1-1"]["max_speed"] == 10.0
    assert got["user_1-1"]["previous"] == "user_1-0"
    assert got["stranger-1"]["fired"] is False
    assert got["stranger-1"]["max_speed"] == 900.0
    assert not got["user_1-0"]["fired"] and not got["stranger-0"]["fired"]


# --- the DuckDB oracle ---------------------------------------------------------------------

USERS = 20
RECORDS = 2_000

SEED_002_SQL = """
WITH located AS (
    SELECT * FROM tx WHERE lat IS NOT NULL
),
paired AS (
    SELECT
        transaction_id, user_id, "timestamp", lat, lon,
        LAG(transaction_id) OVER w AS previous_transaction_id,
        LAG("timestamp") OVER w AS previous_timestamp,
        LAG(lat) OVER w AS previous_lat,
        LAG(lon) OVER w AS previous_lon
    FROM located
    WINDOW w AS (PARTITION BY user_id ORDER BY "timestamp", transaction_id)
),
measured AS (
    SELECT
        *,
        2 * 6371.0 * asin(sqrt(least(1.0,
            pow(sin((radians(lat) - radians(previous_lat)) / 2), 2)
            + cos(radians(previous_lat)) * cos(radians(lat))
              * pow(sin(radians(lon - previous_lon) / 2), 2)
        ))) AS distance_km,
        "timestamp" - previous_timestamp AS elapsed_ms
    FROM paired
),
speeds AS (
    SELECT
        *,
        CASE
            WHEN previous_timestamp IS NULL THEN NULL
            WHEN elapsed_ms = 0 AND distance_km > 0 THEN CAST('inf' AS DOUBLE)
            WHEN elapsed_ms = 0 THEN 0.0
            ELSE distance_km / (elapsed_ms / 3600000.0)
        END AS speed_kmh
    FROM measured
)
SELECT
    s.transaction_id,
    s.previous_transaction_id,
    s.speed_kmh,
    COALESCE(u.max_speed_kmh, 900.0) AS max_speed_kmh,
    COALESCE(s.speed_kmh > COALESCE(u.max_speed_kmh, 900.0), FALSE) AS fraud
FROM speeds s LEFT JOIN users u USING (user_id)
"""


def random_stream(seed: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """2,000 records of 20 users over six hours; coarse times (many ties), some at one spot."""
    rng = random.Random(seed)
    users = [f"user_{k}" for k in range(USERS)]
    # 15 users with a profile (max speeds from a walker to a rocket), 5 on the 900 default.
    max_speed = {
        u: rng.choice([10.0, 100.0, 1000.0, 99_999.0, rng.uniform(0, 3000)]) for u in users[:15]
    }
    ids = [f"tx-{k:05d}" for k in range(RECORDS)]
    rng.shuffle(ids)  # transaction id order is not time order
    spots = [(rng.uniform(-89, 89), rng.uniform(-179, 179)) for _ in range(10)]
    records = []
    for k in range(RECORDS):
        user = rng.choice(users)
        record: dict[str, Any] = {
            "transaction_id": ids[k],
            "card_id": f"card-{user}",
            "user_id": user,
            # 10 s resolution over 6 h: equal timestamps within a user happen.
            "timestamp": T0 + 10_000 * rng.randrange(6 * 360),
            "amount": round(rng.uniform(1, 300), 2),
        }
        where = rng.random()
        if where < 0.1:
            pass  # no coordinates
        elif where < 0.4:
            record["lat"], record["lon"] = rng.choice(spots)  # a spot users return to
        else:
            record["lat"], record["lon"] = rng.uniform(-90, 90), rng.uniform(-180, 180)
        records.append(record)
    return records, max_speed


def duckdb_expected(records: list[dict[str, Any]], max_speed: dict[str, float]) -> dict[str, Any]:
    tx = pa.table(
        {
            "transaction_id": [r["transaction_id"] for r in records],
            "user_id": [r["user_id"] for r in records],
            "timestamp": pa.array([r["timestamp"] for r in records], pa.int64()),
            "lat": pa.array([r.get("lat") for r in records], pa.float64()),
            "lon": pa.array([r.get("lon") for r in records], pa.float64()),
        }
    )
    users = pa.table(
        {
            "user_id": list(max_speed),
            "max_speed_kmh": pa.array(list(max_speed.values()), pa.float64()),
        }
    )
    con = duckdb.connect()
    try:
        con.register("tx", tx)
        con.register("users", users)
        rows = con.execute(SEED_002_SQL).fetchall()
    finally:
        con.close()
    return {
        tid: {"previous": prev, "speed": speed, "max_speed": top, "fired": bool(fraud)}
        for tid, prev, speed, top, fraud in rows
    }


def pipeline_for(max_speed: dict[str, float], time_config: TimeConfig) -> Pipeline:
    profiles = ProfileTable(KeySpace())
    for user, speed in max_speed.items():
        profiles.upsert({"user_id": user, "first_name": user.upper(), "max_speed_kmh": speed})
    return Pipeline(profiles=profiles, time_config=time_config)


def assert_matches_sql(got: dict[str, dict[str, Any]], expected: dict[str, Any]) -> None:
    located = set(expected)
    assert len(got) == RECORDS
    for tid, row in got.items():
        if tid not in located:  # no coordinates: no pair, no speed, never fires
            assert row["previous"] is None and math.isnan(row["speed"]) and not row["fired"]
            continue
        want = expected[tid]
        assert row["previous"] == want["previous"], tid
        assert row["fired"] == want["fired"], (tid, row, want)
        if want["speed"] is None:
            assert math.isnan(row["speed"]), tid
            continue
        assert row["max_speed"] == want["max_speed"], tid
        if math.isinf(want["speed"]):
            assert math.isinf(row["speed"]), tid
        else:
            assert math.isclose(row["speed"], want["speed"], rel_tol=1e-9, abs_tol=1e-12), (
                tid,
                row["speed"],
                want["speed"],
            )


@pytest.mark.parametrize("seed", [2, 20, 2002])
def test_pipeline_matches_seed_002_sql_in_duckdb(seed: int) -> None:
    records, max_speed = random_stream(seed)
    expected = duckdb_expected(records, max_speed)
    # Sanity: the stream exercises every case.
    speeds = [v["speed"] for v in expected.values() if v["speed"] is not None]
    assert any(math.isinf(s) for s in speeds) and 0.0 in speeds
    assert any(v["fired"] for v in expected.values())
    assert any(not v["fired"] and v["speed"] is not None for v in expected.values())

    # In time order, cut into random micro-batches (event time, no out-of-orderness).
    rng = random.Random(seed)
    ordered = sorted(records, key=lambda r: (r["timestamp"], r["transaction_id"]))
    pipeline = pipeline_for(max_speed, TimeConfig())
    results = []
    start = 0
    while start < len(ordered):
        size = rng.randint(1, 300)
        results.append(pipeline.submit(to_batch(ordered[start : start + size]), now_ms=T0))
        start += size
    results.append(pipeline.flush(now_ms=T0))
    assert all(len(r.late) == 0 for r in results)
    assert_matches_sql(decided(results), expected)


def test_pipeline_matches_sql_for_shuffled_arrival_within_out_of_orderness() -> None:
    records, max_speed = random_stream(7)
    expected = duckdb_expected(records, max_speed)
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    span = max(r["timestamp"] for r in records) - min(r["timestamp"] for r in records)
    pipeline = pipeline_for(max_speed, TimeConfig(out_of_orderness_ms=span))
    results = [
        pipeline.submit(to_batch(shuffled[k : k + 250]), now_ms=T0) for k in range(0, RECORDS, 250)
    ]
    results.append(pipeline.flush(now_ms=T0))
    assert all(len(r.late) == 0 for r in results)
    assert_matches_sql(decided(results), expected)


def test_reference_step_matches_sql_speed_definition() -> None:
    state, fired, speed = reference_step(None, T0, *BERLIN, 10.0)
    assert not fired and math.isnan(speed)
    state, fired, speed = reference_step(state, T0 + HOUR, *PARIS, 10.0)
    assert fired and speed == pytest.approx(BERLIN_PARIS_KM, rel=1e-12)
    state, fired, speed = reference_step(state, T0 + HOUR, NAN, NAN, 10.0)
    assert state is not None
    assert (fired, math.isnan(speed), state["lat"]) == (False, True, PARIS[0])
