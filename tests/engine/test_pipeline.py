"""The embedded pipeline: duplicates, profile upserts, per-profile tiers, rules, time modes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from fraudstream.decide import TIERS
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.keys import KeySpace
from fraudstream.engine.pipeline import Pipeline, StepResult, TimeConfig
from fraudstream.profiles import ProfileTable
from fraudstream.rules import RuleSet, replace_rule
from fraudstream.schema import CardTokenizer, validate_record

T0 = 1_700_000_000_000  # an arbitrary epoch ms
HOUR = 3_600_000
BERLIN = {"lat": 52.52, "lon": 13.405}
PARIS = {"lat": 48.8566, "lon": 2.3522}  # 878 km from Berlin


def tx(tid: str, card: str, ts: int, amount: float = 30.0, **fields: Any) -> dict[str, Any]:
    return {"transaction_id": tid, "card_id": card, "timestamp": ts, "amount": amount, **fields}


def to_batch(
    records: Sequence[dict[str, Any]], arrival_ms: Sequence[float] | None = None
) -> TxBatch:
    tokenize = CardTokenizer(b"test")
    rows = [validate_record(r, tokenize) for r in records]
    n = len(rows)
    arrival = np.zeros(n) if arrival_ms is None else np.asarray(arrival_ms, dtype=np.float64)
    return TxBatch.from_valid(rows, np.arange(n, dtype=np.int64), arrival)


def reasons_of(decisions: Any, row: int) -> list[dict[str, str]]:
    reasons = decisions.reasons
    if isinstance(reasons, dict):
        return list(reasons.get(row, []))
    return list(reasons[row])


class Feed:
    """A pipeline and every decision it made, by transaction id."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.decided: dict[str, dict[str, Any]] = {}
        self.times: list[str] = []

    def collect(self, result: StepResult) -> StepResult:
        d = result.decisions
        if d is not None:
            for row, tid in enumerate(d.tx.transaction_id.to_pylist()):
                assert tid not in self.decided, f"{tid} decided twice"
                self.times.append(tid)
                self.decided[tid] = {
                    "decision": TIERS[int(d.tier[row])],
                    "score": float(d.score[row]),
                    "rules": sorted(r for r, mask in d.fired.items() if mask[row]),
                    "reasons": reasons_of(d, row),
                    "time_ms": int(d.time_ms[row]),
                    "amount": float(d.tx.amount[row]),
                    "features": {
                        name: (col[row].as_py() if hasattr(col[row], "as_py") else col[row])
                        for name, col in d.features.items()
                    },
                }
        return result

    def submit(
        self, records: Sequence[dict[str, Any]], arrival_ms: Sequence[float] | None = None
    ) -> StepResult:
        return self.collect(self.pipeline.submit(to_batch(records, arrival_ms), now_ms=T0))

    def flush(self) -> StepResult:
        return self.collect(self.pipeline.flush(now_ms=T0))


# --- duplicates ----------------------------------------------------------------------------


def test_duplicate_within_one_batch_is_reported_and_decided_once() -> None:
    feed = Feed(Pipeline())
    result = feed.submit(
        [tx("a", "c1", T0), tx("b", "c1", T0 + 1), tx("a", "c1", T0 + 2, amount=999.0)]
    )
    assert result.duplicates.transaction_id.to_pylist() == ["a"]
    assert result.duplicates.position.tolist() == [2]
    assert result.duplicates.amount.tolist() == [999.0]  # the repeat is reported, not decided
    feed.flush()
    assert sorted(feed.decided) == ["a", "b"]
    assert feed.decided["a"]["amount"] == 30.0


def test_duplicate_across_batches_is_reported_and_decided_once() -> None:
    feed = Feed(Pipeline())
    first = feed.submit([tx("a", "c1", T0), tx("b", "c2", T0)])
    assert len(first.duplicates) == 0
    second = feed.submit([tx("c", "c1", T0 + 10), tx("a", "c1", T0 + 20), tx("b", "c9", T0 + 5)])
    assert second.duplicates.transaction_id.to_pylist() == ["a", "b"]
    third = feed.submit([tx("a", "c1", T0 + 30), tx("a", "c1", T0 + 31)])
    assert third.duplicates.transaction_id.to_pylist() == ["a", "a"]
    assert third.decisions is None or len(third.decisions) == 0
    feed.flush()
    assert sorted(feed.decided) == ["a", "b", "c"]


