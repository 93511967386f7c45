"""Aggregate window state is part of a checkpoint: a run restored in the middle decides (and
explains) every record as a run that never stopped."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.checkpoint import CheckpointStore
from fraudstream.engine.pipeline import Pipeline, TimeConfig
from fraudstream.rules import RuleSet
from fraudstream.schema import CardTokenizer, validate_record

T0 = 1_700_000_000_000
RULES = {
    "lists": {"watch": ["d1"]},
    "rules": [
        {"id": "shared", "when": "distinct_count(card_id, by=device_id, over='10min') >= 3",
         "score": 0.3},
        {"id": "spend", "when": "sum(amount, by=(card_id, merchant_id), over='1h') > 300 "
         "and avg(amount, by=card_id, over='1h') > 20", "score": 0.2},
        {"id": "busy", "when": "count(by=merchant_id, over='5min') >= 4 "
         "or max(amount, by=device_id, over='30min') > 190", "outcome": "review"},
        {"id": "watched", "when": "device_id in list('watch') and min(amount, by=device_id, "
         "over='2h') < 5", "score": 0.1},
    ],
}  # fmt: skip


def records(n: int) -> list[dict[str, Any]]:
    draw = random.Random(17)
    out, t = [], T0
    for i in range(n):
        t += draw.choice([0, 1_000, 20_000, 60_000, 120_000])
        out.append({
            "transaction_id": f"t{i:05d}", "card_id": f"c{draw.randrange(30)}",
            "timestamp": t, "amount": round(draw.uniform(1, 200), 2),
            "merchant_id": f"m{draw.randrange(8)}", "device_id": f"d{draw.randrange(12)}",
        })  # fmt: skip
    return out


def batches(rows: list[dict[str, Any]], size: int) -> list[TxBatch]:
    tokenize = CardTokenizer(b"test")
    valid = [validate_record(r, tokenize) for r in rows]
    return [
        TxBatch.from_valid(valid[s : s + size], np.arange(s, s + size)[: len(valid[s : s + size])],
                           np.zeros(len(valid[s : s + size])))
        for s in range(0, len(valid), size)
    ]  # fmt: skip


def pipeline() -> Pipeline:
    made = Pipeline(RuleSet.from_document(RULES), time_config=TimeConfig(allowed_lateness_ms=0))
    assert made.user_rules is not None
    for store in made.user_rules.stores.values():
        store.compact_min_events = 0  # compaction runs before and after the checkpoint too
    return made


def decided(p: Pipeline, parts: list[TxBatch], out: list[tuple[str, str, list[Any]]]) -> None:
    for part in parts:
        d = p.submit(part, now_ms=0).decisions
        if d is not None:
            for row in range(len(d)):
                out.append((d.tx.transaction_id[row].as_py(), str(d.tier[row]), d.reasons[row]))


def test_restoring_in_the_middle_keeps_the_windows(tmp_path: Path) -> None:
    parts = batches(records(3_000), 150)
    whole: list[tuple[str, str, list[Any]]] = []
    decided(pipeline(), parts, whole)
    fired = {r["rule"] for _, _, reasons in whole for r in reasons}
    assert {"shared", "spend", "busy", "watched"} <= fired

    resumed: list[tuple[str, str, list[Any]]] = []
    first = pipeline()
    decided(first, parts[:10], resumed)
    store = CheckpointStore(str(tmp_path / "chk"))
    store.write(store.next_id(), first.snapshot(), {"run_id": "x"})
    _, snapshot = store.read(store.latest() or 0)
    second = pipeline()
    second.restore(snapshot)
    decided(second, parts[10:], resumed)
    assert resumed == whole

    fresh: list[tuple[str, str, list[Any]]] = []
    decided(pipeline(), parts[10:], fresh)  # without the state: other reasons
    assert fresh != whole[len(whole) - len(fresh) :]
