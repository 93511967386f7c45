"""The ``fraudstream`` command: help everywhere, one readable error line, demo and simulate.

Every error a user can make on the command line (a missing file, a broken rules or profiles
file, a negative option) ends with exit code 2 and ONE line on stderr that says what is wrong,
never a traceback. ``fraudstream demo`` writes every output its table lists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))
GOOD_RECORD = {"transaction_id": "t1", "card_id": "c1", "timestamp": 1_700_000_000_000, "amount": 5}


def env() -> dict[str, str]:
    out = dict(os.environ)
    out.update(FRAUDSTREAM_TOKEN_KEY="test", OMP_NUM_THREADS="1")
    for name in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR"):
        out.pop(name, None)  # as when piped to a log, not a terminal
    return out


def fraudstream(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FRAUDSTREAM, *args],
        capture_output=True,
        text=True,
        env=env(),
        cwd=cwd,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )


# --- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["run"], ["simulate"], ["demo"]], ids=str)
def test_help(command: list[str]) -> None:
    done = fraudstream(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "Usage" in done.stdout
    if not command:
        for sub in ("run", "simulate", "demo"):
            assert sub in done.stdout
    if command == ["run"]:
        for option in ("--input", "--rules", "--profiles", "--decisions", "--dead-letters"):
            assert option in done.stdout


# --- errors: one line, exit code 2 --------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def transactions(tmp_path: Path) -> Path:
    return write(tmp_path / "tx.jsonl", json.dumps(GOOD_RECORD) + "\n")


def error_case(tmp_path: Path, transactions: Path, case: str) -> tuple[list[str], list[str]]:
    """Arguments for a bad invocation, and words its one error line must contain."""
    rules = tmp_path / "rules.yaml"
    profiles = tmp_path / "profiles.yaml"
    run = ["run", "--input", str(transactions), "--quiet"]
    if case == "missing-input":
        return ["run", "--input", str(tmp_path / "nope.jsonl")], ["nope.jsonl"]
    if case == "missing-rules-file":
        return [*run, "--rules", str(tmp_path / "nope.yaml")], ["nope.yaml"]
    if case == "unknown-detector":
        write(rules, "rules:\n- id: velocity_burst\n  detector: warp_speed\n")
        return [*run, "--rules", str(rules)], ["warp_speed", "detector"]
    if case == "unknown-threshold":
        write(rules, "rules:\n- id: velocity\n  thresholds:\n    max_warp: 3\n")
        return [*run, "--rules", str(rules)], ["max_warp", "threshold"]
    if case == "score-1.5":
        write(rules, "rules:\n- id: geo_velocity\n  score: 1.5\n")
        return [*run, "--rules", str(rules)], ["score", "1.5"]
    if case == "invalid-yaml":
        write(rules, "rules:\n- id: velocity\n  thresholds: {min_transactions: [\n")
        return [*run, "--rules", str(rules)], ["rules.yaml"]
    if case == "profile-speed-not-a-number":
        write(profiles, "profiles:\n- user_id: user_1\n  max_speed_kmh: fast\n")
        return [*run, "--profiles", str(profiles)], ["max_speed_kmh", "user_1"]
    if case == "negative-out-of-orderness":
        return [*run, "--out-of-orderness-ms", "-5"], ["--out-of-orderness-ms"]
    if case == "simulate-count-negative":
        return ["simulate", "--count", "-1", "--fast"], ["--count"]
    if case == "demo-count-negative":
        return ["demo", "--directory", str(tmp_path / "demo"), "--count", "-1"], ["--count"]
    raise AssertionError(case)


CASES = [
    "missing-input",
    "missing-rules-file",
    "unknown-detector",
    "unknown-threshold",
    "score-1.5",
    "invalid-yaml",
    "profile-speed-not-a-number",
    "negative-out-of-orderness",
    "simulate-count-negative",
    "demo-count-negative",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_readable_line_and_exit_code_2(
    tmp_path: Path, transactions: Path, case: str
) -> None:
    args, words = error_case(tmp_path, transactions, case)
    done = fraudstream(*args, cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{done.stderr}"
    line = lines[0]
    assert "error" in line.lower()
    for word in words:
        assert word in line, (word, line)
    files = re.findall(r"[^\s:]+\.(?:jsonl|yaml|json|csv)", line)
    assert len(files) == len(set(files)), f"a file named twice: {line}"
    assert done.stdout == ""


# --- demo and simulate --------------------------------------------------------------------------

DEMO_FILES = {
    "transactions": "transactions.jsonl",
    "profiles": "profiles.yaml",
    "decisions": "decisions.jsonl",
    "alerts": "alerts.jsonl",
    "enriched": "enriched.jsonl",
    "dead letters": "dead-letters.jsonl",
    "late": "late.jsonl",
    "summary": "summary.json",
    "store": "decisions.db",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: Any) -> tuple[Path, subprocess.CompletedProcess[str]]:
    directory = tmp_path_factory.mktemp("demo") / "fraudstream-demo"
    done = fraudstream("demo", "--directory", str(directory), "--count", "3000")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    return directory, done


def table_rows(text: str, title: str) -> dict[str, str]:
    """Label -> value of the indented "label  value" lines printed under ``title``."""
    rows: dict[str, str] = {}
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    for line in lines[start + 1 :]:
        match = re.match(r"^  (\S.*?)\s{2,}(\S.*)$", line)
        if match is None:
            break
        rows[match.group(1).strip()] = match.group(2).strip()
    return rows


def test_demo_writes_every_output_file_of_its_table(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    directory, done = demo
    listed = table_rows(done.stderr, "outputs")
    assert set(listed) == set(DEMO_FILES), listed
    for name in DEMO_FILES.values():
        assert (directory / name).is_file(), name
    assert len((directory / "transactions.jsonl").read_text().splitlines()) == 3000
    assert len((directory / "decisions.jsonl").read_text().splitlines()) == 3000
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["records"] == 3000
    assert summary["records"] == summary["decided"] + summary["dead_letters"] + summary["late"]
    alerts = (directory / "alerts.jsonl").read_text().splitlines()
    assert len(alerts) == summary["decisions"]["review"] + summary["decisions"]["decline"] > 0


def test_demo_table_shows_each_output_path_in_full(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """The table is how a user finds the files: a path cut short with '…' finds nothing."""
    directory, done = demo
    listed = table_rows(done.stderr, "outputs")
    for label, name in DEMO_FILES.items():
        assert listed.get(label) == str(directory / name), (label, listed.get(label))


def test_simulate_prints_json_lines() -> None:
    done = fraudstream("simulate", "--scenario", "demo", "--count", "100", "--fast")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 100
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in records)
    for record in records:
        assert {"transaction_id", "card_id", "timestamp", "amount"} <= set(record)
    assert len({r["transaction_id"] for r in records}) == 100
