"""`fraudstream flink run` refuses bad arguments with one readable line, before any JVM starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fraudstream.cli import app


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--input", "missing.jsonl", "--alerts", "out"], "input not found: missing.jsonl"),
        (["--input", "{tx}"], "give at least one output"),
        (["--input", "{tx}", "--alerts", "o", "--target", "remote"], "needs --jobmanager"),
        (["--input", "{tx}", "--alerts", "o", "--kafka-servers", "b:9092"], "Kafka connector"),
        (["--input", "{tx}", "--alerts", "o", "--parallelism", "8", "--shards", "4"], "--shards"),
        (["--input", "{tx}", "--alerts", "o", "--rules", "{rules}"], "rules"),
        (["--input", "{tx}", "--alerts", "o", "--detach"], "--detach needs --target remote"),
        (["--input", "{tx}", "--alerts", "o", "--from-savepoint", "nope"], "savepoint not found"),
        (["--input", "{tx}", "--alerts", "o", "--max-parallelism", "4"], "--max-parallelism"),
        (["--input", "{tx}", "--alerts", "o", "--allowed-lateness-ms", "-1"], "must be >= 0"),
        (["--input", "{tx}", "--alerts", "o", "--python-archive", "v.zip#v"], "--python-exec"),
        (["--input", "{tx}", "--alerts", "o", "--profiles-updates", "p.d"], "no such directory"),
        (["--input", "{tx}", "--alerts", "o", "--rules-updates", "{tx}"], "no such directory"),
    ],
)
def test_bad_arguments_get_one_line(tmp_path: Path, arguments: list[str], message: str) -> None:
    tx = tmp_path / "tx.jsonl"
    tx.write_text('{"transaction_id": "t1", "card_id": "c", "timestamp": 0, "amount": 1}\n')
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: velocity\n    thresholds: {window_s: -3}\n")
    args = [a.format(tx=tx, rules=rules) for a in arguments]
    result = CliRunner().invoke(app, ["flink", "run", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


PYTHON_SETTINGS = """
import json, sys
from fraudstream.flink.cli import pipeline_parts
from fraudstream.flink.job import FlinkJob

parts = pipeline_parts(None, None, 0, 0, 0, None, None, 720.0)
keys = ("python.executable", "python.client.executable", "python.archives")
out = []
for archive, executable in ((None, None), ("flink-venv.tar.gz#venv", "venv/bin/python")):
    job = FlinkJob(parts, ["tx.jsonl"], {"alerts": "out"}, sys.argv[1],
                   python_archive=archive, python_executable=executable)
    conf = job.configuration()
    out.append([conf.get_string(key, "") for key in keys])
print(json.dumps(out))
"""


def test_the_taskmanagers_python_is_this_interpreter_or_the_shipped_one(tmp_path: Path) -> None:
    """python.executable (-pyexec) and python.archives (-pyarch), as PyFlink documents them
    (in a process of its own: PyFlink's configuration starts a JVM gateway)."""
    done = subprocess.run(
        [sys.executable, "-c", PYTHON_SETTINGS, str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    here, shipped = json.loads(done.stdout.splitlines()[-1])
    assert here == [sys.executable, sys.executable, ""]
    assert shipped == ["venv/bin/python", sys.executable, "flink-venv.tar.gz#venv"]


STATE_SETTINGS = """
import json, sys
from fraudstream.flink.cli import pipeline_parts
from fraudstream.flink.job import FlinkJob

parts = pipeline_parts(None, None, 0, 0, 0, None, None, 720.0)
keys = ("state.backend.type", "execution.checkpointing.incremental",
        "state.backend.rocksdb.compaction.style")
out = []
for backend in ("hashmap", "rocksdb"):
    job = FlinkJob(parts, ["tx.jsonl"], {"alerts": "out"}, sys.argv[1], state_backend=backend)
    conf = job.configuration()
    out.append([conf.get_string(key, "") for key in keys])
print(json.dumps(out))
"""


def test_rocksdb_checkpoints_are_incremental_with_size_tiered_compaction(tmp_path: Path) -> None:
    """A checkpoint of RocksDB state writes the files new since the last one, and universal
    compaction keeps those few (benchmarks/flink_checkpoint_delta.py: 1-3 % of a million
    cards' state per checkpoint, against up to 50 % with levelled compaction)."""
    done = subprocess.run(
        [sys.executable, "-c", STATE_SETTINGS, str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    heap, rocksdb = json.loads(done.stdout.splitlines()[-1])
    assert heap == ["hashmap", "", ""]
    assert rocksdb == ["rocksdb", "true", "UNIVERSAL"]
