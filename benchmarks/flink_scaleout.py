"""Does the Flink job scale out? Throughput and CPU per million transactions on a real cluster.

    .venv-flink/bin/python benchmarks/flink_scaleout.py [--records 2000000] [--cards 100000]
        [--parallelisms 1,2,4] [--graph keyed]

(also ``.venv-flink/bin/python benchmarks/flink_throughput.py --cluster``)

One run, side by side, on the same JSON-lines workload (seeded, under benchmarks/data/):

- the embedded runtime (``fraudstream run``, every detector, alerts written): wall seconds
  minus a 1,000-record run's, and its CPU seconds (user + system of the process and its
  children, from ``getrusage``);
- ``fraudstream flink run --target remote`` on a standalone cluster started here from the
  apache-flink distribution (one JobManager, two TaskManagers with one slot each, separate
  JVMs: :mod:`fraudstream.flink.cluster`; more TaskManagers join, and are warmed up, for a
  parallelism above 2), at each parallelism of ``--parallelisms``: the
  job's own duration from Flink's REST API minus a 1,000-record job's (deployment and
  operator start-up), the CPU seconds of the JobManager and TaskManager processes and their
  children during the job (``/proc/PID/stat``), and every detector subtask's share of the
  records it read (Flink's ``read-records`` metric).

Printed: tx/s, CPU-seconds per million transactions, each parallelism's speed-up over
parallelism 1 and CPU against the embedded runtime's. The bars of the scale-out issue: p2 at
least 1.5 x p1 on the two-TaskManager cluster, CPU-seconds per million at most 2 x the
embedded runtime's (or, when two shared cores leave p2 short, CPU per million flat from p1
to p2 and an even share per subtask). Appends a line to benchmarks/results/flink_scaleout.jsonl.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import record, workload  # noqa: E402

FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))
TICKS = os.sysconf("SC_CLK_TCK")
DETECTORS = (
    "decode",
    "card detectors",
    "user detectors, decide",
    "user detectors",
    "decode, dedupe, event clock, detectors, decide",
)


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of processes and their reaped children (``/proc/PID/stat``)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return total / TICKS


def embedded(path: Path, small: Path, out: Path) -> dict[str, Any]:
    def run(source: Path) -> tuple[float, float]:
        cpu, started = children_cpu_s(), time.perf_counter()
        subprocess.run(
            [FRAUDSTREAM, "run", "--input", str(source), "--alerts", str(out), "--quiet"],
            check=True,
        )
        return time.perf_counter() - started, children_cpu_s() - cpu

    start_wall, start_cpu = run(small)
    wall, cpu = run(path)
    return {"work_s": wall - start_wall, "cpu_s": cpu - start_cpu, "wall_s": wall}


def flink_job(
    cluster: Any, source: Path, out: Path, parallelism: int, graph: str
) -> dict[str, Any]:
    """One job on the cluster: its duration, the cluster's CPU, the detector subtasks' reads."""
    from fraudstream.flink.rest import job_state, rest_get

    pids = cluster.pids()
    cpu = process_cpu_s(pids)
    command = [
        FRAUDSTREAM, "flink", "run", "--target", "remote", "--jobmanager", cluster.address,
        "--detach", "--input", str(source), "--alerts", str(out / "alerts"),
        "--checkpoint-dir", str(out / "checkpoints"), "--parallelism", str(parallelism),
        "--graph", graph, "--quiet",
    ]  # fmt: skip
    job = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()[-1]
    while job_state(cluster.address, job) not in {"FINISHED", "FAILED", "CANCELED"}:
        time.sleep(0.2)
    detail = rest_get(cluster.address, f"/jobs/{job}")
    if detail["state"] != "FINISHED":
        raise RuntimeError(f"job {job} {detail['state']}")
    shares = {}
    for vertex in detail["vertices"]:
        if vertex["name"].split(",")[0] in DETECTORS or vertex["name"] in DETECTORS:
            answer = rest_get(cluster.address, f"/jobs/{job}/vertices/{vertex['id']}")
            shares[vertex["name"]] = [s["metrics"]["read-records"] for s in answer["subtasks"]]
    return {
        "duration_s": detail["duration"] / 1000,
        "cluster_cpu_s": process_cpu_s(pids) - cpu,
        "subtask_reads": shares,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--cards", type=int, default=100_000)
    parser.add_argument("--parallelisms", default="1,2,4")
    parser.add_argument("--graph", choices=("keyed", "fused", "sharded"), default="keyed")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("FRAUDSTREAM_TOKEN_KEY", "benchmark")

    from fraudstream.flink.cluster import StandaloneCluster

    path = workload(args.records, args.cards, ".jsonl")
    small = workload(1_000, min(args.cards, 1_000), ".jsonl")
    parallelisms = [int(p) for p in args.parallelisms.split(",")]
    with tempfile.TemporaryDirectory(prefix="fraudstream-scaleout-") as tmp:
        work = Path(tmp)
        base = embedded(path, small, work / "embedded-alerts.jsonl")
        base["tx_s"] = args.records / base["work_s"]
        base["cpu_s_per_m"] = base["cpu_s"] / (args.records / 1e6)
        print(
            f"embedded: {base['tx_s']:,.0f} tx/s, {base['cpu_s_per_m']:.2f} CPU-s per million",
            flush=True,
        )
        cluster = StandaloneCluster(work / "cluster", taskmanagers=2, slots=1)
        cluster.start()
        runs: dict[int, dict[str, Any]] = {}
        try:
            # a fresh cluster's first job loads classes, the embedded interpreters and the
            # kernels: far slower than the same job after it
            taskmanagers = 2
            flink_job(cluster, small, work / "warm-up", min(max(parallelisms), 2), args.graph)
            for parallelism in parallelisms:
                if parallelism > taskmanagers:  # one slot each: more TaskManagers, warmed up
                    cluster.add_taskmanagers(parallelism - taskmanagers)
                    taskmanagers = parallelism
                    flink_job(cluster, small, work / f"warm-up-{parallelism}", parallelism,
                              args.graph)  # fmt: skip
                start = flink_job(cluster, small, work / f"small-{parallelism}", parallelism,
                                  args.graph)  # fmt: skip
                full = flink_job(cluster, path, work / f"full-{parallelism}", parallelism,
                                 args.graph)  # fmt: skip
                work_s = full["duration_s"] - start["duration_s"]
                cpu_s = full["cluster_cpu_s"] - start["cluster_cpu_s"]
                run = {"start": start, "full": full, "work_s": work_s, "cpu_s": cpu_s,
                       "tx_s": args.records / work_s,
                       "cpu_s_per_m": cpu_s / (args.records / 1e6)}  # fmt: skip
                runs[parallelism] = run
                print(
                    f"flink p{parallelism} ({args.graph}, {taskmanagers} TaskManagers): "
                    f"{run['tx_s']:,.0f} tx/s, {run['cpu_s_per_m']:.2f} CPU-s per million "
                    f"({run['cpu_s_per_m'] / base['cpu_s_per_m']:.1f} x embedded), "
                    f"subtask reads {full['subtask_reads']}",
                    flush=True,
                )
        finally:
            cluster.stop()
    first = runs[parallelisms[0]]
    for parallelism, run in runs.items():
        run["speedup"] = run["tx_s"] / first["tx_s"]
        run["cpu_vs_embedded"] = run["cpu_s_per_m"] / base["cpu_s_per_m"]
        print(f"p{parallelism}: {run['speedup']:.2f} x p{parallelisms[0]}, "
              f"{run['cpu_vs_embedded']:.1f} x the embedded CPU per million")  # fmt: skip
    record(
        "flink_scaleout",
        {
            "records": args.records, "cards": args.cards, "graph": args.graph,
            "embedded": base, "flink": {str(p): r for p, r in runs.items()},
        },
    )  # fmt: skip


if __name__ == "__main__":
    main()
