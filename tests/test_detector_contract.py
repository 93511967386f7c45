"""The contract every registered detector family keeps (River's ``check_estimator`` style).

Run over ``fraudstream.detectors.FAMILIES``: documented, frozen thresholds with defaults, input
left unchanged, deterministic, state that survives a pickle round-trip mid-stream and a reset
that makes a key fresh, rule names known to the rule set, and a readable message for every
rule when it fires.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import re
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from fraudstream.detectors import FAMILIES, STANDARD_RULES, Detector, DetectorInput, Findings
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline
from fraudstream.engine.state import StateTable
from fraudstream.rules import DEFAULT_SCORES
from fraudstream.schema import CardTokenizer, validate_record
from fraudstream.testing import detector_input

T0 = 1_700_000_000_000  # an arbitrary epoch ms
N = 300
IDS = [family.__name__ for family in FAMILIES]


def stream(seed: int = 0, n: int = N) -> DetectorInput:
    """A busy stream for a few cards and users, every column used, missing values included."""
    rng = np.random.default_rng(seed)
    steps = rng.choice(
        [0, 1, 400, 5_000, 20_000, 61_000, 700_000, 3_600_000],
        size=n,
        p=[0.1, 0.1, 0.3, 0.2, 0.1, 0.1, 0.05, 0.05],
    )
    time_ms = (T0 + np.cumsum(steps)).tolist()
    located = rng.random(n) < 0.8
    lat = np.where(located, rng.choice([52.52, 48.8566, 40.7128, -33.86], size=n), np.nan)
    lon = np.where(located, rng.choice([13.405, 2.3522, -74.006, 151.2], size=n), np.nan)
    tx = detector_input(
        time_ms=time_ms,
        amount=rng.choice(
            [0.5, 1.0, 2.0, 15.0, 40.0, 90.0, 700.0, 5_000.0],
            size=n,
            p=[0.08, 0.08, 0.08, 0.3, 0.3, 0.12, 0.03, 0.01],
        ).tolist(),
        card=rng.integers(0, 6, size=n).tolist(),
        user=rng.integers(0, 4, size=n).tolist(),
        lat=lat.tolist(),
        lon=lon.tolist(),
        zipcode=rng.integers(-1, 3, size=n).tolist(),
        merchant=rng.integers(-1, 5, size=n).tolist(),
        device=rng.integers(-1, 5, size=n).tolist(),
        ip_country=rng.integers(-1, 3, size=n).tolist(),
        expected_country=rng.integers(-1, 3, size=n).tolist(),
        anonymous_network=rng.integers(-1, 2, size=n).tolist(),
        max_speed_kmh=rng.choice([np.nan, 10.0, 100.0, 1_000.0], size=n).tolist(),
        transaction_id=[f"tx-{k:04d}" for k in range(n)],
    )
    tx.decode = {
        "zipcode": ["10001", "94105", "60601"],
        "country": ["US", "GB", "DE"],
        "network": ["tor", "vpn"],
    }
    return tx


def rows(tx: DetectorInput, lo: int, hi: int) -> DetectorInput:
    """Rows lo..hi of a stream, as their own micro-batch."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(tx):
        column = getattr(tx, f.name)
        if isinstance(column, pa.Array):
            values[f.name] = column.slice(lo, hi - lo)
        elif isinstance(column, np.ndarray):
            values[f.name] = column[lo:hi].copy()
        else:
            values[f.name] = column
    return DetectorInput(**values)


def plain(value: Any) -> Any:
    """Columns as comparable lists (NaN as a marker, Arrow as Python)."""
    if isinstance(value, pa.Array | pa.ChunkedArray):
        return value.to_pylist()
    if isinstance(value, np.ndarray):
        items = value.tolist()
        return [("nan" if isinstance(x, float) and math.isnan(x) else x) for x in items]
    return value


def outputs(findings: Findings) -> dict[str, Any]:
    return {
        "fired": {rule: plain(mask) for rule, mask in findings.fired.items()},
        "features": {name: plain(column) for name, column in findings.features.items()},
    }


