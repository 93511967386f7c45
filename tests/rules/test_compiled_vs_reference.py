"""The compiled rules (numpy/Arrow over micro-batches, numba window state) fire exactly where
the plain-Python reference evaluator (one record at a time, full histories) fires, on random
expressions and random streams: window edges hit exactly, equal timestamps, records behind the
watermark within the allowed lateness, any cut into micro-batches, window state compacted."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline, TimeConfig
from fraudstream.rules import RuleSet
from fraudstream.rules.reference import ReferenceRules
from fraudstream.schema import CardTokenizer, validate_record

T0 = 1_700_000_000_000
WINDOWS = ["1s", "1.5s", "3s"]
KEYS = ["card_id", "device_id", "(card_id, merchant_id)", "channel"]
LISTS = {"devices": ["d0", "d2"], "numbers": ["1", "2.5", "x"]}

numbers_leaf = st.one_of(
    st.sampled_from(
        ["amount", "hour", "lat", "timestamp % 7000", "1", "2.5", "0", "transactions_in_window"]
    ),
    st.builds(
        lambda key, over: f"count(by={key}, over='{over}')",
        st.sampled_from(KEYS), st.sampled_from(WINDOWS),
    ),
    st.builds(
        lambda kind, field, key, over: f"{kind}({field}, by={key}, over='{over}')",
        st.sampled_from(["sum", "avg", "min", "max"]), st.sampled_from(["amount", "lat"]),
        st.sampled_from(KEYS), st.sampled_from(WINDOWS),
    ),
    st.builds(
        lambda field, key, over: f"distinct_count({field}, by={key}, over='{over}')",
        st.sampled_from(["merchant_id", "device_id", "amount"]), st.sampled_from(KEYS),
        st.sampled_from(WINDOWS),
    ),
)  # fmt: skip


def _numbers(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from("+-*/%"), inner),
        st.builds(lambda f, a: f"{f}({a})", st.sampled_from(["abs", "log", "-"]), inner),
        st.builds(lambda f, a, b: f"{f}({a}, {b})", st.sampled_from(["min", "max"]), inner, inner),
    )


numbers = st.recursive(numbers_leaf, _numbers, max_leaves=4)
texts = st.sampled_from(
    ["card_id", "device_id", "merchant_id", "channel", "previous_transaction_id"]
)
conditions_leaf = st.one_of(
    st.builds(lambda a, op, b: f"{a} {op} {b}", numbers,
              st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), numbers),
    st.builds(lambda a, v: f"{a} == '{v}'", texts, st.sampled_from(["d1", "m0", "pos", "c1"])),
    st.builds(lambda a, neg: f"{a} {neg}in list('devices')", texts, st.sampled_from(["", "not "])),
    st.builds(lambda a: f"{a} in list('numbers')", numbers),
    st.builds(lambda a: f"{a} in [1, 2, 3.5]", numbers),
    st.builds(lambda a, neg: f"{a} is {neg}null", st.one_of(numbers, texts),
              st.sampled_from(["", "not "])),
    st.builds(lambda a, p: f"{a}.startswith('{p}')", texts, st.sampled_from(["d", "m1", "c"])),
    st.just("fired('velocity')"),
)  # fmt: skip


def _conditions(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(["and", "or"]), inner),
        st.builds(lambda a: f"not ({a})", inner),
    )


conditions = st.recursive(conditions_leaf, _conditions, max_leaves=4)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[int]]:
    n = draw(st.integers(1, 40))
    steps = draw(st.lists(st.sampled_from([0, 0, 500, 500, 1000, 1500, 3000, -500, -1500]),
                          min_size=n, max_size=n))  # fmt: skip
    records, t = [], T0
    for i, step in enumerate(steps):
        t += step
        record: dict[str, Any] = {
            "transaction_id": f"t{i:03d}",
            "card_id": draw(st.sampled_from(["c0", "c1", "c2"])),
            "timestamp": t,
            "amount": draw(st.integers(0, 400)) / 4,
            "merchant_id": draw(st.sampled_from(["m0", "m1", "m12"])),
            "channel": draw(st.sampled_from(["pos", "online"])),
        }
        device = draw(st.sampled_from([None, "d0", "d1", "d2"]))
        if device is not None:
            record["device_id"] = device
        if draw(st.booleans()):
            record["lat"], record["lon"] = draw(st.integers(-8, 8)) / 4, 1.0
        records.append(record)
    cuts = sorted(set(draw(st.lists(st.integers(1, n), max_size=10))))
    return records, cuts


def batch(records: list[dict[str, Any]]) -> TxBatch:
    tokenize = CardTokenizer(b"test")
    rows = [validate_record(r, tokenize) for r in records]
    return TxBatch.from_valid(rows, np.arange(len(rows)), np.zeros(len(rows)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(conditions, min_size=1, max_size=3), streams(), st.sampled_from([0, 1000, 2000]))
def test_compiled_rules_equal_the_reference(
    whens: list[str], stream: tuple[list[dict[str, Any]], list[int]], lateness_ms: int
) -> None:
    records, cuts = stream
    rule_set = RuleSet.from_document(
        {"rules": [{"id": f"u{k}", "when": w, "score": 0.1} for k, w in enumerate(whens)],
         "lists": LISTS}
    )  # fmt: skip
    # A short allowed lateness: window state is dropped soon after the watermark passes it.
    pipeline = Pipeline(rule_set, time_config=TimeConfig(allowed_lateness_ms=lateness_ms))
    assert pipeline.user_rules is not None
    for store in pipeline.user_rules.stores.values():
        store.compact_min_events = 0  # compact after every batch, whatever its size
    decided = []
    for part in np.split(np.arange(len(records)), cuts):
        if len(part):
            result = pipeline.submit(batch([records[i] for i in part]), now_ms=0)
            decided.append(result.decisions)
    decided.append(pipeline.flush(now_ms=0).decisions)

    trees = {r.id: r.tree for r in rule_set.user_rules if r.tree is not None}
    reference = ReferenceRules(trees, rule_set.list_values())
    for decisions in decided:
        if decisions is None:
            continue
        for row in range(len(decisions)):
            fields = decisions.tx.record(row)
            fields["hour"] = (fields["timestamp"] // 3_600_000) % 24
            features = decisions.features  # detector outputs: inputs to both evaluators
            fields["transactions_in_window"] = int(features["transactions_in_window"][row])
            fields["previous_transaction_id"] = features["previous_transaction_id"][row].as_py()
            fired = {"velocity": bool(decisions.fired["velocity"][row])}
            expected = reference.step(fields, int(decisions.time_ms[row]), fired)
            got = {rule: bool(decisions.fired[rule][row]) for rule in trees}
            assert got == expected, (fields["transaction_id"], whens)


def test_compaction_keeps_what_a_record_at_the_watermark_still_sees() -> None:
    rule_set = RuleSet.from_document(
        {"rules": [{"id": "three", "when": "count(by=card_id, over='1s') >= 3", "score": 0.1}]}
    )
    pipeline = Pipeline(rule_set, time_config=TimeConfig(allowed_lateness_ms=0))
    assert pipeline.user_rules is not None
    store = next(iter(pipeline.user_rules.stores.values()))
    store.compact_min_events = 0
    first = [{"transaction_id": f"a{i}", "card_id": "c", "timestamp": T0 + t, "amount": 1.0}
             for i, t in enumerate([0, 500, 1_000, 1_500])]  # fmt: skip
    pipeline.submit(batch(first), now_ms=0)
    assert len(store) == 2  # 0 and 500 are out of reach of any record from 1,500 on
    last = {"transaction_id": "b", "card_id": "c", "timestamp": T0 + 1_500, "amount": 1.0}
    decisions = pipeline.submit(batch([last]), now_ms=0).decisions
    assert decisions is not None and decisions.fired["three"].tolist() == [
        True
    ]  # 1,000 1,500 1,500


def test_a_record_behind_its_key_still_sees_what_a_later_one_skipped() -> None:
    rule_set = RuleSet.from_document(
        {"rules": [{"id": "two", "when": "count(by=card_id, over='1s') >= 2", "score": 0.1}]}
    )
    pipeline = Pipeline(rule_set, time_config=TimeConfig(allowed_lateness_ms=5_000))
    rows = [{"transaction_id": f"a{i}", "card_id": "c", "timestamp": T0 + t, "amount": 1.0}
            for i, t in enumerate([500, 1_500, 1_000])]  # fmt: skip
    decisions = pipeline.submit(batch(rows), now_ms=0).decisions
    # 1,500 sees (500, 1,500]: itself only; 1,000 (processed after it) sees 500 and itself.
    assert decisions is not None and decisions.fired["two"].tolist() == [False, False, True]
