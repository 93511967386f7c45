"""Backtest throughput against `fraudstream run`'s on the same file (issue 20's bar: >= 80 %).

    python benchmarks/backtest.py [--records 5000000] [--cards 100000] [--repeat 3]

`run` decides the workload under the candidate rules (benchmarks/rules/backtest.yaml) and
writes its decisions as Parquet; `backtest` replays the same file under the candidate and the
defaults against labels (1 % of the transactions, seeded) and counts the report. Both in
fresh processes pinned to one core, kernels warmed up before the clock starts; the backtest's
tx/s is the records of the file over the time of both passes together. Prints both figures
and their ratio, and appends them to benchmarks/results/backtest.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, best_of, md5_head, one_core, record, report_step, timed_run, workload  # noqa: E402

BAR_RATIO = 0.8
RULES = Path(__file__).resolve().parent / "rules" / "backtest.yaml"


def labels_for(transactions: Path) -> Path:
    """1 % of the transactions labelled fraud, the rest not labelled (made once)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = DATA / f"labels_{transactions.stem}.parquet"
    if not path.exists():
        ids = pq.read_table(transactions, columns=["transaction_id"]).column("transaction_id")
        chosen = np.flatnonzero(np.random.default_rng(7).random(len(ids)) < 0.01)
        table = pa.table(
            {
                "transaction_id": ids.take(pa.array(chosen)),
                "is_fraud": pa.array(np.ones(len(chosen), dtype=bool)),
                "label_time": pa.array(np.zeros(len(chosen), dtype=np.int64)),
            }
        )
        pq.write_table(table, path)
    return path


def run_step(path: str, out: str) -> None:
    """In a fresh process: `fraudstream run` over the file (candidate rules, decisions out)."""
    one_core()
    from fraudstream.engine.pipeline import Pipeline, warm_up
    from fraudstream.io.files import FileSource, guess_format
    from fraudstream.rules import RuleSet
    from fraudstream.run import Outputs, Runner
    from fraudstream.schema import CardTokenizer

    rules = RuleSet.load(RULES)
    warm_up(rules)
    runner = Runner(Pipeline(rules), Outputs(decisions=out), CardTokenizer(b"benchmark"))
    summary, seconds = timed_run(runner, FileSource(Path(path), guess_format(path)))
    report_step({"records": summary.records, "seconds": seconds, "tx_s": summary.records / seconds})


def backtest_step(path: str, labels: str) -> None:
    """In a fresh process: `fraudstream backtest` over the file (candidate vs defaults)."""
    one_core()
    from fraudstream.backtest import Backtest
    from fraudstream.cli import settle_garbage_collector
    from fraudstream.engine.pipeline import Pipeline, warm_up
    from fraudstream.io.files import FileSource, guess_format
    from fraudstream.io.labels import read_labels
    from fraudstream.rules import RuleSet
    from fraudstream.schema import CardTokenizer

    rules = RuleSet.load(RULES)
    warm_up(rules)
    backtest = Backtest(
        rules, RuleSet.default(), read_labels(labels), Pipeline, CardTokenizer(b"benchmark")
    )
    settle_garbage_collector()
    started = time.perf_counter()
    result = backtest.run(FileSource(Path(path), guess_format(path)))
    seconds = time.perf_counter() - started
    report_step(
        {
            "records": result.records,
            "seconds": seconds,
            "tx_s": result.records / seconds,
            "shared_detectors": result.shared_detectors,
            "changed": result.report["changed_count"],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--cards", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (best is shown)")
    parser.add_argument("--run-step", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--backtest-step", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_step:
        run_step(*args.run_step)
        return
    if args.backtest_step:
        backtest_step(*args.backtest_step)
        return

    print(f"backtest: {args.records:,} transactions over {args.cards:,} cards, one core")
    parquet = workload(args.records, args.cards, ".parquet")
    labels = labels_for(parquet)
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    run = best_of(__file__, ["--run-step", str(parquet), str(out / "run.parquet")], args.repeat)
    test = best_of(__file__, ["--backtest-step", str(parquet), str(labels)], args.repeat)
    ratio = test["tx_s"] / run["tx_s"]
    print(f"\n  workload md5 (first MiB): {md5_head(parquet)}")
    print(f"  best of {args.repeat} runs each (median in brackets)")
    print(f"  fraudstream run       {run['tx_s']:>11,.0f} tx/s ({run['median_tx_s']:,.0f})")
    print(
        f"  fraudstream backtest  {test['tx_s']:>11,.0f} tx/s ({test['median_tx_s']:,.0f}), "
        f"both passes; one detector pass: {bool(test['shared_detectors'])}"
    )
    verdict = "meets" if ratio >= BAR_RATIO else "misses"
    print(f"  ratio {ratio:.2f} ({verdict} the bar of {BAR_RATIO:.0%})")
    record(
        "backtest",
        {"records": args.records, "cards": args.cards, "run": run, "backtest": test,
         "ratio": ratio},
    )  # fmt: skip


if __name__ == "__main__":
    main()
