"""`--max-record-bytes` and `--max-nesting-depth` on Flink: the same dead letters as `run`.

A stream with one record over the size limit and one nested deeper than the depth limit: on
every job graph the two are dead letters with `run`'s reasons, at their positions, and every
other record is decided as `run` decides it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from flink_helpers import FRAUDSTREAM, by_id, by_position, read_jsonl

from fraudstream.simulate.demo import demo_records

LIMITS = ("--max-record-bytes", "600", "--max-nesting-depth", "3")


@pytest.mark.parametrize("graph", ["keyed", "sharded", "fused"])
def test_limits_make_the_same_dead_letters_as_run(graph: str, tmp_path: Path) -> None:
    records = demo_records(count=60, seed=3)
    lines = [json.dumps(record) for record in records]
    long = dict(records[10], transaction_id="long-1", note="x" * 800)
    deep = dict(records[20], transaction_id="deep-1", extra={"a": {"b": {"c": {"d": 1}}}})
    lines.insert(15, json.dumps(long))
    lines.insert(30, json.dumps(deep))
    source = tmp_path / "tx.jsonl"
    source.write_text("\n".join(lines) + "\n")
    embedded, flink = tmp_path / "embedded", tmp_path / "flink"
    subprocess.run(
        [FRAUDSTREAM, "run", "--input", str(source), *LIMITS, "--quiet",
         "--decisions", str(embedded / "d.jsonl"), "--dead-letters", str(embedded / "dl.jsonl")],
        check=True,
    )  # fmt: skip
    done = subprocess.run(
        [FRAUDSTREAM, "flink", "run", "--input", str(source), *LIMITS, "--quiet", "--graph",
         graph, "--target", "local", "--decisions", str(flink / "d"),
         "--dead-letters", str(flink / "dl")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    letters = by_position(read_jsonl(embedded / "dl.jsonl"))
    assert [(d["position"], d["reason"]) for d in letters] == [
        (16, "record: longer than 600 bytes"),
        (31, "record: nested deeper than 3 levels"),
    ]
    assert by_position(read_jsonl(flink / "dl")) == letters
    decided = by_id(read_jsonl(embedded / "d.jsonl"))
    assert len(decided) == len(records)
    assert by_id(read_jsonl(flink / "d")) == decided
