"""The mistakes a new user makes with ``fraudstream`` (issue 19), each answered with ONE line
on stderr saying what and where and what to do, no traceback, and a non-zero exit; and a
``--help`` that loads none of the heavy libraries and reads at 80 columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FRAUDSTREAM = [sys.executable, "-c", "from fraudstream.cli import main; main()"]
GOOD = {"transaction_id": "t1", "card_id": "c1", "timestamp": 1_700_000_000_000, "amount": 5}
HEAVY = ("pyiceberg", "pandas", "sqlalchemy", "pyflink", "boto3", "fastapi", "duckdb", "numba")
HEAVY += ("fraudstream.engine.pipeline", "fraudstream.detectors", "pyarrow", "sklearn")


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out.update(FRAUDSTREAM_TOKEN_KEY="test", OMP_NUM_THREADS="1", **extra)
    for name in ("LINES", "FORCE_COLOR", "NO_COLOR"):
        out.pop(name, None)
    out.setdefault("COLUMNS", "80")
    return out


def fraudstream(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FRAUDSTREAM, *args], capture_output=True, text=True, env=env(), cwd=cwd, timeout=300
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert done.returncode != 0, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    here = tmp_path_factory.mktemp("mistakes")
    (here / "bad.parquet").write_bytes(b"this is not parquet\n")
    row = "t1,c1,2024-01-01T00:00:00Z,5\n"
    (here / "tx.csv").write_text("transaction_id,card_id,timestamp,amount\n" + row)
    (here / "no-amount.csv").write_text(
        "transaction_id,card_id,timestamp\nt1,c1,2024-01-01T00:00:00Z\n"
    )
    (here / "lines.csv").write_text(json.dumps(GOOD) + "\n")
    (here / "tx.jsonl").write_text(json.dumps(GOOD) + "\n")
    (here / "junk.jsonl").write_text('{"no": "fields"}\n{"still": "nothing"}\n')
    (here / "broken.yaml").write_text("rules:\n  - id: velocity\n   score: [\n")
    (here / "misspelt.yaml").write_text("rules:\n  - id: velocty\n    score: 0.5\n")
    (here / "broken.json").write_text('{"rules": [}')
    (here / "empty-dir").mkdir()
    return here


# (arguments, what the line must say), {} is the files' directory
MISTAKES = {
    "parquet that is not": (["run", "-i", "bad.parquet"], "not a Parquet file"),
    "csv read as parquet": (["run", "-i", "tx.csv", "--format", "parquet"], "use --format csv"),
    "csv without amount": (["run", "-i", "no-amount.csv"], "no amount column"),
    "json lines read as csv": (["run", "-i", "lines.csv"], "use --format jsonl"),
    "json lines read as parquet": (["run", "-i", "tx.jsonl", "--format", "parquet"], "jsonl"),
    "a directory": (["run", "-i", "empty-dir"], "a directory"),
    "no such file": (["run", "-i", "nowhere.jsonl"], "no such file"),
    "nothing decided": (["run", "-q", "-i", "junk.jsonl"], "no record could be decided"),
    "broken yaml": (["run", "-i", "tx.jsonl", "--rules", "broken.yaml"], "broken.yaml:3:"),
    "broken json": (["run", "-i", "tx.jsonl", "--rules", "broken.json"], "broken.json:1:"),
    "misspelt rule id": (["run", "-i", "tx.jsonl", "--rules", "misspelt.yaml"], "'velocity'?"),
    "misspelt option": (["run", "-i", "tx.jsonl", "--out-of-ordernes-ms", "5"], "did you mean"),
    "bad choice": (["run", "-i", "tx.jsonl", "--time", "eventual"], "'eventual' is not one of"),
    "bad threshold": (["run", "-i", "tx.jsonl", "--allowed-lateness-ms", "-1"], ">= 0"),
    "misspelt command": (["rnu"], "run"),
    "missing option": (["run"], "--input"),
    "no store": (["decisions", "list"], "fraudstream demo"),
    "negative batch wait": (["serve", "--batch-wait-ms", "-1"], "within 0..1000 ms"),
    "empty batches": (["serve", "--batch-max-records", "0"], "at least 1 record"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_is_one_line_and_a_failure(mistake: str, files: Path) -> None:
    args, said = MISTAKES[mistake]
    line = one_error_line(fraudstream(*args, cwd=files))
    assert said in line, line
    assert "Value error" not in line and "ArrowInvalid" not in line


def test_decisions_list_right_after_the_demo_reads_its_store(tmp_path: Path) -> None:
    done = fraudstream("demo", "--count", "300", "--no-serve", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fraudstream-demo" / "decisions.db").is_file()
    listed = fraudstream("decisions", "list", "--limit", "5", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "tx-000" in listed.stdout
    assert "Infinity" not in (tmp_path / "fraudstream-demo" / "decisions.jsonl").read_text()


def test_help_imports_no_heavy_library() -> None:
    probe = (
        "import sys\nfrom fraudstream.cli import main\nsys.argv = ['fraudstream', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env(), timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    assert "Decide" in done.stdout and "Infrastructure" in done.stdout


def test_version(tmp_path: Path) -> None:
    from fraudstream import __version__

    done = fraudstream("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"fraudstream {__version__}"


COMMANDS = ["run", "demo", "simulate", "backtest", "query", "produce", "features", "train"]
COMMANDS += ["evaluate", "serve-model", "serve", "decisions list", "decisions show"]
COMMANDS += ["rules history", "rules rollback", "flink run", "flink stop", "flink cluster start"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example_and_whole_option_names(
    command: str, tmp_path: Path
) -> None:
    done = fraudstream(*command.split(), "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    page = done.stdout
    assert "Example" in page, page
    assert f"fraudstream {command}" in " ".join(page.split("Example", 1)[1].split()), page
    assert "<bool>" not in page and "<list[" not in page and "<str>" not in page, page
    assert "…" not in "".join(line.split("│")[1][:30] for line in page.splitlines() if "│ " in line)
