"""What one authorization costs the decision service: one record, one pipeline step.

    python benchmarks/one_record.py [--records 6000] [--cards 0 | 1000000] [--preload N]
                                    [--served]

``DecisionService.decide_now`` (what ``POST /v1/transactions`` runs, without the HTTP layer)
over records sent one at a time, in one process pinned to one core, the pipeline built as
``fraudstream serve`` builds it (state TTL on, a day of allowed lateness as
``benchmarks/api_latency.py`` gives it). Two ways, each the best of three rounds:

* back to back: the next record as soon as the last is decided (a warm loop);
* with a 1 ms sleep before each record: what a server at a few hundred requests a second
  sees, its thread asleep between requests and its caches cold when the next one comes.

Records are demo transactions (about 430 cards) unless ``--cards N`` asks for
production-shaped ones over N cards, the service's state first filled with ``--preload`` of
them (default N) in batches of 10,000, as ``api_latency.py --cards`` fills the server's: a
step's cost must not grow with the card base, and this is where it would show.

``--served`` builds the service inside the app, as ``serve`` runs it: each step then also
feeds the review desk (alerts into its queue), the decision log and the metrics.

Prints microseconds a record (wall and CPU) and the step's p50 / p99; compare versions side
by side (another version's ``src`` first on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import one_core, record  # noqa: E402

ROUNDS = 3


def demo_requests(count: int) -> list[dict[str, Any]]:
    from fraudstream.simulate.demo import demo_records

    records = demo_records(count=count)
    for r in records:
        r.pop("scenario", None)
        r.pop("is_fraud", None)
    return records


def service(served: bool = False) -> Any:
    """The decision service as ``fraudstream serve`` builds it; ``served``: inside the app,
    with the listeners it feeds from each step (review desk, decision log, metrics)."""
    from fraudstream.assembly import (
        DEFAULT_STATE_TTL_HOURS,
        TimeMode,
        build_pipeline,
        state_ttl_ms,
    )
    from fraudstream.schema import CardTokenizer
    from fraudstream.web.service import DecisionService

    pipeline = build_pipeline(
        None, None, TimeMode.event, 0, 86_400_000, 1_000, None, None,
        state_ttl_ms(DEFAULT_STATE_TTL_HOURS),
    )  # fmt: skip
    if not served:
        return DecisionService(pipeline, CardTokenizer(b"benchmark"))
    from fraudstream.engine.tuning import settle_garbage_collector
    from fraudstream.web.app import create_app

    app = create_app(pipeline, "benchmark-token", CardTokenizer(b"benchmark"))
    settle_garbage_collector()  # as serve does
    return app.state.service


def one_at_a_time(svc: Any, records: list[dict[str, Any]], gap_s: float) -> dict[str, float]:
    """Decides ``records`` one per step; wall and CPU per record, and step percentiles."""
    steps = []
    cpu = 0.0
    for r in records:
        if gap_s:
            time.sleep(gap_s)
        started, cpu_started = time.perf_counter(), time.process_time()
        (outcome,) = svc.decide_now([r])
        steps.append(time.perf_counter() - started)
        cpu += time.process_time() - cpu_started
        if outcome.status != 200:
            raise SystemExit(f"a record was not decided: {outcome.status} {outcome.body}")
    steps.sort()
    n = len(steps)
    return {
        "us_per_record": round(sum(steps) / n * 1e6, 1),
        "cpu_us_per_record": round(cpu / n * 1e6, 1),
        "p50_us": round(steps[n // 2] * 1e6, 1),
        "p99_us": round(steps[min(n - 1, int(n * 0.99))] * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=6000, help="records a round")
    parser.add_argument("--cards", type=int, default=0, help="production-shaped, N cards")
    parser.add_argument("--preload", type=int, default=None, help="with --cards (default N)")
    parser.add_argument(
        "--served", action="store_true", help="in the app, feeding its review desk and metrics"
    )
    args = parser.parse_args()
    one_core()
    svc = service(args.served)  # (its kernels compiled or loaded from numba's cache)
    needed = 2 * ROUNDS * args.records
    preload = 0
    if args.cards > 0:
        from api_latency import production_records

        preload = args.cards if args.preload is None else args.preload
        # event time at 1,000 a second, as live traffic at that rate
        preloaded, records = production_records(args.cards, preload, needed + 1000, 1000.0)
        started = time.perf_counter()
        for first in range(0, len(preloaded), 10_000):
            svc.decide_now(preloaded[first : first + 10_000])
        print(
            f"preloaded {preload:,} transactions over {args.cards:,} cards in "
            f"{time.perf_counter() - started:.1f} s"
        )
    else:
        records = demo_requests(needed + 1000)
    one_at_a_time(svc, records[:1000], 0.0)  # warm
    records = records[1000:]
    results: dict[str, Any] = {}
    for name, gap_s in (("back to back", 0.0), ("1 ms sleep before each", 0.001)):
        rounds = []
        for _ in range(ROUNDS):
            chunk, records = records[: args.records], records[args.records :]
            rounds.append(one_at_a_time(svc, chunk, gap_s))
        best = min(rounds, key=lambda r: r["cpu_us_per_record"])
        results[name] = best
        print(
            f"{name:>24}: {best['us_per_record']:,.0f} us a record "
            f"({best['cpu_us_per_record']:,.0f} us CPU), step p50 {best['p50_us']:,.0f} us, "
            f"p99 {best['p99_us']:,.0f} us  (best of {ROUNDS} x {args.records:,})"
        )
    workload: dict[str, Any] = (
        {"kind": "production", "cards": args.cards, "preloaded": preload}
        if args.cards > 0
        else {"kind": "demo"}
    )
    if args.served:
        workload["served"] = True
    record("one_record", {"records": args.records, "workload": workload, "results": results})


if __name__ == "__main__":
    main()
