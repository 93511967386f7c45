"""The API document (``/openapi.json``): what FastAPI derives from the routes, completed so it
says what the server does.

FastAPI documents its own validation error shape (``loc``, ``msg``, ``type``) and knows
nothing of what middleware or dependencies answer. :func:`complete_document` fixes that, on
every operation:

* 422 is the API's ``ErrorBody`` (``{"detail": [{"field", "message"}]}``), the shape the
  handlers in :mod:`fraudstream.web.guard` return;
* an operation with a security requirement (a bearer token) documents 401;
* an operation with a request body documents 400 (a body FastAPI cannot parse: not UTF-8,
  nested too deep) and 413 (over the size limit);
* every operation documents 400 ``text/plain`` ``Invalid host header`` (a ``Host`` not
  allowed).

``tests/web/test_schemathesis.py`` runs schemathesis (every check) against the real server to
hold the document to that.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = ["complete_document", "install_api_document"]

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_FASTAPI_ERROR = "#/components/schemas/HTTPValidationError"
_HOST_REFUSED = {"text/plain": {"schema": {"type": "string", "const": "Invalid host header"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def _errors_as_json(code: int, content: dict[str, Any]) -> None:
    # FastAPI files a route's error models under the route's own media type (YAML, an event
    # stream); the server answers every error in JSON.
    if code < 400:
        return
    for media_type in [m for m, body in content.items() if body.get("schema") == _ERROR_REF]:
        content["application/json"] = content.pop(media_type)


def complete_document(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (FastAPI's) with the responses the server adds, as listed above.

    >>> doc = {"paths": {"/x": {"post": {"requestBody": {}, "security": [{"token": []}],
    ...        "responses": {"422": {"content": {"application/json": {"schema":
    ...        {"$ref": _FASTAPI_ERROR}}}}}}}}, "components": {"schemas": {}}}
    >>> sorted(complete_document(doc)["paths"]["/x"]["post"]["responses"])
    ['400', '401', '413', '422']
    """
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, response in responses.items():
                _errors_as_json(int(code), response.get("content", {}))
            if "422" in responses:
                responses["422"] = _error("invalid request: the field and why")
            if operation.get("security") and "401" not in responses:
                responses["401"] = _error("missing or wrong bearer token")
            bad = responses.setdefault("400", {"description": "", "content": {}})
            bad["content"] = {**bad.get("content", {}), **_HOST_REFUSED}
            if "requestBody" in operation:
                bad["content"].setdefault("application/json", {"schema": _ERROR_REF})
                bad["description"] = "a body that cannot be parsed, or a Host not allowed"
                responses.setdefault("413", _error("request body too large"))
            else:
                bad["description"] = bad["description"] or "a Host not allowed"
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def install_api_document(app: FastAPI) -> None:
    """Serves :func:`complete_document` of the app's routes as its OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = complete_document(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
