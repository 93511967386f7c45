"""Who may read: only the allowed Host names are answered, and a read token closes the GETs.

A page on ``evil.example`` whose DNS name is rebound to 127.0.0.1 sends ``Host:
evil.example``; every route refuses it (400) before anything runs. With a read token every
``/v1`` GET needs it (or the write token); the write token still guards every change.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.exceptions import StarletteDeprecationWarning

from fraudstream.assembly import TimeMode, build_pipeline
from fraudstream.schema import CardTokenizer
from fraudstream.web.app import create_app
from fraudstream.web.guard import trusted_hosts

with warnings.catch_warnings():  # starlette prefers httpx2; the venv has httpx
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKEN = "write-token"
READ_TOKEN = "read-token"
LOCAL = "http://127.0.0.1"
RECORD = {"transaction_id": "a1", "card_id": "c", "timestamp": 1_767_225_600_000, "amount": 5}
# Routes outside the API document that still answer a GET.
PAGE_PATHS = ["/", "/static/js/main.js", "/static/style.css", "/docs", "/openapi.json"]


def new_app(read_token: str | None = None, allowed_hosts: list[str] | None = None) -> FastAPI:
    pipeline = build_pipeline(None, None, TimeMode.event, 0, 300_000, 1_000, None, None)
    return create_app(
        pipeline,
        TOKEN,
        CardTokenizer.from_environment(),
        read_token=read_token,
        allowed_hosts=allowed_hosts,
    )


def get_paths(app: FastAPI) -> list[str]:
    """Every GET path in the API document, path parameters filled in."""
    paths = []
    for path, operations in app.openapi()["paths"].items():
        if "get" in operations:
            paths.append(path.replace("{transaction_id}", "a1").replace("{user_id}", "u1"))
    return paths


@pytest.fixture(scope="module")
def closed_app() -> FastAPI:
    return new_app(READ_TOKEN)


@pytest.fixture(scope="module")
def open_client() -> Iterator[TestClient]:
    with TestClient(new_app(), base_url=LOCAL) as client:
        yield client


def test_every_get_refuses_a_foreign_host() -> None:
    app = new_app()
    paths = get_paths(app) + PAGE_PATHS
    assert "/v1/profiles" in paths and "/v1/dead-letters" in paths and len(paths) > 20
    with TestClient(app, base_url=LOCAL) as client:
        for host in ("evil.example", "evil.example:8888", "127.0.0.1.evil.example", "[::2]"):
            for path in paths:
                response = client.get(path, headers={"Host": host})
                assert response.status_code == 400, (host, path)
        # The decision fast path too, token or not.
        auth = {"Authorization": f"Bearer {TOKEN}", "Host": "evil.example"}
        assert client.post("/v1/transactions", json=RECORD, headers=auth).status_code == 400
        assert client.get("/v1/decisions/a1").status_code == 404  # nothing was decided


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8888", "localhost:8888", "[::1]:8888"])
def test_the_page_and_the_api_answer_on_loopback_names(host: str) -> None:
    with TestClient(new_app(), base_url=LOCAL) as client:
        page = client.get("/", headers={"Host": host})
        assert page.status_code == 200 and "fraudstream" in page.text
        assert client.get("/v1/profiles", headers={"Host": host}).status_code == 200


def test_more_hosts_can_be_allowed() -> None:
    app = new_app(allowed_hosts=trusted_hosts("10.1.2.3", ["fraud.example.com", "*.corp.example"]))
    with TestClient(app, base_url=LOCAL) as client:
        for host in ("fraud.example.com", "10.1.2.3:8888", "a.corp.example", "localhost"):
            assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", "corp.example.evil", "10.1.2.4"):
            assert client.get("/healthz", headers={"Host": host}).status_code == 400, host


@given(st.from_regex(r"\A[a-z0-9][a-z0-9.-]{0,30}(:[0-9]{1,5})?\Z"))
@settings(max_examples=60, deadline=None)
def test_only_the_listed_names_are_answered(open_client: TestClient, host: str) -> None:
    allowed = {"127.0.0.1", "localhost"}
    status = open_client.get("/healthz", headers={"Host": host}).status_code
    assert status == (200 if host.partition(":")[0] in allowed else 400)


def test_a_malformed_allowed_host_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\*\.example\.com"):
        trusted_hosts(None, ["fraud.*.example"])


def test_without_a_read_token_reads_are_open() -> None:
    app = new_app()
    with TestClient(app, base_url=LOCAL) as client:
        for path in get_paths(app):
            if "stream" not in path:
                assert client.get(path).status_code in (200, 404), path
    assert "read_token" not in json.dumps(app.openapi())


def test_a_read_token_closes_every_v1_get(closed_app: FastAPI) -> None:
    paths = [p for p in get_paths(closed_app) if p.startswith("/v1/")]
    with TestClient(closed_app, base_url=LOCAL) as client:
        for path in paths:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": READ_TOKEN}):
                response = client.get(path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert response.json()["detail"][0]["field"] == "Authorization"
            stream = "stream" in path
            for token in (READ_TOKEN, TOKEN):
                if not stream:
                    response = client.get(path, headers={"Authorization": f"Bearer {token}"})
                    assert response.status_code in (200, 404), (path, token)
        # What holds no records stays open: liveness, Prometheus, the page, the API document.
        for path in ["/healthz", "/metrics", *PAGE_PATHS]:
            assert client.get(path).status_code == 200, path
    operations = closed_app.openapi()["paths"]
    for path, methods in operations.items():
        if path.startswith("/v1/") and "get" in methods:
            schemes = [name for entry in methods["get"]["security"] for name in entry]
            assert schemes == ["read_token"], path
            assert "401" in methods["get"]["responses"], path


def test_the_read_token_does_not_admit_changes(closed_app: FastAPI) -> None:
    with TestClient(closed_app, base_url=LOCAL) as client:
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert client.post("/v1/transactions", json=RECORD, headers=read).status_code == 401
        assert client.post("/v1/transactions/batch", json=[RECORD], headers=read).status_code == 401
        change = {"who": "eve", "review_threshold": 0.1}
        assert client.patch("/v1/rules", json=change, headers=read).status_code == 401
        write = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post("/v1/transactions", json=RECORD, headers=write).status_code == 200
        assert client.get("/v1/decisions/a1", headers=read).json()["decision"] == "approve"


def listen(client: TestClient, url: str, got: list[Any]) -> None:
    with client.stream("GET", url) as response:
        got.append(response.status_code)
        for line in response.iter_lines():
            if line.startswith("data: "):
                got.append(json.loads(line[6:]))


def test_the_live_feed_takes_the_read_token_in_the_query() -> None:
    app = new_app(READ_TOKEN)
    with TestClient(app, base_url=LOCAL) as client:
        refused: list[Any] = []
        listen(client, "/v1/decisions/stream?limit=1&access_token=wrong", refused)
        listen(client, "/v1/decisions/stream?limit=1", refused)
        assert refused == [401, 401] and not app.state.service.subscribers
        got: list[Any] = []
        url = f"/v1/decisions/stream?limit=1&access_token={READ_TOKEN}"
        reader = threading.Thread(target=listen, args=(client, url, got))
        reader.start()
        deadline = time.monotonic() + 10
        while not app.state.service.subscribers and time.monotonic() < deadline:
            time.sleep(0.01)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post("/v1/transactions", json=RECORD, headers=auth).status_code == 200
        reader.join(timeout=10)
    assert got[0] == 200 and got[1]["transaction_id"] == "a1"


def test_fraudstream_serve_takes_the_read_token_and_allowed_hosts() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {**os.environ, "FRAUDSTREAM_TOKEN": TOKEN, "FRAUDSTREAM_READ_TOKEN": READ_TOKEN}
    command = [sys.executable, "-m", "fraudstream.web.serve", "--port", str(port),
               "--allowed-host", "fraud.example.com"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert httpx.get(url + "/v1/profiles").status_code == 401
        assert httpx.get(url + "/v1/profiles", headers=read).status_code == 200
        named = {**read, "Host": "fraud.example.com"}
        assert httpx.get(url + "/v1/profiles", headers=named).status_code == 200
        foreign = {**read, "Host": "evil.example"}
        assert httpx.get(url + "/v1/profiles", headers=foreign).status_code == 400
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "answers Host: 127.0.0.1, localhost, [::1], fraud.example.com" in stderr, stderr
    assert "Traceback" not in stderr


def test_a_bad_allowed_host_is_one_line() -> None:
    command = [sys.executable, "-m", "fraudstream.web.serve", "--allowed-host", "a.*.example"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "error: --allowed-host: allowed host 'a.*.example': a wildcard must be like '*.example.com'"
    ]
