"""Checkpoint and restore: a pipeline cut anywhere, saved, restored in a new one, goes on the same.

Property: for random streams (out of order, late records, repeated ids, many cards) and a
random cut between micro-batches, run-to-cut + checkpoint + restore into a fresh pipeline +
the rest gives exactly the decisions, late records and duplicates of an uninterrupted run,
with and without a state TTL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointStore,
    batch_from_table,
    batch_to_table,
)
from fraudstream.engine.ids import IdSet
from fraudstream.engine.keys import KeySpace
from fraudstream.engine.pipeline import Pipeline, StepResult, TimeConfig
from fraudstream.models.dataset import attach
from fraudstream.profiles import ProfileTable
from fraudstream.schema import CardTokenizer, validate_record

T0 = 1_700_000_000_000
MINUTE = 60_000


def to_batch(records: list[dict[str, Any]], first_position: int) -> TxBatch:
    tokenize = CardTokenizer(b"test")
    rows = [validate_record(r, tokenize) for r in records]
    positions = np.arange(first_position, first_position + len(rows), dtype=np.int64)
    return TxBatch.from_valid(rows, positions, np.zeros(len(rows)))


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[int], int]:
    """Records, micro-batch sizes, and the cut (a number of batches)."""
    n = draw(st.integers(2, 60))
    cards = draw(st.integers(1, 6))
    records = []
    clock = T0
    for i in range(n):
        clock += draw(st.integers(0, 40 * MINUTE))
        jitter = draw(st.integers(-20 * MINUTE, 0))  # out of order, some beyond lateness
        card = draw(st.integers(0, cards - 1))
        tid = f"t{i}" if draw(st.integers(0, 9)) else f"t{draw(st.integers(0, i))}"  # repeats
        records.append(
            {
                "transaction_id": tid,
                "card_id": f"c{card}",
                "user_id": f"u{card % 3}",
                "timestamp": clock + jitter,
                "amount": draw(st.sampled_from([0.5, 12.0, 40.0, 700.0, 3000.0])),
                "lat": draw(st.sampled_from([52.52, 48.85, 40.71])),
                "lon": draw(st.sampled_from([13.40, 2.35, -74.0])),
                "zipcode": draw(st.sampled_from(["10115", "75001"])),
                "merchant_id": f"m{draw(st.integers(0, 4))}",
                "device_id": f"d{draw(st.integers(0, 2))}",
                "ip": draw(st.sampled_from(["192.0.2.1", "198.51.100.7", None])),
            }
        )
    sizes = []
    left = n
    while left:
        size = draw(st.integers(1, max(1, min(left, 15))))
        sizes.append(size)
        left -= size
    cut = draw(st.integers(0, len(sizes)))
    return records, sizes, cut


def _pipeline(ttl_ms: int | None) -> Pipeline:
    profiles = ProfileTable()
    profiles.upsert({"user_id": "u1", "max_speed_kmh": 300, "first_name": "Ada"})
    time_config = TimeConfig(out_of_orderness_ms=5 * MINUTE, allowed_lateness_ms=10 * MINUTE)
    return Pipeline(None, profiles, time_config, state_ttl_ms=ttl_ms)


class Outcome:
    """What a pipeline produced: decisions, late and duplicate records, in order."""

    def __init__(self) -> None:
        self.decisions: list[tuple[Any, ...]] = []
        self.late: list[int] = []
        self.duplicates: list[int] = []

    def add(self, result: StepResult) -> None:
        d = result.decisions
        if d is not None:
            ids = d.tx.transaction_id.to_pylist()
            for row, tid in enumerate(ids):
                rules = sorted(rule for rule, mask in d.fired.items() if mask[row])
                self.decisions.append((tid, int(d.tier[row]), float(d.score[row]), rules))
        self.late += result.late.position.tolist()
        self.duplicates += result.duplicates.position.tolist()


def _batches(records: list[dict[str, Any]], sizes: list[int]) -> list[TxBatch]:
    out, start = [], 0
    for size in sizes:
        out.append(to_batch(records[start : start + size], start))
        start += size
    return out


@pytest.mark.parametrize("ttl_ms", [None, 45 * MINUTE])
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams())
def test_cut_checkpoint_restore_rest_equals_an_uninterrupted_run(
    stream: tuple[list[dict[str, Any]], list[int], int], ttl_ms: int | None, tmp_path: Path
) -> None:
    records, sizes, cut = stream
    batches = _batches(records, sizes)
    whole = Outcome()
    pipeline = _pipeline(ttl_ms)
    for batch in batches:
        whole.add(pipeline.submit(batch, now_ms=0.0))
    whole.add(pipeline.flush(now_ms=0.0))

    resumed = Outcome()
    first = _pipeline(ttl_ms)
    for batch in batches[:cut]:
        resumed.add(first.submit(batch, now_ms=0.0))
    store = CheckpointStore(str(tmp_path / f"chk-{len(list(tmp_path.iterdir()))}"))
    store.write(store.next_id(), first.snapshot(), {"run_id": "x"})
    del first
    _, snapshot = store.read(store.latest() or 0)
    second = _pipeline(ttl_ms)
    second.restore(snapshot)
    for batch in batches[cut:]:
        resumed.add(second.submit(batch, now_ms=0.0))
    resumed.add(second.flush(now_ms=0.0))

    assert resumed.decisions == whole.decisions
    assert resumed.late == whole.late
    assert resumed.duplicates == whole.duplicates


def test_state_ttl_resets_a_card_that_comes_back_after_the_ttl() -> None:
    pipeline = Pipeline(state_ttl_ms=60 * MINUTE)
    small = {"transaction_id": "a", "card_id": "c", "timestamp": T0, "amount": 0.5}
    large = {"transaction_id": "b", "card_id": "c", "timestamp": T0 + 30_000, "amount": 900.0}
    result = pipeline.submit(to_batch([small, large], 0), now_ms=0.0)
    assert result.decisions is not None and result.decisions.fired["small_then_large"][1]
    later = [
        {"transaction_id": "c", "card_id": "c", "timestamp": T0 + 3 * 60 * MINUTE, "amount": 0.5},
        {"transaction_id": "d", "card_id": "x", "timestamp": T0 + 5 * 60 * MINUTE, "amount": 1.0},
    ]
    pipeline.submit(to_batch(later, 2), now_ms=0.0)
    assert pipeline.expiry is not None
    assert pipeline.expiry.expired_keys >= 1  # card c and its user came back after 3 h
    pipeline.expiry.reclaim(pipeline, force=True)
    assert pipeline.expiry.reclaimed_keys >= 1
    assert pipeline.cards.find("c") == -1 and pipeline.cards.find("x") >= 0


def test_a_batch_cut_by_the_ttl_fires_timers_only_after_all_its_parts() -> None:
    """Card "a" comes back after the TTL inside the batch, so it is decided in two parts. Card
    "b"'s small amount (part one) arms small_then_large until 60 s later; the watermark is
    already past that, but its large amount (part two, 1 ms later) must still see the flag:
    timers fire after the batch, as when it is not cut (found by the Flink stage test)."""
    pipeline = Pipeline(time_config=TimeConfig("event", 60_000, 120_000), state_ttl_ms=90_000)
    records = [
        {"transaction_id": "a1", "card_id": "a", "timestamp": T0, "amount": 5.0},
        {"transaction_id": "b1", "card_id": "b", "timestamp": T0 + 90_000, "amount": 0.5},
        {"transaction_id": "a2", "card_id": "a", "timestamp": T0 + 90_001, "amount": 5.0},
        {"transaction_id": "b2", "card_id": "b", "timestamp": T0 + 90_001, "amount": 700.0},
        {"transaction_id": "z", "card_id": "z", "timestamp": T0 + 210_000, "amount": 5.0},
    ]
    result = pipeline.submit(to_batch(records, 0), now_ms=0.0)
    assert pipeline.expiry is not None and pipeline.expiry.expired_keys >= 1
    decided = result.decisions
    assert decided is not None and decided.tx.transaction_id.to_pylist() == ["a1", "b1", "a2", "b2"]
    assert decided.fired["small_then_large"].tolist() == [False, False, False, True]


def _features_of(pipeline: Pipeline, records: list[dict[str, Any]], first: int) -> Any:
    result = pipeline.submit(to_batch(records, first), now_ms=0.0)
    flushed = pipeline.flush(now_ms=0.0)
    decided = [d for d in (result.decisions, flushed.decisions) if d is not None]
    return {
        str(d.tx.transaction_id[i]): {
            k: float(v[i]) for k, v in d.features.items() if k.startswith("customer_")
        }
        for d in decided
        for i in range(len(d))
    }


def test_state_ttl_expires_and_compacts_customer_features_with_the_user() -> None:
    """A user back after the TTL starts over in the model's streaming features too (their
    customer rings are user state); compacting the user key space moves the others' rings
    with their slots, so no other customer's features change."""
    with_ttl = Pipeline(state_ttl_ms=60 * MINUTE)
    without = Pipeline()
    for pipeline in (with_ttl, without):
        attach(pipeline)

    def tx(tx_id: str, user: str, minutes: int, amount: float) -> dict[str, Any]:
        time = T0 + minutes * MINUTE
        return {"transaction_id": tx_id, "card_id": f"card-{user}", "user_id": user,
                "merchant_id": "m", "timestamp": time, "amount": amount}  # fmt: skip

    early = [tx("a1", "gone", 0, 10.0), tx("a2", "back", 1, 50.0), tx("a3", "stays", 2, 70.0)]
    early += [tx(f"s{k}", "stays", 10 + 20 * k, 30.0) for k in range(15)]  # every 20 min
    late = [tx("b1", "back", 300, 500.0), tx("b2", "stays", 301, 30.0)]
    found = {}
    for name, pipeline in (("ttl", with_ttl), ("none", without)):
        found[name] = _features_of(pipeline, early, 0) | _features_of(pipeline, late, 100)
    assert with_ttl.expiry is not None
    with_ttl.expiry.reclaim(with_ttl, force=True)
    assert with_ttl.expiry.reclaimed_keys >= 1 and with_ttl.users.find("gone") == -1
    more = [tx("c1", "stays", 302, 30.0)]
    found["ttl"] |= _features_of(with_ttl, more, 200)
    found["none"] |= _features_of(without, more, 200)
    back_ttl, back_none = found["ttl"]["b1"], found["none"]["b1"]
    assert back_ttl["customer_tx_seen"] == back_none["customer_tx_seen"] - 1  # a2 forgotten
    for tx_id in ("b2", "c1"):  # "stays" never expired: the same features with or without
        assert found["ttl"][tx_id] == found["none"][tx_id]