def test_duplicate_of_a_record_still_waiting_for_the_watermark() -> None:
    # Both copies wait for the watermark; the copy released second is the duplicate.
    feed = Feed(Pipeline(time_config=TimeConfig(out_of_orderness_ms=HOUR)))
    feed.submit([tx("a", "c1", T0)])
    assert feed.pipeline.pending == 1
    again = feed.submit([tx("a", "c1", T0)])
    assert len(again.duplicates) == 0
    assert feed.pipeline.pending == 2
    released = feed.flush()
    assert released.duplicates.transaction_id.to_pylist() == ["a"]
    assert list(feed.decided) == ["a"]


def test_a_late_records_copy_is_late_too() -> None:
    feed = Feed(Pipeline(time_config=TimeConfig(allowed_lateness_ms=0)))
    feed.submit([tx("a", "c1", T0 + HOUR)])
    late = feed.submit([tx("b", "c1", T0), tx("b", "c1", T0)])
    assert late.late.transaction_id.to_pylist() == ["b", "b"]
    assert len(late.duplicates) == 0


def test_duplicates_do_not_touch_detector_state() -> None:
    # Four distinct transactions and their four repeats: velocity must count 4, not 8.
    feed = Feed(Pipeline())
    records = [tx(f"t{k}", "c1", T0 + 1_000 * k) for k in range(4)]
    feed.submit(records)
    feed.submit(records)
    feed.submit([tx("t4", "c1", T0 + 4_000)])
    feed.flush()
    assert feed.decided["t3"]["features"]["transactions_in_window"] == 4
    assert feed.decided["t4"]["features"]["transactions_in_window"] == 5
    assert "velocity" in feed.decided["t4"]["rules"]
    assert "velocity" not in feed.decided["t3"]["rules"]


# --- profiles ------------------------------------------------------------------------------


def test_profile_upsert_takes_effect_for_the_next_transaction() -> None:
    profiles = ProfileTable(KeySpace())
    feed = Feed(Pipeline(profiles=profiles))

    def hop(tid: str, hours: int, where: dict[str, float]) -> dict[str, Any]:
        return tx(tid, "card-u", T0 + hours * HOUR, user_id="u", **where)

    feed.submit([hop("t0", 0, BERLIN), hop("t1", 1, PARIS)])  # 878 km/h: under the 900 default
    profiles.upsert({"user_id": "u", "first_name": "Lena", "max_speed_kmh": 100})
    feed.submit([hop("t2", 2, BERLIN)])
    profiles.upsert({"user_id": "u", "max_speed_kmh": 1_000})
    feed.submit([hop("t3", 3, PARIS)])
    feed.flush()
    assert "geo_velocity" not in feed.decided["t1"]["rules"]
    assert feed.decided["t1"]["features"]["max_speed_kmh"] == 900.0
    assert "geo_velocity" in feed.decided["t2"]["rules"]
    assert feed.decided["t2"]["features"]["max_speed_kmh"] == 100.0
    assert "geo_velocity" not in feed.decided["t3"]["rules"]
    assert feed.decided["t3"]["features"]["max_speed_kmh"] == 1_000.0


def test_profile_thresholds_change_the_tier() -> None:
    # Five transactions in 4 s fire velocity alone (score 0.45): approve under the global
    # review threshold 0.5, review for a profile at 0.4, decline for one declining at 0.45.
    profiles = ProfileTable(KeySpace())
    profiles.upsert({"user_id": "reviewer", "review_threshold": 0.4})
    profiles.upsert({"user_id": "strict", "review_threshold": 0.3, "decline_threshold": 0.45})
    profiles.upsert({"user_id": "lenient", "review_threshold": 0.99, "decline_threshold": 1.0})
    feed = Feed(Pipeline(profiles=profiles))
    records = []
    for user in ("nobody", "reviewer", "strict", "lenient"):
        records += [
            tx(f"{user}-{k}", f"card-{user}", T0 + 1_000 * k, user_id=user) for k in range(5)
        ]
    feed.submit(sorted(records, key=lambda r: r["timestamp"]))
    feed.flush()
    fifth = {
        user: feed.decided[f"{user}-4"] for user in ("nobody", "reviewer", "strict", "lenient")
    }
    for decided in fifth.values():
        assert decided["rules"] == ["velocity"]
        assert decided["score"] == pytest.approx(0.45)
    assert {u: d["decision"] for u, d in fifth.items()} == {
        "nobody": "approve",
        "reviewer": "review",
        "strict": "decline",
        "lenient": "approve",
    }
    assert all(feed.decided[f"{u}-3"]["decision"] == "approve" for u in fifth)


