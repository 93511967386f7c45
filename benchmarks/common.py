"""Shared by the benchmarks: workloads on disk, timed steps in fresh processes, machine facts,
results files."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results"


def one_core() -> None:
    """Pins this process (and what it starts) to one CPU, with single-threaded math."""
    os.environ["OMP_NUM_THREADS"] = "1"
    if hasattr(os, "sched_setaffinity"):
        # The last CPU: the first one usually takes the machine's interrupts.
        last = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {last})


def workload(n: int, cards: int, suffix: str, seed: int = 42) -> Path:
    """The benchmark transactions as a file (made once per size, seed and format)."""
    from fraudstream.simulate.workload import benchmark_table, write_table

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"tx_{n}_{cards}_{seed}{suffix}"
    if not path.exists():
        started = time.perf_counter()
        table = benchmark_table(n, cards, seed)
        tmp = path.with_name("partial-" + path.name)
        write_table(table, tmp)
        tmp.rename(path)
        print(f"  generated {path.name} in {time.perf_counter() - started:.1f} s")
    return path


def production_workload(shape: Any, suffix: str, seed: int = 42) -> Path:
    """The production-shaped transactions as a file (made once per shape, seed and format):
    ``.parquet``, ``.jsonl``, or ``.walkthrough.csv`` (``account,timestamp_ms,amount`` lines
    without a header, the account being the card's number: the Flink Java job's input)."""
    from fraudstream.simulate.production import production_table, walkthrough_csv
    from fraudstream.simulate.workload import write_table

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"{shape.name(seed)}{suffix}"
    if path.exists():
        return path
    started = time.perf_counter()
    parquet = DATA / f"{shape.name(seed)}.parquet"
    if suffix != ".parquet" and parquet.exists():
        import pyarrow.parquet as pq

        table = pq.read_table(parquet)
    else:
        table = production_table(shape, seed)
    tmp = path.with_name("partial-" + path.name)
    if suffix == ".walkthrough.csv":
        walkthrough_csv(table, tmp)
    else:
        write_table(table, tmp)
    tmp.rename(path)
    print(f"  generated {path.name} in {time.perf_counter() - started:.1f} s")
    return path


def md5_head(path: Path, size: int = 1 << 20) -> str:
    """md5 of the first MiB (identifies the workload bytes cheaply)."""
    with path.open("rb") as handle:
        return hashlib.md5(handle.read(size)).hexdigest()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit,
    }


def record(name: str, result: dict[str, Any]) -> None:
    """Appends one JSON line to benchmarks/results/NAME.jsonl."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **machine(), **result}
    with (RESULTS / f"{name}.jsonl").open("a") as handle:
        handle.write(json.dumps(line) + "\n")


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_run(runner: Any, source: Any) -> tuple[Any, float]:
    """``runner.run(source)`` timed as ``fraudstream run`` runs it: garbage settled first.

    Returns the run's summary and its wall-clock seconds (kernels are warmed up before).
    """
    from fraudstream.engine.tuning import settle_garbage_collector

    settle_garbage_collector()
    started = time.perf_counter()
    summary = runner.run(source)
    return summary, time.perf_counter() - started


def report_step(figures: dict[str, Any]) -> None:
    """Ends a benchmark step: its figures as the last line of stdout, for ``best_of``."""
    print(json.dumps(figures))


def best_of(script: str, args: list[str], repeat: int) -> dict[str, float]:
    """Runs ``python script *args`` ``repeat`` times in fresh processes; the fastest run.

    Each step ends with ``report_step`` (figures with ``tx_s``). The machines are shared, so
    the best of a few runs is the one least disturbed by others; the median ``tx_s`` and the
    number of runs are kept next to it.
    """
    runs = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, script, *args], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"benchmark step failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    runs.sort(key=lambda r: -r["tx_s"])
    best: dict[str, float] = dict(runs[0])
    best["median_tx_s"] = runs[len(runs) // 2]["tx_s"]
    best["runs"] = len(runs)
    return best
