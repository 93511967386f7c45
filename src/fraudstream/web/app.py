"""The decision API: FastAPI around one embedded :class:`Pipeline`, in the same process.

Endpoints (all JSON; DESIGN.md's decision record is what a decision looks like):

* ``POST /v1/transactions``: decides one transaction synchronously; 200 with the decision,
  422 ``{"detail": [{"field": ..., "message": ...}]}`` for an invalid record (the field is the
  validation message's prefix), 409 for a duplicate ``transaction_id`` or a record too late
  for the allowed lateness, 413 for a body over 64 KiB.
* ``POST /v1/transactions/batch``: a JSON list (at most 10,000) decided in order; 200 with one
  result per item (``status`` 200 with ``decision``, or the item's 4xx ``status`` and
  ``detail``); 413 for a body over 4 MiB.
* ``GET /v1/decisions/{transaction_id}``: a decision kept in memory (the last 100,000); 404.
* ``GET /v1/decisions/stream``: Server-Sent Events, one ``data: <decision JSON>`` per new
  decision (``?limit=N`` closes the stream after N events).
* ``GET /v1/dead-letters``, ``GET /v1/late``: the most recent rejected / late records.
* ``GET /healthz``; ``GET /openapi.json`` and ``/docs``.

Every POST needs ``Authorization: Bearer <token>`` (401 otherwise); GETs are open (the server
binds to localhost). Bad input is never a 5xx: it is a 4xx naming the field, and the record
goes to the dead letters.

The pipeline is single-threaded. Requests are decided one micro-batch at a time on the event
loop (under a lock, for any caller on another thread): the requests that are ready when the
pipeline becomes free are decided together as one batch, in arrival order, each record with
its own position, so results map back to requests exactly. Each step is submit + flush, so a
record is decided (or found late) before its request returns; with an out-of-orderness of 0
(the default) flushing changes nothing, and the decisions equal ``fraudstream run`` over the
same records in the same order.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline, StepResult
from fraudstream.io.decode import DeadLetter, Decoder
from fraudstream.io.records import decision_dicts, late_dicts
from fraudstream.schema import CardTokenizer, mask_card_numbers

MAX_SINGLE_BYTES = 64 * 1024
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_BATCH_ITEMS = 10_000
MAX_DECISIONS_KEPT = 100_000
MAX_DEAD_LETTERS_KEPT = 10_000
MAX_LATE_KEPT = 10_000
SUBSCRIBER_QUEUE = 1_000
HEARTBEAT_S = 15.0

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


# --- documentation models (OpenAPI); requests are decoded with msgspec ------------------------


class Transaction(BaseModel):
    """A card transaction (DESIGN.md); unknown extra fields are carried through."""

    model_config = ConfigDict(extra="allow")

    transaction_id: str = Field(min_length=1, max_length=128)
    card_id: str = Field(
        min_length=1, max_length=128, description="aliases: account_id, card_number"
    )
    user_id: str | None = None
    timestamp: int | str = Field(description="epoch ms, or ISO-8601 with an offset")
    amount: float = Field(ge=0)
    currency: str | None = Field(default=None, description="ISO-4217, default USD")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180, description="alias: lng")
    zipcode: str | None = None
    merchant_id: str | None = None
    merchant_category: str | None = None
    country: str | None = None
    channel: str | None = None
    device_id: str | None = None
    ip: str | None = None


class Reason(BaseModel):
    rule: str
    message: str


class Decision(BaseModel):
    """The decision record (DESIGN.md)."""

    transaction_id: str
    card_id: str
    user_id: str
    event_time: str
    decision: str = Field(description="approve | review | decline")
    score: float
    reasons: list[Reason]
    model: dict[str, Any] | None
    features: dict[str, Any]
    processed_at: str
    latency_ms: float


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    detail: list[FieldError]


class BatchItem(BaseModel):
    index: int
    status: int
    decision: Decision | None = None
    detail: list[FieldError] | None = None


# --- deciding ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """What became of one submitted record."""

    status: int
    body: dict[str, Any]


@dataclass(slots=True)
class _Job:
    records: list[Any]
    raws: list[bytes | str] | None
    arrival_ms: float
    future: asyncio.Future[list[Outcome]] | None = None
    outcomes: list[Outcome] = field(default_factory=list)


def _error(field_name: str, message: str) -> dict[str, Any]:
    return {"detail": [{"field": field_name, "message": message}]}


def _field_of(reason: str) -> str:
    return reason.split(":", 1)[0].strip() or "record"


class _Subscriber:
    """One SSE client: a bounded queue that drops its oldest event when full."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=size)
        self.dropped = 0

    def put(self, event: bytes) -> None:
        if self.queue.full():
            try:
                self.queue.get_nowait()
                self.dropped += 1
            except asyncio.QueueEmpty:  # pragma: no cover - only with one consumer
                pass
        self.queue.put_nowait(event)


