"""`fraudstream flink run --store --webhook --alert-command --lakehouse`: as `fraudstream run`
does them.

Both runtimes decide the same 3,000 demo records with the same hooks: the decision stores
hold the same decisions, the webhook receives every alert (signed with the shared secret,
the first deliveries refused and retried), the command runs once per alert with the
transaction id as delivery id, and the Iceberg lakehouses hold the same rows, each once. The
keyed job runs at parallelism 2: two subtasks write the one SQLite store, stage lakehouse
rows and deliver alerts side by side; the fused and sharded graphs too, and a sharded job
failed on purpose mid-stream: after its restart from the last checkpoint each decision is
stored once and in the lakehouse once, and every alert was delivered (some twice: at least
once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from flink_helpers import FRAUDSTREAM, SECRET, WALL_CLOCK, Receiver

from fraudstream.io.lakehouse import open_table
from fraudstream.io.sqlstore import DecisionStore
from fraudstream.simulate.demo import demo_records


def stored(path: Path) -> dict[str, dict[str, Any]]:
    store = DecisionStore(str(path))
    try:
        rows = store.list(None, limit=100_000, card_id=None)
    finally:
        store.close()
    return {r["transaction_id"]: {k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rows}


LAKEHOUSE_COLUMNS = (
    "transaction_id", "card_id", "user_id", "event_time", "amount", "merchant_id", "device_id",
    "decision", "score", "rules", "reasons", "features",
)  # fmt: skip


def lakehouse(path: Path) -> list[dict[str, Any]]:
    """The lakehouse's rows without the wall clock and lineage, in transaction-id order."""
    rows = open_table(str(path)).scan(selected_fields=LAKEHOUSE_COLUMNS).to_arrow().to_pylist()
    return sorted(rows, key=lambda row: row["transaction_id"])


def without_wall_clock(body: bytes) -> dict[str, Any]:
    return {k: v for k, v in json.loads(body).items() if k not in WALL_CLOCK}


FAILED_ONCE = (  # the sharded job read line by line fails once after a checkpoint, restarts
    "--read-lines", "--fail-once-after", "1500", "--batch-bytes", "50000",
    "--checkpoint-interval-ms", "100", "--restart-delay-ms", "200",
)  # fmt: skip


@pytest.mark.parametrize(
    ("graph", "parallelism", "extra"),
    [("keyed", 2, ()), ("fused", 1, ()), ("sharded", 2, ()), ("sharded", 1, FAILED_ONCE)],
    ids=["keyed", "fused", "sharded", "sharded-failed-once"],
)
def test_flink_hooks_write_and_deliver_as_run(
    graph: str, parallelism: int, extra: tuple[str, ...], tmp_path: Path, receiver: Receiver
) -> None:
    records = demo_records(count=3000, seed=5)
    source = tmp_path / "tx.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    env = dict(os.environ, TEST_WEBHOOK_SECRET=SECRET.decode())
    runs = {}
    for runtime in ("embedded", "flink"):
        out = tmp_path / runtime
        (out / "commands").mkdir(parents=True)
        hooks = [
            "--store", str(out / "decisions.db"), "--webhook", receiver.url,
            "--webhook-secret-env", "TEST_WEBHOOK_SECRET",
            "--alert-command", f"sh -c 'cat > {out}/commands/\"$FRAUDSTREAM_DELIVERY_ID\"'",
            "--lakehouse", str(out / "lakehouse"),
        ]  # fmt: skip
        if runtime == "embedded":
            command = [FRAUDSTREAM, "run", "--alerts", str(out / "alerts.jsonl")]
        else:
            command = [
                FRAUDSTREAM, "flink", "run", "--target", "local", "--graph", graph,
                "--parallelism", str(parallelism), *extra,
                "--alerts", str(out / "alerts"), "--checkpoint-dir", str(out / "checkpoints"),
            ]  # fmt: skip
        first = len(receiver.received)
        done = subprocess.run(
            [*command, "--input", str(source), *hooks, "--quiet"],
            capture_output=True, text=True, env=env, timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        runs[runtime] = (out, receiver.received[first:])

    embedded_out, embedded_posts = runs["embedded"]
    flink_out, flink_posts = runs["flink"]
    if extra:  # replayed after the restart: stored once, delivered at least once
        assert (flink_out / "checkpoints" / "injected-fault").exists(), "the fault did not fire"
    decisions = stored(embedded_out / "decisions.db")
    assert len(decisions) == len(records)
    assert stored(flink_out / "decisions.db") == decisions  # the same decisions, once each
    rows = lakehouse(embedded_out / "lakehouse")
    assert [row["transaction_id"] for row in rows] == sorted(decisions)
    assert lakehouse(flink_out / "lakehouse") == rows  # the same rows, once each

    alerts = {tid for tid, d in decisions.items() if d["decision"] != "approve"}
    assert alerts
    for posts in (embedded_posts, flink_posts):
        assert {delivery for _, _, delivery in posts} == alerts  # none lost (refusals retried)
        for body, signature, delivery in posts:
            mac = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(signature, f"sha256={mac}")
            assert json.loads(body)["transaction_id"] == delivery
    bodies = {d: without_wall_clock(b) for b, _, d in embedded_posts}
    assert {d: without_wall_clock(b) for b, _, d in flink_posts} == bodies

    for out in (embedded_out, flink_out):
        ran = {path.name: json.loads(path.read_bytes()) for path in (out / "commands").iterdir()}
        assert set(ran) == alerts  # the command ran for each alert, its id as delivery id
        assert {k: without_wall_clock(json.dumps(v).encode()) for k, v in ran.items()} == bodies


def test_flink_hooks_check_as_run(tmp_path: Path) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text('{"transaction_id": "a", "card_id": "c", "timestamp": 1, "amount": 1}\n')
    env = {k: v for k, v in os.environ.items() if k != "UNSET_SECRET_VARIABLE"}
    done = subprocess.run(
        [FRAUDSTREAM, "flink", "run", "--input", str(source), "--webhook", "http://127.0.0.1:9/",
         "--webhook-secret-env", "UNSET_SECRET_VARIABLE"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--webhook-secret-env: UNSET_SECRET_VARIABLE is not set" in done.stderr
    assert "Traceback" not in done.stderr
