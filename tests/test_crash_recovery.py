"""Crash recovery end to end: SIGKILL `fraudstream run` at random moments, resume, compare.

A generated input (the benchmark simulator, plus repeated ids and broken lines) is decided
twice: once without interruption, and once by `fraudstream run --checkpoint-dir ...` killed
with SIGKILL at >= 10 seeded random moments and restarted with ``--resume`` each time until
it finishes. The decision store (SQLite), the alerts and decisions files (JSON lines and
Parquet parts), the dead letters and the Iceberg table must then hold exactly the same
transaction ids and decisions as the uninterrupted run's: none missing, none twice.

The suite runs a small input; ``python tests/test_crash_recovery.py --records 1000000``
(or ``benchmarks/crash_recovery.py``) runs the full-size version and prints its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

FRAUDSTREAM = [sys.executable, "-c", "from fraudstream.cli import main; main()"]


def make_input(path: Path, records: int, seed: int) -> None:
    """Simulated transactions as JSON lines, with some repeated ids and some broken lines."""
    from fraudstream.simulate.workload import benchmark_table, write_table

    table = benchmark_table(records, cards=max(50, records // 20), seed=seed, days=10)
    if path.suffix == ".parquet":
        write_table(table, path)
        return
    plain = path.with_suffix(".plain.jsonl")
    write_table(table, plain)
    rng = random.Random(seed)
    lines = plain.read_bytes().splitlines()
    plain.unlink()
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if rng.random() < 0.002:
            out.append(lines[max(0, i - rng.randint(0, 50))])  # a duplicate id
        if rng.random() < 0.001:
            out.append(b'{"transaction_id": "broken-%d", "amount": "x"}' % i)
    path.write_bytes(b"\n".join(out) + b"\n")


def _outputs(directory: Path, input_path: Path) -> list[str]:
    return [
        "--input", str(input_path),
        "--store", str(directory / "store.db"),
        "--alerts", str(directory / "alerts.jsonl"),
        "--decisions", str(directory / "decisions.parquet"),
        "--dead-letters", str(directory / "dead.jsonl"),
        "--lakehouse", str(directory / "lake"),
        "--out-of-orderness-ms", "5000",
        "--quiet",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("FRAUDSTREAM_TOKEN_KEY", "test")
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    return env


def reference_run(directory: Path, input_path: Path, batch_rows: int) -> float:
    """The uninterrupted run (no checkpoints); returns its wall time."""
    started = time.perf_counter()
    subprocess.run(
        [*FRAUDSTREAM, "run", *_outputs(directory, input_path), "--batch-rows", str(batch_rows)],
        check=True,
        env=_env(),
        capture_output=True,
    )
    return time.perf_counter() - started


def _done_fraction(checkpoints: Path, records: int) -> float:
    """How much of the input the newest complete checkpoint covers."""
    manifests = sorted(checkpoints.glob("chk-*/manifest.json"))
    if not manifests:
        return 0.0
    summary = json.loads(manifests[-1].read_text())["summary"]
    return min(1.0, summary["records"] / max(records, 1))


def crashing_run(
    directory: Path,
    input_path: Path,
    *,
    records: int,
    kills: int,
    seed: int,
    batch_rows: int,
    every_records: int,
    run_s: float,
    startup_s: float,
) -> dict[str, Any]:
    """Runs, SIGKILLs at ``kills`` random moments, resumes each time, then runs to the end.

    Each kill comes at a random moment between start-up and the expected end of the work
    left (from the newest checkpoint); a run that ends before its kill starts the whole
    experiment again in a clean directory, so there are always ``kills`` kills.
    """
    rng = random.Random(seed)
    checkpoints = directory / "checkpoints"
    command = [
        *FRAUDSTREAM, "run", *_outputs(directory, input_path),
        "--batch-rows", str(batch_rows),
        "--checkpoint-dir", str(checkpoints),
        "--checkpoint-every-records", str(every_records),
        "--checkpoint-interval-s", "3600",
        "--summary-json", str(directory / "summary.json"),
    ]  # fmt: skip
    restarts = 0
    while True:
        delays: list[float] = []
        progress: list[float] = []
        for attempt in range(kills + 1):
            done = _done_fraction(checkpoints, records)
            progress.append(round(done, 3))
            started = time.perf_counter()
            log = directory.parent / f"{directory.name}-stderr.txt"
            with log.open("wb") as stderr:
                process = subprocess.Popen(
                    command + (["--resume"] if attempt else []),
                    env=_env(),
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
                killed = False
                if attempt < kills:
                    # The estimate of the work left is shrunk a little: a shared machine's
                    # timings vary, and a run that ends before its kill costs a restart.
                    work_s = max(0.0, run_s - startup_s) * (1.0 - done)
                    delay = rng.uniform(0.1, 0.85 * (startup_s + work_s))
                    try:
                        process.wait(timeout=delay)
                    except subprocess.TimeoutExpired:
                        process.send_signal(signal.SIGKILL)
                        killed = True
                process.wait()
            if killed:
                delays.append(round(delay, 3))
                continue
            if process.returncode != 0:
                raise AssertionError(f"run failed: {log.read_text()[-2000:]}")
            if attempt < kills:
                break  # finished before its kill
            summary = json.loads((directory / "summary.json").read_text())
            return {
                "kills": len(delays),
                "restarts_from_scratch": restarts,
                "kill_delays_s": delays,
                "done_before_each_start": progress,
                "final_run_s": round(time.perf_counter() - started, 3),
                "final_run_restore_s": summary.get("restore_seconds"),
                "final_run_resumed_from": summary.get("resumed_from"),
            }
        restarts += 1
        if restarts > 10:
            raise AssertionError("runs kept finishing before their kill")
        for path in list(directory.iterdir()):
            subprocess.run(["rm", "-rf", str(path)], check=True)


def _store(directory: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(directory / "store.db") as db:
        rows = db.execute("SELECT transaction_id, decision FROM fraud_detection_results")
        return sorted(rows.fetchall())


def _jsonl(path: Path, *fields: str) -> list[tuple[Any, ...]]:
    rows = [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return sorted(tuple(str(row.get(f)) for f in fields) for row in rows)


def _parquet(path: Path) -> list[tuple[str, str]]:
    table = pq.read_table(path, columns=["transaction_id", "decision"])
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def _iceberg(directory: Path) -> list[tuple[str, str]]:
    from fraudstream.io.lakehouse import open_table

    table = open_table(str(directory / "lake")).scan(selected_fields=("transaction_id", "decision"))
    data = table.to_arrow()
    return sorted(zip(*(data.column(c).to_pylist() for c in data.column_names), strict=True))


def outputs_of(directory: Path) -> dict[str, list[tuple[Any, ...]]]:
    """(transaction id, decision) per output, sorted; dead letters by (position, reason)."""
    return {
        "store": _store(directory),
        "alerts": _jsonl(directory / "alerts.jsonl", "transaction_id", "decision"),
        "decisions_parquet": _parquet(directory / "decisions.parquet"),
        "dead_letters": _jsonl(directory / "dead.jsonl", "position", "reason"),
        "iceberg": _iceberg(directory),
    }


def compare(reference: Path, crashed: Path) -> dict[str, Any]:
    """Asserts equal outputs, none missing and none twice; returns counts per output."""
    expected = outputs_of(reference)
    got = outputs_of(crashed)
    counts = {}
    for name, rows in expected.items():
        twice = [row for row, n in Counter(got[name]).items() if n > 1]
        assert not twice, f"{name}: {len(twice)} rows twice, e.g. {twice[:3]}"
        missing = sorted(set(rows) - set(got[name]))
        extra = sorted(set(got[name]) - set(rows))
        assert not missing and not extra, f"{name}: missing {missing[:3]}, extra {extra[:3]}"
        assert got[name] == rows, name
        counts[name] = len(rows)
    assert counts["store"] == counts["iceberg"] == counts["decisions_parquet"] > 0
    assert counts["alerts"] > 0 and counts["dead_letters"] > 0
    return counts


def crash_test(
    workdir: Path,
    records: int,
    kills: int,
    seed: int,
    batch_rows: int,
    every_records: int,
    input_name: str = "input.jsonl",
) -> dict[str, Any]:
    """The whole experiment; returns figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    input_path = workdir / input_name
    make_input(input_path, records, seed)
    reference, crashed = workdir / "reference", workdir / "crashed"
    reference.mkdir()
    crashed.mkdir()
    reference_s = reference_run(reference, input_path, batch_rows)
    empty = workdir / "empty.jsonl"
    empty.write_bytes(b"")
    (workdir / "startup").mkdir()
    startup_s = reference_run(workdir / "startup", empty, batch_rows)
    figures = crashing_run(
        crashed, input_path, records=records, kills=kills, seed=seed, batch_rows=batch_rows,
        every_records=every_records, run_s=reference_s, startup_s=startup_s,
    )  # fmt: skip
    figures["startup_s"] = round(startup_s, 3)
    figures["counts"] = compare(reference, crashed)
    figures["reference_run_s"] = round(reference_s, 3)
    figures["records"] = records
    return figures


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    figures = crash_test(
        tmp_path, records=30_000, kills=10, seed=11, batch_rows=1_000, every_records=3_000
    )
    assert figures["kills"] >= 10


def full_size(description: str) -> dict[str, Any]:
    """The full-size run with the command line's options (also benchmarks/crash_recovery.py).

    Empties the work directory first; the figures gain ``total_s``, the whole experiment's time.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--batch-rows", type=int, default=20_000)
    parser.add_argument("--every-records", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fraudstream-crash"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    started = time.perf_counter()
    figures = crash_test(
        args.workdir, args.records, args.kills, args.seed, args.batch_rows, args.every_records,
    )  # fmt: skip
    figures["total_s"] = round(time.perf_counter() - started, 1)
    return figures


def main() -> None:
    """Full-size run from the command line; prints the figures as JSON."""
    print(json.dumps(full_size(__doc__.splitlines()[0]), indent=2))


if __name__ == "__main__":
    main()