class DecisionService:
    """The pipeline, what it decided, what it rejected, and who is listening."""

    def __init__(
        self,
        pipeline: Pipeline,
        tokenizer: CardTokenizer,
        max_decisions: int = MAX_DECISIONS_KEPT,
        max_dead_letters: int = MAX_DEAD_LETTERS_KEPT,
        max_late: int = MAX_LATE_KEPT,
    ) -> None:
        self.pipeline = pipeline
        self.decoder = Decoder(tokenizer, "api")
        self.lock = threading.Lock()
        self.decisions: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.max_decisions = max_decisions
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=max_dead_letters)
        self.late: deque[dict[str, Any]] = deque(maxlen=max_late)
        self.subscribers: set[_Subscriber] = set()
        self.position = 0
        self.counts = {"decided": 0, "dead_letters": 0, "duplicates": 0, "late": 0}
        self._pending: list[_Job] = []
        self._leading = False

    # The async entry point: micro-batches whatever is ready when the pipeline is free.
    async def decide(self, records: list[Any], raws: list[bytes | str] | None) -> list[Outcome]:
        """Decides ``records`` in order (after any submitted earlier); one outcome each."""
        loop = asyncio.get_running_loop()
        job = _Job(records, raws, time.time() * 1000, loop.create_future())
        self._pending.append(job)
        if not self._leading:
            self._leading = True
            try:
                await asyncio.sleep(0)  # let requests that are ready join this batch
                self._drain()
            finally:
                self._leading = False
                if self._pending:  # the leader was cancelled: decide the rest soon
                    loop.call_soon(self._drain)
        assert job.future is not None
        return await job.future

    def _drain(self) -> None:
        while self._pending:
            jobs, self._pending = self._pending, []
            self.decide_jobs(jobs)

    def decide_now(self, records: list[Any]) -> list[Outcome]:
        """The synchronous path (any thread): decides ``records`` as one batch."""
        job = _Job(records, None, time.time() * 1000)
        self.decide_jobs([job])
        return job.outcomes

    def decide_jobs(self, jobs: list[_Job]) -> None:
        """Runs the jobs' records through the pipeline as one batch, in order."""
        try:
            with self.lock:
                self._decide_jobs(jobs)
        except BaseException as exc:
            for job in jobs:
                if job.future is not None and not job.future.done():
                    job.future.set_exception(exc)
            raise
        for job in jobs:
            if job.future is not None and not job.future.done():
                job.future.set_result(job.outcomes)

    def _decide_jobs(self, jobs: list[_Job]) -> None:
        slots: dict[int, tuple[_Job, int]] = {}
        batches: list[TxBatch] = []
        for job in jobs:
            n = len(job.records)
            positions = list(range(self.position + 1, self.position + n + 1))
            self.position += n
            job.outcomes = [Outcome(500, {})] * n
            for index, position in enumerate(positions):
                slots[position] = (job, index)
            batch, dead = self.decoder.records(
                job.records, positions, [job.arrival_ms] * n, job.raws
            )
            for letter in dead:
                self._dead_letter(letter)
                _, index = slots[letter.position]
                job.outcomes[index] = Outcome(422, _error(_field_of(letter.reason), letter.reason))
            batches.append(batch)
        batch = batches[0] if len(batches) == 1 else TxBatch.concat(batches)
        if len(batch):
            now = time.time() * 1000
            self._collect(self.pipeline.submit(batch, now), slots)
            self._collect(self.pipeline.flush(now), slots)

    def _collect(self, result: StepResult, slots: dict[int, tuple[_Job, int]]) -> None:
        if len(result.duplicates):
            self._duplicates(result.duplicates, slots)
        if len(result.late):
            self._late(result.late, slots)
        decisions = result.decisions
        if decisions is None or len(decisions) == 0:
            return
        rows = decision_dicts(decisions)
        positions = decisions.tx.position.tolist()
        kept = self.decisions
        self.counts["decided"] += len(rows)
        events = []
        for position, row in zip(positions, rows, strict=True):
            job, index = slots[position]
            job.outcomes[index] = Outcome(200, row)
            kept[row["transaction_id"]] = row
            if self.subscribers:
                events.append(b"data: " + _encoder.encode(row) + b"\n\n")
        while len(kept) > self.max_decisions:
            kept.popitem(last=False)
        for subscriber in self.subscribers:
            for event in events:
                subscriber.put(event)

    def _duplicates(self, batch: TxBatch, slots: dict[int, tuple[_Job, int]]) -> None:
        self.counts["duplicates"] += len(batch)
        for i in range(len(batch)):
            record = batch.record(i)
            position = int(batch.position[i])
            message = (
                f"duplicate: transaction_id {record['transaction_id']!r} "
                "was already processed; not decided twice"
            )
            self._dead_letter(DeadLetter("api", position, message, _raw_of(record)))
            job, index = slots[position]
            job.outcomes[index] = Outcome(409, _error("transaction_id", message))

    def _late(self, batch: TxBatch, slots: dict[int, tuple[_Job, int]]) -> None:
        self.counts["late"] += len(batch)
        clock = self.pipeline.clock
        rows = late_dicts(batch, clock.watermark, clock.allowed_lateness_ms)
        self.late.extend(rows)
        for row in rows:
            job, index = slots[row["position"]]
            message = f"{row['reason']}; not decided, kept in the late output"
            job.outcomes[index] = Outcome(409, _error("timestamp", message))

    def _dead_letter(self, letter: DeadLetter) -> None:
        self.counts["dead_letters"] += 1
        self.dead_letters.append(letter.to_dict())

    def reject(self, reason: str, raw: bytes | str) -> dict[str, Any]:
        """A request body that is not even a record (bad JSON): dead letter + 4xx body."""
        self.position += 1
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        reason = mask_card_numbers(reason)
        self._dead_letter(DeadLetter("api", self.position, reason, mask_card_numbers(text[:4096])))
        return _error(_field_of(reason), reason)

    # --- the live feed ---------------------------------------------------------------------

    def subscribe(self, size: int = SUBSCRIBER_QUEUE) -> _Subscriber:
        subscriber = _Subscriber(size)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        self.subscribers.discard(subscriber)


