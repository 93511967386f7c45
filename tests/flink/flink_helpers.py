"""Shared by the Flink tests: the messy stream, reading FileSink outputs, comparing records."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))
RECORDS = 20_000
OPTIONS = ["--out-of-orderness-ms", "600000", "--allowed-lateness-ms", "300000"]
OUTPUTS = ("decisions", "alerts", "dead_letters", "late")
MALFORMED = [
    b"not json at all",
    b'{"transaction_id": "bad-1", "card_id": "c1"}',
    b'{"transaction_id": "bad-2", "card_id": "c1", "timestamp": 1767225600000, "amount": -5}',
    b'["an", "array"]',
    b'{"transaction_id": "bad-3", "card_id": "", "timestamp": "yesterday", "amount": 1}',
    b'{"transaction_id": "bad-4", "card_id": "c9", "timestamp": 1767225600000, "amount": "x"}',
]


def messy_stream(directory: Path) -> tuple[Path, Path]:
    """The demo stream with disorder, late records, malformed lines and duplicates."""
    profiles = directory / "profiles.yaml"
    clean = subprocess.run(
        [FRAUDSTREAM, "simulate", "--scenario", "demo", "--count", str(RECORDS), "--fast",
         "--profiles-out", str(profiles)],
        check=True, capture_output=True,
    ).stdout.splitlines()  # fmt: skip
    rng = random.Random(5)
    lines: list[bytes] = list(clean)
    for _ in range(400):  # a little out of order (records ~2 min apart): still decided
        i = rng.randrange(len(lines) - 50)
        lines.insert(i + rng.randrange(1, 6), lines.pop(i))
    for _ in range(25):  # far behind: late
        i = rng.randrange(len(lines) // 2)
        lines.insert(min(i + rng.randrange(4_000, 8_000), len(lines)), lines.pop(i))
    for _ in range(40):  # an id again, shortly after: dead letters "duplicate"
        i = rng.randrange(len(lines) - 50)
        lines.insert(i + rng.randrange(1, 30), lines[i])
    for k in range(60):
        lines.insert(rng.randrange(len(lines)), MALFORMED[k % len(MALFORMED)])
    lines.insert(rng.randrange(len(lines)), b"")  # a blank line: skipped, but counted
    path = directory / "messy.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, profiles


def read_jsonl(target: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file, or of every part file in a FileSink directory."""
    files = (
        sorted(p for p in target.iterdir() if not p.name.startswith("."))
        if target.is_dir()
        else [target]
    )
    return [
        json.loads(line) for f in files if f.exists() for line in f.read_text().splitlines() if line
    ]


WALL_CLOCK = ("processed_at", "latency_ms")


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Decisions keyed by transaction id, wall-clock fields left out (ids must be unique)."""
    out = {
        r["transaction_id"]: {k: v for k, v in r.items() if k not in WALL_CLOCK} for r in records
    }
    assert len(out) == len(records), "a transaction decided twice"
    return out


def by_position(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dead letters / late records in input order."""
    return sorted(records, key=lambda r: (r["position"], r.get("reason", "")))


SECRET = b"s3cret"  # the webhook tests' HMAC secret


class Receiver:
    """An HTTP endpoint that refuses its first ``refuse`` deliveries, then keeps them."""

    def __init__(self, refuse: int) -> None:
        self.received: list[tuple[bytes, str, str]] = []
        left = {"refuse": refuse}
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if left["refuse"] > 0:
                    left["refuse"] -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                headers = self.headers
                received.append(
                    (body, headers["X-Fraudstream-Signature"], headers["X-Fraudstream-Delivery"])
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
