"""The Flink runtime decides exactly like the embedded one, in both execution modes.

Same messy 20,000-record stream through `fraudstream run` and `fraudstream flink run
--target local` (the keyed job in thread mode at parallelism 1, and at 2 with the file cut
into chunks read by two source subtasks; in process mode at 2; the sharded job at 1):
identical
decisions (tier, score, reasons in order, features), alerts, dead letters (with reasons
and positions) and late records. Only ``processed_at`` and ``latency_ms`` (wall-clock
facts) may differ.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from flink_helpers import FRAUDSTREAM, OPTIONS, by_id, by_position, read_jsonl

RUNS = [
    ("thread", 1, ()),
    ("thread", 2, ("--batch-bytes", "1000000")),
    ("process", 2, ()),
    ("thread", 1, ("--graph", "sharded")),
]


@pytest.mark.parametrize(("mode", "parallelism", "extra"), RUNS)
def test_flink_decides_exactly_like_embedded(
    mode: str,
    parallelism: int,
    extra: tuple[str, ...],
    embedded: Path,
    flink_run: Callable[..., Path],
) -> None:
    flink = flink_run("--parallelism", str(parallelism), "--execution-mode", mode, *extra)
    expected = by_id(read_jsonl(embedded / "decisions.jsonl"))
    got = by_id(read_jsonl(flink / "decisions"))
    assert len(expected) > 19_000
    assert got.keys() == expected.keys()
    differing = [tx for tx in expected if got[tx] != expected[tx]]
    assert not differing, (
        differing[:3],
        [got[t] for t in differing[:1]],
        [expected[t] for t in differing[:1]],
    )
    assert by_id(read_jsonl(flink / "alerts")) == by_id(read_jsonl(embedded / "alerts.jsonl"))
    assert sum(1 for d in expected.values() if d["decision"] != "approve") > 50
    assert {r["rule"] for d in expected.values() for r in d["reasons"]} >= {
        "small_then_large", "geo_velocity", "card_testing", "velocity", "new_device",
    }  # fmt: skip


@pytest.mark.parametrize(("mode", "parallelism", "extra"), RUNS)
def test_flink_dead_letters_and_late_records_match(
    mode: str,
    parallelism: int,
    extra: tuple[str, ...],
    embedded: Path,
    flink_run: Callable[..., Path],
) -> None:
    flink = flink_run("--parallelism", str(parallelism), "--execution-mode", mode, *extra)
    dead = by_position(read_jsonl(embedded / "dead_letters.jsonl"))
    late = by_position(read_jsonl(embedded / "late.jsonl"))
    # 60 malformed lines and 40 copies; a copy of a late record is late too (docs/flink.md)
    duplicates = [d for d in dead if d["reason"].startswith("duplicate")]
    assert len(dead) == 60 + len(duplicates) and duplicates
    assert len(late) > 25
    assert by_position(read_jsonl(flink / "dead_letters")) == dead
    assert by_position(read_jsonl(flink / "late")) == late


@pytest.mark.parametrize("shape", ["fused", "keyed", "sharded"])
def test_only_the_outputs_asked_for(
    shape: str, stream: tuple[Path, Path], embedded: Path, tmp_path: Path
) -> None:
    """Dead letters and late records not asked for are dropped, not a failed job (a side
    output nobody reads made Flink fail the job on the first malformed line)."""
    path, profiles = stream
    result = subprocess.run(
        [FRAUDSTREAM, "flink", "run", "--input", str(path), "--profiles", str(profiles),
         *OPTIONS, "--graph", shape, "--alerts", str(tmp_path / "alerts"),
         "--checkpoint-dir", str(tmp_path / "checkpoints"), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert by_id(read_jsonl(tmp_path / "alerts")) == by_id(read_jsonl(embedded / "alerts.jsonl"))