def test_global_thresholds_apply_without_a_profile() -> None:
    rules = RuleSet.from_document({"decision": {"review_threshold": 0.4, "decline_threshold": 0.5}})
    feed = Feed(Pipeline(rules))
    feed.submit([tx(f"t{k}", "c1", T0 + 1_000 * k) for k in range(5)])
    feed.flush()
    assert feed.decided["t4"]["decision"] == "review"


# --- rules while running -------------------------------------------------------------------


def test_changed_threshold_keeps_state() -> None:
    feed = Feed(Pipeline())
    feed.submit([tx(f"t{k}", "c1", T0 + 1_000 * k) for k in range(3)])
    rules = replace_rule(feed.pipeline.rules, "velocity", thresholds={"min_transactions": 4})
    feed.pipeline.apply_rules(rules)
    feed.submit([tx("t3", "c1", T0 + 3_000)])
    feed.flush()
    assert "velocity" not in feed.decided["t2"]["rules"]
    # The count continued from the three before the change: the fourth fires at the new 4.
    assert feed.decided["t3"]["features"]["transactions_in_window"] == 4
    assert "velocity" in feed.decided["t3"]["rules"]
    assert any(
        r["rule"] == "velocity" and "(>= 4" in r["message"] for r in feed.decided["t3"]["reasons"]
    )


def test_changed_threshold_keeps_shared_family_state() -> None:
    # card_history's two rules share one history: changing amount_anomaly's multiplier keeps
    # the running average built before the change.
    feed = Feed(Pipeline())
    feed.submit([tx("t0", "c1", T0, 100.0), tx("t1", "c1", T0 + 700_000, 100.0)])
    rules = replace_rule(feed.pipeline.rules, "amount_anomaly", thresholds={"multiplier": 2.0})
    feed.pipeline.apply_rules(rules)
    feed.submit([tx("t2", "c1", T0 + 1_400_000, 250.0)])
    feed.flush()
    assert feed.decided["t2"]["features"]["running_average"] == 100.0
    assert "amount_anomaly" in feed.decided["t2"]["rules"]


def test_disabled_rule_stops_firing_and_enabled_again_fires() -> None:
    feed = Feed(Pipeline())
    feed.submit([tx(f"t{k}", "c1", T0 + 1_000 * k) for k in range(5)])
    off = replace_rule(feed.pipeline.rules, "velocity", enabled=False)
    feed.pipeline.apply_rules(off)
    feed.submit([tx("t5", "c1", T0 + 5_000)])
    on = replace_rule(off, "velocity", enabled=True)
    feed.pipeline.apply_rules(on)
    feed.submit([tx("t6", "c1", T0 + 6_000)])
    feed.flush()
    assert "velocity" in feed.decided["t4"]["rules"]
    assert "velocity" not in feed.decided["t5"]["rules"]
    assert all(r["rule"] != "velocity" for r in feed.decided["t5"]["reasons"])
    assert feed.decided["t5"]["decision"] == "approve"
    assert "velocity" in feed.decided["t6"]["rules"]


def test_disabling_one_rule_of_a_shared_family_keeps_the_other() -> None:
    feed = Feed(Pipeline())
    off = replace_rule(feed.pipeline.rules, "zip_mismatch", enabled=False)
    feed.pipeline.apply_rules(off)
    feed.submit(
        [
            tx("t0", "c1", T0, 10.0, zipcode="10001"),
            tx("t1", "c1", T0 + 60_000, 10.0, zipcode="94105"),  # would be a zip mismatch
            tx("t2", "c1", T0 + 120_000, 500.0, zipcode="10001"),
        ]
    )
    feed.flush()
    assert "zip_mismatch" not in feed.decided["t1"]["rules"]
    assert "amount_anomaly" in feed.decided["t2"]["rules"]


# --- time modes ----------------------------------------------------------------------------


