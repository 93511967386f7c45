"""The review queue: alerts waiting for an analyst, their verdicts, and the labels they make.

Every alert (a decision that is not ``approve``) enters the queue as ``open``. An analyst
gives one of three verdicts, each recorded with who, when and a note:

* ``confirm_fraud``: closes the alert and labels the transaction ``is_fraud = true``;
* ``mark_legitimate``: closes it with ``is_fraud = false`` (a false positive);
* ``escalate``: keeps it in the queue as ``escalated`` for a senior analyst; no label yet.

A verdict can also be given on a decided transaction that did not alert (a chargeback on an
approved payment). Labels are one per transaction, the latest verdict winning, in the form the
models consume: ``transaction_id, is_fraud, label_time`` plus ``analyst, verdict, note``.

Queue, reviews and labels are SQL tables (SQLAlchemy Core): a SQLite file in the app's data
directory by default, or any database URL (PostgreSQL), so they survive a restart. The card's
recent history shown next to an alert is kept in memory (the last 8 decisions of the 20,000
most recently active cards); after a restart the queue's own rows stand in for it.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    select,
    update,
)
from sqlalchemy.pool import StaticPool

from fraudstream.io.records import iso_ms
from fraudstream.io.sqlstore import (
    create_tables,
    epoch_ms,
    make_engine,
    new_rows_inserter,
    upsert,
)
from fraudstream.web.guard import ReadAccess, json_response
from fraudstream.web.schemas import AlertEntry, ErrorBody, Label, Review, VerdictResult
from fraudstream.web.service import DecisionService, error_body

__all__ = ["VERDICTS", "ReviewDesk", "ReviewStore", "Verdict", "review_router"]

VERDICTS = ("confirm_fraud", "mark_legitimate", "escalate")
WAITING = ("open", "escalated")
HISTORY_CARDS = 20_000
HISTORY_PER_CARD = 8
MAX_LABELS_PER_READ = 10_000_000  # a LIMIT the databases take (SQLite's is a 64-bit integer)

metadata = MetaData()
queue_table = Table(
    "review_queue",
    metadata,
    Column("transaction_id", String(128), primary_key=True),
    Column("card_id", String(128), nullable=False),
    Column("user_id", String(128), nullable=True),
    Column("event_time", BigInteger, nullable=False),  # epoch ms
    Column("decision", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("status", String(16), nullable=False),  # open | escalated | closed
    Column("record", Text, nullable=False),  # the decision with its transaction, JSON
    Column("queued_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_review_queue_status", "status", "queued_at"),
    Index("ix_review_queue_card", "card_id", "event_time"),
)
reviews_table = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("transaction_id", String(128), nullable=False, index=True),
    Column("verdict", String(32), nullable=False),
    Column("analyst", String(64), nullable=False),
    Column("note", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
)
labels_table = Table(
    "labels",
    metadata,
    Column("transaction_id", String(128), primary_key=True),
    Column("is_fraud", Boolean, nullable=False),
    Column("label_time", BigInteger, nullable=False, index=True),
    Column("analyst", String(64), nullable=False),
    Column("verdict", String(32), nullable=False),
    Column("note", Text, nullable=False),
)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


class ReviewStore:
    """The queue, reviews and labels tables; ``url`` None keeps them in memory (SQLite)."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.engine: Engine
        if url is None:
            self.engine = create_engine(
                "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            self.engine = make_engine(url)
        create_tables(self.engine, metadata.sorted_tables)  # two processes may open it at once
        self._insert_new: Callable[[list[dict[str, Any]]], int] | None = new_rows_inserter(
            self.engine, queue_table, "transaction_id"
        )

    def enqueue(self, items: list[dict[str, Any]]) -> int:
        """New alerts, ``open``; an alert already queued keeps its status. Returns how many."""
        now = _now_ms()
        rows = [
            {
                "transaction_id": item["transaction_id"],
                "card_id": item["card_id"],
                "user_id": item["user_id"],
                "event_time": epoch_ms(item["event_time"]) or 0,
                "decision": item["decision"],
                "score": item["score"],
                "status": "open",
                "record": _encode(item).decode(),
                "queued_at": now,
                "updated_at": now,
            }
            for item in items
        ]
        if self._insert_new is not None:
            return self._insert_new(rows)
        ids = [row["transaction_id"] for row in rows]
        with self.engine.begin() as connection:
            known = {
                found
                for start in range(0, len(ids), 500)
                for found in connection.execute(
                    select(queue_table.c.transaction_id).where(
                        queue_table.c.transaction_id.in_(ids[start : start + 500])
                    )
                ).scalars()
            }
            fresh = list(
                {r["transaction_id"]: r for r in rows if r["transaction_id"] not in known}.values()
            )
            if fresh:
                connection.execute(queue_table.insert(), fresh)
        return len(fresh)

    def queue(self, statuses: tuple[str, ...], limit: int) -> list[dict[str, Any]]:
        """Queue entries in these statuses, the highest score first, then the newest."""
        table = queue_table
        query = (
            select(table.c.record, table.c.status, table.c.queued_at)
            .where(table.c.status.in_(statuses))
            .order_by(table.c.score.desc(), table.c.event_time.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query)]

    def entry(self, transaction_id: str) -> dict[str, Any] | None:
        """One queue entry, or None."""
        table = queue_table
        query = select(table.c.record, table.c.status, table.c.queued_at).where(
            table.c.transaction_id == transaction_id
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else _entry(row)

    def card_alerts(self, card_id: str, limit: int) -> list[dict[str, Any]]:
        """The card's queued alerts, newest first (history after a restart)."""
        table = queue_table
        query = (
            select(table.c.record, table.c.status, table.c.queued_at)
            .where(table.c.card_id == card_id)
            .order_by(table.c.event_time.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query)]

    def waiting(self) -> int:
        """How many alerts wait for an analyst."""
        query = select(func.count()).where(queue_table.c.status.in_(WAITING))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    def record(
        self, transaction_id: str, verdict: str, analyst: str, note: str, queued: bool
    ) -> dict[str, Any]:
        """Records a verdict (review row, queue status, label) in one transaction."""
        at = _now_ms()
        review: dict[str, Any] = {"transaction_id": transaction_id, "verdict": verdict}
        review |= {"analyst": analyst, "note": note, "at": at}
        label: dict[str, Any] | None = None
        with self.engine.begin() as connection:
            connection.execute(reviews_table.insert(), [review])
            if queued:
                status = "escalated" if verdict == "escalate" else "closed"
                connection.execute(
                    update(queue_table)
                    .where(queue_table.c.transaction_id == transaction_id)
                    .values(status=status, updated_at=at)
                )
            if verdict != "escalate":
                is_fraud = verdict == "confirm_fraud"
                label = {"transaction_id": transaction_id, "is_fraud": is_fraud}
                label |= {"label_time": at, "analyst": analyst, "verdict": verdict, "note": note}
                upsert(connection, labels_table, [label], ["transaction_id"])
        return {"review": _review(review), "label": None if label is None else _label(label)}

    def reviews(self, transaction_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Review actions, newest first."""
        query = select(reviews_table).order_by(reviews_table.c.id.desc()).limit(limit)
        if transaction_id is not None:
            query = query.where(reviews_table.c.transaction_id == transaction_id)
        with self.engine.connect() as connection:
            return [_review(row._asdict()) for row in connection.execute(query)]

    def labels(self, since_ms: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Labels in label-time order: ``transaction_id, is_fraud, label_time`` (+ who, why)."""
        query = select(labels_table).order_by(
            labels_table.c.label_time, labels_table.c.transaction_id
        )
        if since_ms is not None:
            query = query.where(labels_table.c.label_time >= since_ms)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [_label(row._asdict()) for row in connection.execute(query)]

    def close(self) -> None:
        """Releases the connections."""
        self.engine.dispose()


def _entry(row: Any) -> dict[str, Any]:
    entry: dict[str, Any] = _decode(row.record)
    entry["status"] = row.status
    entry["queued_at"] = iso_ms(row.queued_at)
    return entry


def _review(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row[name] for name in ("transaction_id", "verdict", "analyst", "note")}
    out["at"] = iso_ms(row["at"])
    if "id" in row:
        out["id"] = row["id"]
    return out


def _label(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "transaction_id": row["transaction_id"],
        "is_fraud": bool(row["is_fraud"]),
        "label_time": iso_ms(row["label_time"]),
        "analyst": row["analyst"],
        "verdict": row["verdict"],
        "note": row["note"],
    }


class ReviewDesk:
    """Feeds the queue from the decisions, keeps each card's recent history, takes verdicts."""

    def __init__(self, store: ReviewStore, service: DecisionService) -> None:
        self.store = store
        self.service = service
        # (row, summary) as JSON bytes: kept dicts cost every garbage-collector pass
        self.history: OrderedDict[str, deque[bytes]] = OrderedDict()
        service.listeners.append(self.observe)

    def observe(self, rows: list[dict[str, Any]], summaries: list[dict[str, Any]]) -> int:
        """A service listener: alerts into the queue, every decision into its card's history.

        Returns how many alerts were new to the queue.
        """
        alerts = []
        history = self.history
        for row, summary in zip(rows, summaries, strict=True):
            card = row["card_id"]
            line = history.get(card)
            if line is None:
                line = history[card] = deque(maxlen=HISTORY_PER_CARD)
                if len(history) > HISTORY_CARDS:
                    history.popitem(last=False)
            else:
                history.move_to_end(card)
            line.append(_encode((row, summary)))
            if row["decision"] != "approve":
                alerts.append({**row, "transaction": summary})
        return self.store.enqueue(alerts) if alerts else 0

    def waiting(self) -> int:
        """Alerts waiting for an analyst."""
        return self.store.waiting()

    def card_history(self, card_id: str) -> list[dict[str, Any]]:
        """The card's recent decisions, newest first: time, amount, place, tier, rules."""
        line = self.history.get(card_id)
        if line is None:
            return [_brief(entry, entry.get("transaction", {})) for entry in
                    self.store.card_alerts(card_id, HISTORY_PER_CARD)]  # fmt: skip
        return [_brief(*_decode(entry)) for entry in reversed(line)]

    def verdict(self, transaction_id: str, verdict: str, analyst: str, note: str) -> Any:
        """Records a verdict; None when the transaction is neither queued nor decided here.

        Card numbers in the note, the analyst's name or the id are tokenized first, as they
        are where records enter (DESIGN.md "Card numbers"): reviews.db never holds one.
        """
        scrub = self.service.decoder.tokenize.scrub
        transaction_id, analyst, note = scrub(transaction_id), scrub(analyst), scrub(note)
        queued = self.store.entry(transaction_id) is not None
        if not queued and transaction_id not in self.service.decisions:
            return None
        return self.store.record(transaction_id, verdict, analyst, note, queued)


def _brief(row: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "transaction_id": row["transaction_id"],
        "event_time": row["event_time"],
        "decision": row["decision"],
        "score": row["score"],
        "rules": [reason["rule"] for reason in row["reasons"]],
        **{k: summary[k] for k in ("amount", "currency", "merchant_id", "country") if k in summary},
    }


_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def since_time(text: str) -> int:
    """Epoch ms from ``?since=``: ASCII digits (epoch ms) or an RFC 3339 date-time; else
    ValueError (an empty value too).

    >>> since_time("1546301160000"), since_time("2019-01-01T00:06:00Z")
    (1546301160000, 1546301160000)
    >>> since_time("")
    Traceback (most recent call last):
    ...
    ValueError: not epoch milliseconds nor an RFC 3339 date-time: ''
    """
    if text.isascii() and text.isdigit() and len(text) <= 15:
        return int(text)
    if _RFC3339.fullmatch(text):
        if text[17:19] == "60":  # a leap second: valid RFC 3339 that datetime cannot hold
            text = text[:17] + "59" + text[19:]
        try:
            found = epoch_ms(text.upper().replace("Z", "+00:00"))
        except (ValueError, OverflowError):
            pass
        else:
            assert found is not None
            return found
    raise ValueError(f"not epoch milliseconds nor an RFC 3339 date-time: {text[:40]!r}")


Verdict = Literal["confirm_fraud", "mark_legitimate", "escalate"]


class VerdictBody(BaseModel):
    """An analyst's verdict on one transaction."""

    model_config = ConfigDict(strict=True)  # JSON strings are strings: no coercion

    verdict: Verdict
    analyst: str = Field(min_length=1, max_length=64, description="who decided")
    note: str = Field(default="", max_length=2000)


def review_router(
    desk: ReviewDesk, authorized: Callable[..., None], reads: ReadAccess
) -> APIRouter:
    """The queue (GET), verdicts (POST, token), reviews and labels (GET, ``reads``)."""
    router = APIRouter(tags=["review"])
    scrub = desk.service.decoder.tokenize.scrub

    @router.get(
        "/v1/review-queue",
        response_model=list[AlertEntry],
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="Alerts waiting for an analyst (or in a status)",
    )
    async def queue(
        status: Literal["waiting", "open", "escalated", "closed", "all"] = "waiting",
        limit: int = Query(100, ge=1, le=1000),
    ) -> Response:
        statuses = {
            "waiting": WAITING,
            "all": (*WAITING, "closed"),
        }.get(status, (status,))
        return json_response(200, desk.store.queue(statuses, limit))

    @router.get(
        "/v1/review-queue/{transaction_id}",
        response_model=AlertEntry,
        dependencies=reads.dependencies,
        responses={**reads.responses, 404: {"model": ErrorBody, "description": "not queued"}},
        summary="One alert with its card's history",
    )
    async def entry(transaction_id: str) -> Response:
        transaction_id = scrub(transaction_id)  # ids are kept as scrubbed where records enter
        found = desk.store.entry(transaction_id)
        if found is None:
            message = f"no alert for transaction_id {transaction_id!r} in the review queue"
            return json_response(404, error_body("transaction_id", message))
        found["card_history"] = desk.card_history(found["card_id"])
        found["reviews"] = desk.store.reviews(transaction_id, 50)
        return json_response(200, found)

    @router.post(
        "/v1/reviews/{transaction_id}",
        response_model=VerdictResult,
        summary="Record a verdict: confirm_fraud, mark_legitimate or escalate",
        dependencies=[Depends(authorized)],
        responses={404: {"model": ErrorBody, "description": "neither queued nor decided here"}},
    )
    async def review(transaction_id: str, body: VerdictBody) -> Response:
        transaction_id = scrub(transaction_id)
        result = desk.verdict(transaction_id, body.verdict, body.analyst, body.note)
        if result is None:
            message = f"no decision for transaction_id {transaction_id!r} to review"
            return json_response(404, error_body("transaction_id", message))
        return json_response(200, result)

    @router.get(
        "/v1/reviews",
        response_model=list[Review],
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="Review actions (who, when, verdict, note), newest first",
    )
    async def reviews(
        transaction_id: str | None = None, limit: int = Query(100, ge=1, le=10_000)
    ) -> Response:
        found = desk.store.reviews(None if transaction_id is None else scrub(transaction_id), limit)
        return json_response(200, found)

    @router.get(
        "/v1/labels",
        response_model=list[Label],
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="Labels for the models: transaction_id, is_fraud, label_time",
    )
    async def labels(
        since: str | None = Query(
            None,
            description="label_time from: epoch milliseconds (digits) or an RFC 3339 date-time",
            json_schema_extra={
                "anyOf": [
                    {"type": "string", "pattern": "^[0-9]{1,15}$"},
                    {"type": "string", "format": "date-time"},
                ]
            },
        ),
        limit: int | None = Query(None, ge=1, le=MAX_LABELS_PER_READ),
    ) -> Response:
        since_ms = None
        if since is not None:
            try:
                since_ms = since_time(since)
            except ValueError as exc:
                return json_response(422, error_body("since", str(exc)))
        return json_response(200, desk.store.labels(since_ms, limit))

    return router