def test_key_space_and_id_set_round_trip() -> None:
    keys = KeySpace()
    words = [f"key-{i}-{'x' * (i % 40)}" for i in range(5000)]
    slots = keys.slots(pa.array(words))
    copy = KeySpace()
    copy.restore({k: v.copy() for k, v in keys.snapshot().items()})
    assert copy.slots(pa.array(words)).tolist() == slots.tolist()
    assert copy.keys == keys.keys
    ids = IdSet()
    ids.admit(pa.array(words))
    restored = IdSet()
    restored.restore({k: v.copy() for k, v in ids.snapshot().items()})
    again = restored.admit(pa.array([*words[:10], "new-one"]))
    assert again.tolist() == [True] * 10 + [False]


def test_pending_batch_round_trips_with_extras() -> None:
    tokenize = CardTokenizer(b"test")
    rows = [
        validate_record(
            {"transaction_id": "a", "card_id": "c", "timestamp": 5, "amount": 1}, tokenize
        ),
        validate_record(
            {"transaction_id": "b", "card_id": "c", "timestamp": 6, "amount": 2, "note": {"k": 1}},
            tokenize,
        ),
    ]
    batch = TxBatch.from_valid(rows, np.array([3, 4]), np.array([1.5, 2.5]))
    back = batch_from_table(batch_to_table(batch))
    assert [back.record(i) for i in range(2)] == [batch.record(i) for i in range(2)]
    assert back.position.tolist() == [3, 4] and back.arrival_ms.tolist() == [1.5, 2.5]