def run_batches(d: Detector[Any], state: StateTable, tx: DetectorInput, bounds: list[int]) -> Any:
    out = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        out.append(outputs(d.process(state, rows(tx, lo, hi))))
    return out


# --- documentation and thresholds ----------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_module_and_class_are_documented(family: type[Detector[Any]]) -> None:
    module = sys.modules[family.__module__]
    assert module.__doc__ and module.__doc__.strip()
    assert family.__doc__ and family.__doc__.strip()
    assert family.process.__doc__ and family.message.__doc__


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_declares_name_key_rules_and_state(family: type[Detector[Any]]) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]*", family.name)
    assert family.key in ("card", "user")
    assert family.rules and all(isinstance(r, str) for r in family.rules)
    assert isinstance(family.seed, str) and family.seed
    assert isinstance(family.state_fields, dict)
    assert set(family.rule_thresholds) == set(family.rules)


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_thresholds_are_a_frozen_dataclass_with_defaults(family: type[Detector[Any]]) -> None:
    kind = family.thresholds_type
    assert dataclasses.is_dataclass(kind)
    assert kind.__dataclass_params__.frozen  # type: ignore[attr-defined]
    for f in dataclasses.fields(kind):
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    defaults = kind()
    hash(defaults)  # immutable all the way down (no lists or dicts as defaults)
    first = dataclasses.fields(kind)
    if first:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(defaults, first[0].name, getattr(defaults, first[0].name))
    assert family().thresholds == defaults
    for rule, names in family.rule_thresholds.items():
        assert set(names) <= {f.name for f in first}, rule


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_rule_names_have_default_scores(family: type[Detector[Any]]) -> None:
    for rule in family.rules:
        assert rule in DEFAULT_SCORES
    assert set(STANDARD_RULES) == set(DEFAULT_SCORES)


# --- behaviour -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_process_leaves_the_input_unchanged(family: type[Detector[Any]]) -> None:
    tx = stream(1)
    before = copy.deepcopy({f.name: getattr(tx, f.name) for f in dataclasses.fields(tx)})
    d = family()
    d.process(d.new_state(), tx)
    for name, value in before.items():
        after = getattr(tx, name)
        if isinstance(value, np.ndarray):
            assert after.dtype == value.dtype, name
            assert np.array_equal(after, value, equal_nan=value.dtype.kind == "f"), name
        elif isinstance(value, pa.Array):
            assert after.equals(value), name
        else:
            assert after == value, name


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_same_input_same_output(family: type[Detector[Any]]) -> None:
    tx = stream(2)
    first = outputs(family().process(family().new_state(), tx))
    second = outputs(family().process(family().new_state(), tx))
    assert first == second
    for rule in family.rules:
        assert rule in first["fired"]
        assert len(first["fired"][rule]) == N
    for name, column in first["features"].items():
        assert len(column) == N, name


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_micro_batch_cuts_do_not_change_the_output(family: type[Detector[Any]]) -> None:
    tx = stream(3)
    d = family()
    whole = outputs(d.process(d.new_state(), tx))
    parts = run_batches(d, d.new_state(), tx, [0, 1, 40, 41, 150, 299, N])
    for kind in ("fired", "features"):
        for name, column in whole[kind].items():
            assert sum((p[kind][name] for p in parts), []) == column, name


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
@pytest.mark.parametrize("at", [1, 100, 257])
def test_pickled_state_mid_stream_changes_nothing_later(
    family: type[Detector[Any]], at: int
) -> None:
    tx = stream(4)
    d = family()
    state = d.new_state()
    run_batches(d, state, tx, [0, at])
    arrays = pickle.loads(pickle.dumps(state.arrays))
    snapshot = pickle.loads(pickle.dumps(state.snapshot(8)))  # 6 cards and 4 users are used
    later = sorted({at, max(at, 200), N})
    uninterrupted = run_batches(d, state, tx, later)

    restored = d.new_state()
    restored.restore(arrays)
    assert run_batches(family(), restored, tx, later) == uninterrupted

    from_snapshot = d.new_state()
    from_snapshot.restore(snapshot)
    assert run_batches(family(), from_snapshot, tx, later) == uninterrupted


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_reset_key_acts_as_a_fresh_key(family: type[Detector[Any]]) -> None:
    tx = stream(5)
    d = family()
    fresh = outputs(d.process(d.new_state(), tx))
    state = d.new_state()
    d.process(state, stream(6))
    state.reset(np.arange(state.capacity))
    assert outputs(d.process(state, tx)) == fresh


