"""User rules (expressions, lists, aggregates over any key, outcomes) on Flink.

The fused job (parallelism 1, bounded files: the default there) runs ``fraudstream run``'s
own pipeline, user rules included: on the messy 20,000-record stream it gives the same
decisions, scores, reasons and tiers as the embedded run with the same rules file. The
sharded job cannot hold a device's or a merchant's window (it shards by card and user) and
refuses user rules with one line.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

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


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user-rules") / "rules.yaml"
    path.write_text(RULES)
    return path


def test_fused_job_decides_user_rules_like_embedded(
    stream: tuple[Path, Path], rules: Path, tmp_path: Path
) -> None:
    path, profiles = stream
    common = ["--input", str(path), "--profiles", str(profiles), "--rules", str(rules), *OPTIONS]
    embedded = tmp_path / "embedded.jsonl"
    subprocess.run(
        [FRAUDSTREAM, "run", *common, "--decisions", str(embedded), "--quiet"], check=True
    )
    flink = subprocess.run(
        [FRAUDSTREAM, "flink", "run", *common, "--decisions", str(tmp_path / "flink"),
         "--checkpoint-dir", str(tmp_path / "checkpoints"), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert flink.returncode == 0, flink.stderr[-3000:]
    expected = by_id(read_jsonl(embedded))
    got = by_id(read_jsonl(tmp_path / "flink"))
    assert got.keys() == expected.keys()
    differing = [tx for tx in expected if got[tx] != expected[tx]]
    assert not differing, (differing[:3], [got[t] for t in differing[:1]])
    fired = {r["rule"] for d in expected.values() for r in d["reasons"]}
    assert {"shared_device", "busy_day", "night_spend", "watched_country"} <= fired, fired


def test_sharded_job_refuses_user_rules(stream: tuple[Path, Path], rules: Path) -> None:
    path, _ = stream
    result = subprocess.run(
        [FRAUDSTREAM, "flink", "run", "--input", str(path), "--rules", str(rules),
         "--alerts", "out", "--graph", "sharded"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert "fused job only" in result.stderr and "Traceback" not in result.stderr
