"""The OpenAPI document names the shapes the server answers with (``test_schemathesis.py``
checks the whole document against the running server; these pin the parts issue 16 found).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

from fraudstream.assembly import TimeMode, build_pipeline
from fraudstream.schema import CardTokenizer
from fraudstream.web.app import create_app

with warnings.catch_warnings():  # starlette prefers httpx2; the venv has httpx
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKEN = "doc-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    pipeline = build_pipeline(None, None, TimeMode.event, 0, 300_000, 1_000, None, None)
    return create_app(pipeline, TOKEN, CardTokenizer.from_environment(), read_token="read")


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_error_is_documented_as_the_api_error_body(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(document)
    for path, method, operation in operations(document):
        responses = operation["responses"]
        for code, response in responses.items():
            if int(code) >= 400 and code != "400":
                assert response["content"] == {"application/json": {"schema": ERROR_REF}}, (
                    path, method, code)  # fmt: skip
        assert responses["400"]["content"]["text/plain"]  # a Host not allowed
        if operation.get("security"):
            assert "401" in responses, (path, method)
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= set(responses), (path, method)


def test_the_documented_422_is_what_the_server_sends(client: TestClient) -> None:
    bad_limit = client.get("/v1/dead-letters?limit=0", headers=AUTH)
    json_type = {**AUTH, "Content-Type": "application/json"}
    bad_json = client.patch("/v1/rules", content=b"{bad", headers=json_type)
    missing = client.put("/v1/profiles/u1", headers=AUTH)
    for response in (bad_limit, bad_json, missing):
        assert response.status_code == 422
        assert set(response.json()) == {"detail"}
        assert all(set(item) == {"field", "message"} for item in response.json()["detail"])
    assert bad_limit.json()["detail"][0]["field"] == "query.limit"
    assert bad_json.json()["detail"][0]["field"] == "body"
    assert "invalid JSON" in bad_json.json()["detail"][0]["message"]


def test_other_http_errors_have_the_same_shape(client: TestClient) -> None:
    json_type = {**AUTH, "Content-Type": "application/json"}
    not_utf8 = client.post("/v1/reviews/x", content=b'{"analyst": "\xff"}', headers=json_type)
    assert not_utf8.status_code == 400
    assert not_utf8.json()["detail"][0]["field"] == "body"
    unknown = client.get("/v2/nothing")
    assert unknown.status_code == 404 and unknown.json()["detail"][0]["field"] == "path"
    other = client.delete("/v1/rules", headers=AUTH)
    assert other.status_code == 405 and other.json()["detail"][0]["field"] == "method"
    assert {"GET", "PATCH"} <= set(other.headers["allow"].split(", "))  # both routes' methods


def test_content_types_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    content = {
        path: list(paths[path]["get"]["responses"]["200"]["content"])
        for path in ("/metrics", "/v1/rules/file", "/v1/decisions/stream", "/v1/profiles")
    }
    assert content == {
        "/metrics": ["text/plain"],
        "/v1/rules/file": ["application/yaml"],
        "/v1/decisions/stream": ["text/event-stream"],
        "/v1/profiles": ["application/json"],
    }
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert (
        client.get("/v1/rules/file", headers=AUTH)
        .headers["content-type"]
        .startswith("application/yaml")
    )
    not_found = {"/v1/profiles/{user_id}", "/v1/review-queue/{transaction_id}"}
    for path in not_found | {"/v1/decisions/{transaction_id}"}:
        assert "404" in paths[path]["get"]["responses"], path
    assert "404" in paths["/v1/rules/{rule_id}"]["patch"]["responses"]
    assert "409" in paths["/v1/rules/{rule_id}"]["patch"]["responses"]
    assert "404" in paths["/v1/reviews/{transaction_id}"]["post"]["responses"]


@pytest.mark.parametrize(
    ("since", "status"),
    [("", 422), ("yesterday", 422), ("2026-01-01", 422), ("1767225600000", 200),
     ("2026-01-01T00:00:00Z", 200), ("2026-12-31T23:59:60+01:00", 200)],
)  # fmt: skip
def test_since_is_what_the_document_says(client: TestClient, since: str, status: int) -> None:
    response = client.get("/v1/labels", params={"since": since}, headers=AUTH)
    assert response.status_code == status, response.text
    parameter = next(
        p
        for p in client.get("/openapi.json").json()["paths"]["/v1/labels"]["get"]["parameters"]
        if p["name"] == "since"
    )
    assert {"pattern": "^[0-9]{1,15}$", "type": "string"} in parameter["schema"]["anyOf"]


def test_lat_without_lon_is_outside_the_documented_schema(client: TestClient) -> None:
    import jsonschema

    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/transactions"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    base = {"transaction_id": "t", "card_id": "c", "timestamp": 1_767_225_600_000, "amount": 1}
    for extra, accepted in [
        ({}, True), ({"lat": 1.0, "lon": 2.0}, True), ({"lat": 1.0, "lng": 2.0}, True),
        ({"lat": 1.0}, False), ({"lon": 2.0}, False), ({"lat": 1.0, "lon": None}, False),
        ({"account_id": 7, "card_id": None}, True), ({"card_id": None}, False),
    ]:  # fmt: skip
        record = {**base, **extra}
        valid = jsonschema.Draft202012Validator(schema).is_valid(record)
        sent = client.post("/v1/transactions", json=record | {"transaction_id": str(extra)},
                           headers=AUTH)  # fmt: skip
        assert valid == accepted == (sent.status_code == 200), (extra, sent.text)


def test_a_huge_limit_is_a_422_not_a_database_error(client: TestClient) -> None:
    # schemathesis (seed 9) found it: SQLite cannot take a LIMIT past 64 bits
    response = client.get("/v1/labels?limit=2046339045697552411833401344", headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "query.limit"
