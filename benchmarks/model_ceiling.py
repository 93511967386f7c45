"""How far can any model go on the handbook protocol? The frauds no label can have reached.

    python benchmarks/model_ceiling.py [--seeds 0,1,2,3,4] [--window-days 30]

For each seed, the book's simulation at full size (``fraudstream.simulate.handbook``) and the
protocol `fraudstream evaluate` uses (``fraudstream.models.evaluate``: a training week, the
7-day label delay, a test week, cards known compromised D-7 removed). A scenario-2 fraud
(a compromised terminal: every transaction there is fraud for 28 days, at the customer's usual
amounts) is **blind** when its terminal has no fraud whose label had arrived by the
transaction's time within ``--window-days`` before that (a fraud 7 to 37 days back with the
default: the book's terminal risk window). Nothing in the stream tells a blind fraud from the
terminal's genuine transactions: its amount, customer and terminal look as they always did.

Printed per seed and as mean +- spread, from scores that know the labels:

- ``perfect``: every fraud first (CP@100 of a model that knew everything);
- ``ceiling``: every fraud but the blind ones first, the blind ones and the genuine
  transactions in random order (what a model that finds every fraud the stream can show
  would reach). The issue's bar (AP >= 0.75, CP@100 >= 0.33) is compared with the ceiling.

Appends a line to benchmarks/results/model_ceiling.jsonl.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import record  # noqa: E402

DAY_MS = 86_400_000
BAR = {"average_precision": 0.75, "card_precision_at_100": 0.33}


def frame_of(seed: int) -> pd.DataFrame:
    """The simulation as the protocol reads it: day, card, terminal, time, label, scenario."""
    from fraudstream.simulate.handbook import HandbookConfig, handbook_table

    table = handbook_table(HandbookConfig(seed=seed))
    timestamp = table.column("timestamp").to_numpy()
    return pd.DataFrame(
        {
            "day": timestamp // DAY_MS,
            "timestamp": timestamp,
            "card_id": table.column("card_id").to_numpy(zero_copy_only=False),
            "terminal": table.column("merchant_id").to_numpy(zero_copy_only=False),
            "is_fraud": table.column("is_fraud").to_numpy(zero_copy_only=False),
            "scenario": table.column("fraud_scenario").to_numpy(),
        }
    )


def blind(frame: pd.DataFrame, rows: pd.DataFrame, delay_days: int, window_days: int) -> Any:
    """Which of ``rows`` are scenario-2 frauds whose terminal had no fraud known by their time
    (label arrived ``delay_days`` after the fraud) within ``window_days`` before it."""
    frauds = frame[frame["is_fraud"]]
    known_at = {
        terminal: np.sort(times.to_numpy() + delay_days * DAY_MS)
        for terminal, times in frauds.groupby("terminal")["timestamp"]
    }
    out = np.zeros(len(rows), dtype=bool)
    scenario_2 = (rows["scenario"] == 2).to_numpy()
    for i in np.flatnonzero(scenario_2):
        row = rows.iloc[i]
        known = known_at.get(row["terminal"])
        now = int(row["timestamp"])
        lo = now - window_days * DAY_MS
        if known is None:
            out[i] = True
            continue
        # any fraud label arrived in (now - window, now]
        first = np.searchsorted(known, lo, side="right")
        out[i] = not (first < len(known) and known[first] <= now)
    return out


def run_seed(seed: int, window_days: int) -> dict[str, Any]:
    from fraudstream.models.evaluate import Protocol, metrics, split

    frame = frame_of(seed)
    protocol = Protocol()
    _, test = split(frame, protocol)
    test = test.reset_index(drop=True)
    unseen = blind(frame, test, protocol.delay_days, window_days)
    fraud = test["is_fraud"].to_numpy(dtype=bool)
    rng = np.random.default_rng(seed)
    chance = rng.uniform(0.0, 0.5, len(test))
    perfect = metrics(test, np.where(fraud, 1.0, chance))
    ceiling = metrics(test, np.where(fraud & ~unseen, 1.0, chance))
    return {
        "seed": seed,
        "test_transactions": len(test),
        "test_frauds": int(fraud.sum()),
        "blind_frauds": int(unseen.sum()),
        "blind_share": round(float(unseen.sum() / max(fraud.sum(), 1)), 3),
        "perfect": {k: round(v, 3) for k, v in perfect.items()},
        "ceiling": {k: round(v, 3) for k, v in ceiling.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--window-days", type=int, default=30)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        row = run_seed(seed, args.window_days)
        rows.append(row)
        ceiling = row["ceiling"]
        print(
            f"seed {seed}: {row['blind_frauds']} of {row['test_frauds']} test frauds blind "
            f"({row['blind_share']:.1%}); ceiling AP {ceiling['average_precision']:.3f} "
            f"CP@100 {ceiling['card_precision_at_100']:.3f}; perfect CP@100 "
            f"{row['perfect']['card_precision_at_100']:.3f}",
            flush=True,
        )
    summary: dict[str, Any] = {}
    for kind in ("ceiling", "perfect"):
        for metric in ("average_precision", "card_precision_at_100"):
            values = np.array([row[kind][metric] for row in rows])
            mean, spread = float(values.mean()), float(values.std())
            summary[f"{kind}_{metric}"] = [round(mean, 3), round(spread, 3)]
    print(
        f"mean over seeds {args.seeds}: ceiling AP {summary['ceiling_average_precision'][0]:.3f}"
        f" +- {summary['ceiling_average_precision'][1]:.3f}, CP@100 "
        f"{summary['ceiling_card_precision_at_100'][0]:.3f} +- "
        f"{summary['ceiling_card_precision_at_100'][1]:.3f} (bar {BAR['card_precision_at_100']});"
        f" perfect CP@100 {summary['perfect_card_precision_at_100'][0]:.3f}"
    )
    record("model_ceiling", {"window_days": args.window_days, "seeds": rows, "summary": summary})


if __name__ == "__main__":
    main()
