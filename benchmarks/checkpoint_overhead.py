"""What checkpointing costs: throughput from Parquet with and without checkpoints.

    python benchmarks/checkpoint_overhead.py [--records 5000000] [--cards 100000] [--repeat 3]

The throughput benchmark's run (all standard detectors, decisions written as Parquet, one
core, fresh processes) without checkpoints, with a checkpoint every 10 s (the bar: at most
15 % slower) and, as a stress case, every 1 s. Each checkpointed run also takes the final
checkpoint at the end of the input (state, Parquet part, manifest), which is counted. Prints
tx/s, the overhead, the number of checkpoints and their mean cost and size; appends a JSON
line to benchmarks/results/checkpoint_overhead.jsonl.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    best_of,
    md5_head,
    one_core,
    record,
    report_step,
    timed_run,
    workload,
)

BAR_OVERHEAD = 0.15


def run_once(path: str, interval: float) -> None:
    """In a fresh process: one run (interval 0: no checkpoints); prints a JSON line."""
    one_core()
    from fraudstream.engine.checkpoint import CheckpointStore
    from fraudstream.engine.pipeline import Pipeline, warm_up
    from fraudstream.io.files import FileSource
    from fraudstream.recovery import Recovery
    from fraudstream.run import Outputs, Runner
    from fraudstream.schema import CardTokenizer

    work = Path(tempfile.mkdtemp(prefix="fraudstream-chk-"))
    try:
        warm_up()
        recovery = None
        if interval > 0:
            recovery = Recovery(CheckpointStore(str(work / "checkpoints")), interval_s=interval)
        runner = Runner(
            Pipeline(),
            Outputs(decisions=str(work / "decisions.parquet")),
            CardTokenizer(b"benchmark"),
            recovery=recovery,
        )
        summary, seconds = timed_run(runner, FileSource(Path(path), "parquet"))
        size = sum(f.stat().st_size for f in (work / "checkpoints").rglob("*") if f.is_file())
        report_step(
            {
                "records": summary.records,
                "seconds": seconds,
                "tx_s": summary.records / seconds,
                "checkpoints": recovery.taken if recovery else 0,
                "checkpoint_s": recovery.seconds if recovery else 0.0,
                "checkpoint_mb": size / 2**20 if recovery else 0.0,
            }
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fastest(path: Path, interval: float, repeat: int) -> dict[str, float]:
    """The fastest of ``repeat`` fresh-process runs at one interval (the machine is shared)."""
    return best_of(__file__, ["--step", str(path), str(interval)], repeat)


def main() -> None:
    """Runs the three configurations and prints the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--cards", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--intervals", default="10,1", help="checkpoint intervals to measure, in seconds"
    )
    parser.add_argument("--step", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        run_once(args.step[0], float(args.step[1]))
        return
    parquet = workload(args.records, args.cards, ".parquet")
    print(f"checkpoint overhead: {args.records:,} transactions from Parquet, one core")
    rows = {"no checkpoints": fastest(parquet, 0, args.repeat)}
    for interval in (float(x) for x in args.intervals.split(",")):
        rows[f"every {interval:g} s"] = fastest(parquet, interval, args.repeat)
    base = rows["no checkpoints"]["tx_s"]
    print(f"  workload md5 (first MiB): {md5_head(parquet)}; best of {args.repeat} runs each")
    print(f"  {'run':<22} {'tx/s':>10} {'overhead':>9} {'chk':>4} {'mean chk s':>11} {'MiB':>7}")
    for name, figures in rows.items():
        overhead = 1 - figures["tx_s"] / base
        figures["overhead"] = overhead
        count = figures["checkpoints"]
        mean = figures["checkpoint_s"] / count if count else 0.0
        print(
            f"  {name:<22} {figures['tx_s']:>10,.0f} {overhead:>8.1%} {count:>4.0f} "
            f"{mean:>11.3f} {figures['checkpoint_mb']:>7.1f}"
        )
    if "every 10 s" in rows:
        verdict = "meets" if rows["every 10 s"]["overhead"] <= BAR_OVERHEAD else "misses"
        print(f"  bar: <= {BAR_OVERHEAD:.0%} at a 10 s interval: {verdict} it")
    record("checkpoint_overhead", {"records": args.records, "cards": args.cards, "runs": rows})


if __name__ == "__main__":
    main()
