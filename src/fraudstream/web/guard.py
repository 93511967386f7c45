"""Access and limits: Host names, bearer tokens, body sizes, and 4xx bodies that name the field.

* :func:`trusted_hosts` lists the ``Host`` names the app answers (loopback by default, plus
  the bound address); Starlette's ``TrustedHostMiddleware`` refuses any other with 400, so a
  page on ``evil.example`` whose name is rebound to 127.0.0.1 (DNS rebinding) reads nothing.
* Every mutating endpoint depends on :func:`token_dependency` (401 with
  ``WWW-Authenticate: Bearer`` otherwise). The token is compared in constant time.
* With a read token, every ``/v1`` GET depends on :func:`read_dependency`: the read token or
  the write token (``Authorization: Bearer``, or ``?access_token=`` where a browser cannot
  send a header: the live feed's ``EventSource``).
* :class:`BodyLimit` refuses any request body over its limit with 413 before the endpoint
  reads it (declared ``Content-Length`` or bytes actually sent). The transaction endpoints
  read their bodies themselves with :func:`read_body` and their own, larger limits.
* :func:`install_validation_errors` turns FastAPI's validation errors into the API's shape:
  ``{"detail": [{"field": "thresholds.large_amount", "message": "..."}]}``.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraudstream.web.schemas import ErrorBody
from fraudstream.web.service import error_body

__all__ = [
    "ADMIN_MAX_BYTES",
    "LOOPBACK_HOSTS",
    "BodyLimit",
    "ReadAccess",
    "TooLarge",
    "bearer_matches",
    "install_validation_errors",
    "json_response",
    "read_body",
    "read_dependency",
    "token_dependency",
    "trusted_hosts",
]

ADMIN_MAX_BYTES = 16 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})

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


def trusted_hosts(bound: str | None = None, extra: Iterable[str] = ()) -> list[str]:
    """The ``Host`` names to answer: loopback, the bound address, and ``extra`` (a name,
    an address, ``*.example.com``, or ``*`` for any), in the form ``TrustedHostMiddleware``
    compares (lower case, IPv6 literals in brackets); ValueError for a malformed pattern. A
    wildcard bind (``0.0.0.0``) adds nothing: name the hosts clients use with ``extra``.

    >>> trusted_hosts("10.0.0.5", ["Fraud.Example.com"])
    ['127.0.0.1', 'localhost', '[::1]', '10.0.0.5', 'fraud.example.com']
    >>> trusted_hosts("0.0.0.0")
    ['127.0.0.1', 'localhost', '[::1]']
    """
    names = [*LOOPBACK_HOSTS]
    if bound is not None and bound.strip("[]") not in _WILDCARD_BINDS:
        names.append(bound)
    names.extend(extra)
    out: list[str] = []
    for name in names:
        name = name.strip().lower()
        try:
            if ipaddress.ip_address(name.strip("[]")).version == 6:
                name = f"[{name.strip('[]')}]"
        except ValueError:
            pass
        if "*" in name[1:] or (name.startswith("*") and name != "*" and name[:2] != "*."):
            raise ValueError(f"allowed host {name!r}: a wildcard must be like '*.example.com'")
        if name and name not in out:
            out.append(name)
    return out


def _refuse_401(message: str) -> HTTPException:
    return HTTPException(
        401,
        [{"field": "Authorization", "message": message}],
        headers={"WWW-Authenticate": "Bearer"},
    )


def token_dependency(token: str) -> Callable[..., None]:
    """A FastAPI dependency that refuses a request without ``Authorization: Bearer <token>``."""
    bearer = HTTPBearer(auto_error=False, scheme_name="token", description="FRAUDSTREAM_TOKEN")
    expected = token.encode()

    def authorized(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if credentials is None or not hmac.compare_digest(given, expected):
            raise _refuse_401("a valid bearer token is required")

    return authorized


def bearer_matches(request: Request, token: str) -> bool:
    """Whether ``request`` carries ``Authorization: Bearer <token>`` (constant time)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


def _any_matches(given: str, expected: list[bytes]) -> bool:
    found = False
    for token in expected:  # no early exit: each comparison takes its constant time
        found |= hmac.compare_digest(given.encode(), token)
    return found


