"""The demo's live side: the web app with the simulator feeding it, as ``fraudstream demo`` runs it.

The simulator's records (seed 002's users and the generated ones, with injected frauds) are
replayed at a steady rate through the same path as ``POST /v1/transactions``, each stamped
with the wall clock when it is sent, so the map's clicks (also "now") and the simulated
traffic share one event time. The batch demo spreads a user's normal transactions at least
45 minutes apart and jitters them around home; a replay a few seconds apart would turn that
jitter into impossible speeds, so a replayed record is placed at the user's home, except an
injected ``impossible_travel`` one (the far city). The other injected frauds keep their shape
(the burst, the tiny charges, the other zipcode, the new device), so they alert live as they
do in the batch run. Ids are ``live-<lap>-<id>``: the stream loops forever.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from fraudstream.web.review import ReviewDesk
from fraudstream.web.service import DecisionService

__all__ = ["LIVE_RATE", "live_record", "queue_batch_alerts", "replay", "serve_demo"]

LIVE_RATE = 5.0


def live_record(
    record: Mapping[str, Any],
    homes: Mapping[str, tuple[float, float]],
    now_ms: int,
    lap: int,
) -> dict[str, Any]:
    """One simulated record as sent live: new id, the wall-clock time, at home unless it travels.

    >>> live_record({"transaction_id": "tx-1", "user_id": "u", "timestamp": 0, "lat": 1.0,
    ...              "lon": 2.0, "scenario": "normal"}, {"u": (51.5, -0.1)}, 5, 0)["lat"]
    51.5
    """
    out = dict(record)
    out["transaction_id"] = f"live-{lap}-{record['transaction_id']}"
    out["timestamp"] = now_ms
    home = homes.get(str(record.get("user_id")))
    scenario = record.get("scenario")
    if scenario not in (None, "impossible_travel") and home is not None and "lat" in record:
        out["lat"], out["lon"] = home
    return out


def replay(
    records: list[dict[str, Any]],
    homes: Mapping[str, tuple[float, float]],
    rate: float = LIVE_RATE,
) -> Callable[[DecisionService], Coroutine[Any, Any, None]]:
    """A background task for :func:`create_app`: ``records`` at ``rate`` per second, looping."""
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")

    async def run(service: DecisionService) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = itertools.count()
        for lap in itertools.count():
            for record in records:
                delay = start + next(sent) / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                now_ms = int(time.time() * 1000)
                await service.decide([live_record(record, homes, now_ms, lap)], None)

    return run


_DECISION_FIELDS = ("transaction_id", "card_id", "user_id", "event_time", "decision", "score")
_SUMMARY_FIELDS = (
    "amount", "lat", "lon", "currency", "merchant_id", "merchant_category", "country", "channel",
)  # fmt: skip


def queue_batch_alerts(desk: ReviewDesk, enriched: Path, chunk: int = 2_000) -> int:
    """The batch run's alerts into the review queue (its decisions into the cards' history).

    ``enriched`` is the batch's enriched output (transaction + decision per line). An alert
    already queued (a second ``demo`` in the same directory) keeps its review status.
    Returns how many alerts were new.
    """
    queued = 0
    rows: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    with enriched.open("rb") as handle:
        for line in handle:
            record = msgspec.json.decode(line)
            row = {name: record.get(name) for name in _DECISION_FIELDS}
            row["reasons"] = record.get("reasons", [])
            row["model"] = record.get("model")
            row["features"] = record.get("features", {})
            rows.append(row)
            summaries.append({k: record[k] for k in _SUMMARY_FIELDS if record.get(k) is not None})
            if len(rows) >= chunk:
                queued += desk.observe(rows, summaries)
                rows, summaries = [], []
    if rows:
        queued += desk.observe(rows, summaries)
    return queued


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def serve_demo(
    directory: Path,
    profiles_path: Path,
    records: Iterable[dict[str, Any]],
    *,
    host: str = "127.0.0.1",
    port: int = 8888,
    seconds: float | None = None,
    rate: float = LIVE_RATE,
    allowed_hosts: Iterable[str] = (),
    decisions_url: str | None = None,
) -> None:
    """Serves the app with ``records`` replayed live; stops after ``seconds`` (or Ctrl-C).

    Reviews, labels and audit logs go to ``directory/web``; decisions to ``decisions_url``
    (the batch run's store, so the app shows its decisions too), else ``directory/web``. The
    token is
    ``$FRAUDSTREAM_TOKEN`` or a new one, printed with a URL that hands it to the page in the
    fragment (never sent to the server); it also admits the reads that
    ``$FRAUDSTREAM_READ_TOKEN``, when set, closes. Only loopback ``Host`` names, ``host`` and
    ``allowed_hosts`` are answered.
    """
    import uvicorn

    from fraudstream.assembly import DEFAULT_STATE_TTL_HOURS, TimeMode, build_pipeline, state_ttl_ms
    from fraudstream.config import ConfigError, load_rows
    from fraudstream.web.app import create_app
    from fraudstream.web.guard import trusted_hosts
    from fraudstream.web.serve import READ_TOKEN_VARIABLE, TOKEN_VARIABLE, api_token

    try:
        hosts = trusted_hosts(host, allowed_hosts)
    except ValueError as exc:
        raise ConfigError(f"--allowed-host: {exc}") from None
    if not _port_free(host, port):
        raise ConfigError(f"port {port} on {host} is in use; pick another with --port")
    homes = {
        str(row["user_id"]): (float(row["home_lat"]), float(row["home_lon"]))
        for row in load_rows(profiles_path, "profiles")
        if row.get("home_lat") is not None and row.get("home_lon") is not None
    }
    pipeline = build_pipeline(
        None, profiles_path, TimeMode.event, 0, 300_000, 1_000, None, None,
        state_ttl_ms(DEFAULT_STATE_TTL_HOURS),
    )  # fmt: skip
    token, generated = api_token()
    app = create_app(
        pipeline,
        token,
        data_dir=directory / "web",
        decisions_url=decisions_url,
        background=[replay(list(records), homes, rate)],
        read_token=os.environ.get(READ_TOKEN_VARIABLE) or None,
        allowed_hosts=hosts,
    )
    enriched = directory / "enriched.jsonl"
    waiting = queue_batch_alerts(app.state.review, enriched) if enriched.is_file() else 0
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    source = "generated; set FRAUDSTREAM_TOKEN to choose it" if generated else TOKEN_VARIABLE
    until = f"for {seconds:g} s" if seconds else "until Ctrl-C"
    sys.stderr.write(
        f"\nthe analyst app, with the simulator feeding it {rate:g} transactions/s ({until}):\n"
        f"  open        http://{host}:{port}/#token={token}\n"
        f"  token       {token}  ({source})\n"
        f"  API docs    http://{host}:{port}/docs\n"
        f"  review      {waiting:,} new alerts of the batch run queued for review\n"
    )
    sys.stderr.flush()
    if seconds:
        timer = threading.Timer(seconds, lambda: setattr(server, "should_exit", True))
        timer.daemon = True
        timer.start()
    server.run()