def test_store_is_atomic_keeps_the_last_few_and_checks_the_format(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), keep=2)
    pipeline = Pipeline()
    for _ in range(4):
        store.write(store.next_id(), pipeline.snapshot(), {"run_id": "r"})
    assert store.ids() == [3, 4]
    (tmp_path / "chk-00000005.tmp").mkdir()  # a crash in the middle of writing 5
    assert store.latest() == 4
    manifest_path = tmp_path / "chk-00000004" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["run_id"] == "r"
    manifest["format_version"] = 999
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="format 999"):
        store.read(4)
    store.prune()
    assert not (tmp_path / "chk-00000005.tmp").exists()


def test_any_fsspec_url_works_as_the_checkpoint_directory() -> None:
    store = CheckpointStore("memory://fraudstream-tests/checkpoints", keep=2)
    pipeline = Pipeline()
    pipeline.submit(to_batch([{"transaction_id": "a", "card_id": "c", "timestamp": T0,
                               "amount": 0.5}], 0), now_ms=0.0)  # fmt: skip
    for _ in range(3):
        store.write(store.next_id(), pipeline.snapshot(), {"run_id": "r"})
    assert store.ids() == [2, 3] and not store.local
    manifest, snapshot = store.read(3)
    restored = Pipeline()
    restored.restore(snapshot)
    assert manifest["checkpoint_id"] == 3 and restored.cards.keys == ["c"]
    assert "a" in restored.dedup
