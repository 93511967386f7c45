"""User rules (``when`` expressions, docs/rules.md) edited while the pipeline runs.

* ``POST /v1/rules/validate``: checks an expression against the running rules (their lists
  and standard rule ids) without applying it: 200, or 422 with the message and the 1-based
  column.
* ``PUT /v1/rules/user/{rule_id}`` (token): the whole rule; adds it or replaces the one of
  that id. ``DELETE /v1/rules/user/{rule_id}?who=&note=`` (token) removes it.

A change goes through :meth:`fraudstream.web.admin.Admin.change` like every rule change:
applied between two batches (detector and aggregate state kept) and audited; a refused one
(422) is audited as refused and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParameter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from fraudstream.config import ConfigError
from fraudstream.rules import (
    RuleSet,
    check_condition,
    names_of,
    with_user_rule,
    without_user_rule,
)
from fraudstream.rules.check import RuleTypeError
from fraudstream.rules.parse import RuleSyntaxError
from fraudstream.web.admin import Admin, Change
from fraudstream.web.guard import ReadAccess, json_response
from fraudstream.web.schemas import (
    ErrorBody,
    ExpressionChecked,
    ExpressionErrorBody,
    RulesShown,
)
from fraudstream.web.service import error_body

__all__ = ["expression_error", "user_rules_router"]

MAX_EXPRESSION = 4_000  # the parser's own limit
RULE_ID = r"^[A-Za-z][A-Za-z0-9_]*$"


class Expression(BaseModel):
    """A ``when`` expression to check against the running rules (their lists and rules)."""

    model_config = ConfigDict(strict=True)

    when: str = Field(min_length=1, max_length=MAX_EXPRESSION)


class UserRuleChange(Change):
    """A user rule, whole: replaces the rule of that id or adds it."""

    when: str = Field(min_length=1, max_length=MAX_EXPRESSION)
    score: float | None = Field(default=None, ge=0, le=1)
    outcome: Literal["decline", "review", "approve"] | None = None
    enabled: bool = True
    mode: Literal["live", "shadow"] = "live"
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    description: str = Field(default="", max_length=2000)


def expression_error(error: RuleSyntaxError | RuleTypeError | ConfigError) -> dict[str, Any]:
    """The 422 body of a refused expression or user rule: the message and, when the
    expression is at fault, its 1-based column."""
    column = getattr(error, "column", None)
    field = "when" if column is not None else "rule"
    return {"detail": [{"field": field, "message": str(error), "column": column}]}


def user_rules_router(
    admin: Admin, authorized: Callable[..., None], reads: ReadAccess
) -> APIRouter:
    """User rules: checking an expression as reads say, changes with the token."""
    router = APIRouter(tags=["admin"])
    changes = [Depends(authorized)]

    refused_rule = {
        "model": ExpressionErrorBody,
        "description": "the rule is refused: the message, and the column when its `when` is",
    }

    @router.post(
        "/v1/rules/validate",
        response_model=ExpressionChecked,
        dependencies=reads.dependencies,
        responses={**reads.responses, 422: refused_rule},
        summary="Check a `when` expression against the running rules, without applying it",
    )
    async def validate(body: Expression) -> Response:
        try:
            check_condition(body.when, names_of(admin.pipeline.rules))
        except (RuleSyntaxError, RuleTypeError) as exc:
            return json_response(422, expression_error(exc))
        return json_response(200, {"valid": True})

    @router.put(
        "/v1/rules/user/{rule_id}",
        response_model=RulesShown,
        summary="Add a user rule, or replace the one of that id",
        dependencies=changes,
        responses={422: refused_rule},
    )
    async def put_user_rule(
        body: UserRuleChange,
        rule_id: str = PathParameter(min_length=1, max_length=64, pattern=RULE_ID),
    ) -> Response:
        entry: dict[str, Any] = {"id": rule_id, "when": body.when, "enabled": body.enabled}
        entry |= {"severity": body.severity, "description": body.description}
        entry |= {"score": body.score, "outcome": body.outcome, "mode": body.mode}
        found: list[RuleSyntaxError | RuleTypeError] = []

        def make(current: RuleSet) -> RuleSet:
            try:
                check_condition(body.when, names_of(current))
            except (RuleSyntaxError, RuleTypeError) as exc:
                found.append(exc)
                raise ConfigError(f"rule '{rule_id}': when {exc}") from None
            return with_user_rule(current, entry)

        try:
            admin.change(make, body.who, body.note)
        except ConfigError as exc:
            if found:
                refused = expression_error(found[0])
                refused["detail"][0]["message"] = str(exc)
                return json_response(422, refused)
            return json_response(422, expression_error(exc))
        return json_response(200, admin.rules())

    @router.delete(
        "/v1/rules/user/{rule_id}",
        response_model=RulesShown,
        summary="Remove a user rule",
        dependencies=changes,
        responses={404: {"model": ErrorBody, "description": "no such user rule"}},
    )
    async def delete_user_rule(
        rule_id: str = PathParameter(min_length=1, max_length=64, pattern=RULE_ID),
        who: str = Query(min_length=1, max_length=64, description="who removes it"),
        note: str = Query("", max_length=2000),
    ) -> Response:
        if not any(r.id == rule_id for r in admin.pipeline.rules.user_rules):
            return json_response(404, error_body("rule_id", f"no user rule {rule_id!r}"))
        try:
            admin.change(lambda current: without_user_rule(current, rule_id), who, note)
        except ConfigError as exc:  # removed meanwhile
            return json_response(404, error_body("rule_id", str(exc)))
        return json_response(200, admin.rules())

    return router
