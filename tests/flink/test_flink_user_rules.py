"""User rules (expressions, lists, aggregates over any key, outcomes) on Flink.

The fused job (one operator) runs ``fraudstream run``'s own pipeline, user rules included,
and the keyed job at parallelism 2 holds each aggregate's windows in a stage keyed by the
aggregate's own key (a device, a card, a card and merchant pair): on the messy
20,000-record stream both give the same decisions, scores, reasons and tiers as the embedded
run with the same rules file. Rules without an aggregate read only the record, its profile
and its detectors' answers: the keyed and sharded jobs decide them where both key spaces'
answers meet, at parallelism 2, as the embedded run does (shadow mode and forced outcomes
included). The sharded job cannot hold a device's window (it shards by card and user) and
refuses rules with an aggregate in one line.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from flink_helpers import FRAUDSTREAM, OPTIONS, by_id, read_jsonl

RULES = """\
lists:
  watched_countries: [BR, IN, NG]
rules:
  - id: shared_device
    when: "distinct_count(card_id, by=device_id, over='1h') >= 2"
    score: 0.6
    description: one device paying with two or more cards within an hour
  - id: busy_day
    when: "sum(amount, by=card_id, over='24h') > 300 and count(by=card_id, over='24h') >= 4"
    score: 0.3
  - id: night_spend
    when: "amount > 200 and hour < 6"
    score: 0.2
  - id: watched_country
    when: "country in list('watched_countries') and amount > 100"
    outcome: review
  - id: tiny_known_merchant
    when: "amount < 1 and count(by=(card_id, merchant_id), over='7d') >= 2"
    outcome: approve
"""


EXPRESSIONS = """\
lists:
  watched_countries: [BR, IN, NG]
rules:
  - id: night_spend
    when: "amount > 200 and hour < 6"
    score: 0.2
  - id: watched_country
    when: "country in list('watched_countries') and amount > 100"
    outcome: review
  - id: far_and_big
    when: "fired('geo_velocity') and amount > 150"
    score: 0.3
  - id: away_from_home
    when: "profile.home_country != country and amount > 250"
    score: 0.25
  - id: tiny_always_fine
    when: "amount < 0.5 and not fired('geo_velocity')"
    outcome: approve
  - id: big_in_shadow
    when: "amount > 400"
    score: 0.9
    mode: shadow
"""


def decided_alike(
    stream: tuple[Path, Path], rules: Path, tmp_path: Path, *flink_options: str
) -> dict[str, dict[str, Any]]:
    """`run` and `flink run` with ``rules`` over the stream: the embedded decisions, after
    checking that Flink's are the same."""
    path, profiles = stream
    common = ["--input", str(path), "--profiles", str(profiles), "--rules", str(rules), *OPTIONS]
    embedded = tmp_path / "embedded.jsonl"
    subprocess.run(
        [FRAUDSTREAM, "run", *common, "--decisions", str(embedded), "--quiet"], check=True
    )
    flink = subprocess.run(
        [FRAUDSTREAM, "flink", "run", *common, "--decisions", str(tmp_path / "flink"),
         *flink_options, "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert flink.returncode == 0, flink.stderr[-3000:]
    expected = by_id(read_jsonl(embedded))
    got = by_id(read_jsonl(tmp_path / "flink"))
    assert got.keys() == expected.keys()
    differing = [tx for tx in expected if got[tx] != expected[tx]]
    assert not differing, (differing[:3], [got[t] for t in differing[:1]])
    return expected


@pytest.mark.parametrize("graph", ["keyed", "sharded"])
def test_expression_rules_decide_like_embedded_at_parallelism_2(
    stream: tuple[Path, Path], tmp_path: Path, graph: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(EXPRESSIONS)
    flink = ("--graph", graph, "--parallelism", "2", "--target", "local")
    expected = decided_alike(stream, rules, tmp_path, *flink)
    fired = {r["rule"] for d in expected.values() for r in d["reasons"]}
    assert {"night_spend", "watched_country", "far_and_big", "away_from_home"} <= fired, fired
    shadowed = {r["rule"] for d in expected.values() for r in d.get("shadow_reasons") or []}
    assert "big_in_shadow" in shadowed, shadowed


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user-rules") / "rules.yaml"
    path.write_text(RULES)
    return path


@pytest.mark.parametrize(
    "flink", [("--graph", "fused"), ("--graph", "keyed", "--parallelism", "2")], ids=str
)
def test_user_rules_with_aggregates_decide_like_embedded(
    stream: tuple[Path, Path], rules: Path, tmp_path: Path, flink: tuple[str, ...]
) -> None:
    expected = decided_alike(
        stream, rules, tmp_path, "--checkpoint-dir", str(tmp_path / "c"), *flink
    )
    fired = {r["rule"] for d in expected.values() for r in d["reasons"]}
    assert {"shared_device", "busy_day", "night_spend", "watched_country"} <= fired, fired


def test_sharded_job_refuses_rules_with_aggregates(stream: tuple[Path, Path], rules: Path) -> None:
    path, _ = stream
    result = subprocess.run(
        [FRAUDSTREAM, "flink", "run", "--input", str(path), "--rules", str(rules),
         "--alerts", "out", "--graph", "sharded"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert "shared_device has an aggregate" in result.stderr
    assert "run on the keyed job" in result.stderr and "Traceback" not in result.stderr