def test_processing_time_uses_arrival_times() -> None:
    # Event times 30 min apart, arrivals 100 ms apart: processing time fires, event time not.
    records = [tx("small", "c3", T0, 0.80), tx("large", "c3", T0 + 30 * 60_000, 871.15)]
    arrival = [T0 + 5_000, T0 + 5_100]
    processing = Feed(Pipeline(time_config=TimeConfig(mode="processing")))
    processing.submit(records, arrival)
    processing.flush()
    assert "small_then_large" in processing.decided["large"]["rules"]
    assert processing.decided["large"]["features"]["seconds_since_small"] == pytest.approx(0.1)
    assert [processing.decided[t]["time_ms"] for t in ("small", "large")] == arrival
    event = Feed(Pipeline())
    event.submit(records, arrival)
    event.flush()
    assert "small_then_large" not in event.decided["large"]["rules"]
    assert [event.decided[t]["time_ms"] for t in ("small", "large")] == [T0, T0 + 30 * 60_000]


def test_processing_time_decides_in_arrival_order_with_nothing_late() -> None:
    # Event times going backwards by an hour each: all on arrival, in arrival order.
    feed = Feed(Pipeline(time_config=TimeConfig(mode="processing", allowed_lateness_ms=0)))
    records = [tx(f"t{k}", "c1", T0 - k * HOUR) for k in range(4)]
    result = feed.submit(records, [T0 + k for k in range(4)])
    assert len(result.late) == 0
    assert feed.times == ["t0", "t1", "t2", "t3"]
    assert feed.pipeline.pending == 0


def test_processing_time_batch_of_only_duplicates_decides_nothing() -> None:
    # A micro-batch whose every record was seen before: duplicates out, no crash.
    feed = Feed(Pipeline(time_config=TimeConfig(mode="processing")))
    feed.submit([tx("t0", "c1", T0)], [T0])
    result = feed.submit([tx("t0", "c1", T0)], [T0 + 1])
    assert result.duplicates.transaction_id.to_pylist() == ["t0"]
    assert result.decisions is None
    assert feed.times == ["t0"]


WARMED = """
import gc, json, sys
from numba.core.registry import CPUDispatcher
from fraudstream.engine.pipeline import Pipeline, warm_up
from fraudstream.io.decode import Decoder
from fraudstream.schema import CardTokenizer

def signatures():
    return {
        f"{o.py_func.__module__}.{o.py_func.__qualname__}": sorted(map(str, o.signatures))
        for o in gc.get_objects()
        if isinstance(o, CPUDispatcher) and o.py_func.__module__.startswith("fraudstream")
    }

warm_up()
before = signatures()
lines = [
    json.dumps({"transaction_id": f"t{k}", "card_id": f"c{k % 3000}", "timestamp": 1_700_000_000_000
                + 90_000 * k, "amount": [0.5, 900.0, 12.0][k % 3], "lat": 52.5, "lon": 13.4,
                "merchant_id": f"m{k % 7}", "device_id": f"d{k % 5000}", "ip": f"10.0.{k % 200}.1"})
    for k in range(6_000)
]
batch, dead = Decoder(CardTokenizer(b"test")).block(("\\n".join(lines) + "\\n").encode(), 1, 0.0)
assert not dead and not batch.amount.flags.writeable  # Arrow's columns: read-only views
pipeline = Pipeline(state_ttl_ms=3_600_000)
pipeline.submit(batch, now_ms=0.0)
decoder = Decoder(CardTokenizer(b"test"), "api")
for size in (1, 1, 3):  # authorizations: records decoded one by one, batches of a few
    records = [json.loads(line) for line in lines[:size]]
    for record in records:  # after the block's records (not late)
        record["transaction_id"] += f"-api-{size}"
        record["timestamp"] += 90_000 * 6_000 * size
    pipeline.submit(decoder.records(records, list(range(size)), [0.0] * size)[0], now_ms=0.0)
pipeline.flush(now_ms=0.0)
after = signatures()
print(json.dumps({k: v for k, v in after.items() if v != before.get(k)}))
"""


def test_warm_up_leaves_no_kernel_to_compile_for_columns_read_from_arrow() -> None:
    """The first live batch must not wait for numba: columns read from Arrow are read-only
    (a signature of their own), thousands of keys make the key tables rehash, and an
    authorization's one-record batch takes paths of its own."""
    done = subprocess.run(
        [sys.executable, "-c", WARMED], capture_output=True, text=True, check=True, timeout=300
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}