# --- every rule fires somewhere and explains itself ------------------------------------------


def crafted_records() -> list[dict[str, Any]]:
    """One card (or user) per rule, each with a stream that makes the rule fire."""
    records: list[dict[str, Any]] = []

    def add(card: str, offset_ms: int, amount: float, **fields: Any) -> None:
        records.append(
            {
                "transaction_id": f"{card}-{len(records)}",
                "card_id": card,
                "timestamp": T0 + offset_ms,
                "amount": amount,
                **fields,
            }
        )

    add("stl", 0, 0.50)  # small_then_large
    add("stl", 20_000, 600.0)
    add("geo", 0, 20.0, lat=52.52, lon=13.405)  # geo_velocity: Berlin -> Paris in 10 min
    add("geo", 600_000, 20.0, lat=48.8566, lon=2.3522)
    add("zip", 0, 20.0, zipcode="10001")  # zip_mismatch
    add("zip", 60_000, 20.0, zipcode="94105")
    add("amt", 0, 20.0)  # amount_anomaly
    add("amt", 700_000, 500.0)
    for k in range(5):  # velocity
        add("vel", 1_000 * k, 30.0)
    for k, merchant in enumerate(("m1", "m2", "m3")):  # card_testing
        add("test", 60_000 * k, 1.00, merchant_id=merchant)
    for k in range(20):  # spend_deviation (20 of 20.00 / 30.00, then 2,000.00), unusual_hour
        add("dev", 86_400_000 * k + 10 * 3_600_000, 20.0 + 10 * (k % 2))
    add("dev", 86_400_000 * 20 + 3 * 3_600_000, 2_000.0)
    for k in range(3):  # new_device
        add("dev2", 60_000 * k, 30.0, device_id="d1")
    add("dev2", 240_000, 30.0, device_id="d2")
    add("ipc", 0, 30.0, ip="192.0.2.10", country="GB")  # ip_country_mismatch: IP in US
    add("anon", 0, 30.0, ip="203.0.113.7")  # anonymous_network: a listed tor network
    return sorted(records, key=lambda r: r["timestamp"])


def test_every_rule_fires_on_a_crafted_stream_with_a_message() -> None:
    tokenize = CardTokenizer(b"test")
    rows_ = [validate_record(r, tokenize) for r in crafted_records()]
    batch = TxBatch.from_valid(rows_, np.arange(len(rows_)), np.zeros(len(rows_)))
    pipeline = Pipeline()
    messages: dict[str, list[str]] = {}
    for result in (pipeline.submit(batch, now_ms=T0), pipeline.flush(now_ms=T0)):
        decisions = result.decisions
        if decisions is None:
            continue
        reasons = decisions.reasons
        by_row = reasons.items()
        for row, listed in by_row:
            fired_here = {rule for rule, mask in decisions.fired.items() if mask[row]}
            assert {r["rule"] for r in listed} == fired_here, row
            for reason in listed:
                messages.setdefault(reason["rule"], []).append(reason["message"])
    assert set(messages) == set(STANDARD_RULES), set(STANDARD_RULES) - set(messages)
    for rule, texts in messages.items():
        for text in texts:
            assert isinstance(text, str) and text.strip(), rule
            assert not re.search(r"\b(nan|None|null)\b", text), (rule, text)
