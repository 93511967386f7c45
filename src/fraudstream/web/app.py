"""The web app: the decision API and the analyst's page around one embedded pipeline.

:func:`create_app` puts together, in one process:

* the decision API (this module): ``POST /v1/transactions`` decides one transaction
  synchronously (the body documented by :func:`~fraudstream.web.schemas.transaction_schema`);
  200 with the decision, 422 ``{"detail": [{"field": ..., "message": ...}]}``
  for an invalid record (the field is the validation message's prefix), 409 for a duplicate
  ``transaction_id`` or a record too late for the allowed lateness, 413 for a body over
  the record size limit (64 KiB, ``--max-record-bytes``). A body that is not JSON within
  the record limits (invalid UTF-8, nested past ``--max-nesting-depth``, a number beyond
  any type) is a 422 whose field is ``body`` and whose message says why; every 413 and 422
  of a transaction is kept as a dead letter. ``POST /v1/transactions/batch``: a JSON list
  (at most 10,000) decided in order; 200 with one result per item (``status`` 200 with
  ``decision``, or the item's 4xx ``status`` and ``detail``); 413 over 4 MiB.
  ``GET /v1/decisions/{transaction_id}`` (the last 100,000 kept in memory; 404).
  ``GET /v1/decisions/stream``: Server-Sent Events, one ``data: <decision JSON>`` per new
  decision (``?limit=N`` closes after N events; ``?transaction=true`` adds the
  transaction's amount, place and merchant as ``transaction``). ``GET /v1/dead-letters``,
  ``GET /v1/late``, ``GET /healthz``, ``/openapi.json`` and ``/docs``;
* the review queue and labels (:mod:`fraudstream.web.review`), the rules and profiles admin
  (:mod:`fraudstream.web.admin`), the metrics (:mod:`fraudstream.web.metrics`) and the page
  (:mod:`fraudstream.web.pages`).

Every mutating request needs ``Authorization: Bearer <token>`` (401 otherwise). GETs are open
unless a read token is set: then every ``/v1`` GET needs it (or the token). Only the
``allowed_hosts`` names are answered (400 for any other ``Host``; loopback by default), against
DNS rebinding. Bodies are size limited (413). Bad input is never a 5xx: it
is a 4xx naming the field, and a bad transaction goes to the dead letters. Deciding itself is
:class:`~fraudstream.web.service.DecisionService`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from fraudstream.engine.pipeline import Pipeline
from fraudstream.io.limits import MAX_RECORD_BYTES, RecordLimits
from fraudstream.schema import CardTokenizer
from fraudstream.web.admin import Admin, admin_router
from fraudstream.web.batching import Batching
from fraudstream.web.case_routes import cases_router
from fraudstream.web.cases import CaseDesk
from fraudstream.web.decision_log import DecisionLog, decision_log_router
from fraudstream.web.guard import (
    ADMIN_MAX_BYTES,
    BodyLimit,
    ReadAccess,
    TooLarge,
    bearer_matches,
    install_validation_errors,
    json_response,
    read_body,
    token_dependency,
    trusted_hosts,
)
from fraudstream.web.hot_path import FastDecide, too_large_body
from fraudstream.web.lifecycle import History, lifecycle_router
from fraudstream.web.metrics import Metrics, metrics_router
from fraudstream.web.openapi import install_api_document
from fraudstream.web.pages import install_pages
from fraudstream.web.review import ReviewDesk, ReviewStore, review_router
from fraudstream.web.schemas import (
    BatchItem,
    DeadLetterShown,
    Decision,
    ErrorBody,
    Health,
    LateShown,
    transaction_schema,
)
from fraudstream.web.service import (
    MAX_DEAD_LETTERS_KEPT,
    MAX_DECISIONS_KEPT,
    MAX_LATE_KEPT,
    DecisionService,
    error_body,
)
from fraudstream.web.user_rules import user_rules_router

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_ITEMS",
    "MAX_SINGLE_BYTES",
    "DecisionService",
    "create_app",
]

MAX_SINGLE_BYTES = MAX_RECORD_BYTES  # the default; a body is one record: its size limit
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_BATCH_ITEMS = 10_000
HEARTBEAT_S = 15.0
_TRANSACTION_PATHS = frozenset({"/v1/transactions", "/v1/transactions/batch"})


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
    413: {"model": ErrorBody, "description": "request body too large"},
    422: {"model": ErrorBody, "description": "invalid record: the field and why"},
}


class EventStream(StreamingResponse):
    """Server-Sent Events (documented as ``text/event-stream``)."""

    media_type = "text/event-stream"


def _body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def create_app(
    pipeline: Pipeline,
    token: str,
    tokenizer: CardTokenizer | None = None,
    *,
    max_decisions: int = MAX_DECISIONS_KEPT,
    data_dir: Path | None = None,
    reviews_url: str | None = None,
    decisions_url: str | None = None,
    background: list[Callable[[DecisionService], Coroutine[Any, Any, None]]] | None = None,
    read_token: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
    limits: RecordLimits | None = None,
    history: Path | None = None,
    history_labels: Path | None = None,
    batching: Batching | None = None,
) -> FastAPI:
    """The app around ``pipeline``; mutating requests need ``Authorization: Bearer <token>``.

    With ``read_token``, the GETs under ``/v1`` need it too (or ``token``). Requests whose
    ``Host`` is not in ``allowed_hosts`` (default: :func:`~fraudstream.web.guard.trusted_hosts`,
    the loopback names) get 400.

    ``data_dir`` keeps what must survive a restart: the reviews and labels (a SQLite file,
    unless ``reviews_url`` names another database), the decisions (``decisions.db``, the
    decision store, unless ``decisions_url`` names another) and the audit logs of rule and
    profile changes. Without it they live in memory. ``background`` coroutines (a live simulator)
    run while the app serves. ``limits`` bound each record's size and nesting (a record
    over them is a 422 and a dead letter, like a line of ``fraudstream run``). ``history``
    (and its ``history_labels``) is what the Rules tab backtests edited rules on.
    ``batching``: how concurrent transaction requests gather into one pipeline step
    (:class:`~fraudstream.web.batching.Batching`).
    """
    if not token:
        raise ValueError("the API token must not be empty")
    service = DecisionService(
        pipeline,
        tokenizer or CardTokenizer.from_environment(),
        max_decisions=max_decisions,
        limits=limits,
        batching=batching,
    )
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    if reviews_url is None and data_dir is not None:
        reviews_url = str(data_dir / "reviews.db")
    desk = ReviewDesk(ReviewStore(reviews_url), service)
    cases = CaseDesk(desk)
    if decisions_url is None and data_dir is not None:
        decisions_url = str(data_dir / "decisions.db")
    log = DecisionLog(decisions_url)
    service.listeners.append(log.observe)
    metrics = Metrics(service, desk, log.totals())
    admin = Admin(service, data_dir)
    replayed = History(history, history_labels) if history is not None else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(start(service)) for start in background or []]
        for task in tasks:
            task.add_done_callback(_report_failure)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            desk.store.close()
            log.close()

    app = FastAPI(
        title="fraudstream",
        version="1",
        description="Decide card transactions with the embedded fraudstream pipeline; "
        "review alerts, label them, and change rules and profiles while it runs.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.review = desk
    app.state.cases = cases
    app.state.decision_log = log
    app.state.metrics = metrics
    app.state.admin = admin
    authorized = token_dependency(token)
    reads = ReadAccess.for_tokens(token, read_token)

    @app.exception_handler(TooLarge)
    async def too_large(request: Request, exc: TooLarge) -> Response:
        path = request.url.path
        if path in _TRANSACTION_PATHS:  # a transaction refused: a dead letter too
            single = service.decoder.limits.max_record_bytes
            limit = MAX_BATCH_BYTES if path.endswith("/batch") else single
            return json_response(413, too_large_body(service, limit))
        message = f"request body larger than {ADMIN_MAX_BYTES} bytes"
        return json_response(413, error_body("body", message))

    def refused(request: Request, body: Any, detail: list[dict[str, Any]]) -> None:
        if bearer_matches(request, token):  # only a change its maker may make is audited
            admin.refused_request(request, body, detail)

    install_validation_errors(app, refused)
    install_api_document(app)
    app.add_middleware(BodyLimit, limit=ADMIN_MAX_BYTES, own_limits=_TRANSACTION_PATHS)
    # A foreign Host is refused before anything else runs (the hot path checks it itself).
    hosts = trusted_hosts() if allowed_hosts is None else list(allowed_hosts)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)
    app.add_middleware(FastDecide, service=service, token=token.encode(), hosts=hosts)
    # What a server runs: the hot path also outside the framework's own layers (error
    # pages, telemetry, body limits), which it does without; the middleware above keeps it
    # for clients of the app object itself (tests).
    app.state.served = FastDecide(app, service=service, token=token.encode(), hosts=hosts)
    _decision_routes(app, service, authorized, reads)
    app.include_router(review_router(desk, authorized, reads))
    app.include_router(cases_router(cases, authorized, reads))
    app.include_router(decision_log_router(log, reads))
    app.include_router(admin_router(admin, authorized, reads))
    app.include_router(user_rules_router(admin, authorized, reads))
    app.include_router(lifecycle_router(admin, authorized, reads, replayed))
    app.include_router(metrics_router(metrics, reads))
    install_pages(app)
    return app


def _report_failure(task: asyncio.Task[None]) -> None:
    """A background task (the demo's simulator) that stopped on an error says so."""
    if not task.cancelled() and task.exception() is not None:
        sys.stderr.write(f"error: background task stopped: {task.exception()!r}\n")


def _decision_routes(
    app: FastAPI, service: DecisionService, authorized: Any, reads: ReadAccess
) -> None:
    transaction = transaction_schema()
    limits = service.decoder.limits

    @app.post(
        "/v1/transactions",
        response_model=Decision,
        responses={**_ERRORS, 409: {"model": ErrorBody, "description": "duplicate or late"}},
        dependencies=[Depends(authorized)],
        openapi_extra=_body_schema(transaction),
        summary="Decide one transaction",
    )
    async def post_transaction(request: Request) -> Response:
        body = await read_body(request, limits.max_record_bytes)
        record, refused = service.parse(body)
        if refused is not None:
            return json_response(422, refused)
        outcome = (await service.decide([record], [body]))[0]
        return json_response(outcome.status, outcome.body)

    @app.post(
        "/v1/transactions/batch",
        response_model=list[BatchItem],
        responses=_ERRORS,
        dependencies=[Depends(authorized)],
        openapi_extra=_body_schema(
            {
                "type": "array",
                "maxItems": MAX_BATCH_ITEMS,
                # Any item is taken: one that is not a valid transaction gets its own 422 in
                # the 200 list, so the list as a whole never fails on an item.
                "items": {"anyOf": [transaction, {}]},
            }
        ),
        summary="Decide a list of transactions, in order",
    )
    async def post_batch(request: Request) -> Response:
        body = await read_body(request, MAX_BATCH_BYTES)
        records, refused = service.parse(body, MAX_BATCH_BYTES)
        if refused is not None:
            return json_response(422, refused)
        if not isinstance(records, list):
            reason = f"body: must be a JSON list of transactions, got {type(records).__name__}"
            return json_response(422, service.reject(reason, body))
        if len(records) > MAX_BATCH_ITEMS:
            reason = f"body: at most {MAX_BATCH_ITEMS} transactions, got {len(records)}"
            return json_response(422, service.reject(reason, body))
        outcomes = await service.decide(records, None) if records else []
        items: list[dict[str, Any]] = []
        for index, outcome in enumerate(outcomes):
            if outcome.status == 200:
                items.append({"index": index, "status": 200, "decision": outcome.body})
            else:
                items.append({"index": index, "status": outcome.status, **outcome.body})
        return json_response(200, items)

    @app.get(
        "/v1/decisions/stream",
        dependencies=reads.stream_dependencies,
        responses={**reads.responses, 200: {"content": {"text/event-stream": {}}}},
        response_class=EventStream,
        summary="Live feed of decisions (Server-Sent Events)",
    )
    async def stream(
        request: Request,
        limit: int | None = Query(None, ge=1, description="close after this many events"),
        transaction: bool = Query(False, description="add the transaction's amount and place"),
    ) -> EventStream:
        subscriber = service.subscribe(with_transaction=transaction)

        async def events() -> AsyncIterator[bytes]:
            sent = 0
            try:
                yield b": fraudstream decisions\n\n"
                while limit is None or sent < limit:
                    try:
                        event = await asyncio.wait_for(subscriber.queue.get(), HEARTBEAT_S)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield b": keep-alive\n\n"
                        continue
                    yield event
                    sent += 1
            finally:
                service.unsubscribe(subscriber)

        return EventStream(
            events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    @app.get(
        "/v1/decisions/{transaction_id}",
        response_model=Decision,
        responses={
            **reads.responses,
            404: {"model": ErrorBody, "description": "no such decision kept"},
        },
        dependencies=reads.dependencies,
        summary="A decision kept in memory (the most recent 100,000)",
    )
    async def get_decision(transaction_id: str) -> Response:
        transaction_id = service.decoder.tokenize.scrub(transaction_id)  # as ids are kept
        row = service.decisions.get(transaction_id)
        if row is None:
            message = f"no decision for transaction_id {transaction_id!r} (kept: the last "
            message += f"{service.max_decisions:,})"
            return json_response(404, error_body("transaction_id", message))
        return Response(row, media_type="application/json")

    @app.get(
        "/v1/dead-letters",
        response_model=list[DeadLetterShown],
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="The most recent rejected records",
    )
    async def dead_letters(limit: int = Query(100, ge=1, le=MAX_DEAD_LETTERS_KEPT)) -> Response:
        letters = list(service.dead_letters)[-limit:]
        return json_response(200, letters)

    @app.get(
        "/v1/late",
        response_model=list[LateShown],
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="The most recent records too late to decide",
    )
    async def late(limit: int = Query(100, ge=1, le=MAX_LATE_KEPT)) -> Response:
        return json_response(200, list(service.late)[-limit:])

    @app.get("/healthz", response_model=Health, summary="Liveness and counts")
    async def healthz() -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                **service.counts,
                "kept_decisions": len(service.decisions),
                "subscribers": len(service.subscribers),
                "watermark": int(np.int64(service.pipeline.clock.watermark)),
            }
        )
