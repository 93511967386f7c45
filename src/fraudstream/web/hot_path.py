"""The authorization hot path: ``POST /v1/transactions`` answered outside the framework.

A decision request that can only succeed or be refused for its body (an allowed ``Host``,
the right token, a declared body within the limit) is read, decoded with msgspec, decided
in the open micro-batch and answered straight from ASGI, with no routing, dependency
injection or response classes; every other request goes on to the app, which gives the
same answers and every documented error. ``fraudstream serve`` runs it outside the whole
FastAPI app (``app.state.served``); the app also holds it as its outermost middleware, so
clients of the app object (tests) take it too.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from fraudstream.web.service import DecisionService

__all__ = ["FastDecide", "too_large_body"]

_encoder = msgspec.json.Encoder()


class FastDecide:
    """POST /v1/transactions without the framework's per-request machinery (the hot path).

    Outermost, so it checks the ``Host`` itself: only a request for an allowed host (an exact
    name, or any with ``*``), with the right token and a declared body within the limit
    takes it; any other request (another host, no token, too large, chunked) goes on to the
    app, which gives the same answers and the documented errors.
    """

    def __init__(
        self, app: ASGIApp, service: DecisionService, token: bytes, hosts: Iterable[str]
    ) -> None:
        self.app = app
        self.service = service
        self.token = token
        names = list(hosts)
        self.hosts = frozenset(h.encode() for h in names if "*" not in h)
        self.any_host = "*" in names

    def _host_allowed(self, host: bytes) -> bool:
        host = host.lower()
        name, colon, port = host.rpartition(b":")
        return (
            self.any_host
            or host in self.hosts
            or (bool(colon) and port.isdigit() and name in self.hosts)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != "/v1/transactions"
            or scope["method"] != "POST"
        ):
            await self.app(scope, receive, send)
            return
        auth = host = b""
        length = -1
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"host":
                host = value
        given = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
        limit = self.service.decoder.limits.max_record_bytes
        if (
            not self._host_allowed(host)
            or not hmac.compare_digest(given, self.token)
            or not 0 <= length <= limit
        ):
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
        if len(body) > limit:
            status, payload = 413, too_large_body(self.service, limit)
        else:
            record, refused = self.service.parse(body)
            if refused is not None:
                status, payload = 422, refused
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


def too_large_body(service: DecisionService, limit: int) -> dict[str, Any]:
    """The 413 body of a transaction body over ``limit``, kept as a dead letter (without the
    body, which is not read)."""
    return service.reject(f"body: request body larger than {limit} bytes", b"")
