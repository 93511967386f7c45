"""Alert delivery: a webhook against a local receiver that fails, and a command hook.

Nothing may be lost: every alert reaches the receiver at least once (with its delivery id
and a valid signature), or waits in the retry table until a later flush delivers it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fraudstream.io.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    CommandHook,
    WebhookSink,
)

SECRET = b"test-secret"
FAST = {"backoff_s": 0.001, "retry_delay_s": 0.0}


class Receiver:
    """A loopback HTTP receiver answering 500 to its first ``failures`` requests."""

    def __init__(self, failures: int = 0, port: int = 0) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    fail = len(receiver.requests) <= receiver.failures
                self.send_response(500 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def delivered_ids(self) -> list[str]:
        """Delivery ids of the requests answered 200."""
        return [
            headers[DELIVERY_HEADER]
            for n, (headers, _) in enumerate(self.requests, start=1)
            if n > self.failures
        ]


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    started: list[Receiver] = []

    def start(failures: int = 0, port: int = 0) -> Receiver:
        receiver = Receiver(failures, port)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        if receiver.thread.is_alive():
            receiver.stop()


def alert(i: int) -> dict[str, Any]:
    return {
        "transaction_id": f"tx-{i:03d}",
        "card_id": "card-a",
        "user_id": "user-1",
        "event_time": "2019-01-01T00:06:00.000Z",
        "decision": "review" if i % 2 else "decline",
        "score": 0.75,
        "reasons": [{"rule": "geo_velocity", "message": "1200 km/h > 900 km/h"}],
        "model": None,
        "features": {"distance_km": 1200.5, "speed_kmh": 1200.0},
        "processed_at": "2019-01-01T00:06:00.010Z",
        "latency_ms": 1.5,
    }


def check_signed(headers: dict[str, str], body: bytes) -> None:
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["transaction_id"] == headers[DELIVERY_HEADER]


def test_failing_receiver_gets_every_alert_after_retries(
    receiver_factory: Any, tmp_path: Path
) -> None:
    receiver = receiver_factory(failures=3)
    alerts = [alert(i) for i in range(6)]
    sink = WebhookSink(receiver.url, SECRET, str(tmp_path / "retry.db"), max_attempts=5, **FAST)
    sink.write_dicts(alerts)
    sink.close()

    # The first alert took 4 attempts (3 failures then success); the rest one each.
    assert len(receiver.requests) == 3 + len(alerts)
    assert sink.failures == 3
    assert sink.attempts == 3 + len(alerts)
    assert sink.delivered == len(alerts)
    assert sink.parked == 0
    first_ids = [h[DELIVERY_HEADER] for h, _ in receiver.requests[:4]]
    assert first_ids == ["tx-000"] * 4
    assert [h["X-Fraudstream-Attempt"] for h, _ in receiver.requests[:4]] == ["1", "2", "3", "4"]
    for headers, body in receiver.requests:
        check_signed(headers, body)
    assert receiver.delivered_ids() == [a["transaction_id"] for a in alerts]
    assert [json.loads(b) for _, b in receiver.requests[3:]] == alerts


def test_alerts_wait_in_the_retry_table_while_the_receiver_is_down(
    receiver_factory: Any, tmp_path: Path
) -> None:
    down = receiver_factory(failures=10_000)
    retry_db = str(tmp_path / "retry.db")
    alerts = [alert(i) for i in range(5)]
    sink = WebhookSink(down.url, SECRET, retry_db, max_attempts=3, **FAST)
    sink.write_dicts(alerts[:3])
    sink.write_dicts(alerts[3:])
    sink.flush()  # still down: the oldest row is tried once more and kept
    # No hold-up: 3 tries for the first alert, the rest of its batch parked at once, one try
    # for the next batch (the receiver is known to be failing), one for the flush.
    assert len(down.requests) == 3 + 1 + 1
    pending = sink.pending()
    assert [row["delivery_id"] for row in pending] == [a["transaction_id"] for a in alerts]
    assert all(row["last_error"] and "500" in row["last_error"] for row in pending)
    assert [row["attempts"] for row in pending] == [4, 0, 0, 1, 0]
    assert [json.loads(row["body"]) for row in pending] == alerts
    sink.close()
    assert sink.delivered == 0

    # Later (a new process, say) with the receiver back up: one flush delivers them all.
    down.stop()
    up = receiver_factory(failures=0, port=down.server.server_port)
    assert up.url == down.url
    later = WebhookSink(up.url, SECRET, retry_db, max_attempts=3, **FAST)
    assert later.pending_count() == len(alerts)
    later.flush()
    assert later.pending_count() == 0
    assert sorted(up.delivered_ids()) == [a["transaction_id"] for a in alerts]
    for headers, body in up.requests:
        check_signed(headers, body)
    later.close()


def test_retry_rows_are_per_webhook_and_not_retried_before_due(
    receiver_factory: Any, tmp_path: Path
) -> None:
    down = receiver_factory(failures=10_000)
    retry_db = str(tmp_path / "retry.db")
    sink = WebhookSink(down.url, None, retry_db, max_attempts=1, backoff_s=0.001)
    sink.write_dicts([alert(1)])
    sink.flush()  # due at once after parking: tried, fails, now due in 30 s
    tried = len(down.requests)
    sink.flush()  # not due yet: no request
    assert len(down.requests) == tried == 2
    assert SIGNATURE_HEADER not in down.requests[0][0]  # no secret, no signature
    other = WebhookSink(down.url + "/other", None, retry_db, **FAST)
    assert other.pending_count() == 0
    assert sink.pending_count() == 1
    other.close()
    sink.close()


def test_unreachable_receiver_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    closed = Receiver()
    url = closed.url
    closed.stop()  # nothing listens on this port now
    sink = WebhookSink(url, SECRET, str(tmp_path / "retry.db"), max_attempts=2, **FAST)
    sink.write_dicts([alert(1), alert(2)])
    assert sink.pending_count() == 2
    assert sink.attempts == 2  # the second alert was parked without waiting on the first
    sink.close()


def test_command_hook_gets_each_alert_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "alerts"
    out.mkdir()
    script = (
        "import os, pathlib, sys; "
        f"p = pathlib.Path({str(out)!r}) / os.environ['FRAUDSTREAM_DELIVERY_ID']; "
        "p.write_bytes(sys.stdin.buffer.read())"
    )
    hook = CommandHook([sys.executable, "-c", script], str(tmp_path / "retry.db"), **FAST)
    alerts = [alert(i) for i in range(3)]
    hook.write_dicts(alerts)
    assert hook.pending_count() == 0
    hook.close()
    assert sorted(p.name for p in out.iterdir()) == [a["transaction_id"] for a in alerts]
    for a in alerts:
        assert json.loads((out / a["transaction_id"]).read_bytes()) == a


def test_failing_command_retries_then_parks_then_delivers(tmp_path: Path) -> None:
    retry_db = str(tmp_path / "retry.db")
    flag = tmp_path / "ok"
    out = tmp_path / "got.jsonl"
    # Fails until the flag file exists; appends each delivered alert to a file.
    script = (
        "import pathlib, sys; "
        f"flag = pathlib.Path({str(flag)!r}); "
        "sys.exit('receiver not ready') if not flag.exists() else None; "
        f"open({str(out)!r}, 'ab').write(sys.stdin.buffer.read() + b'\\n')"
    )
    command = [sys.executable, "-c", script]
    hook = CommandHook(command, retry_db, max_attempts=2, **FAST)
    hook.write_dicts([alert(1), alert(2)])
    assert hook.attempts == 2 and hook.failures == 2
    pending = hook.pending()
    assert [row["delivery_id"] for row in pending] == ["tx-001", "tx-002"]
    assert "receiver not ready" in pending[0]["last_error"]
    flag.touch()
    hook.flush()
    assert hook.pending_count() == 0
    delivered = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert delivered == [alert(1), alert(2)]
    hook.close()
