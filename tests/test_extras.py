"""Each extra alone in a fresh virtual environment: the commands it serves run, and a command
whose extra is missing names the extra in one line.

A venv per extra is made once from the locked pins of the core and that extra (the closure
``scripts/lock_subset.py`` computes from pyproject.toml, installed ``--require-hashes
--no-deps``, so a dependency an extra forgets to declare is missing here) and kept under the
temporary directory, keyed by the lock and pyproject.toml; later runs reuse it. fraudstream
itself runs from this checkout's ``src``. The flink extra (apache-flink and a JVM, a
gigabyte) is left to tests/flink.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
GOOD = [
    {"transaction_id": f"t{i}", "card_id": "c1", "timestamp": 1_700_000_000_000 + i * 1000,
     "amount": 5 + i}
    for i in range(20)
]  # fmt: skip


def _key() -> str:
    digest = hashlib.sha256()
    for name in ("requirements.lock", "pyproject.toml", "scripts/lock_subset.py"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()[:16]


def venv_with(extras: str) -> Path:
    """A venv holding the core and ``extras`` (comma-separated; "" for the core alone)."""
    home = Path(tempfile.gettempdir()) / "fraudstream-extras" / _key() / (extras or "core")
    python = home / "bin" / "python"
    if (home / "ready").is_file():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True)
    pins = home / "requirements.txt"
    subset = [
        sys.executable,
        str(ROOT / "scripts" / "lock_subset.py"),
        *filter(None, extras.split(",")),
    ]
    pins.write_text(subprocess.run(subset, check=True, capture_output=True, text=True).stdout)
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*install, "--require-hashes", "--no-deps", "-r", str(pins)], check=True)
    (home / "ready").write_text("")
    return python


def fraudstream(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(cwd)),
        "PYTHONPATH": str(ROOT / "src"),
        "FRAUDSTREAM_TOKEN_KEY": "test",
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "100",
    }
    command = [str(python), "-c", "from fraudstream.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def needs(done: subprocess.CompletedProcess[str], extra: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and len(lines) == 1, done.stderr[-3000:]
    assert f"fraudstream[{extra}]" in lines[0], lines[0]


@pytest.fixture
def transactions(tmp_path: Path) -> Path:
    path = tmp_path / "tx.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in GOOD))
    return path


def test_core_alone_runs_and_checkpoints_and_names_the_missing_extras(
    tmp_path: Path, transactions: Path
) -> None:
    python = venv_with("")
    ok(fraudstream(python, "--help", cwd=tmp_path))
    ok(
        fraudstream(
            python, "run", "-q", "-i", str(transactions), "--decisions", "d.jsonl",
            "--checkpoint-dir", "checkpoints", cwd=tmp_path,
        )
    )  # fmt: skip
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == len(GOOD)
    needs(fraudstream(python, "query", "alert-rate", cwd=tmp_path), "lake")
    needs(fraudstream(python, "run", "-q", "-i", str(transactions), "--store", "s.db",
                      cwd=tmp_path), "store")  # fmt: skip
    ok(
        fraudstream(python, "features", "-i", str(transactions), "-o", "f.parquet", cwd=tmp_path)
    )  # fmt: skip  (the pipeline's own features: core)
    needs(fraudstream(python, "train", "--features", "f.parquet", "-o", "model",
                      cwd=tmp_path), "models")  # fmt: skip
    needs(fraudstream(python, "serve", cwd=tmp_path), "web")


def test_the_demo_extras_run_the_demo(tmp_path: Path) -> None:
    python = venv_with("web,lake")
    ok(fraudstream(python, "demo", "--count", "400", "--no-serve", cwd=tmp_path))
    listed = ok(fraudstream(python, "decisions", "list", cwd=tmp_path))
    assert "tx-000" in listed
    ok(fraudstream(python, "query", "alert-rate", cwd=tmp_path))


def test_store_alone(tmp_path: Path, transactions: Path) -> None:
    python = venv_with("store")
    ok(fraudstream(python, "run", "-q", "-i", str(transactions), "--store", "s.db", cwd=tmp_path))
    assert "t19" in ok(fraudstream(python, "decisions", "list", "--store", "s.db", cwd=tmp_path))


def test_lake_alone(tmp_path: Path, transactions: Path) -> None:
    python = venv_with("lake")
    ok(fraudstream(python, "run", "-q", "-i", str(transactions), "--lakehouse", "lake",
                   cwd=tmp_path))  # fmt: skip
    shown = ok(fraudstream(python, "query", "--lakehouse", "lake", "--format", "jsonl",
                           "SELECT count(*) AS n FROM decisions", cwd=tmp_path))  # fmt: skip
    assert json.loads(shown.splitlines()[0]) == {"n": len(GOOD)}


def test_models_alone_simulates_features_and_trains(tmp_path: Path) -> None:
    python = venv_with("models")
    ok(fraudstream(python, "simulate", "--scenario", "handbook", "--customers", "60",
                   "--terminals", "100", "--days", "12", "-o", "tx.parquet",
                   "--labels-out", "labels.parquet", cwd=tmp_path))  # fmt: skip
    ok(fraudstream(python, "features", "-i", "tx.parquet", "--labels", "labels.parquet",
                   "-o", "f.parquet", cwd=tmp_path))  # fmt: skip
    ok(fraudstream(python, "train", "--features", "f.parquet", "--labels", "labels.parquet",
                   "--kind", "logistic_regression",
                   "--train-start", "2018-04-02", "--train-days", "3", "--delay-days", "2",
                   "-o", "model", cwd=tmp_path))  # fmt: skip
    assert any((tmp_path / "model").iterdir())


@pytest.mark.parametrize(
    ("extra", "modules"),
    [
        ("web", "fraudstream.web.app, fraudstream.web.live, fraudstream.web.serve"),
        ("kafka", "fraudstream.io.kafka_run, fraudstream.io.kafka_sink"),
        ("aws", "fraudstream.io.aws.kinesis_source, fraudstream.io.aws.dynamodb_store, s3fs"),
    ],
)
def test_an_extra_alone_imports_its_modules(extra: str, modules: str, tmp_path: Path) -> None:
    python = venv_with(extra)
    done = subprocess.run(
        [str(python), "-c", f"import {modules}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def pinned(*extras: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lock_subset.py"), *extras],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return {line.split("==")[0] for line in done.stdout.splitlines() if "==" in line}


def test_the_demo_pins_leave_out_what_only_tests_flink_and_models_need() -> None:
    demo = pinned("web", "lake")
    assert {"numba", "pyarrow", "fastapi", "uvicorn", "pyiceberg", "sqlalchemy"} <= demo
    left_out = {"apache-flink", "apache-beam", "playwright", "mypy", "ruff", "xgboost-cpu"}
    left_out |= {"uv"}  # a dev tool; install.sh installs it on its own (--package uv)
    assert not demo & left_out, demo & left_out
    assert {"pandas", "scikit-learn"} <= pinned("models")  # train reads pandas frames
    assert "fsspec" in pinned()  # checkpoints, in the core


def test_one_package_alone_keeps_its_hashes() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lock_subset.py"), "--package", "uv"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[0].startswith("uv==") and lines[0].endswith("\\")
    assert len(lines) > 2 and all(line.strip().startswith("--hash=sha256:") for line in lines[1:])
