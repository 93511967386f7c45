"""The decision API against ``fraudstream run``: same records, same order, same decisions."""

from __future__ import annotations

import json
import random
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

from fraudstream.assembly import TimeMode, build_pipeline
from fraudstream.io.files import FileSource
from fraudstream.run import Outputs, Runner
from fraudstream.schema import CardTokenizer
from fraudstream.web.app import MAX_BATCH_ITEMS, MAX_SINGLE_BYTES, DecisionService, create_app

with warnings.catch_warnings():  # starlette prefers httpx2; the venv has httpx
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COMPARED = ("transaction_id", "card_id", "user_id", "event_time", "decision", "score")
COMPARED += ("reasons", "features", "model")
START_MS = 1_767_225_600_000


def new_app() -> FastAPI:
    pipeline = build_pipeline(None, None, TimeMode.event, 0, 300_000, 1_000, None, None)
    return create_app(pipeline, TOKEN, CardTokenizer.from_environment())


def service_of(app: FastAPI) -> DecisionService:
    service: DecisionService = app.state.service
    return service


def good_records(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Transactions that fire every kind of rule now and then; some arrive out of order
    (within the allowed lateness), some use the aliases, ISO times, card numbers, extras."""
    cards = [f"card-{i}" for i in range(25)]
    places = [(52.52, 13.40), (48.86, 2.35), (40.71, -74.0), (35.68, 139.69), (-33.87, 151.2)]
    ips = ["192.0.2.10", "192.0.2.70", "203.0.113.5", "198.51.100.7", None]
    now = START_MS
    out: list[dict[str, Any]] = []
    for i in range(count):
        now += rng.choice((0, 500, 2_000, 15_000, 45_000, 120_000))
        timestamp = now - (rng.randint(1, 200_000) if rng.random() < 0.05 else 0)
        card = rng.choice(cards)
        amount = rng.choice(
            (round(rng.uniform(0.01, 0.99), 2), round(rng.uniform(1, 80), 2), 871.15, 1.5)
        )
        record: dict[str, Any] = {"transaction_id": f"good-{i:05d}", "timestamp": timestamp}
        roll = rng.random()
        if roll < 0.05:
            record["account_id"] = card
        elif roll < 0.08:
            record["card_number"] = "4111111111111" + f"{cards.index(card):03d}"
        else:
            record["card_id"] = card
        record["amount"] = amount
        if rng.random() < 0.3:
            record["user_id"] = f"user-{cards.index(card) % 10}"
        if rng.random() < 0.8:
            lat, lon = rng.choice(places)
            record["lat"] = lat + rng.uniform(-0.1, 0.1)
            record["lng" if rng.random() < 0.1 else "lon"] = lon + rng.uniform(-0.1, 0.1)
        if rng.random() < 0.1:
            record["timestamp"] = (
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp // 1000))
                + f".{timestamp % 1000:03d}+00:00"
            )
        for name, values in (
            ("zipcode", ["10115", "75001", "10001", None]),
            ("merchant_id", [f"m{k}" for k in range(8)]),
            ("device_id", ["d1", "d2", "d3", f"d-{i}"]),
            ("country", ["US", "GB", "DE", None]),
            ("channel", ["pos", "web"]),
        ):
            value = rng.choice(values)
            if value is not None:
                record[name] = value
        ip = rng.choice(ips)
        if ip is not None:
            record["ip"] = ip
        if rng.random() < 0.05:
            record["note"] = {"extra": i}
        out.append(record)
    return out


def bad_record(rng: random.Random, i: int) -> tuple[Any, str]:
    """An invalid record and the field its error must name."""
    base: dict[str, Any] = {
        "transaction_id": f"bad-{i:05d}",
        "card_id": "card-1",
        "timestamp": START_MS,
        "amount": 10.0,
    }
    kind = rng.randrange(12)
    if kind == 0:
        del base["transaction_id"]
        return base, "transaction_id"
    if kind == 1:
        base["amount"] = -5
        return base, "amount"
    if kind == 2:
        base["amount"] = "lots"
        return base, "amount"
    if kind == 3:
        base["timestamp"] = "yesterday"
        return base, "timestamp"
    if kind == 4:
        del base["timestamp"]
        return base, "timestamp"
    if kind == 5:
        base["lat"], base["lon"] = 123.0, 10.0
        return base, "lat"
    if kind == 6:
        base["currency"] = "dollars"
        return base, "currency"
    if kind == 7:
        del base["card_id"]
        return base, "card_id"
    if kind == 8:
        base["lat"] = 10.0
        return base, "lat/lon"
    if kind == 9:
        base["transaction_id"] = "x" * 200
        return base, "transaction_id"
    if kind == 10:
        return [base], "record"
    base["lat"], base["lon"] = 10.0, "east"
    return base, "lon"


def mixed_records(seed: int = 11) -> tuple[list[Any], dict[int, str]]:
    rng = random.Random(seed)
    records: list[Any] = list(good_records(rng, 1_000))
    expected: dict[int, str] = {}
    for i in range(200):
        record, field = bad_record(rng, i)
        at = rng.randrange(len(records) + 1)
        records.insert(at, (record, field))
    out: list[Any] = []
    for record in records:
        if isinstance(record, tuple):
            expected[len(out)] = record[1]
            out.append(record[0])
        else:
            out.append(record)
    return out, expected


def run_decisions(records: list[Any], tmp_path: Path) -> list[dict[str, Any]]:
    """What ``fraudstream run`` decides for these records (a JSON-lines file, same order)."""
    source = tmp_path / "input.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    output = tmp_path / "decisions.jsonl"
    pipeline = build_pipeline(None, None, TimeMode.event, 0, 300_000, 1_000, None, None)
    runner = Runner(pipeline, Outputs(decisions=str(output)), CardTokenizer.from_environment())
    summary = runner.run(FileSource(source, "jsonl"))
    assert summary.dead_letters == 200 and summary.late == 0
    return [json.loads(line) for line in output.read_text().splitlines()]


def same(api: dict[str, Any], run: dict[str, Any]) -> bool:
    return all(api[k] == run[k] for k in COMPARED)


def test_api_decides_exactly_like_run(tmp_path: Path) -> None:
    records, bad = mixed_records()
    assert len(records) == 1_200 and len(bad) == 200
    expected = run_decisions(records, tmp_path)
    assert len(expected) == 1_000
    app = new_app()
    decided: list[dict[str, Any]] = []
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for index, record in enumerate(records):
            response = client.post("/v1/transactions", json=record, headers=AUTH)
            assert response.status_code < 500, response.text
            if index in bad:
                assert response.status_code == 422, (record, response.text)
                detail = response.json()["detail"]
                assert detail[0]["field"] == bad[index], (record, detail)
                assert detail[0]["message"].startswith(bad[index] + ":")
            else:
                assert response.status_code == 200, (record, response.text)
                decided.append(response.json())
        assert [d["transaction_id"] for d in decided] == [d["transaction_id"] for d in expected]
        mismatched = [(a, r) for a, r in zip(decided, expected, strict=True) if not same(a, r)]
        assert not mismatched, mismatched[:3]
        assert {d["decision"] for d in decided} == {"approve", "review", "decline"}
        # Every decision can be read back; every bad record is a dead letter.
        for decision in decided[::50]:
            kept = client.get(f"/v1/decisions/{decision['transaction_id']}")
            assert kept.status_code == 200 and kept.json() == decision
        letters = client.get("/v1/dead-letters", params={"limit": 1_000}).json()
        assert len(letters) == 200
        reasons = [letter["reason"] for letter in letters]
        assert all(r.startswith(bad[i] + ":") for r, i in zip(reasons, sorted(bad), strict=True))


def test_batch_endpoint_decides_in_order_like_single_requests(tmp_path: Path) -> None:
    records, bad = mixed_records(seed=5)
    expected = run_decisions(records, tmp_path)
    app = new_app()
    with TestClient(app, base_url="http://127.0.0.1") as client:
        results: list[dict[str, Any]] = []
        for start in range(0, len(records), 500):
            response = client.post(
                "/v1/transactions/batch", json=records[start : start + 500], headers=AUTH
            )
            assert response.status_code == 200, response.text
            results.extend(response.json())
    assert [r["index"] for r in results[:500]] == list(range(500))
    decided = [r["decision"] for r in results if r["status"] == 200]
    errors = {i: r for i, r in enumerate(results) if r["status"] != 200}
    assert set(errors) == set(bad)
    assert all(errors[i]["status"] == 422 for i in bad)
    assert all(errors[i]["detail"][0]["field"] == bad[i] for i in bad)
    assert all(same(a, r) for a, r in zip(decided, expected, strict=True))
    assert len(decided) == len(expected)


def test_duplicates_late_unknown_and_limits() -> None:
    app = new_app()
    record = {"transaction_id": "t1", "card_id": "c", "timestamp": START_MS, "amount": 1.0}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.post("/v1/transactions", json=record, headers=AUTH).status_code == 200
        again = client.post("/v1/transactions", json=record, headers=AUTH)
        assert again.status_code == 409
        assert again.json()["detail"][0]["field"] == "transaction_id"
        assert "duplicate" in again.json()["detail"][0]["message"]
        later = {**record, "transaction_id": "t2", "timestamp": START_MS + 3_600_000}
        assert client.post("/v1/transactions", json=later, headers=AUTH).status_code == 200
        late = {**record, "transaction_id": "t3"}  # an hour behind; lateness is 5 minutes
        response = client.post("/v1/transactions", json=late, headers=AUTH)
        assert response.status_code == 409
        assert response.json()["detail"][0]["field"] == "timestamp"
        assert "late" in response.json()["detail"][0]["message"]
        assert [r["record"]["transaction_id"] for r in client.get("/v1/late").json()] == ["t3"]
        assert client.get("/v1/decisions/t3").status_code == 404
        assert client.get("/v1/decisions/nope").status_code == 404
        letters = client.get("/v1/dead-letters").json()
        assert [letter["reason"].split(":")[0] for letter in letters] == ["duplicate"]

        huge = {**record, "transaction_id": "t4", "note": "x" * MAX_SINGLE_BYTES}
        response = client.post("/v1/transactions", json=huge, headers=AUTH)
        assert response.status_code == 413
        assert response.json()["detail"][0]["field"] == "body"
        chunked = client.post(
            "/v1/transactions",
            content=iter([b"[" + b" " * MAX_SINGLE_BYTES, b"]"]),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert chunked.status_code == 413
        too_many = client.post(
            "/v1/transactions/batch", json=[{}] * (MAX_BATCH_ITEMS + 1), headers=AUTH
        )
        assert too_many.status_code == 422
        assert too_many.json()["detail"][0]["field"] == "body"
        big_batch = client.post(
            "/v1/transactions/batch",
            content=b"[" + b" " * (4 * 1024 * 1024) + b"]",
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert big_batch.status_code == 413
        not_json = client.post("/v1/transactions", content=b"{nope", headers=AUTH)
        assert not_json.status_code == 422
        assert not_json.json()["detail"][0]["field"] == "body"
        not_list = client.post("/v1/transactions/batch", json={"a": 1}, headers=AUTH)
        assert not_list.status_code == 422
        assert client.post("/v1/transactions/batch", json=[], headers=AUTH).json() == []


def test_openapi_schema_lists_the_endpoints() -> None:
    with TestClient(new_app(), base_url="http://127.0.0.1") as client:
        schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/v1/transactions",
        "/v1/transactions/batch",
        "/v1/decisions/{transaction_id}",
        "/v1/decisions/stream",
        "/v1/dead-letters",
    ):
        assert path in paths
    body = paths["/v1/transactions"]["post"]["requestBody"]["content"]["application/json"]
    assert "amount" in body["schema"]["properties"]
    assert paths["/v1/transactions"]["post"]["security"]


def test_live_feed_streams_new_decisions() -> None:
    app = new_app()
    service = service_of(app)
    record = {"transaction_id": "live-1", "card_id": "c", "timestamp": START_MS, "amount": 2.0}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        received: list[str] = []

        def listen() -> None:
            with client.stream("GET", "/v1/decisions/stream", params={"limit": 1}) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                received.extend(response.iter_lines())

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        for _ in range(500):
            if service.subscribers:
                break
            time.sleep(0.01)
        assert service.subscribers
        assert client.post("/v1/transactions", json=record, headers=AUTH).status_code == 200
        listener.join(timeout=20)
        assert not listener.is_alive()
    events = [line[len("data: ") :] for line in received if line.startswith("data: ")]
    assert len(events) == 1
    assert json.loads(events[0])["transaction_id"] == "live-1"
    assert not service.subscribers


def test_slow_subscriber_drops_the_oldest() -> None:
    app = new_app()
    service = service_of(app)
    subscriber = service.subscribe(size=2)
    records = [
        {"transaction_id": f"s{i}", "card_id": "c", "timestamp": START_MS + i, "amount": 1.0}
        for i in range(5)
    ]
    for record in records:
        assert service.decide_now([record])[0].status == 200
    assert subscriber.dropped == 3
    kept = [json.loads(subscriber.queue.get_nowait()[6:]) for _ in range(2)]
    assert [k["transaction_id"] for k in kept] == ["s3", "s4"]


@pytest.mark.parametrize("limit", [3])
def test_decisions_kept_are_bounded(limit: int) -> None:
    pipeline = build_pipeline(None, None, TimeMode.event, 0, 300_000, 1_000, None, None)
    app = create_app(pipeline, TOKEN, CardTokenizer.from_environment(), max_decisions=limit)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for i in range(5):
            record = {"transaction_id": f"k{i}", "card_id": "c", "timestamp": START_MS + i}
            record["amount"] = 1.0
            assert client.post("/v1/transactions", json=record, headers=AUTH).status_code == 200
        found = [client.get(f"/v1/decisions/k{i}").status_code for i in range(5)]
    assert found == [404, 404, 200, 200, 200]
