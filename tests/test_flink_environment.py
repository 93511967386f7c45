"""`fraudstream flink ...` runs in Flink's own Python environment (fraudstream.flink.python_env):
the command starts again under that interpreter, with this checkout's source first on its
path, and every other command stays where it is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fraudstream.flink.python_env import CHECKOUT_FLINK_VENV, FLINK_PYTHON_VARIABLE

SRC = Path(__file__).resolve().parent.parent / "src"
# A stand-in for the Flink environment's interpreter: reports how it was started.
STAND_IN = f"""#!/bin/sh
echo "args: $*"
echo "path: $PYTHONPATH"
echo "flink python: ${FLINK_PYTHON_VARIABLE}"
"""


def fraudstream(*args: str, flink_python: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}/elsewhere")
    env[FLINK_PYTHON_VARIABLE] = str(flink_python)
    command = [sys.executable, "-c", "from fraudstream.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def stand_in(tmp_path: Path) -> Path:
    python = tmp_path / "flink-venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STAND_IN)
    python.chmod(0o755)
    return python


def test_flink_commands_start_again_in_the_flink_environment(tmp_path: Path) -> None:
    python = stand_in(tmp_path)
    done = fraudstream("flink", "run", "--input", "tx.jsonl", "--parallelism", "2",
                       flink_python=python)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "args: -c from fraudstream.cli import main; main() flink run --input tx.jsonl"
        " --parallelism 2"
    )
    assert lines[1] == f"path: {SRC}{os.pathsep}/elsewhere"
    assert lines[2] == f"flink python: {python}"  # the child is home: it does not hop again


def test_other_commands_stay_in_this_environment(tmp_path: Path) -> None:
    done = fraudstream("--version", flink_python=stand_in(tmp_path))
    assert done.returncode == 0 and done.stdout.startswith("fraudstream "), done.stderr


def test_a_missing_flink_interpreter_is_one_line(tmp_path: Path) -> None:
    done = fraudstream("flink", "run", "--input", "x", flink_python=tmp_path / "nope")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {FLINK_PYTHON_VARIABLE}={tmp_path / 'nope'}: no such interpreter"
    ]


def decisions_by_id(target: Path) -> dict[str, dict[str, Any]]:
    files = sorted(target.iterdir()) if target.is_dir() else [target]
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    wall_clock = ("processed_at", "latency_ms")
    return {r["transaction_id"]: {k: r[k] for k in r if k not in wall_clock} for r in records}


@pytest.mark.skipif(
    not (CHECKOUT_FLINK_VENV / "bin" / "python").is_file() or shutil.which("java") is None,
    reason="needs .venv-flink (bash scripts/install.sh) and a JDK",
)
def test_a_flink_job_started_here_runs_in_the_flink_environment_and_decides_the_same(
    tmp_path: Path,
) -> None:
    """This environment (current pyarrow) and Flink's (PyFlink's pins) decide alike."""
    env = {k: v for k, v in os.environ.items() if k != FLINK_PYTHON_VARIABLE}
    env["PYTHONPATH"] = str(SRC)

    def fraudstream(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", "from fraudstream.cli import main; main()", *args]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    stream, profiles = tmp_path / "tx.jsonl", tmp_path / "profiles.yaml"
    simulated = fraudstream("simulate", "--scenario", "demo", "--count", "2000", "--fast",
                            "--profiles-out", str(profiles))  # fmt: skip
    stream.write_text(simulated.stdout)
    common = ["--input", str(stream), "--profiles", str(profiles), "--quiet"]
    fraudstream("run", *common, "--decisions", str(tmp_path / "embedded.jsonl"))
    fraudstream("flink", "run", *common, "--decisions", str(tmp_path / "flink"),
                "--target", "local", "--checkpoint-dir", str(tmp_path / "checkpoints"))  # fmt: skip
    embedded = decisions_by_id(tmp_path / "embedded.jsonl")
    assert len(embedded) == 2000
    assert decisions_by_id(tmp_path / "flink") == embedded
