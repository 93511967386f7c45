"""Latency of `fraudstream run --input -`: records piped in at a steady rate, decisions out.

    python benchmarks/latency.py [--rate 2000] [--seconds 30]

A writer thread pipes demo transactions into the command's standard input at a steady rate
(paced on the monotonic clock), a reader thread reads its decisions from standard output;
latency is (decision line read - record line written), both on this process's clock. The
command runs in event time (the default) with out-of-orderness 0, so each record is decided
as it arrives. Prints p50 / p99 / max and the command's peak memory. Bar: p99 <= 10 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import record  # noqa: E402

BAR_P99_MS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="records per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument(
        "--cards", type=int, default=100_000, help="cards put into state before measuring"
    )
    args = parser.parse_args()

    from fraudstream.simulate.demo import demo_records

    total = int(args.rate * (args.seconds + args.warmup_seconds))
    records = demo_records(count=total, users=2000, seed=11)
    # Live records: event time = now, so the stream is what a live source would send.
    lines = []
    for record_ in records:
        record_.pop("timestamp", None)
        lines.append(record_)
    exe = Path(sys.executable).parent / "fraudstream"
    env = dict(os.environ, OMP_NUM_THREADS="1", FRAUDSTREAM_TOKEN_KEY="benchmark")
    process = subprocess.Popen(
        [str(exe), "run", "--input", "-", "--decisions", "-", "--quiet"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    time.sleep(3.0)  # let the command start and compile its kernels
    written: dict[str, float] = {}
    latencies: list[float] = []
    warmup = int(args.rate * args.warmup_seconds)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            now = time.perf_counter()
            decision = json.loads(line)
            sent = written.get(decision["transaction_id"])
            if sent is not None:
                latencies.append((now - sent) * 1000)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # First fill the engine's state with --cards active cards (one located transaction
    # each, sent at once and not measured): latency and memory are then those of an engine
    # that holds that many cards, as a live one does.
    now_ms = int(time.time() * 1000)
    fill = [
        {
            "transaction_id": f"fill-{i}",
            "card_id": f"fill-card-{i}",
            "timestamp": now_ms - 60_000,
            "amount": 25.0,
            "lat": 40.0 + (i % 1000) / 1000,
            "lon": -3.0 - (i // 1000) / 1000,
            "zipcode": f"{28000 + i % 90:05d}",
            "merchant_id": f"m-{i % 5000}",
            "device_id": f"fill-device-{i}",
            "ip": f"100.{64 + i % 50}.{(i // 50) % 250}.{i % 250}",
        }
        for i in range(args.cards)
    ]
    for chunk in range(0, len(fill), 10_000):
        payload = "".join(json.dumps(r) + "\n" for r in fill[chunk : chunk + 10_000])
        process.stdin.write(payload.encode())
    process.stdin.flush()
    time.sleep(max(3.0, args.cards / 50_000))
    interval = 1.0 / args.rate
    start = time.perf_counter()
    for k, tx in enumerate(lines):
        deadline = start + k * interval
        delay = deadline - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        tx["timestamp"] = int(time.time() * 1000)
        data = (json.dumps(tx) + "\n").encode()
        if k >= warmup:
            written[tx["transaction_id"]] = time.perf_counter()
        process.stdin.write(data)
        process.stdin.flush()
    sent_seconds = time.perf_counter() - start
    time.sleep(0.5)
    peak_mb = 0.0
    try:  # the command's peak resident memory, read before it exits
        status = Path(f"/proc/{process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM"))
        peak_mb = int(line.split()[1]) / 1024
    except (OSError, StopIteration, ValueError):
        pass
    process.stdin.close()
    reader.join(timeout=60)
    process.wait(timeout=60)
    latencies.sort()
    n = len(latencies)
    if n == 0:
        raise SystemExit("no decisions were read")
    p50 = latencies[n // 2]
    p99 = latencies[min(n - 1, int(n * 0.99))]
    worst = latencies[-1]
    rate = len(lines) / sent_seconds
    print(f"latency: {n:,} decisions at {rate:,.0f} records/s (after {warmup:,} warm-up records)")
    print(f"  p50 {p50:.2f} ms   p99 {p99:.2f} ms   max {worst:.2f} ms")
    print(f"  bar: p99 <= {BAR_P99_MS} ms -> {'met' if p99 <= BAR_P99_MS else 'NOT met'}")
    cards = args.cards + len({r.get("card_id") for r in lines})
    print(
        f"  peak memory of the command: {peak_mb:,.0f} MiB with ~{cards:,} active cards "
        f"({peak_mb / max(cards, 1) * 100_000:,.0f} MiB per 100,000 active cards, whole "
        "process included)"
    )
    record(
        "latency",
        {
            "rate": rate,
            "decisions": n,
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": worst,
            "peak_rss_mb": peak_mb,
            "active_cards": cards,
        },
    )


if __name__ == "__main__":
    main()
