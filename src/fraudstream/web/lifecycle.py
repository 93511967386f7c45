"""The rule lifecycle in the web app: versions, rollback, and a backtest before applying.

* ``GET /v1/rules/versions``: every rule version (numbered rule sets applied: at start, by
  web or API changes, by rollbacks), newest first, with who, when, from where and the diff;
  the one in force is ``current``. Each decision carries its version (``rule_version``).
* ``POST /v1/rules/rollback`` (token): ``{"version": N, "who", "note"}`` applies version N
  again, between two batches, keeping detector and window state; it becomes a new version
  and is audited (404, audited as refused, when there is no such version).
* ``POST /v1/rules/backtest`` (token): ``{"rules": <a rules document>}`` replays the history
  the server was given (``fraudstream serve --history FILE --history-labels FILE``) under
  those rules and under the running ones, with the pipeline that runs live, and answers the
  report of ``fraudstream backtest`` (docs/rules.md). Nothing is applied. 409 without a
  history; 422 when the rules are refused (why).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from fraudstream.config import ConfigError
from fraudstream.web.admin import Admin, Change
from fraudstream.web.guard import ReadAccess, json_response
from fraudstream.web.schemas import BacktestReport, ErrorBody, RulesShown, RuleVersionShown
from fraudstream.web.service import error_body

__all__ = ["History", "lifecycle_router"]


def _whole(value: Any) -> Any:
    """A JSON number with a zero fraction (``3.0``) is the integer it equals (JSON Schema
    agrees); anything else goes on to the strict check as it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class Rollback(Change):
    """Which version to apply again."""

    version: Annotated[int, BeforeValidator(_whole)] = Field(
        ge=1, description="the rule version to apply again"
    )


class BacktestRequest(BaseModel):
    """The rules to try: a rules document (as a rules file, in JSON); lists left out are
    the running rules' lists."""

    model_config = ConfigDict(strict=True)

    rules: dict[str, Any]


class History:
    """The history a backtest replays: transactions and their labels (files)."""

    def __init__(self, transactions: Path, labels: Path | None) -> None:
        from fraudstream.io.files import guess_format
        from fraudstream.io.labels import Labels, read_labels

        if not transactions.is_file():
            raise ConfigError(f"--history {transactions}: no such file")
        self.transactions = transactions
        self.format = guess_format(str(transactions))
        self.labels = read_labels(labels) if labels is not None else Labels.empty()
        self.lock = asyncio.Lock()  # one backtest at a time: they are CPU-bound

    def backtest(self, admin: Admin, document: dict[str, Any]) -> dict[str, Any]:
        """The report of ``document`` against the running rules (runs in a worker thread)."""
        from fraudstream.backtest import Backtest
        from fraudstream.engine.pipeline import Pipeline
        from fraudstream.io.files import FileSource
        from fraudstream.profiles import ProfileTable
        from fraudstream.rules import RuleSet
        from fraudstream.rules.versions import version_document

        running = admin.pipeline
        with admin.lock:
            baseline = running.rules
            users = [  # NaN is a number not set: None, as upsert takes it
                {k: None if isinstance(v, float) and v != v else v for k, v in p.items()}
                for p in running.profiles.profiles.values()
            ]
        if "lists" not in document and baseline.lists:
            document = {**document, "lists": version_document(baseline)["lists"]}
        candidate = RuleSet.from_document(document)
        ttl = running.expiry.ttl_ms if running.expiry is not None else None

        def make(rules: RuleSet) -> Pipeline:
            table = ProfileTable()
            for profile in users:
                table.upsert(profile)
            return Pipeline(rules, table, running.time, running.reference, ttl)

        names = ("edited rules", f"running rules (version {running.rule_version})")
        tokenizer = admin.service.decoder.tokenize
        backtest = Backtest(candidate, baseline, self.labels, make, tokenizer, names)
        result = backtest.run(FileSource(self.transactions, self.format))
        return result.report


def lifecycle_router(
    admin: Admin, authorized: Callable[..., None], reads: ReadAccess, history: History | None
) -> APIRouter:
    """Versions (reads as ``reads`` say), rollback and backtest (with the token)."""
    router = APIRouter(tags=["admin"])
    changes = [Depends(authorized)]

    @router.get(
        "/v1/rules/versions",
        response_model=list[RuleVersionShown],
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="Every rule version, newest first (the one in force is current)",
    )
    async def versions() -> Response:
        return json_response(200, admin.versions())

    @router.post(
        "/v1/rules/rollback",
        response_model=RulesShown,
        summary="Apply a rule version again (detector state kept)",
        dependencies=changes,
        responses={404: {"model": ErrorBody, "description": "no such version"}},
    )
    async def rollback(body: Rollback) -> Response:
        try:
            admin.rollback(body.version, body.who, body.note)
        except ConfigError as exc:
            return json_response(404, error_body("version", str(exc)))
        return json_response(200, admin.rules())

    @router.post(
        "/v1/rules/backtest",
        response_model=BacktestReport,
        summary="Backtest rules on the server's history against the running rules",
        dependencies=changes,
        responses={
            409: {"model": ErrorBody, "description": "the server has no history"},
            422: {"model": ErrorBody, "description": "the rules are refused (why)"},
        },
    )
    async def backtest(body: BacktestRequest) -> Response:
        if history is None:
            message = "no history to replay: start the server with --history FILE"
            return json_response(409, error_body("history", message))
        async with history.lock:
            try:
                report = await asyncio.to_thread(history.backtest, admin, body.rules)
            except ConfigError as exc:
                return json_response(422, error_body("rules", str(exc)))
        return json_response(200, report)

    return router
