"""Start-up: how soon a new `fraudstream run` decides its first record, and a new
`fraudstream serve` answers its first decision request.

    python benchmarks/startup.py [--repeat 5]

``run``: ``fraudstream run --input - --decisions -`` is started and one transaction is
written to its standard input at once (the input stays open, as a live feed's would); the
figure is (its decision line read - process started). ``serve``: ``fraudstream serve`` on a
free 127.0.0.1 port, ``POST /v1/transactions`` tried every 5 ms; the figure is (first 200 -
process started). Both on this process's monotonic clock, with numba's on-disk cache warm
(one unmeasured start of each first). Best and median of ``--repeat`` starts. Bars (issue 18):
run <= 1 s, serve <= 2 s. ``--importtime`` also prints the slowest imports of one start of
each (``python -X importtime``), the first place to look when a figure moves. ``--python``
starts another environment's interpreter: with every extra installed, pyarrow imports pandas
on its first array made from Python values and numba imports scipy (for BLAS) as it loads
its first compiled function; an install with only the web extra has neither.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import record  # noqa: E402

BARS_S = {"run": 1.0, "serve": 2.0}
RECORD = {"transaction_id": "start-1", "card_id": "c1", "timestamp": 1_767_225_600_000}
RECORD["amount"] = 12.5
PYTHON = [sys.executable]  # --python: another environment's interpreter


def env(token: str = "") -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "FRAUDSTREAM_TOKEN_KEY": "benchmark",
        "FRAUDSTREAM_TOKEN": token,
    }


def python_args(importtime: bool) -> list[str]:
    """The ``fraudstream`` command on the chosen interpreter (no entry script needed)."""
    command = "from fraudstream.cli import main; main()"
    return [*PYTHON, *(["-X", "importtime"] if importtime else []), "-c", command]


def first_decision(importtime: bool = False) -> tuple[float, str]:
    """Seconds from starting ``fraudstream run`` to reading its first decision (and its
    standard error)."""
    args = [*python_args(importtime), "run", "--input", "-", "--decisions", "-", "--quiet"]
    with tempfile.TemporaryFile() as errors:  # a file: a full pipe would stall the child
        started = time.monotonic()
        process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env()
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(RECORD).encode() + b"\n")
        process.stdin.flush()
        line = process.stdout.readline()
        elapsed = time.monotonic() - started
        process.communicate(timeout=60)  # closes the input: the run ends
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    if json.loads(line).get("transaction_id") != RECORD["transaction_id"]:
        raise SystemExit(f"unexpected first line: {line!r}\n{stderr[-2000:]}")
    return elapsed, stderr


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def first_answer(importtime: bool = False) -> tuple[float, str]:
    """Seconds from starting ``fraudstream serve`` to its first 200 for a decision request
    (and its standard error)."""
    token = secrets.token_urlsafe(16)
    port = free_port()
    args = [*python_args(importtime), "serve", "--port", str(port)]
    body = json.dumps(RECORD).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with tempfile.TemporaryFile() as errors:
        started = time.monotonic()
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errors, env=env(token))
        try:
            status = 0
            while status != 200:
                if process.poll() is not None:
                    raise SystemExit(f"serve exited with code {process.returncode}")
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    connection.request("POST", "/v1/transactions", body, headers)
                    status = connection.getresponse().status
                    connection.close()
                except OSError:
                    time.sleep(0.005)
                    continue
                if status != 200:
                    raise SystemExit(f"serve answered {status}")
            elapsed = time.monotonic() - started
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        errors.seek(0)
        return elapsed, errors.read().decode("utf-8", "replace")


def slowest_imports(stderr: str, count: int = 15) -> list[tuple[int, str]]:
    """The imports that took longest (cumulative us), top-level ones (nothing above them)."""
    found = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith("  "):  # depth 0: its own cost and everything below it
            found.append((int(cumulative), name.strip()))
    return sorted(found, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter of the environment to start (e.g. one with only the web extra; "
        "fraudstream is imported from its PYTHONPATH or install)",
    )
    args = parser.parse_args()
    PYTHON[:] = [args.python]

    figures: dict[str, Any] = {}
    for name, measure in (("run", first_decision), ("serve", first_answer)):
        measure()  # warms numba's cache (and the OS's file cache)
        times = sorted(measure()[0] for _ in range(args.repeat))
        best, median = times[0], statistics.median(times)
        figures[name] = {"best_s": round(best, 3), "median_s": round(median, 3)}
        verdict = "PASS" if median <= BARS_S[name] else "FAIL"
        print(
            f"{name:5}: first {'decision' if name == 'run' else 'answer  '} "
            f"best {best:.3f} s, median {median:.3f} s of {args.repeat} "
            f"(bar {BARS_S[name]:g} s: {verdict})"
        )
        if args.importtime:
            _, stderr = measure(importtime=True)
            for cumulative, module in slowest_imports(stderr):
                print(f"    {cumulative / 1000:8.1f} ms  {module}")
    record("startup", {"repeat": args.repeat, "python": args.python, **figures})


if __name__ == "__main__":
    main()