def _raw_of(record: dict[str, Any]) -> str:
    try:
        return mask_card_numbers(_encoder.encode(record).decode())
    except (TypeError, ValueError):
        return mask_card_numbers(repr(record))


# --- HTTP -----------------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 past ``limit`` bytes (declared or actually sent)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _TooLarge
        except ValueError:
            pass
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _json(status: int, body: Any) -> Response:
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
    413: {"model": ErrorBody, "description": "request body too large"},
    422: {"model": ErrorBody, "description": "invalid record: the field and why"},
}


def _body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


class _FastDecide:
    """POST /v1/transactions without the framework's per-request machinery (the hot path).

    Only a request with the right token and a declared body within the limit takes it; any
    other request (no token, too large, chunked) goes to the FastAPI route, which gives the
    same answers and the documented errors.
    """

    def __init__(self, app: ASGIApp, service: DecisionService, token: bytes) -> None:
        self.app = app
        self.service = service
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != "/v1/transactions"
            or scope["method"] != "POST"
        ):
            await self.app(scope, receive, send)
            return
        auth = b""
        length = -1
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"content-length" and value.isdigit():
                length = int(value)
        given = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
        if not hmac.compare_digest(given, self.token) or not 0 <= length <= MAX_SINGLE_BYTES:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if len(body) > MAX_SINGLE_BYTES:
            status, payload = (
                413,
                _error("body", f"request body larger than {MAX_SINGLE_BYTES} bytes"),
            )
        else:
            try:
                record = _decoder.decode(body)
            except msgspec.DecodeError as exc:
                status, payload = 422, self.service.reject(f"body: invalid JSON: {exc}", body)
            else:
                outcome = (await self.service.decide([record], [body]))[0]
                status, payload = outcome.status, outcome.body
        content = _encoder.encode(payload)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


