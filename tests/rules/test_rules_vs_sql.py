"""The issue's five example rules, run by `fraudstream run` on a stream `fraudstream simulate`
wrote, give exactly the reasons an independent SQL formulation (DuckDB window queries over the
same records) gives.

The window (t - W, t] with the current transaction included and ties in processing order is
written as two DuckDB windows: RANGE BETWEEN (W - 1 ms) PRECEDING AND CURRENT ROW EXCLUDE TIES
(earlier timestamps, and the row itself) plus the same-timestamp rows processed before it
(ROWS ... 1 PRECEDING within the timestamp); their value lists are joined before aggregating.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from fraudstream.rules.explain import show

FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))
RULES = """\
lists:
  blocked_devices: [{blocked}]
  risky_mcc: {{file: lists/risky_mcc.txt}}
rules:
  - id: shared_device
    when: "distinct_count(card_id, by=device_id, over='1h') >= 3"
    score: 0.8
    description: one device paying with three or more cards within an hour
  - id: daily_spend
    when: "sum(amount, by=card_id, over='24h') > 5000 and count(by=card_id, over='24h') >= 4"
    score: 0.6
  - id: night_luxury
    when: "amount > 1000 and hour < 6 and merchant_category in list('risky_mcc')"
    score: 0.5
  - id: blocked_device
    when: "device_id in list('blocked_devices')"
    outcome: decline
  - id: trusted_merchant
    when: "merchant_id == '{trusted}' and amount < 50"
    outcome: approve
  # The same aggregates with limits this stream reaches (its devices and cards are quiet):
  - id: busy_category
    when: "distinct_count(card_id, by=(merchant_category, country), over='1h') >= 3"
    score: 0.1
  - id: daily_spend_low
    when: "sum(amount, by=card_id, over='24h') > 500 and count(by=card_id, over='24h') >= 4"
    score: 0.1
"""
USER_RULES = {
    "shared_device", "daily_spend", "night_luxury", "blocked_device", "trusted_merchant",
    "busy_category", "daily_spend_low",
}  # fmt: skip


def run(*args: str, cwd: Path) -> None:
    env = {"FRAUDSTREAM_TOKEN_KEY": "fraudstream-tests", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [FRAUDSTREAM, *args], cwd=cwd, env={**os.environ, **env}, capture_output=True,
        text=True, timeout=600, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def window(value: str, key: str, window_ms: int) -> str:
    """Values of `value` over the same `key`'s rows in (t - W, t], ties in processing order."""
    return (
        f"list_concat("
        f"list({value}) OVER (PARTITION BY {key} ORDER BY t RANGE BETWEEN "
        f"INTERVAL {window_ms - 1} MILLISECONDS PRECEDING AND CURRENT ROW EXCLUDE TIES), "
        f"coalesce(list({value}) OVER (PARTITION BY {key}, t ORDER BY seq "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), []))"
    )


SQL = f"""
WITH w AS (
  SELECT *,
    {window("card_id", "device_id", 3_600_000)} AS device_cards,
    {window("amount", "card_id", 86_400_000)} AS card_amounts,
    {window("card_id", "merchant_category, country", 3_600_000)} AS category_cards
  FROM tx
)
SELECT transaction_id, device_id, card_id, amount, hour(t) AS hour, merchant_category,
  merchant_id, country,
  CASE WHEN merchant_category IS NULL OR country IS NULL THEN NULL
    ELSE len(list_distinct(category_cards)) END AS category_cards,
  CASE WHEN device_id IS NULL THEN NULL ELSE len(list_distinct(device_cards)) END AS cards,
  list_sum(card_amounts) AS spend, len(card_amounts) AS spends
FROM w ORDER BY seq
"""


