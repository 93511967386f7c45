"""The analyst's endpoints without a browser: review verdicts and labels, live rule and profile
changes, metrics, the page's files, and the access rules (token, body limits)."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

from fraudstream.assembly import TimeMode, build_pipeline
from fraudstream.schema import CardTokenizer
from fraudstream.simulate.demo import demo_profiles, write_profiles
from fraudstream.web.app import create_app
from fraudstream.web.review import ReviewStore

with warnings.catch_warnings():  # starlette prefers httpx2; the venv has httpx
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKEN = "analyst-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_767_225_600_000


def new_app(data_dir: Path | None) -> FastAPI:
    profiles = None
    if data_dir is not None:
        profiles = write_profiles(data_dir / "profiles.yaml", demo_profiles(users=2))
    pipeline = build_pipeline(None, profiles, TimeMode.event, 0, 300_000, 1_000, None, None)
    return create_app(pipeline, TOKEN, CardTokenizer.from_environment(), data_dir=data_dir)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(new_app(tmp_path), base_url="http://127.0.0.1") as test_client:
        yield test_client


def tx(transaction_id: str, card: str, amount: float, at: int, **extra: Any) -> dict[str, Any]:
    return {"transaction_id": transaction_id, "card_id": card, "amount": amount,
            "timestamp": at, **extra}  # fmt: skip


def alert(client: TestClient, card: str, at: int) -> str:
    """A small-then-large pair on ``card``; returns the alerting transaction's id."""
    assert client.post("/v1/transactions", json=tx(f"{card}-1", card, 0.3, at), headers=AUTH)
    second = client.post("/v1/transactions", json=tx(f"{card}-2", card, 900.0, at + 5_000),
                         headers=AUTH)  # fmt: skip
    assert second.json()["decision"] == "decline"
    return f"{card}-2"


def test_verdicts_record_who_when_and_why_and_make_labels(client: TestClient) -> None:
    first, second, third = (alert(client, f"c{i}", T0 + i * 60_000) for i in range(3))
    waiting = client.get("/v1/review-queue").json()
    assert {item["transaction_id"] for item in waiting} == {first, second, third}
    assert waiting[0]["transaction"]["amount"] == 900.0
    detail = client.get(f"/v1/review-queue/{first}").json()
    assert [d["transaction_id"] for d in detail["card_history"]] == [first, "c0-1"]

    verdict = {"verdict": "escalate", "analyst": "ann", "note": "needs a call"}
    assert client.post(f"/v1/reviews/{first}", json=verdict, headers=AUTH).json()["label"] is None
    legit = {"verdict": "mark_legitimate", "analyst": "bob", "note": "customer travelling"}
    assert client.post(f"/v1/reviews/{second}", json=legit, headers=AUTH).status_code == 200
    fraud = {"verdict": "confirm_fraud", "analyst": "ann"}
    assert client.post(f"/v1/reviews/{first}", json=fraud, headers=AUTH).status_code == 200
    # A chargeback on an approved payment (never queued) is a label too.
    assert client.post("/v1/reviews/c2-1", json=fraud, headers=AUTH).status_code == 200

    assert [i["transaction_id"] for i in client.get("/v1/review-queue").json()] == [third]
    statuses = {i["transaction_id"]: i["status"] for i in
                client.get("/v1/review-queue?status=all").json()}  # fmt: skip
    assert statuses == {first: "closed", second: "closed", third: "open"}
    labels = client.get("/v1/labels").json()
    assert [(x["transaction_id"], x["is_fraud"], x["verdict"]) for x in labels] == [
        (second, False, "mark_legitimate"),
        (first, True, "confirm_fraud"),
        ("c2-1", True, "confirm_fraud"),
    ]
    assert set(labels[0]) == {"transaction_id", "is_fraud", "label_time", "analyst", "verdict",
                              "note"}  # fmt: skip
    log = client.get(f"/v1/reviews?transaction_id={first}").json()
    assert [(r["verdict"], r["analyst"], r["note"]) for r in log] == [
        ("confirm_fraud", "ann", ""),
        ("escalate", "ann", "needs a call"),
    ]
    since = labels[1]["label_time"]
    assert [x["transaction_id"] for x in client.get(f"/v1/labels?since={since}").json()][0] in (
        first,
        second,
    )


def test_reviews_and_labels_survive_a_restart(tmp_path: Path) -> None:
    with TestClient(new_app(tmp_path), base_url="http://127.0.0.1") as client:
        waiting = alert(client, "keep", T0)
        verdict = {"verdict": "confirm_fraud", "analyst": "ann", "note": "kept"}
        assert client.post(f"/v1/reviews/{waiting}", json=verdict, headers=AUTH).status_code == 200
        other = alert(client, "open", T0 + 60_000)
    with TestClient(new_app(tmp_path), base_url="http://127.0.0.1") as client:
        assert [x["transaction_id"] for x in client.get("/v1/labels").json()] == [waiting]
        assert [x["transaction_id"] for x in client.get("/v1/review-queue").json()] == [other]
        history = client.get(f"/v1/review-queue/{other}").json()["card_history"]
        assert [h["transaction_id"] for h in history] == [other]  # from the queue's own rows
    store = ReviewStore(str(tmp_path / "reviews.db"))
    assert [(x["transaction_id"], x["is_fraud"]) for x in store.labels()] == [(waiting, True)]
    store.close()


