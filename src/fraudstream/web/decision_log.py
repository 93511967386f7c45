"""The app's decisions kept in the decision store, for the feed's back-fill, the map's tracks
and totals that outlive a restart.

Every decision the app makes is written to the decision store (``io/sqlstore.py``, the table
``fraudstream decisions list/show`` reads): ``decisions.db`` in the app's data directory, or
any database URL. Next to it, ``decision_transactions`` keeps what the decision record does
not carry and the page shows: each transaction's amount, currency, place and merchant.

Writes are batched and off the event loop: a decided batch is appended to a pending list,
handed to one writer thread when 500 rows wait or half a second has passed, and every read
first waits for what was handed over (so it sees every decision made before it); the hot
path pays an append. Without a data directory nothing is written and the last 10,000
decisions are kept in memory instead.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

import msgspec
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import Column, Float, MetaData, String, Table, func, select

from fraudstream.io.records import iso_ms
from fraudstream.io.sqlstore import DecisionStore, create_tables, decisions_table, upsert
from fraudstream.web.guard import ReadAccess, json_response
from fraudstream.web.schemas import Reason

__all__ = ["DecisionLog", "decision_log_router"]

FLUSH_ROWS = 500
FLUSH_SECONDS = 0.5
KEPT_IN_MEMORY = 10_000
MAX_LISTED = 1_000
_SUMMARY_FIELDS = ("amount", "currency", "lat", "lon", "merchant_id", "country")

metadata = MetaData()
transactions_table = Table(
    "decision_transactions",
    metadata,
    Column("transaction_id", String(128), primary_key=True),
    Column("user_id", String(128), nullable=True, index=True),
    Column("amount", Float, nullable=True),
    Column("currency", String(16), nullable=True),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("merchant_id", String(128), nullable=True),
    Column("country", String(16), nullable=True),
)

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class DecisionLog:
    """Decisions (with their transactions' amount and place) in the store, or in memory."""

    def __init__(self, url: str | None) -> None:
        self.store = None if url is None else DecisionStore(url)
        if self.store is not None:
            create_tables(self.store.engine, metadata.sorted_tables)
        self.pending: list[tuple[dict[str, Any], dict[str, Any]]] = []
        # (user, tier, event time, the row with its summary as JSON): no dicts kept, for
        # dicts kept by the thousand cost every pass of the cyclic garbage collector
        self.memory: deque[tuple[Any, str, str, bytes]] = deque(maxlen=KEPT_IN_MEMORY)
        self.flushed_at = time.monotonic()
        # one thread: batches are written in the order they were decided
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decision-log")
        self.written: Future[None] | None = None

    def observe(self, rows: list[dict[str, Any]], summaries: list[dict[str, Any]]) -> None:
        """A service listener: the batch waits to be written (or is kept in memory)."""
        if self.store is None:
            self.memory.extend(
                (row.get("user_id"), row["decision"], row.get("event_time") or "",
                 _encode({**row, "transaction": summary}))
                for row, summary in zip(rows, summaries, strict=True)
            )  # fmt: skip
            return
        self.pending.extend(zip(rows, summaries, strict=True))
        if len(self.pending) >= FLUSH_ROWS or time.monotonic() - self.flushed_at > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Hands what waits to the writer thread."""
        self.flushed_at = time.monotonic()
        if self.store is None or not self.pending:
            return
        pending, self.pending = self.pending, []
        self.written = self.writer.submit(self._write, pending)
        self.written.add_done_callback(_report_failure)

    def settle(self) -> None:
        """Hands what waits to the writer and waits until all of it is written."""
        self.flush()
        written = self.written
        if written is not None:
            written.result()  # a write that failed says so here

    def _write(self, pending: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        assert self.store is not None
        self.store.write_dicts([row for row, _ in pending])
        places = [
            {"transaction_id": row["transaction_id"], "user_id": row.get("user_id")}
            | {name: summary.get(name) for name in _SUMMARY_FIELDS}
            for row, summary in pending
        ]
        with self.store.engine.begin() as connection:
            upsert(connection, transactions_table, places, ["transaction_id"])

    def recent(
        self, limit: int, user_id: str | None = None, decision: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest decisions (by event time), each with its ``transaction`` summary."""
        if self.store is None:
            kept = [
                (event_time, entry)
                for user, tier, event_time, entry in reversed(self.memory)
                if (user_id is None or user == user_id) and (decision is None or tier == decision)
            ]
            kept.sort(key=lambda found: found[0], reverse=True)
            return [_decode(entry) for _, entry in kept[:limit]]
        self.settle()
        records = self.store.list(decision=decision, limit=limit, user_id=user_id)
        ids = [record["transaction_id"] for record in records]
        places: dict[str, dict[str, Any]] = {}
        with self.store.engine.connect() as connection:
            for start in range(0, len(ids), 500):
                query = select(transactions_table).where(
                    transactions_table.c.transaction_id.in_(ids[start : start + 500])
                )
                for row in connection.execute(query):
                    place = {k: getattr(row, k) for k in _SUMMARY_FIELDS}
                    places[row.transaction_id] = {k: v for k, v in place.items() if v is not None}
        return [{**record, "transaction": places.get(record["transaction_id"], {})}
                for record in records]  # fmt: skip

    def totals(self) -> tuple[dict[str, int], dict[str, int], str | None]:
        """What the store holds: decisions by tier, alerts by rule, the first decision's time.

        Alerts by rule count each alert (a decision that is not ``approve``) once per rule
        among its reasons.
        """
        if self.store is None:
            return {}, {}, None
        self.settle()
        table = decisions_table
        tiers: dict[str, int] = {}
        rules: dict[str, int] = {}
        with self.store.engine.connect() as connection:
            counted = select(table.c.decision, func.count()).group_by(table.c.decision)
            for tier, count in connection.execute(counted):
                tiers[str(tier)] = int(count)
            alerts = select(table.c.reasons).where(table.c.decision != "approve")
            for (reasons,) in connection.execute(alerts):
                for rule in {reason["rule"] for reason in _decode(reasons)}:
                    rules[rule] = rules.get(rule, 0) + 1
            first = connection.execute(select(func.min(table.c.processed_at))).scalar()
        return tiers, rules, None if first is None else iso_ms(first)

    def close(self) -> None:
        """Writes what waits and releases the connections."""
        self.settle()
        self.writer.shutdown()
        if self.store is not None:
            self.store.close()


def _report_failure(written: Future[None]) -> None:
    """A batch the store refused (the database went away) is said, not silently lost."""
    if not written.cancelled() and written.exception() is not None:
        sys.stderr.write(f"error: decisions not written to the store: {written.exception()}\n")


class LoggedDecision(BaseModel):
    """A decision from the store with its transaction's amount and place (``transaction``);
    a decision written by a batch run has no ``processed_at`` or ``latency_ms``."""

    transaction_id: str
    card_id: str | None
    user_id: str | None
    event_time: str | None
    decision: str
    score: float | None
    reasons: list[Reason]
    model: dict[str, Any] | None
    features: dict[str, Any]
    processed_at: str | None = None
    latency_ms: float | None = None
    transaction: dict[str, Any]


def decision_log_router(log: DecisionLog, reads: ReadAccess) -> APIRouter:
    """``GET /v1/decisions``: the newest decisions, of a user or a tier."""
    router = APIRouter()

    @router.get(
        "/v1/decisions",
        response_model=list[LoggedDecision],
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="The newest decisions (by event time) from the decision store",
    )
    async def recent(
        limit: int = Query(100, ge=1, le=MAX_LISTED),
        user_id: str | None = Query(None, max_length=128),
        decision: Literal["approve", "review", "decline"] | None = None,
    ) -> Response:
        return json_response(200, log.recent(limit, user_id, decision))

    return router