@pytest.mark.slow
def test_the_five_issue_rules_match_duckdb_windows(tmp_path: Path) -> None:
    stream = tmp_path / "stream.jsonl"
    run("simulate", "--count", "20000", "--fast", "--seed", "11", "--users", "40",
        "-o", str(stream), cwd=tmp_path)  # fmt: skip
    records = [json.loads(line) for line in stream.read_text().splitlines()]
    devices = collections.Counter(r.get("device_id") for r in records if r.get("device_id"))
    merchants = collections.Counter(r["merchant_id"] for r in records if r["amount"] < 50)
    blocked = [device for device, _ in devices.most_common(2)]
    trusted = merchants.most_common(1)[0][0]
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "risky_mcc.txt").write_text("# categories\nelectronics\ntravel\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(blocked=", ".join(blocked), trusted=trusted))
    decisions_path = tmp_path / "decisions.jsonl"
    run("run", "--input", str(stream), "--rules", str(rules), "--decisions",
        str(decisions_path), "--quiet", cwd=tmp_path)  # fmt: skip
    decisions = [json.loads(line) for line in decisions_path.read_text().splitlines()]
    assert len(decisions) == len(records)
    by_id = {r["transaction_id"]: r for r in records}

    con = duckdb.connect()
    con.execute(
        "CREATE TABLE tx (seq BIGINT, transaction_id VARCHAR, card_id VARCHAR, "
        "device_id VARCHAR, merchant_id VARCHAR, merchant_category VARCHAR, country VARCHAR, "
        "amount DOUBLE, t TIMESTAMP)"
    )
    rows = [
        (
            seq,
            d["transaction_id"],
            by_id[d["transaction_id"]]["card_id"],
            by_id[d["transaction_id"]].get("device_id"),
            by_id[d["transaction_id"]]["merchant_id"],
            by_id[d["transaction_id"]]["merchant_category"],
            by_id[d["transaction_id"]]["country"],
            by_id[d["transaction_id"]]["amount"],
            by_id[d["transaction_id"]]["timestamp"],
        )
        for seq, d in enumerate(decisions)
    ]  # fmt: skip  (seq: the pipeline's processing order, the order decisions are written)
    con.executemany(
        "INSERT INTO tx VALUES (?, ?, ?, ?, ?, ?, ?, ?, make_timestamp(? * 1000))", rows
    )
    expected: dict[str, dict[str, str]] = {}
    for row in con.execute(SQL).fetchall():
        tid, device, card, amount, hour, category, merchant, country, in_category = row[:9]
        cards, spend, spends = row[9:]
        fired: dict[str, str] = {}
        if cards is not None and cards >= 3:
            fired["shared_device"] = (
                f"{show(float(cards))} distinct card_id on device_id {device} within 1h (>= 3)"
            )
        if spend is not None and spend > 5000 and spends >= 4:
            fired["daily_spend"] = (
                f"sum of amount {show(spend)} on card_id {card} within 24h (> 5000); "
                f"{show(float(spends))} transactions on card_id {card} within 24h (>= 4)"
            )
        if in_category is not None and in_category >= 3:
            fired["busy_category"] = (
                f"{show(float(in_category))} distinct card_id on merchant_category, country "
                f"{category}, {country} within 1h (>= 3)"
            )
        if spend is not None and spend > 500 and spends >= 4:
            fired["daily_spend_low"] = (
                f"sum of amount {show(spend)} on card_id {card} within 24h (> 500); "
                f"{show(float(spends))} transactions on card_id {card} within 24h (>= 4)"
            )
        if amount > 1000 and hour < 6 and category in ("electronics", "travel"):
            fired["night_luxury"] = (
                f"amount {show(amount)} (> 1000); hour {hour} (< 6); "
                f"merchant_category {category} (in list risky_mcc)"
            )
        if device in blocked:
            fired["blocked_device"] = f"device_id {device} (in list blocked_devices)"
        if merchant == trusted and amount < 50:
            fired["trusted_merchant"] = (
                f"merchant_id {merchant} (== '{trusted}'); amount {show(amount)} (< 50)"  # noqa: E501
            )
        if fired:
            expected[tid] = fired

    got: dict[str, dict[str, str]] = {}
    for d in decisions:
        mine = {r["rule"]: r["message"] for r in d["reasons"] if r["rule"] in USER_RULES}
        if mine:
            got[d["transaction_id"]] = mine
        if "blocked_device" in mine:
            assert d["decision"] == "decline"
        elif "trusted_merchant" in mine:
            assert d["decision"] == "approve"
    assert got == expected
    fired_rules = collections.Counter(rule for fired in expected.values() for rule in fired)
    # The simulator gives each device one user and spends far below 5,000 a day, so the
    # issue's two aggregate rules stay silent here; their twins with reachable limits fire.
    assert USER_RULES - {"shared_device", "daily_spend"} <= set(fired_rules), fired_rules