def test_bad_verdicts_are_refused_with_the_field(client: TestClient) -> None:
    waiting = alert(client, "bad", T0)
    for body, field in (
        ({"verdict": "maybe", "analyst": "ann"}, "verdict"),
        ({"verdict": "escalate"}, "analyst"),
        ({"verdict": "escalate", "analyst": ""}, "analyst"),
        ({"verdict": "escalate", "analyst": "a", "note": "x" * 3000}, "note"),
    ):
        response = client.post(f"/v1/reviews/{waiting}", json=body, headers=AUTH)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["field"] == field
    body = {"verdict": "escalate", "analyst": "ann"}
    assert client.post("/v1/reviews/nope", json=body, headers=AUTH).status_code == 404
    assert client.post(f"/v1/reviews/{waiting}", json=body).status_code == 401
    assert client.get("/v1/reviews").json() == []


def test_a_rule_change_applies_to_the_next_transaction_and_is_audited(
    client: TestClient, tmp_path: Path
) -> None:
    assert client.post("/v1/transactions", json=tx("v-1", "v", 5.0, T0), headers=AUTH)
    change = {"who": "rosa", "thresholds": {"min_transactions": 2}, "note": "tighter"}
    assert client.patch("/v1/rules/velocity", json=change).status_code == 401
    response = client.patch("/v1/rules/velocity", json=change, headers=AUTH)
    assert response.status_code == 200, response.text
    shown = next(r for r in response.json()["rules"] if r["id"] == "velocity")
    assert shown["thresholds"]["min_transactions"] == 2
    decision = client.post("/v1/transactions", json=tx("v-2", "v", 5.0, T0 + 1_000), headers=AUTH)
    assert "velocity" in [r["rule"] for r in decision.json()["reasons"]]

    off = client.patch("/v1/rules/velocity", json={"who": "rosa", "enabled": False}, headers=AUTH)
    assert off.status_code == 200
    decision = client.post("/v1/transactions", json=tx("v-3", "v", 5.0, T0 + 2_000), headers=AUTH)
    assert "velocity" not in [r["rule"] for r in decision.json()["reasons"]]

    refused = client.patch("/v1/rules/velocity", json={"who": "rosa", "thresholds": {"nope": 1}},
                           headers=AUTH)  # fmt: skip
    assert refused.status_code == 409
    assert refused.json()["detail"][0]["field"] == "thresholds"
    assert "unknown threshold 'nope'" in refused.json()["detail"][0]["message"]
    missing = client.patch("/v1/rules/nope", json={"who": "rosa"}, headers=AUTH)
    assert missing.status_code == 404
    bad = client.patch("/v1/rules", json={"who": "rosa", "review_threshold": 0.95}, headers=AUTH)
    assert bad.status_code == 409  # review above decline: the running rules refuse it
    assert client.patch("/v1/rules", json={"who": "r", "review_threshold": 2}, headers=AUTH)
    assert client.get("/v1/rules").json()["decision"]["review_threshold"] == 0.5

    audit = client.get("/v1/rules/audit").json()
    assert [(e["who"], e["refused"]) for e in audit] == [
        ("r", True), ("rosa", True), ("rosa", True), ("rosa", False), ("rosa", False)
    ]  # fmt: skip  # the schema's refusal (a 422) is audited too
    assert "review_threshold" in audit[0]["note"]
    assert audit[-1]["changes"] == ["velocity.min_transactions: 5 -> 2"]
    assert audit[-2]["changes"] == ["velocity.enabled: True -> False"]
    lines = (tmp_path / "rules.audit.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["note"] == "tighter"
    assert "min_transactions: 2" in client.get("/v1/rules/file").text


def test_a_profile_change_applies_to_the_next_transaction(client: TestClient) -> None:
    lena = client.get("/v1/profiles/user_1").json()
    assert (lena["first_name"], lena["max_speed_kmh"]) == ("Lena", 10.0)
    base = {"user_id": "user_1", "lat": 51.50, "lon": -0.12}
    client.post("/v1/transactions", json=tx("p-1", "p", 5.0, T0, **base), headers=AUTH)
    faster = {"who": "pat", "max_speed_kmh": 100, "note": "got a car"}
    assert client.put("/v1/profiles/user_1", json=faster).status_code == 401
    changed = client.put("/v1/profiles/user_1", json=faster, headers=AUTH)
    assert changed.json()["max_speed_kmh"] == 100.0
    assert changed.json()["first_name"] == "Lena"  # fields left out stay
    moved = {**base, "lat": 51.95}  # 50 km in one hour: over 10, under 100 km/h
    decision = client.post("/v1/transactions", json=tx("p-2", "p", 5.0, T0 + 3_600_000, **moved),
                           headers=AUTH).json()  # fmt: skip
    assert decision["features"]["max_speed_kmh"] == 100.0
    assert "geo_velocity" not in [r["rule"] for r in decision["reasons"]]
    created = client.put("/v1/profiles/new_user", json={"who": "pat", "first_name": "Neo"},
                         headers=AUTH)  # fmt: skip
    assert created.status_code == 200 and created.json()["max_speed_kmh"] is None
    assert "new_user" in [p["user_id"] for p in client.get("/v1/profiles").json()]
    bad = client.put("/v1/profiles/user_1", json={"who": "pat", "max_speed_kmh": -1}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "max_speed_kmh"
    audit = client.get("/v1/profiles/audit").json()
    assert [(e["who"], e["user_id"]) for e in audit] == [("pat", "new_user"), ("pat", "user_1")]
    assert audit[1]["before"]["max_speed_kmh"] == 10.0
    assert client.get("/v1/profiles/nobody").status_code == 404


def test_admin_bodies_are_size_limited(client: TestClient) -> None:
    huge = {"who": "x", "note": "n" * 40_000}
    response = client.patch("/v1/rules/velocity", json=huge, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["detail"][0]["field"] == "body"
    chunks = (b"x" * 8192 for _ in range(4))  # no Content-Length: counted as it arrives
    response = client.put("/v1/profiles/u", content=chunks, headers=AUTH)
    assert response.status_code == 413


def test_metrics_count_decisions_by_tier_for_prometheus_and_the_panel(client: TestClient) -> None:
    alert(client, "m", T0)
    text = client.get("/metrics").text
    assert 'fraudstream_decisions_total{decision="approve"} 1.0' in text
    assert 'fraudstream_decisions_total{decision="decline"} 1.0' in text
    assert 'fraudstream_rule_fired_total{rule="small_then_large"} 1.0' in text
    assert "fraudstream_decision_latency_seconds_count 2.0" in text
    assert "fraudstream_review_queue 1.0" in text
    panel = client.get("/v1/metrics").json()
    assert panel["totals"] == {"approve": 1, "review": 0, "decline": 1}
    assert panel["latency_ms"]["samples"] == 2
    assert panel["latency_ms"]["p50"] <= panel["latency_ms"]["p99"]
    assert sum(s["approve"] + s["review"] + s["decline"] for s in panel["series"]) == 2


def test_the_page_and_its_files_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "fraudstream" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for path in ("/static/js/main.js", "/static/vendor/leaflet/leaflet.js",
                 "/static/vendor/leaflet/leaflet.css", "/static/style.css"):  # fmt: skip
        assert client.get(path).status_code == 200, path
    assert "leaflet" not in [p.split("/")[1] for p in client.app.openapi()["paths"]]  # type: ignore[attr-defined]


def test_the_live_feed_can_carry_the_transaction(tmp_path: Path) -> None:
    app = new_app(None)
    got: list[dict[str, Any]] = []
    with TestClient(app, base_url="http://127.0.0.1") as client:

        def listen() -> None:
            url = "/v1/decisions/stream?limit=1&transaction=true"
            with client.stream("GET", url) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        got.append(json.loads(line[6:]))

        reader = threading.Thread(target=listen)
        reader.start()
        deadline = time.monotonic() + 10
        while not app.state.service.subscribers and time.monotonic() < deadline:
            time.sleep(0.01)
        record = tx("s-1", "s", 12.5, T0, lat=10.0, lon=20.0, merchant_id="m-9")
        client.post("/v1/transactions", json=record, headers=AUTH)
        reader.join(timeout=10)
    assert got[0]["transaction_id"] == "s-1"
    assert got[0]["transaction"] == {"amount": 12.5, "lat": 10.0, "lon": 20.0,
                                     "currency": "USD", "merchant_id": "m-9"}  # fmt: skip


def test_queueing_an_alert_again_keeps_its_review(tmp_path: Path) -> None:
    with TestClient(new_app(tmp_path), base_url="http://127.0.0.1") as client:
        desk = client.app.state.review  # type: ignore[attr-defined]
        row = {"transaction_id": "b-1", "card_id": "c", "user_id": "u", "decision": "review",
               "event_time": "2026-01-01T00:00:00.000Z", "score": 0.7, "reasons": [],
               "model": None, "features": {}}  # fmt: skip
        assert desk.observe([row], [{"amount": 3.0}]) == 1
        verdict = {"verdict": "escalate", "analyst": "ann"}
        assert client.post("/v1/reviews/b-1", json=verdict, headers=AUTH).status_code == 200
        assert desk.observe([row, {**row, "transaction_id": "b-2"}], [{}, {}]) == 1
        statuses = {i["transaction_id"]: i["status"] for i in
                    client.get("/v1/review-queue").json()}  # fmt: skip
        assert statuses == {"b-1": "escalated", "b-2": "open"}
