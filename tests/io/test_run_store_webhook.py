"""`fraudstream run --store --webhook`: every decision stored once, every alert delivered."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from fraudstream.io.sqlstore import DecisionStore
from fraudstream.simulate.demo import demo_records


def test_run_writes_the_store_and_delivers_alerts(tmp_path: Path) -> None:
    received: list[tuple[bytes, str]] = []
    failures = {"left": 2}

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if failures["left"] > 0:  # the first deliveries fail: they must be retried
                failures["left"] -= 1
                self.send_response(503)
                self.end_headers()
                return
            received.append((body, self.headers["X-Fraudstream-Signature"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        records = demo_records(count=3000, seed=5)
        source = tmp_path / "tx.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in records))
        store = tmp_path / "decisions.db"
        alerts = tmp_path / "alerts.jsonl"
        command = [
            str(Path(sys.executable).parent / "fraudstream"),
            "run", "--input", str(source), "--store", str(store), "--alerts", str(alerts),
            "--webhook", f"http://127.0.0.1:{server.server_port}/alerts",
            "--webhook-secret-env", "TEST_WEBHOOK_SECRET", "--quiet",
        ]  # fmt: skip
        env = dict(os.environ, FRAUDSTREAM_TOKEN_KEY="test", TEST_WEBHOOK_SECRET="s3cret")
        for _ in range(2):  # a replay writes each decision once
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            assert done.returncode == 0, done.stderr
    finally:
        server.shutdown()
        server.server_close()

    decided = DecisionStore(str(store))
    try:
        stored = decided.list(None, limit=10_000, card_id=None)
    finally:
        decided.close()
    assert sorted(d["transaction_id"] for d in stored) == sorted(
        r["transaction_id"] for r in records
    )
    expected_alerts = {
        json.loads(line)["transaction_id"] for line in alerts.read_text().splitlines()
    }
    assert expected_alerts
    delivered = [json.loads(body)["transaction_id"] for body, _ in received]
    assert set(delivered) == expected_alerts  # none lost (the replay delivers them again)
    for body, signature in received:  # each body signed with the shared secret
        mac = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(signature, f"sha256={mac}")
