"""Access: every mutating request needs the bearer token; reads are open."""

from __future__ import annotations

import warnings

import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

from fraudstream.assembly import TimeMode, build_pipeline
from fraudstream.schema import CardTokenizer
from fraudstream.web.app import create_app
from fraudstream.web.serve import TOKEN_VARIABLE, api_token

with warnings.catch_warnings():  # starlette prefers httpx2; the venv has httpx
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKEN = "s3cret-token"
RECORD = {"transaction_id": "a1", "card_id": "c", "timestamp": 1_767_225_600_000, "amount": 5}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    pipeline = build_pipeline(None, None, TimeMode.event, 0, 300_000, 1_000, None, None)
    return create_app(pipeline, TOKEN, CardTokenizer.from_environment())


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer "},
    ],
)
@pytest.mark.parametrize("path", ["/v1/transactions", "/v1/transactions/batch"])
def test_mutating_requests_without_the_token_are_refused(
    app: FastAPI, headers: dict[str, str], path: str
) -> None:
    body = RECORD if path.endswith("transactions") else [RECORD]
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"][0]["field"] == "Authorization"
        # Nothing was decided or recorded.
        assert client.get("/v1/decisions/a1").status_code == 404
        assert client.get("/v1/dead-letters").json() == []


def test_the_token_is_checked_before_the_body(app: FastAPI) -> None:
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.post("/v1/transactions", content=b"x" * 100_000)
    assert response.status_code == 401


def test_reads_are_open_and_the_token_admits_writes(app: FastAPI) -> None:
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/v1/dead-letters").status_code == 200
        headers = {"Authorization": f"Bearer {TOKEN}"}
        response = client.post("/v1/transactions", json=RECORD, headers=headers)
        assert response.status_code == 200
        assert client.get("/v1/decisions/a1").json()["decision"] == "approve"


def test_an_empty_token_is_not_allowed() -> None:
    pipeline = build_pipeline(None, None, TimeMode.event, 0, 300_000, 1_000, None, None)
    with pytest.raises(ValueError, match="token"):
        create_app(pipeline, "")


def test_token_from_environment_or_generated() -> None:
    assert api_token({TOKEN_VARIABLE: "abc"}) == ("abc", False)
    first, generated = api_token({})
    second, _ = api_token({TOKEN_VARIABLE: ""})
    assert generated and len(first) >= 32 and first != second
