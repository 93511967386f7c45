"""Throughput of the embedded runtime: all standard detectors, decisions written, one core.

    python benchmarks/throughput.py [--rows 5000000] [--zipcodes 60000] [--devices 300000]
        [--merchants 20000] [--ips 62000] [--users 100000] [--cards 100000] [--repeat 1]
    python benchmarks/throughput.py --workload classic [--records 5000000] [--cards 100000]
    python benchmarks/throughput.py --workload classic --rules benchmarks/rules/twenty.yaml

The default workload is production-shaped (:mod:`fraudstream.simulate.production`: every
field filled, 60,000 zip codes, 300,000 devices, 20,000 merchants, 62,000 IPs, one user per
card, 3 % small and 5 % large amounts, 2 % far from home; each cardinality an option). Side by
side in one run, all pinned to the same core: ``fraudstream run`` on the Parquet file as a whole
process (wall time, start-up included) and the pipeline's own timer from its summary (start-up
excluded), the same writing only the alerts (what the Java job writes), the same for the
JSON-lines file, and Apache Flink's own Java walkthrough job
(``../shared/anchors/flink-java-walkthrough/FraudJob.java``, one detector, JVM start included)
on ``account,timestamp_ms,amount`` lines of the same transactions; then the ratios. Each row
has its CPU seconds too (of the process, or of the run from its summary's ``cpu_seconds``):
on a shared machine the steadier figure. The Java
job is compiled once against the apache-flink wheel's jars (classes kept under
benchmarks/data/).

``--workload classic`` (and ``--rules``) is the earlier workload (seeded traffic of the
seeds' shape: 118 zip codes): the pipeline in fresh processes from Parquet and from JSON
lines, next to the plain per-record Python loop that runs only small_then_large. With
``--rules FILE`` it runs the standard detectors alone and then with the file's rules from
Parquet, and prints the ratio (the issue's bar: >= 70 %).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    best_of,
    md5_head,
    one_core,
    peak_rss_mb,
    record,
    report_step,
    timed_run,
    workload,
)

FLINK_JAVA_WALKTHROUGH_TX_S = 440_000
BAR_TX_S = 500_000


def run_pipeline(path: str, out: str, rules_path: str | None = None) -> None:
    """In a fresh process: the pipeline over one file; prints a JSON line of figures."""
    one_core()
    from fraudstream.engine.pipeline import Pipeline, warm_up
    from fraudstream.io.files import FileSource, guess_format
    from fraudstream.rules import RuleSet
    from fraudstream.run import Outputs, Runner
    from fraudstream.schema import CardTokenizer

    rules = RuleSet.load(Path(rules_path)) if rules_path else None
    warm_up(rules)  # kernels compiled or loaded from cache before the clock starts (as `run`)
    pipeline = Pipeline(rules)
    runner = Runner(pipeline, Outputs(decisions=out), CardTokenizer(b"benchmark"))
    source = FileSource(Path(path), guess_format(path))
    summary, seconds = timed_run(runner, source)
    state_bytes = sum(
        array.nbytes for table in pipeline.states.values() for array in table.arrays.values()
    )
    cards = len(pipeline.cards)
    report_step(
        {
            "records": summary.records,
            "decided": summary.decided,
            "alerts": summary.tiers["review"] + summary.tiers["decline"],
            "seconds": seconds,
            "tx_s": summary.records / seconds,
            "cards": cards,
            "state_mb_per_100k_cards": state_bytes / 2**20 * 100_000 / max(cards, 1),
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def run_baseline(path: str) -> None:
    """In a fresh process: the plain per-record loop, small_then_large only."""
    one_core()
    import pyarrow.parquet as pq

    started = time.perf_counter()
    flags: dict[str, int] = {}  # card -> time of its small amount (the walkthrough's flag)
    alerts = records = 0
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=65_536):
        # One dict per record, as a per-record runtime sees it. Built from column lists: the
        # same work as Arrow's to_pylist, at a speed that does not depend on the Arrow version.
        names = batch.schema.names
        columns = [batch.column(name).to_pylist() for name in names]
        for values in zip(*columns, strict=True):
            tx = dict(zip(names, values, strict=True))
            records += 1
            flagged = flags.pop(tx["card_id"], None)
            if (
                flagged is not None
                and tx["amount"] > 500.0
                and abs(tx["timestamp"] - flagged) < 60_000
            ):
                alerts += 1
            if tx["amount"] < 1.0:
                flags[tx["card_id"]] = tx["timestamp"]
    seconds = time.perf_counter() - started
    report_step(
        {"records": records, "alerts": alerts, "seconds": seconds, "tx_s": records / seconds}
    )


def child(*args: str, repeat: int = 1) -> dict[str, float]:
    """Runs a step of this script ``repeat`` times in fresh processes; the best run."""
    return best_of(__file__, list(args), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workload", choices=("production", "classic"), default="production",
        help="production-shaped (the default) or the earlier classic workload",
    )  # fmt: skip
    parser.add_argument("--rows", "--records", dest="rows", type=int, default=5_000_000)
    parser.add_argument("--cards", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=100_000, help="production: users")
    parser.add_argument("--zipcodes", type=int, default=60_000, help="production: zip codes")
    parser.add_argument("--devices", type=int, default=300_000, help="production: devices")
    parser.add_argument("--merchants", type=int, default=20_000, help="production: merchants")
    parser.add_argument("--ips", type=int, default=62_000, help="production: IP addresses")
    parser.add_argument("--skip-jsonl", action="store_true", help="only the Parquet input")
    parser.add_argument("--skip-java", action="store_true", help="no Flink Java anchor")
    parser.add_argument(
        "--repeat", type=int, help="runs per row, best shown (production 1, classic 3)"
    )
    parser.add_argument(
        "--rules", help="also run with this rules file; the ratio (on the classic workload)"
    )
    parser.add_argument("--step", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        run_pipeline(*args.step)
        return
    if args.baseline:
        run_baseline(args.baseline)
        return
    if args.workload == "production" and not args.rules:  # --rules: the classic comparison
        from production_runs import run_production

        run_production(args)
        return
    args.repeat = args.repeat or 3
    args.records = args.rows
    print(f"throughput: {args.records:,} transactions over {args.cards:,} cards, one core")
    parquet = workload(args.records, args.cards, ".parquet")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    if args.rules:
        compare_rules(args, parquet, out)
        return
    rows = []
    from_parquet = child("--step", str(parquet), str(out / "decisions.parquet"), repeat=args.repeat)
    rows.append(("embedded, all detectors, from Parquet", from_parquet))
    if not args.skip_jsonl:
        jsonl = workload(args.records, args.cards, ".jsonl")
        rows.append(
            (
                "embedded, all detectors, from JSON lines",
                child(
                    "--step",
                    str(jsonl),
                    str(out / "decisions-from-jsonl.parquet"),
                    repeat=args.repeat,
                ),
            )
        )
    baseline = child("--baseline", str(parquet), repeat=args.repeat)
    rows.append(("plain Python loop, small_then_large only", baseline))

    print(f"\n  workload md5 (first MiB): {md5_head(parquet)}")
    print(f"  best of {args.repeat} runs each (median in brackets)")
    print(
        f"  {'run':<46} {'tx/s':>11} {'(median)':>10} {'vs bar':>7} {'vs Flink':>9} {'vs loop':>8}"
    )
    for name, figures in rows:
        tx_s = figures["tx_s"]
        print(
            f"  {name:<46} {tx_s:>11,.0f} {figures['median_tx_s']:>10,.0f} "
            f"{tx_s / BAR_TX_S:>6.2f}x"
            f" {tx_s / FLINK_JAVA_WALKTHROUGH_TX_S:>8.2f}x {tx_s / baseline['tx_s']:>7.1f}x"
        )
    print(
        f"\n  anchors: bar {BAR_TX_S:,} tx/s; Flink Java walkthrough (small_then_large only) "
        f"~{FLINK_JAVA_WALKTHROUGH_TX_S:,} tx/s"
    )
    print(
        f"  memory: peak RSS {from_parquet['peak_rss_mb']:,.0f} MiB for {from_parquet['cards']:,} "
        f"cards; detector state {from_parquet['state_mb_per_100k_cards']:.1f} MiB per 100,000 cards"
    )
    print(f"  alerts: {from_parquet['alerts']:,.0f} of {from_parquet['decided']:,.0f} decided")
    record(
        "throughput",
        {
            "workload": "classic",
            "records": args.records,
            "cards": args.cards,
            "runs": dict(rows),
        },
    )


def compare_rules(args: argparse.Namespace, parquet: Path, out: Path) -> None:
    """Standard detectors alone vs with a rules file's user rules, from Parquet."""
    rules = str(Path(args.rules).resolve())
    alone = child("--step", str(parquet), str(out / "decisions.parquet"), repeat=args.repeat)
    with_rules = child(
        "--step", str(parquet), str(out / "decisions-rules.parquet"), rules, repeat=args.repeat
    )
    ratio = with_rules["tx_s"] / alone["tx_s"]
    print(f"\n  workload md5 (first MiB): {md5_head(parquet)}")
    print(f"  best of {args.repeat} runs each (median in brackets)")
    for name, figures in (("standard detectors only", alone), (f"+ {args.rules}", with_rules)):
        print(
            f"  {name:<46} {figures['tx_s']:>11,.0f} tx/s ({figures['median_tx_s']:,.0f}); "
            f"alerts {figures['alerts']:,.0f}"
        )
    print(f"  with the rules: {ratio:.1%} of the standard-only throughput (bar: >= 70 %)")
    record(
        "throughput_rules",
        {
            "records": args.records,
            "cards": args.cards,
            "rules": args.rules,
            "runs": {"standard": alone, "with_rules": with_rules},
            "ratio": ratio,
        },
    )


if __name__ == "__main__":
    main()