def read_dependency(tokens: Iterable[str], in_query: bool = False) -> Callable[..., None]:
    """A FastAPI dependency that admits a read with any of ``tokens``.

    ``Authorization: Bearer <token>``; with ``in_query`` also ``?access_token=<token>``
    (RFC 6750), for a browser's ``EventSource``, which cannot send headers.
    """
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="read_token",
        description="FRAUDSTREAM_READ_TOKEN (or FRAUDSTREAM_TOKEN)",
    )
    expected = [token.encode() for token in tokens if token]
    message = "a valid bearer token (the read token or the token) is required"

    if in_query:

        def readable_here(
            credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
            access_token: str | None = Query(  # noqa: B008
                None, description="the read token, for clients that cannot send a header"
            ),
        ) -> None:
            given = credentials.credentials if credentials is not None else access_token
            if given is None or not _any_matches(given, expected):
                raise _refuse_401(message)

        return readable_here

    def readable(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        if credentials is None or not _any_matches(credentials.credentials, expected):
            raise _refuse_401(message)

    return readable


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


def install_validation_errors(
    app: FastAPI, on_refused: Callable[[Request, Any, list[dict[str, Any]]], None] | None = None
) -> None:
    """422 bodies as ``[{"field", "message"}]``, the field a dotted path inside the body;
    ``on_refused(request, body, detail)`` hears of each (the rules' audit log keeps them).

    Every other HTTP error the framework raises (400 for a body that is not UTF-8, 404 for an
    unknown path, 405) gets the same shape, the field ``body``, ``path`` or ``method``; a 405
    lists in ``Allow`` every method the path has, not only those of the first route found.
    """

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        detail: list[dict[str, Any]] = []
        for error in exc.errors():
            if error.get("type") == "json_invalid":  # its location is a byte offset
                message = f"invalid JSON at position {error['loc'][-1]}: {error.get('msg')}"
                detail.append({"field": "body", "message": message})
                continue
            location = [str(part) for part in error.get("loc", ()) if part != "body"]
            detail.append({"field": ".".join(location) or "body", "message": error.get("msg")})
        if on_refused is not None:
            on_refused(request, exc.body, detail)
        return json_response(422, {"detail": detail})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if isinstance(exc.detail, list):  # already [{"field", "message"}] (the token checks)
            body: Any = {"detail": exc.detail}
        else:
            field_name = {400: "body", 404: "path", 405: "method"}.get(exc.status_code, "request")
            body = error_body(field_name, str(exc.detail))
        if exc.status_code == 405:
            documented = _methods_of(request.app, request.url.path)
            if documented:  # else (the page's routes) the route's own list
                headers["Allow"] = ", ".join(documented)
        response = json_response(exc.status_code, body)
        response.headers.update(headers)
        return response


def _methods_of(app: FastAPI, path: str) -> list[str]:
    """Every method the API document lists for ``path``: a concrete path's own, else those
    of the templates it matches (OpenAPI matches concrete paths first)."""
    paths: dict[str, Any] = app.openapi().get("paths", {})
    if path in paths:
        return sorted(method.upper() for method in paths[path])
    methods: set[str] = set()
    for template, operations in paths.items():
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods.update(method.upper() for method in operations)
    return sorted(methods)


@dataclass(frozen=True)
class ReadAccess:
    """What a route that returns records declares: nothing without a read token; with one,
    the check (``dependencies``, the live feed's ``stream_dependencies``) and its 401."""

    dependencies: list[Any] = field(default_factory=list)
    stream_dependencies: list[Any] = field(default_factory=list)
    responses: dict[int | str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def for_tokens(cls, token: str, read_token: str | None) -> ReadAccess:
        """Open reads without ``read_token``; else reads need it (or ``token``)."""
        if not read_token:
            return cls()
        tokens = [read_token, token]
        return cls(
            [Depends(read_dependency(tokens))],
            [Depends(read_dependency(tokens, in_query=True))],
            {401: {"model": ErrorBody, "description": "missing or wrong read token"}},
        )
