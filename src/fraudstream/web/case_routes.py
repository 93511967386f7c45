"""The review cases' API: a page of cases, one case, bulk actions and their log (``web/cases.py``
holds what a case is).

* ``GET /v1/review-cases``: one page of cases with the true total (``reads``);
* ``GET /v1/review-cases/{card_id}``: one case with its alerts, history and action log;
* ``POST /v1/case-actions`` (token): a verdict, an escalation (with a why) or an assignment
  on one or many cases;
* ``GET /v1/case-actions``: the action log, newest first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fraudstream.web.cases import MAX_CASES_PER_ACTION, MAX_PER_PAGE, CaseDesk
from fraudstream.web.guard import ReadAccess, json_response
from fraudstream.web.schemas import AlertEntry, ErrorBody
from fraudstream.web.service import error_body

__all__ = ["CaseActionBody", "cases_router"]


class Escalation(BaseModel):
    analyst: str
    note: str
    at: str


class Case(BaseModel):
    """One card's alerts as a piece of work."""

    card_id: str
    user_id: str | None
    user_name: str | None = Field(description="from the profiles")
    status: str = Field(description="open | escalated | closed")
    assignee: str | None
    escalation: Escalation | None = Field(description="who escalated and why, while escalated")
    alerts: int = Field(description="alerts in the case (waiting ones while it waits)")
    decision: str = Field(description="the worst tier of its alerts: review | decline")
    score: float = Field(description="the highest score of its alerts")
    amount: float = Field(description="the sum of its alerts' amounts")
    currency: str | None
    priority: int = Field(description="score × 100 + 10 per power of ten of the amount (≤ 40)")
    queued_at: str = Field(description="when its oldest alert was queued")
    age_s: int
    first_event_time: str | None
    last_event_time: str | None
    rules: list[str]
    transaction_ids: list[str]


class CaseAction(BaseModel):
    id: int
    card_id: str
    action: str
    analyst: str
    note: str
    assignee: str | None
    transactions: list[str]
    at: str


class CaseDetail(Case):
    alert_entries: list[AlertEntry]
    card_history: list[dict[str, Any]]
    actions: list[CaseAction]


class CasePage(BaseModel):
    total: int = Field(description="cases matching, on every page")
    alerts: int = Field(description="alerts in the matching cases")
    page: int
    per_page: int
    pages: int
    cases: list[Case]


class CaseActionBody(BaseModel):
    """An action on one or more cases (bulk): a verdict on their waiting alerts, an
    escalation (``note`` says why: required), or an assignment (``assignee``, empty to
    unassign)."""

    model_config = ConfigDict(
        strict=True,
        json_schema_extra={  # the validator below, as the document says it
            "anyOf": [
                {"properties": {"action": {"not": {"const": "escalate"}}}},
                {"properties": {"note": {"pattern": "\\S"}}, "required": ["note"]},
            ]
        },
    )

    card_ids: list[str] = Field(min_length=1, max_length=MAX_CASES_PER_ACTION)
    action: Literal["confirm_fraud", "mark_legitimate", "escalate", "assign"]
    analyst: str = Field(min_length=1, max_length=64, description="who acts")
    note: str = Field(default="", max_length=2000)
    assignee: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _escalation_says_why(self) -> CaseActionBody:
        if self.action == "escalate" and not self.note.strip():
            raise ValueError("an escalation needs a note saying why")
        return self


class CaseActionResult(BaseModel):
    done: list[dict[str, Any]]
    missing: list[str] = Field(description="card ids with no case")


def cases_router(cases: CaseDesk, authorized: Callable[..., None], reads: ReadAccess) -> APIRouter:
    """Cases (GET, ``reads``), actions on them (POST, token), the action log (GET)."""
    router = APIRouter(tags=["review"])
    scrub = cases.desk.service.decoder.tokenize.scrub

    @router.get(
        "/v1/review-cases",
        response_model=CasePage,
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="The review queue as cases (one per card), a page at a time",
    )
    async def list_cases(
        status: Literal["waiting", "open", "escalated", "closed", "all"] = "waiting",
        search: str = Query("", max_length=200, description="card, user id or name, transaction"),
        sort: Literal["priority", "age"] = "priority",
        page: int = Query(1, ge=1, le=1_000_000),
        per_page: int = Query(50, ge=1, le=MAX_PER_PAGE),
    ) -> Response:
        return json_response(200, cases.cases(status, scrub(search), page, per_page, sort))

    @router.get(
        "/v1/review-cases/{card_id}",
        response_model=CaseDetail,
        dependencies=reads.dependencies,
        responses={**reads.responses, 404: {"model": ErrorBody, "description": "no such case"}},
        summary="One case: its alerts, the card's history, its action log",
    )
    async def one_case(card_id: str) -> Response:
        card_id = scrub(card_id)
        found = cases.case(card_id)
        if found is None:
            message = f"no case for card_id {card_id!r} in the review queue"
            return json_response(404, error_body("card_id", message))
        return json_response(200, found)

    @router.post(
        "/v1/case-actions",
        response_model=CaseActionResult,
        dependencies=[Depends(authorized)],
        summary="Act on cases (bulk): confirm_fraud, mark_legitimate, escalate, assign",
    )
    async def act(body: CaseActionBody) -> Response:
        card_ids = [scrub(card_id) for card_id in body.card_ids]
        result = cases.act(card_ids, body.action, body.analyst, body.note, body.assignee)
        return json_response(200, result)

    @router.get(
        "/v1/case-actions",
        response_model=list[CaseAction],
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="The case action log (who, when, what, why), newest first",
    )
    async def action_log(
        card_id: str | None = None, limit: int = Query(100, ge=1, le=10_000)
    ) -> Response:
        found = cases.actions(None if card_id is None else scrub(card_id), limit)
        return json_response(200, found)

    return router
