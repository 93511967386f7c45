"""How much does a checkpoint write when a million cards are in state and a few change?

    .venv-flink/bin/python benchmarks/flink_checkpoint_delta.py [--cards 1000000]
        [--touched 10000] [--minute-records 60000] [--parallelism 2]
        [--checkpoint-interval-ms 10000]

The live keyed job (a watched directory) on a standalone cluster started here from the
apache-flink distribution (two TaskManagers, one slot each), RocksDB state with incremental
checkpoints:

1. one transaction for each of ``--cards`` cards is written into the directory: every card
   gets its value in the card operator's ``MapState`` (production-shaped records: every
   field, ``fraudstream.simulate.workload.benchmark_table``);
2. once the job has decided them all and the full state is checkpointed (the state size
   within 1 % over three checkpoints), a minute of traffic: ``--minute-records`` transactions
   over one minute of event time on ``--touched`` of those cards, written in six files ten
   seconds apart;
3. from Flink's checkpoint statistics (REST ``/jobs/ID/checkpoints``): each completed
   checkpoint's full state size and what it wrote (``checkpointed_size``, the incremental
   delta).

Printed: the full state, what the checkpoints during and right after the minute wrote, and
that against the full state (the bar of the scale-out issue: a checkpoint after a minute of
traffic touching 10,000 of 1 M cards writes under 10 % of the full state). Appends a line
to benchmarks/results/flink_checkpoint_delta.jsonl.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import record  # noqa: E402

FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))
BAR = 0.10
MINUTE_MS = 60_000
START_MS = 1_767_225_600_000  # 2026-01-01


def card_ids(indices: Any) -> pa.Array:
    return pa.array([f"card-{i:07d}" for i in indices], pa.string())


def state_file(cards: int, path: Path) -> int:
    """One transaction per card, over a day; returns the latest time."""
    from fraudstream.simulate.workload import benchmark_table, write_table

    table = benchmark_table(cards, cards, seed=7, start_ms=START_MS, days=1.0)
    table = table.set_column(table.schema.get_field_index("card_id"), "card_id",
                             card_ids(range(cards)))  # fmt: skip
    write_table(table, path)
    return int(pc.max(table.column("timestamp")).as_py())


def minute_files(
    cards: int, touched: int, records: int, after_ms: int, directory: Path
) -> list[Path]:
    """A minute of traffic on ``touched`` of the cards, as six ten-second files."""
    from fraudstream.simulate.workload import benchmark_table, write_table

    rng = np.random.default_rng(11)
    chosen = rng.choice(cards, touched, replace=False)
    table = benchmark_table(records, touched, seed=12, start_ms=after_ms + 1_000,
                            days=MINUTE_MS / 86_400_000)  # fmt: skip
    table = table.set_column(
        table.schema.get_field_index("card_id"), "card_id",
        card_ids(chosen[rng.integers(0, touched, records)]),
    )  # fmt: skip
    ids = pa.array([f"minute-{i:07d}" for i in range(records)], pa.string())
    table = table.set_column(table.schema.get_field_index("transaction_id"), "transaction_id", ids)
    paths = []
    for k, part in enumerate(np.array_split(np.arange(records), 6)):
        path = directory / f"minute-{k}.jsonl"
        write_table(table.take(pa.array(part)), path)
        paths.append(path)
    return paths


def checkpoints(address: str, job: str) -> list[dict[str, Any]]:
    from fraudstream.flink.rest import rest_get

    history = rest_get(address, f"/jobs/{job}/checkpoints")["history"]
    done = [c for c in history if c["status"] == "COMPLETED"]
    return sorted(done, key=lambda c: c["id"])


def wait_for_steady_state(address: str, job: str, timeout_s: float) -> dict[str, Any]:
    """The last of three checkpoints in a row whose state sizes are within 1 % (the card
    state is then complete; the live windows' few ticks still move it by some KB)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = checkpoints(address, job)
        sizes = [c["state_size"] for c in done[-3:]]
        if len(sizes) == 3 and min(sizes) > 1e6 and max(sizes) < 1.01 * min(sizes):
            return done[-1]
        time.sleep(2)
    raise RuntimeError("the state did not settle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--touched", type=int, default=10_000)
    parser.add_argument("--minute-records", type=int, default=60_000)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--checkpoint-interval-ms", type=int, default=10_000)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("FRAUDSTREAM_TOKEN_KEY", "benchmark")

    from fraudstream.flink.cluster import StandaloneCluster

    with tempfile.TemporaryDirectory(prefix="fraudstream-checkpoint-delta-") as tmp:
        work = Path(tmp)
        inbox = work / "inbox"
        inbox.mkdir()
        staging = work / "staging"
        staging.mkdir()
        started = time.perf_counter()
        latest = state_file(args.cards, staging / "state.jsonl")
        minutes = minute_files(args.cards, args.touched, args.minute_records, latest, staging)
        print(f"generated the inputs in {time.perf_counter() - started:.0f} s", flush=True)
        cluster = StandaloneCluster(work / "cluster", taskmanagers=2, slots=1)
        cluster.start()
        try:
            command = [
                FRAUDSTREAM, "flink", "run", "--target", "remote", "--jobmanager",
                cluster.address, "--detach", "--quiet", "--input", str(inbox),
                "--monitor-interval-ms", "1000", "--alerts", str(work / "alerts"),
                "--state-backend", "rocksdb",
                "--checkpoint-interval-ms", str(args.checkpoint_interval_ms),
                "--checkpoint-dir", str(work / "checkpoints"),
                "--parallelism", str(args.parallelism),
            ]  # fmt: skip
            job = subprocess.run(command, check=True, capture_output=True, text=True)
            job_id = job.stdout.split()[-1]
            (staging / "state.jsonl").rename(inbox / "state.jsonl")
            started = time.perf_counter()
            steady = wait_for_steady_state(cluster.address, job_id, 1_800)
            print(
                f"{args.cards:,} cards decided and checkpointed in "
                f"{time.perf_counter() - started:.0f} s: full state "
                f"{steady['state_size'] / 1e6:,.1f} MB (checkpoint {steady['id']})",
                flush=True,
            )
            for path in minutes:  # a minute of traffic, ten seconds at a time
                path.rename(inbox / path.name)
                time.sleep(10)
            time.sleep(2 * args.checkpoint_interval_ms / 1000 + 5)
            after = [c for c in checkpoints(cluster.address, job_id) if c["id"] > steady["id"]]
        finally:
            cluster.stop()
    full = steady["state_size"]
    written = sum(c["checkpointed_size"] for c in after)
    largest = max((c["checkpointed_size"] for c in after), default=0)
    for c in after:
        print(
            f"  checkpoint {c['id']}: state {c['state_size'] / 1e6:,.1f} MB, wrote "
            f"{c['checkpointed_size'] / 1e6:,.2f} MB ({c['checkpointed_size'] / full:.2%})"
        )
    print(
        f"the minute ({args.minute_records:,} tx on {args.touched:,} cards) and the "
        f"checkpoint after it wrote {written / 1e6:,.2f} MB in {len(after)} checkpoints: "
        f"{written / full:.2%} of the full state (largest single checkpoint "
        f"{largest / full:.2%}; bar < {BAR:.0%}: {'met' if written / full < BAR else 'NOT met'})"
    )
    record(
        "flink_checkpoint_delta",
        {
            "cards": args.cards,
            "touched": args.touched,
            "minute_records": args.minute_records,
            "parallelism": args.parallelism,
            "full_state_bytes": full,
            "checkpoints_after": [
                {"id": c["id"], "state_size": c["state_size"], "written": c["checkpointed_size"]}
                for c in after
            ],
            "written_share": written / full,
        },
    )


if __name__ == "__main__":
    main()
