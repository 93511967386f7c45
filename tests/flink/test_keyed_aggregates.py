"""`when:` rules with aggregates over any key on the keyed job's stages, without Flink.

Property: with rules that aggregate by device, by merchant, by card and by a (card,
merchant) pair (count, sum, avg, min, max, distinct count), the keyed job, one window stage
per key space between the card and user stages, each key's window events one value, gives
the embedded decisions (fired rules, scores, reasons with the aggregates' values, forced
outcomes) for any stream within the out-of-orderness, split count and interleaving.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_keyed_stages import MINUTE, T0, decode, embedded, keyed_run, records

from fraudstream.flink.aggregate_rows import AggregateRows, key_spaces, window_keys
from fraudstream.rules import RuleSet

RULES = RuleSet.from_document(
    {
        "rules": [
            {"id": "shared_device", "score": 0.6,
             "when": "distinct_count(card_id, by=device_id, over='1h') >= 2"},
            {"id": "busy_card", "score": 0.3,
             "when": "sum(amount, by=card_id, over='2h') > 700"
                     " and count(by=card_id, over='2h') >= 3"},
            {"id": "merchant_spike", "score": 0.4,
             "when": "max(amount, by=merchant_id, over='30m')"
                     " > 2 * avg(amount, by=merchant_id, over='30m')"},
            {"id": "tiny_repeat", "outcome": "approve",
             "when": "amount < 1 and count(by=(card_id, merchant_id), over='1d') >= 2"},
            {"id": "low_floor", "score": 0.2,
             "when": "min(amount, by=zipcode, over='45m') < 1 and amount > 500"},
        ]
    }
)  # fmt: skip


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    splits=st.sampled_from([1, 2, 4]),
    chunk=st.sampled_from([17, 64, 400]),
    interleaving=st.lists(st.integers(0, 3), max_size=40),
)
def test_aggregates_on_the_keyed_stages_decide_as_embedded(
    seed: int, splits: int, chunk: int, interleaving: list[int]
) -> None:
    batch = decode(records(seed, 300, cards=12, late=splits == 1))
    want = embedded(batch, chunk, rules=RULES)
    got = keyed_run(batch, chunk, splits, [s % splits for s in interleaving], rules=RULES)
    assert got == want
    fired = {r["rule"] for d in want[0].values() for r in d["reasons"]}
    assert len(fired & {"shared_device", "busy_card", "merchant_spike", "tiny_repeat"}) >= 2


def record(tid: str, card: str, device: str | None, minute: int) -> dict[str, Any]:
    return {"transaction_id": tid, "card_id": card, "user_id": "u", "device_id": device,
            "timestamp": T0 + minute * MINUTE, "amount": 10.0}  # fmt: skip


def test_every_key_space_gets_a_stage_and_keeps_only_its_window() -> None:
    spaces = key_spaces(RULES)
    assert len(spaces) == 6
    assert list(window_keys(RULES)) == [  # one stage a key
        "by=device_id", "by=card_id", "by=merchant_id", "by=card_id,merchant_id", "by=zipcode"
    ]  # fmt: skip
    space = next(s for s in spaces if "by=device_id" in s)
    rows = AggregateRows(RULES, space, allowed_lateness_ms=0)
    tx = decode(
        [record("a", "c1", "d1", 0), record("b", "c2", "d1", 1), record("c", "c1", None, 2)]
    )
    keys = rows.keys(tx, tx.timestamp_ms)
    columns, values = rows.compute([None], keys, tx, tx.timestamp_ms, watermark=T0)
    assert columns[f"{space}:distinct_count"].tolist() == [1.0, 2.0, float("nan")] or (
        columns[f"{space}:distinct_count"].tolist()[:2] == [1.0, 2.0]
    )
    assert len(values) == 1  # d1 (the null device has no key)
    # ten hours on, only what a record still to come can see is kept: the new event
    later = decode([record("z", "c9", "d1", 600)])
    columns, kept = rows.compute(
        values, rows.keys(later, later.timestamp_ms), later, later.timestamp_ms,
        watermark=T0 + 600 * MINUTE,
    )  # fmt: skip
    assert columns[f"{space}:distinct_count"].tolist() == [1.0]
    assert len(kept[0]) == 8 + 8 + 8 + 4 + len("c9")  # n, time, value, text length, text
