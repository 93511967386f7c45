"""Review cases: the queue's alerts grouped into one case per card, as an analyst works them.

A card with three alerts is one piece of work, not three: the case gathers the card's alerts
that wait (or, once closed, all of them), names the user (from the profiles), and carries

* a **status** from its alerts: ``escalated`` when one is escalated, else ``open`` when one
  is open, else ``closed``;
* an **assignee** (who works it; empty when nobody does);
* the **escalation**, a state with who and why (the note is required), kept until the case
  is closed;
* its **age** (since its oldest alert was queued) and a **priority**: score points (the
  highest score × 100) plus amount points (10 per power of ten of the amount waiting, at
  most 40), so a 0.88 on 880.00 (88 + 29) comes before a 0.95 on 0.50 (95 + 2).

An action (``confirm_fraud``, ``mark_legitimate``, ``escalate``, ``assign``) applies to one or
many cases at once (bulk); a verdict applies to each waiting alert of the case as the
per-alert verdict does (a review row, a label). Escalating a closed case reopens it: its
alerts wait again, escalated (their labels stay until a new verdict). Every action is audited
in ``case_actions``: who, when, the note and the transactions it touched. The API over this
is ``web/case_routes.py``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import msgspec
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    update,
)

from fraudstream.io.records import iso_ms
from fraudstream.io.sqlstore import create_tables, upsert
from fraudstream.web.review import WAITING, ReviewDesk, queue_table

__all__ = ["CASE_ACTIONS", "MAX_CASES_PER_ACTION", "MAX_PER_PAGE", "CaseDesk", "case_priority"]

CASE_ACTIONS = ("confirm_fraud", "mark_legitimate", "escalate", "assign")
MAX_PER_PAGE = 200
MAX_CASES_PER_ACTION = 500

metadata = MetaData()
cases_table = Table(
    "review_cases",
    metadata,
    Column("card_id", String(128), primary_key=True),
    Column("assignee", String(64), nullable=True),
    Column("escalated_by", String(64), nullable=True),
    Column("escalation_note", Text, nullable=True),
    Column("escalated_at", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)
actions_table = Table(
    "case_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_id", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("analyst", String(64), nullable=False),
    Column("note", Text, nullable=False),
    Column("assignee", String(64), nullable=True),
    Column("transactions", Text, nullable=False),  # JSON list of the transaction ids touched
    Column("at", BigInteger, nullable=False),
    Index("ix_case_actions_card", "card_id", "id"),
)

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def case_priority(score: float, amount: float) -> int:
    """Score points (score × 100) plus amount points (10 per power of ten, at most 40).

    >>> case_priority(0.88, 880.0), case_priority(0.95, 0.5), case_priority(0.5, 10**9)
    (117, 97, 90)
    """
    amount_points = min(40.0, 10.0 * math.log10(1.0 + max(0.0, amount)))
    return round(score * 100.0 + amount_points)


def _case_status(statuses: set[str]) -> str:
    if "escalated" in statuses:
        return "escalated"
    return "open" if "open" in statuses else "closed"


class CaseDesk:
    """Cases over the review queue's tables (the same database), and their actions."""

    def __init__(self, desk: ReviewDesk) -> None:
        self.desk = desk
        self.engine = desk.store.engine
        create_tables(self.engine, metadata.sorted_tables)

    def user_name(self, user_id: str | None) -> str | None:
        """The user's name from the running profiles, or None."""
        profile = self.desk.service.pipeline.profiles.get(user_id) if user_id else None
        if not profile:
            return None
        name = " ".join(str(profile.get(k) or "") for k in ("first_name", "last_name")).strip()
        return name or None

    def _alerts(self, card_ids: list[str] | None, waiting_only: bool) -> dict[str, list[Any]]:
        table = queue_table
        query = select(table.c.card_id, table.c.status, table.c.queued_at, table.c.record).order_by(
            table.c.score.desc(), table.c.event_time.desc()
        )
        if waiting_only:
            query = query.where(table.c.status.in_(WAITING))
        grouped: dict[str, list[Any]] = {}
        with self.engine.connect() as connection:
            chunks = [None] if card_ids is None else [
                card_ids[i : i + 500] for i in range(0, len(card_ids), 500)
            ]  # fmt: skip
            for chunk in chunks:
                where = query if chunk is None else query.where(table.c.card_id.in_(chunk))
                for row in connection.execute(where):
                    grouped.setdefault(row.card_id, []).append(row)
        return grouped

    def _states(self, card_ids: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self.engine.connect() as connection:
            for i in range(0, len(card_ids), 500):
                chunk = card_ids[i : i + 500]
                query = select(cases_table).where(cases_table.c.card_id.in_(chunk))
                found.update({row.card_id: row for row in connection.execute(query)})
        return found

    def _case(self, card_id: str, rows: list[Any], state: Any, now_ms: int) -> dict[str, Any]:
        statuses = {row.status for row in rows}
        status = _case_status(statuses)
        # A waiting case is about its waiting alerts; a closed one about all of them.
        shown = [r for r in rows if r.status in WAITING] if status != "closed" else rows
        records = [_decode(row.record) for row in shown]
        amount = sum(float(r.get("transaction", {}).get("amount") or 0.0) for r in records)
        currencies = {r.get("transaction", {}).get("currency") for r in records} - {None}
        score = max(float(r["score"]) for r in records)
        tiers = {r["decision"] for r in records}
        oldest = min(row.queued_at for row in shown)
        times = [r["event_time"] for r in records if r.get("event_time")]
        rules = sorted({reason["rule"] for r in records for reason in r["reasons"]})
        user_id = next((r.get("user_id") for r in records if r.get("user_id")), None)
        escalation = None
        if state is not None and state.escalated_by is not None and status == "escalated":
            escalation = {
                "analyst": state.escalated_by,
                "note": state.escalation_note or "",
                "at": iso_ms(state.escalated_at),
            }
        return {
            "card_id": card_id,
            "user_id": user_id,
            "user_name": self.user_name(user_id),
            "status": status,
            "assignee": None if state is None else state.assignee,
            "escalation": escalation,
            "alerts": len(records),
            "decision": "decline" if "decline" in tiers else "review",
            "score": score,
            "amount": round(amount, 2),
            "currency": currencies.pop() if len(currencies) == 1 else None,
            "priority": case_priority(score, amount),
            "queued_at": iso_ms(oldest),
            "age_s": max(0, (now_ms - oldest) // 1000),
            "first_event_time": min(times) if times else None,
            "last_event_time": max(times) if times else None,
            "rules": rules,
            "transaction_ids": [r["transaction_id"] for r in records],
        }

    def cases(
        self, status: str, search: str, page: int, per_page: int, sort: str = "priority"
    ) -> dict[str, Any]:
        """One page of cases in ``status`` (waiting, open, escalated, closed, all), matching
        ``search`` (card, user id or name, transaction id), highest priority first."""
        now_ms = int(time.time() * 1000)
        grouped = self._alerts(None, waiting_only=status in ("waiting", "open", "escalated"))
        states = self._states(list(grouped))
        wanted = {"waiting": WAITING, "all": (*WAITING, "closed")}.get(status, (status,))
        cases = [
            case
            for card_id, rows in grouped.items()
            if (case := self._case(card_id, rows, states.get(card_id), now_ms))["status"] in wanted
        ]
        needle = search.strip().lower()
        if needle:
            cases = [case for case in cases if _matches(case, needle)]
        if sort == "age":
            cases.sort(key=lambda c: (c["queued_at"], -c["priority"], c["card_id"]))
        else:
            cases.sort(key=lambda c: (-c["priority"], c["queued_at"], c["card_id"]))
        total = len(cases)
        pages = max(1, math.ceil(total / per_page))
        start = (page - 1) * per_page
        return {
            "total": total,
            "alerts": sum(case["alerts"] for case in cases),
            "page": page,
            "per_page": per_page,
            "pages": pages,
            "cases": cases[start : start + per_page],
        }

    def case(self, card_id: str) -> dict[str, Any] | None:
        """One case with its alerts (newest first), the card's history and its action log."""
        rows = self._alerts([card_id], waiting_only=False).get(card_id)
        if not rows:
            return None
        state = self._states([card_id]).get(card_id)
        found = self._case(card_id, rows, state, int(time.time() * 1000))
        shown = set(found["transaction_ids"])
        alerts = []
        for row in rows:
            entry = _decode(row.record)
            entry["status"] = row.status
            entry["queued_at"] = iso_ms(row.queued_at)
            if entry["transaction_id"] in shown:
                alerts.append(entry)
        alerts.sort(key=lambda e: e.get("event_time") or "", reverse=True)
        found["alert_entries"] = alerts
        found["card_history"] = self.desk.card_history(card_id)
        found["actions"] = self.actions(card_id, 100)
        return found

    def actions(self, card_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Case actions, newest first (the audit log)."""
        query = select(actions_table).order_by(actions_table.c.id.desc()).limit(limit)
        if card_id is not None:
            query = query.where(actions_table.c.card_id == card_id)
        with self.engine.connect() as connection:
            return [_action(row) for row in connection.execute(query)]

    def act(
        self, card_ids: list[str], action: str, analyst: str, note: str, assignee: str | None
    ) -> dict[str, Any]:
        """Applies ``action`` to each case; returns the cases done and the card ids unknown."""
        scrub = self.desk.service.decoder.tokenize.scrub  # audit rows hold no card number
        analyst, note = scrub(analyst), scrub(note)
        assignee = None if not assignee else scrub(assignee)
        grouped = self._alerts(card_ids, waiting_only=False)
        done, missing = [], []
        for card_id in dict.fromkeys(card_ids):
            rows = grouped.get(card_id)
            if not rows:
                missing.append(card_id)
                continue
            waiting = [row for row in rows if row.status in WAITING]
            touched = [_decode(row.record)["transaction_id"] for row in waiting]
            if action != "assign":
                for transaction_id in touched:
                    self.desk.verdict(transaction_id, action, analyst, note)
            self._record(card_id, action, analyst, note, assignee, touched)
            done.append({"card_id": card_id, "action": action, "transactions": touched})
        return {"done": done, "missing": missing}

    def _record(
        self,
        card_id: str,
        action: str,
        analyst: str,
        note: str,
        assignee: str | None,
        touched: list[str],
    ) -> None:
        at = int(time.time() * 1000)
        with self.engine.begin() as connection:
            current = connection.execute(
                select(cases_table).where(cases_table.c.card_id == card_id)
            ).first()
            state = (
                dict(current._mapping)
                if current is not None
                else dict.fromkeys(c.name for c in cases_table.columns) | {"card_id": card_id}
            )
            state["updated_at"] = at
            if action == "assign":
                state["assignee"] = assignee
            elif action == "escalate":
                state |= {"escalated_by": analyst, "escalation_note": note, "escalated_at": at}
            else:  # a verdict closes the case: its escalation is over
                state |= {"escalated_by": None, "escalation_note": None, "escalated_at": None}
            upsert(connection, cases_table, [state], ["card_id"])
            connection.execute(
                actions_table.insert(),
                [
                    {
                        "card_id": card_id,
                        "action": action,
                        "analyst": analyst,
                        "note": note,
                        "assignee": assignee if action == "assign" else None,
                        "transactions": _encode(touched).decode(),
                        "at": at,
                    }
                ],
            )
            if action == "escalate" and not touched:
                # A closed case escalated again reopens: its alerts wait as escalated.
                connection.execute(
                    update(queue_table)
                    .where(queue_table.c.card_id == card_id)
                    .values(status="escalated", updated_at=at)
                )


def _matches(case: dict[str, Any], needle: str) -> bool:
    texts = (
        case["card_id"],
        case["user_id"] or "",
        case["user_name"] or "",
        case["assignee"] or "",
    )
    return any(needle in text.lower() for text in texts) or any(
        needle in transaction.lower() for transaction in case["transaction_ids"]
    )


def _action(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "card_id": row.card_id,
        "action": row.action,
        "analyst": row.analyst,
        "note": row.note,
        "assignee": row.assignee,
        "transactions": _decode(row.transactions),
        "at": iso_ms(row.at),
    }
