"""What the model in the loop costs on the Flink runtime, next to the embedded runtime.

    .venv-flink/bin/python benchmarks/flink_model_throughput.py [--records 200000] [--cards 20000]

On one seeded JSON-lines workload (benchmarks/data/), every standard detector, decisions
written: ``fraudstream flink run --target local`` (thread mode): the fused job at
parallelism 1, the keyed job (the default: terminal features by merchant key group,
customer features with the user state) at 1 and 2, and the sharded job at 2, each without
and with ``--model`` (the
in-loop XGBoost of benchmarks/model_throughput.py: 30 trees of depth 5 trained on the
handbook simulation's features; made there once), and ``fraudstream run`` without and with
the same model. Flink start-up is measured with a 1,000-record run and subtracted (the
embedded start-up likewise). Prints tx/s and the with-model / without-model ratio of each
runtime; appends a line to benchmarks/results/flink_model_throughput.jsonl.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import record, workload  # noqa: E402
from model_throughput import handbook_files, model_artifact  # noqa: E402

FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))


def timed(command: list[str]) -> float:
    """Wall seconds of a command in a fresh process (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def flink(path: Path, out: Path, parallelism: int, model: list[str], graph: str) -> list[str]:
    """`fraudstream flink run --target local --graph GRAPH` writing decisions."""
    return [
        FRAUDSTREAM, "flink", "run", "--input", str(path), "--decisions", str(out / "decisions"),
        "--checkpoint-dir", str(out / "chk"), "--parallelism", str(parallelism),
        "--graph", graph, "--target", "local", "--quiet", *model,
    ]  # fmt: skip


def embedded(path: Path, out: Path, model: list[str]) -> list[str]:
    """`fraudstream run` writing decisions."""
    return [
        FRAUDSTREAM, "run", "--input", str(path), "--decisions", str(out / "decisions.jsonl"),
        "--quiet", *model,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--cards", type=int, default=20_000)
    args = parser.parse_args()
    data = workload(args.records, args.cards, ".jsonl")
    small = workload(1_000, 1_000, ".jsonl")
    model = model_artifact("xgboost", *handbook_files())
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)

        def fresh(name: str) -> Path:
            target = work / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            return target

        plans: list[tuple[str, Any]] = [
            (f"flink {graph} p{n}", lambda p, o, m, g=graph, n=n: flink(p, o, n, m, g))
            for graph, n in (("fused", 1), ("keyed", 1), ("keyed", 2), ("sharded", 2))
        ]
        plans.append(("embedded", embedded))
        for name, command in plans:
            for with_model in (False, True):
                extra = ["--model", str(model)] if with_model else []
                startup = timed(command(small, fresh("startup"), extra))
                seconds = timed(command(data, fresh("run"), extra))
                key = f"{name}, {'with' if with_model else 'without'} model"
                work_s = max(seconds - startup, 1e-9)
                runs[key] = {
                    "seconds": seconds,
                    "startup_s": startup,
                    "tx_s": args.records / work_s,
                }
                print(
                    f"  {key}: {runs[key]['tx_s']:,.0f} tx/s "
                    f"({seconds:.1f} s, start-up {startup:.1f} s)"
                )
    for name, _ in plans:
        without = runs[f"{name}, without model"]["tx_s"]
        with_model = runs[f"{name}, with model"]["tx_s"]
        print(
            f"{name}: {with_model:,.0f} tx/s with the model = {with_model / without:.2f} x without"
        )
    record("flink_model_throughput", {"records": args.records, "cards": args.cards, "runs": runs})


if __name__ == "__main__":
    main()
