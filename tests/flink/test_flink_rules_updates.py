"""`fraudstream flink run --rules-updates DIR`: rules versions broadcast to a running keyed job.

A version dropped into the watched directory (velocity switched off: a detector stops, the
per-key layout changes) reaches every card and user subtask and applies from their next
release, with the other detectors' state kept. Whichever records it reaches first, each
decision must then be the embedded runtime's under the version it names: the embedded run
with the starting rules for version 1, with the new rules for version 2 (velocity's state
feeds no other detector, so the two runs differ only where velocity counts). The change is
logged in the audit log as `fraudstream run` logs a reloaded rules file; a version that does
not check, or aggregates in a key space the job has no window stage for (the graph holds one
per key the starting rules aggregate by), is refused there, and the job goes on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from flink_helpers import FRAUDSTREAM, WALL_CLOCK, read_jsonl
from test_keyed_processing_time import HANG_GUARD_S, count_decided, wait_for

from fraudstream.rules import RuleSet, replace_rule
from fraudstream.simulate.demo import demo_records

RECORDS = 20_000


def decided(path: Path) -> dict[str, dict[str, Any]]:
    skip = (*WALL_CLOCK, "rule_version")
    return {
        r["transaction_id"]: {k: v for k, v in r.items() if k not in skip} for r in read_jsonl(path)
    }


def test_a_rules_version_reaches_the_running_job(tmp_path: Path) -> None:
    records = demo_records(count=RECORDS, seed=5)
    source = tmp_path / "tx.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    new = replace_rule(RuleSet.default(), "velocity", enabled=False)
    new_file = tmp_path / "new-rules.json"
    new_file.write_text(json.dumps(new.to_document()))
    embedded = {}
    for name, rules in (("v1", []), ("v2", ["--rules", str(new_file)])):
        out = tmp_path / f"embedded-{name}.jsonl"
        subprocess.run(
            [FRAUDSTREAM, "run", "--input", str(source), *rules, "--decisions", str(out), "-q"],
            check=True,
        )
        embedded[name] = decided(out)

    updates, out = tmp_path / "rules.d", tmp_path / "flink"
    updates.mkdir()
    (updates / "1-broken.json").write_text('{"rules": [{"id": "velocity", "score": 7}]}\n')
    (updates / "2-no-velocity.json").write_text(json.dumps(new.to_document()) + "\n")
    windowed = new.to_document()
    windowed["rules"].append(
        {"id": "shared_device", "when": "distinct_count(card_id, by=device_id, over='1h') >= 2",
         "score": 0.6}
    )  # fmt: skip
    (updates / "3-windowed.json").write_text(json.dumps(windowed) + "\n")
    log = tmp_path / "job.stderr"
    with log.open("wb") as stderr:
        job = subprocess.Popen(
            [FRAUDSTREAM, "flink", "run", "--input", str(source), "--rules-updates",
             str(updates), "--target", "local", "--checkpoint-dir", str(out / "checkpoints"),
             "--checkpoint-interval-ms", "500", "--decisions", str(out / "decisions"), "-q"],
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: count_decided(out / "decisions") >= RECORDS, job, log)
    finally:
        os.killpg(job.pid, signal.SIGTERM)  # the rules stream is unbounded: stopped here
        try:
            job.wait(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()

    rows = read_jsonl(out / "decisions")
    versions = {r["transaction_id"]: r["rule_version"] for r in rows}
    assert set(versions.values()) <= {1, 2} and 2 in versions.values()
    flink = decided(out / "decisions")
    assert len(flink) == RECORDS
    for tid, decision in flink.items():
        assert decision == embedded[f"v{versions[tid]}"][tid], tid

    audit = [json.loads(line) for line in Path(f"{updates}.audit.jsonl").read_text().splitlines()]
    # the files may be read in any order: two refused, one applied
    refused = sorted(entry["note"] for entry in audit if entry["after"] is None)
    applied = [entry for entry in audit if entry["after"] is not None]
    assert len(refused) == 2 and len(applied) == 1
    assert all(note.startswith("refused:") for note in refused)
    # a device's window needs a stage of its own, built with the graph
    assert any("by=device_id" in note and "no window stage" in note for note in refused), refused
    velocity = [r for r in applied[0]["after"]["rules"] if r["id"] == "velocity"]
    assert velocity and velocity[0]["enabled"] is False
