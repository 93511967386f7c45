"""Throughput with the model in the loop: streaming features + labels + XGBoost, one core.

    python benchmarks/model_throughput.py [--repeat 3] [--kind recommended]

The handbook simulation at full size (1.77 M transactions, 5,000 customers, 10,000
terminals; made once under benchmarks/data/) is decided from Parquet by the whole pipeline:
decode + validate, dedupe, event time, every standard detector, the streaming features
(per customer and per terminal, with the 7-day-delayed label stream joined in), the model
scoring every transaction in batches, model reasons for the alerts, decisions written as
Parquet. The model is the recommended one by default (``fraudstream train`` without
``--kind``); ``--kind xgboost`` is 30 trees of depth 5. The same run without features, labels
or model is the reference. The model is trained once with the handbook's protocol on the
pipeline's own features (our feature set), again when the feature catalog changed. Bar
(issues 18 and 22): 400,000 tx/s with the recommended model on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DATA,
    best_of,
    md5_head,
    one_core,
    peak_rss_mb,
    record,
    report_step,
    timed_run,
)

BAR_TX_S = 400_000


def handbook_files() -> tuple[Path, Path]:
    """Transactions (without the truth columns) and the label stream, made once."""
    import pyarrow.parquet as pq

    from fraudstream.simulate.handbook import handbook_labels, handbook_table

    DATA.mkdir(parents=True, exist_ok=True)
    tx, labels = DATA / "handbook_tx.parquet", DATA / "handbook_labels.parquet"
    if not tx.exists() or not labels.exists():
        started = time.perf_counter()
        table = handbook_table()
        pq.write_table(handbook_labels(table), labels)
        pq.write_table(table.drop(["is_fraud", "fraud_scenario"]), tx)
        print(f"  generated the handbook simulation in {time.perf_counter() - started:.1f} s")
    return tx, labels


def model_artifact(kind: str, tx: Path, labels: Path) -> Path:
    """A model trained with the handbook protocol on the pipeline's features (made once)."""
    import json

    import pyarrow.parquet as pq

    from fraudstream.features.catalog import OUR_FEATURES

    target = DATA / "models" / f"{kind}-ours"
    meta = target / "model.json"
    if meta.exists() and json.loads(meta.read_text())["features"] == list(OUR_FEATURES):
        return target
    features = DATA / "handbook_features.parquet"
    command = [str(Path(sys.executable).parent / "fraudstream")]
    # made by an older feature catalog: made again
    if not features.exists() or not set(OUR_FEATURES) <= set(pq.read_schema(features).names):
        subprocess.run(
            [*command, "features", "--input", str(tx), "--labels", str(labels), "--output",
             str(features)], check=True,
        )  # fmt: skip
    size = ["--n-estimators", "30", "--max-depth", "5"] if kind == "xgboost" else []
    # "recommended": `train` without --kind (its own features, trees and early stopping)
    chosen = [] if kind == "recommended" else ["--kind", kind]
    subprocess.run(
        [*command, "train", "--features", str(features), "--labels", str(labels), *chosen,
         "--output", str(target), *size], check=True,
    )  # fmt: skip
    return target


def run_pipeline(path: str, labels: str, model: str, out: str) -> None:
    """In a fresh process: the pipeline (with model unless ``model`` is '-') over one file."""
    one_core()
    from fraudstream.engine.pipeline import Pipeline, warm_up
    from fraudstream.io.files import FileSource
    from fraudstream.models.dataset import attach
    from fraudstream.run import Outputs, Runner
    from fraudstream.schema import CardTokenizer

    warm_up()
    pipeline = Pipeline()
    stage = None
    if model != "-":
        stage = attach(pipeline, labels, model)  # compiles the feature kernels, as `run` does
    runner = Runner(pipeline, Outputs(decisions=out), CardTokenizer(b"benchmark"))
    source = FileSource(Path(path), "parquet")
    summary, seconds = timed_run(runner, source)
    report_step(
        {
            "records": summary.records,
            "decided": summary.decided,
            "alerts": summary.tiers["review"] + summary.tiers["decline"],
            "model_reasons": summary.fired_by_rule.get("model", 0),
            "seconds": seconds,
            "tx_s": summary.records / seconds,
            "feature_state_mb": stage.features.nbytes() / 2**20 if stage else 0.0,
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def child(*args: str, repeat: int) -> dict[str, float]:
    """Best of ``repeat`` fresh processes running a step of this script (median kept)."""
    return best_of(__file__, list(args), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--kind", default="recommended", help="model kind to run in the loop (or recommended)"
    )
    parser.add_argument("--step", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        run_pipeline(*args.step)
        return
    tx, labels = handbook_files()
    model = model_artifact(args.kind, tx, labels)
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    print(f"model throughput: handbook simulation, {args.kind} in the loop, one core")
    with_model = child(
        "--step", str(tx), str(labels), str(model), str(out / "model-decisions.parquet"),
        repeat=args.repeat,
    )  # fmt: skip
    without = child(
        "--step", str(tx), str(labels), "-", str(out / "plain-decisions.parquet"),
        repeat=args.repeat,
    )  # fmt: skip
    print(f"\n  workload md5 (first MiB): {md5_head(tx)}; best of {args.repeat} (median)")
    print(f"  {'run':<58} {'tx/s':>11} {'(median)':>10} {'vs bar':>7}")
    rows = {
        f"detectors + features + labels + {args.kind}, from Parquet": with_model,
        "detectors only (no features, no model), from Parquet": without,
    }
    for name, figures in rows.items():
        print(
            f"  {name:<58} {figures['tx_s']:>11,.0f} {figures['median_tx_s']:>10,.0f} "
            f"{figures['tx_s'] / BAR_TX_S:>6.2f}x"
        )
    print(
        f"\n  model on: {with_model['records']:,.0f} decided, {with_model['alerts']:,.0f} alerts, "
        f"{with_model['model_reasons']:,.0f} with a model reason; feature state "
        f"{with_model['feature_state_mb']:.0f} MiB, peak RSS {with_model['peak_rss_mb']:,.0f} MiB"
    )
    print(f"  cost of the model stage: {without['tx_s'] / with_model['tx_s']:.2f}x the time")
    record("model_throughput", {"kind": args.kind, "bar_tx_s": BAR_TX_S, "runs": rows})


if __name__ == "__main__":
    main()