def create_app(
    pipeline: Pipeline,
    token: str,
    tokenizer: CardTokenizer | None = None,
    *,
    max_decisions: int = MAX_DECISIONS_KEPT,
) -> FastAPI:
    """The decision API around ``pipeline``; POSTs need ``Authorization: Bearer <token>``."""
    if not token:
        raise ValueError("the API token must not be empty")
    service = DecisionService(
        pipeline, tokenizer or CardTokenizer.from_environment(), max_decisions=max_decisions
    )
    app = FastAPI(
        title="fraudstream decision API",
        version="1",
        description="Decide card transactions with the embedded fraudstream pipeline.",
    )
    app.state.service = service
    bearer = HTTPBearer(auto_error=False, description="FRAUDSTREAM_TOKEN")
    expected = token.encode()

    def authorized(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if credentials is None or not hmac.compare_digest(given, expected):
            raise HTTPException(
                401,
                [{"field": "Authorization", "message": "a valid bearer token is required"}],
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.exception_handler(_TooLarge)
    async def too_large(request: Request, exc: _TooLarge) -> Response:
        limit = MAX_BATCH_BYTES if request.url.path.endswith("/batch") else MAX_SINGLE_BYTES
        return _json(413, _error("body", f"request body larger than {limit} bytes"))

    transaction_schema = Transaction.model_json_schema()
    app.add_middleware(_FastDecide, service=service, token=expected)

    @app.post(
        "/v1/transactions",
        response_model=Decision,
        responses={**_ERRORS, 409: {"model": ErrorBody, "description": "duplicate or late"}},
        dependencies=[Depends(authorized)],
        openapi_extra=_body_schema(transaction_schema),
        summary="Decide one transaction",
    )
    async def post_transaction(request: Request) -> Response:
        body = await _read_body(request, MAX_SINGLE_BYTES)
        try:
            record = _decoder.decode(body)
        except msgspec.DecodeError as exc:
            return _json(422, service.reject(f"body: invalid JSON: {exc}", body))
        outcome = (await service.decide([record], [body]))[0]
        return _json(outcome.status, outcome.body)

    @app.post(
        "/v1/transactions/batch",
        response_model=list[BatchItem],
        responses=_ERRORS,
        dependencies=[Depends(authorized)],
        openapi_extra=_body_schema(
            {"type": "array", "maxItems": MAX_BATCH_ITEMS, "items": transaction_schema}
        ),
        summary="Decide a list of transactions, in order",
    )
    async def post_batch(request: Request) -> Response:
        body = await _read_body(request, MAX_BATCH_BYTES)
        try:
            records = _decoder.decode(body)
        except msgspec.DecodeError as exc:
            return _json(422, service.reject(f"body: invalid JSON: {exc}", body))
        if not isinstance(records, list):
            reason = f"body: must be a JSON list of transactions, got {type(records).__name__}"
            return _json(422, service.reject(reason, body))
        if len(records) > MAX_BATCH_ITEMS:
            reason = f"body: at most {MAX_BATCH_ITEMS} transactions, got {len(records)}"
            return _json(422, service.reject(reason, body))
        outcomes = await service.decide(records, None) if records else []
        items: list[dict[str, Any]] = []
        for index, outcome in enumerate(outcomes):
            if outcome.status == 200:
                items.append({"index": index, "status": 200, "decision": outcome.body})
            else:
                items.append({"index": index, "status": outcome.status, **outcome.body})
        return _json(200, items)

    @app.get("/v1/decisions/stream", summary="Live feed of decisions (Server-Sent Events)")
    async def stream(
        request: Request,
        limit: int | None = Query(None, ge=1, description="close after this many events"),
    ) -> StreamingResponse:
        subscriber = service.subscribe()

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

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get(
        "/v1/decisions/{transaction_id}",
        response_model=Decision,
        responses={404: {"model": ErrorBody, "description": "no such decision kept"}},
        summary="A decision kept in memory (the most recent 100,000)",
    )
    async def get_decision(transaction_id: str) -> Response:
        row = service.decisions.get(transaction_id)
        if row is None:
            message = f"no decision for transaction_id {transaction_id!r} (kept: the last "
            message += f"{service.max_decisions:,})"
            return _json(404, _error("transaction_id", message))
        return _json(200, row)

    @app.get("/v1/dead-letters", summary="The most recent rejected records")
    async def dead_letters(limit: int = Query(100, ge=1, le=MAX_DEAD_LETTERS_KEPT)) -> Response:
        letters = list(service.dead_letters)[-limit:]
        return _json(200, letters)

    @app.get("/v1/late", summary="The most recent records too late to decide")
    async def late(limit: int = Query(100, ge=1, le=MAX_LATE_KEPT)) -> Response:
        return _json(200, list(service.late)[-limit:])

    @app.get("/healthz", summary="Liveness and counts")
    async def healthz() -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                **service.counts,
                "kept_decisions": len(service.decisions),
                "subscribers": len(service.subscribers),
                "watermark": int(np.int64(pipeline.clock.watermark)),
            }
        )

    return app
