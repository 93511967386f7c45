"""Access and limits: the bearer token, request body sizes, and 4xx bodies that name the field.

* Every mutating endpoint depends on :func:`token_dependency` (401 with
  ``WWW-Authenticate: Bearer`` otherwise). The token is compared in constant time.
* :class:`BodyLimit` refuses any request body over its limit with 413 before the endpoint
  reads it (declared ``Content-Length`` or bytes actually sent). The transaction endpoints
  read their bodies themselves with :func:`read_body` and their own, larger limits.
* :func:`install_validation_errors` turns FastAPI's validation errors into the API's shape:
  ``{"detail": [{"field": "thresholds.large_amount", "message": "..."}]}``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import msgspec
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraudstream.web.service import error_body

__all__ = [
    "ADMIN_MAX_BYTES",
    "BodyLimit",
    "TooLarge",
    "install_validation_errors",
    "json_response",
    "read_body",
    "token_dependency",
]

ADMIN_MAX_BYTES = 16 * 1024

_encoder = msgspec.json.Encoder()


class TooLarge(Exception):
    """A request body over its limit (413)."""


def json_response(status: int, body: Any) -> Response:
    """A JSON response encoded with msgspec (NaN and infinities become null)."""
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or :class:`TooLarge` past ``limit`` bytes (declared or sent)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise TooLarge
        except ValueError:
            pass
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def token_dependency(token: str) -> Callable[..., None]:
    """A FastAPI dependency that refuses a request without ``Authorization: Bearer <token>``."""
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

    return authorized


class BodyLimit:
    """413 for a body over ``limit`` bytes on any path not in ``own_limits`` (ASGI middleware).

    Paths in ``own_limits`` (the transaction endpoints) read their bodies with their own
    limits. The body is read here first (at most ``limit`` bytes are ever buffered), so the
    endpoint never sees a body past the limit, declared or not.
    """

    def __init__(self, app: ASGIApp, limit: int, own_limits: frozenset[str]) -> None:
        self.app = app
        self.limit = limit
        self.own_limits = own_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.own_limits:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(send)
                return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:  # small limits: read it all first, then hand it on
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = _encoder.encode(error_body("body", f"request body larger than {self.limit} bytes"))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def install_validation_errors(app: FastAPI) -> None:
    """422 bodies as ``[{"field", "message"}]``, the field a dotted path inside the body."""

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        detail = []
        for error in exc.errors():
            location = [str(part) for part in error.get("loc", ()) if part != "body"]
            detail.append({"field": ".".join(location) or "body", "message": error.get("msg")})
        return json_response(422, {"detail": detail})
