"""Latency of the decision API: POST /v1/transactions at a steady rate against `fraudstream serve`.

    python benchmarks/api_latency.py [--rate 1000] [--seconds 30] [--connections 16]
                                     [--command "fraudstream serve"]

The server runs as its own process (``python -m fraudstream.web.serve`` unless ``--command``
names another way to start it, e.g. ``"fraudstream serve"``), bound to a free port on
127.0.0.1 only. This process is the load generator: httpx with keep-alive connections
(``--connections`` threads, one ``httpx.Client`` each), open-loop pacing on the monotonic
clock: request i is due at start + i / rate whatever happened to the earlier ones, so a slow
server is not hidden by a client that waits for it.

Latency is (response received - request due), which includes any wait for a free connection;
``send->response`` (from the moment the request actually went out) is printed too. The first
``--warmup`` seconds are sent but not measured. Records are demo transactions (new ids each
run) in time order; the server allows a day of lateness so that concurrent requests arriving
a few positions out of order are still decided, not reported late. Errors: any status other
than 200, and any exception. Bar: p99 <= 20 ms with no errors (exit code 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import msgspec

BAR_P99_MS = 20.0
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def start_server(command: str | None, port: int, token: str, log: Path) -> subprocess.Popen[bytes]:
    base = shlex.split(command) if command else [sys.executable, "-m", "fraudstream.web.serve"]
    args = [*base, "--host", HOST, "--port", str(port), "--allowed-lateness-ms", "86400000"]
    env = {**os.environ, "FRAUDSTREAM_TOKEN": token}
    env.setdefault("FRAUDSTREAM_TOKEN_KEY", "benchmark")
    handle = log.open("wb")
    return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env)


def wait_ready(url: str, server: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def bodies(count: int) -> list[bytes]:
    from fraudstream.simulate.demo import demo_records

    run = secrets.token_hex(4)
    encoder = msgspec.json.Encoder()
    out = []
    for record in demo_records(count=count):
        record["transaction_id"] = f"{run}-{record['transaction_id']}"
        record.pop("scenario", None)
        record.pop("is_fraud", None)
        out.append(encoder.encode(record))
    return out


def drive(
    url: str, token: str, payloads: list[bytes], rate: float, warmup_n: int, connections: int
) -> dict[str, Any]:
    """Paces ``payloads`` at ``rate`` over ``connections`` threads, one keep-alive
    connection (an ``httpx.Client``) each; a due request waits in a queue for a free one."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    due_latency: list[float] = []
    send_latency: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    work: queue.SimpleQueue[tuple[int, float] | None] = queue.SimpleQueue()
    clock = time.perf_counter

    def worker() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=10.0) as client:
            client.get("/healthz")  # open the connection before the clock starts
            while True:
                item = work.get()
                if item is None:
                    return
                i, due = item
                sent = clock()
                status = -1
                try:
                    status = client.post("/v1/transactions", content=payloads[i]).status_code
                except httpx.HTTPError as exc:
                    with lock:
                        errors[type(exc).__name__] += 1
                done = clock()
                if i < warmup_n:
                    continue
                with lock:
                    if status == 200:
                        due_latency.append((done - due) * 1000)
                        send_latency.append((done - sent) * 1000)
                    elif status != -1:
                        errors[f"HTTP {status}"] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    start = clock() + 0.1
    for i in range(len(payloads)):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            time.sleep(delay)
        work.put((i, due))
    scheduled_s = clock() - start
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join()
    measured = len(payloads) - warmup_n
    return {
        "requests": measured,
        "offered_rate": rate,
        "schedule_seconds": round(scheduled_s, 2),
        "ok": len(due_latency),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "latency_ms": summary(due_latency),
        "send_to_response_ms": summary(send_latency),
    }


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": round(ordered[-1], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured lead-in (s)")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--command", default=None, help='e.g. "fraudstream serve"')
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()

    warmup_n = int(args.rate * args.warmup)
    payloads = bodies(warmup_n + int(args.rate * args.seconds))
    port = free_port()
    token = secrets.token_urlsafe(32)
    url = f"http://{HOST}:{port}"
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"fraudstream-serve-{port}.log"
    server = start_server(args.command, port, token, log)
    try:
        wait_ready(url, server)
        result = drive(url, token, payloads, args.rate, warmup_n, args.connections)
        health = httpx.get(f"{url}/healthz", timeout=5.0).json()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    result["server"] = {k: health.get(k) for k in ("decided", "dead_letters", "late")}
    result["connections"] = args.connections
    result["bar_p99_ms"] = BAR_P99_MS
    p99 = result["latency_ms"].get("p99", float("inf"))
    result["passed"] = bool(p99 <= BAR_P99_MS and result["errors"] == 0)
    lat = result["latency_ms"]
    print(
        f"POST /v1/transactions at {args.rate:,.0f}/s for {args.seconds:g} s "
        f"({result['requests']:,} measured, {args.connections} connections)"
    )
    print(
        f"latency (due -> response) p50 {lat.get('p50')} ms  p99 {lat.get('p99')} ms  "
        f"max {lat.get('max')} ms   errors {result['errors']} {result['error_kinds'] or ''}"
    )
    send = result["send_to_response_ms"]
    print(f"send -> response          p50 {send.get('p50')} ms  p99 {send.get('p99')} ms")
    print(f"bar p99 <= {BAR_P99_MS:g} ms: {'PASS' if result['passed'] else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import record  # noqa: E402 - the shared results file, as the other benchmarks

    record("api_latency", result)
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
