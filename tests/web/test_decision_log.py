"""The app's decisions in the decision store: the feed's back-fill, a user's track for the map,
and metrics totals that count from the store's first decision, across a restart."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

from fraudstream.assembly import TimeMode, build_pipeline
from fraudstream.io.sqlstore import DecisionStore
from fraudstream.schema import CardTokenizer
from fraudstream.simulate.demo import demo_profiles, write_profiles
from fraudstream.web.app import create_app

with warnings.catch_warnings():  # starlette prefers httpx2; the venv has httpx
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKEN = "log-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_767_225_600_000


def new_app(data_dir: Path | None) -> FastAPI:
    profiles = None
    if data_dir is not None:
        profiles = write_profiles(data_dir / "profiles.yaml", demo_profiles(users=2))
    pipeline = build_pipeline(None, profiles, TimeMode.event, 0, 300_000, 1_000, None, None)
    return create_app(pipeline, TOKEN, CardTokenizer.from_environment(), data_dir=data_dir)


def pay(client: TestClient, tx_id: str, amount: float, at: int, **extra: Any) -> str:
    record = {"transaction_id": tx_id, "card_id": "c-1", "user_id": "user_1", "amount": amount,
              "timestamp": at, "lat": 51.5, "lon": -0.12, **extra}  # fmt: skip
    response = client.post("/v1/transactions", json=record, headers=AUTH)
    assert response.status_code == 200, response.text
    return str(response.json()["decision"])


def test_decisions_are_kept_in_the_store_and_read_back_newest_first(tmp_path: Path) -> None:
    with TestClient(new_app(tmp_path), base_url="http://127.0.0.1") as client:
        pay(client, "a", 0.3, T0)
        assert pay(client, "b", 900.0, T0 + 5_000) == "decline"
        pay(client, "c", 12.0, T0 + 9_000, user_id="user_2", card_id="c-2", lat=48.85, lon=2.35)
        recent = client.get("/v1/decisions?limit=2").json()
        assert [d["transaction_id"] for d in recent] == ["c", "b"]
        assert recent[0]["transaction"] == {
            "amount": 12.0,
            "currency": "USD",
            "lat": 48.85,
            "lon": 2.35,
        }
        track = client.get("/v1/decisions?user_id=user_1").json()
        assert [d["transaction_id"] for d in track] == ["b", "a"]
        assert track[0]["transaction"]["amount"] == 900.0
        declined = client.get("/v1/decisions?decision=decline").json()
        assert [d["transaction_id"] for d in declined] == ["b"]
    with DecisionStore(str(tmp_path / "decisions.db")) as store:  # what `decisions list` reads
        assert len(store) == 3 and store.get("b")["decision"] == "decline"  # type: ignore[index]


def test_metrics_totals_count_from_the_stores_first_decision(tmp_path: Path) -> None:
    with TestClient(new_app(tmp_path), base_url="http://127.0.0.1") as client:
        pay(client, "a", 0.3, T0)
        pay(client, "b", 900.0, T0 + 5_000)
        first = client.get("/v1/metrics").json()
    assert first["totals"] == {"approve": 1, "review": 0, "decline": 1}
    assert first["alerts_by_rule"] == {"amount_anomaly": 1, "small_then_large": 1}
    with TestClient(new_app(tmp_path), base_url="http://127.0.0.1") as client:
        pay(client, "c", 0.2, T0 + 60_000)
        again = client.get("/v1/metrics").json()
    assert again["totals"] == {"approve": 2, "review": 0, "decline": 1}
    assert again["totals_since_start"] == {"approve": 1, "review": 0, "decline": 0}
    assert again["alerts_by_rule"] == {"amount_anomaly": 1, "small_then_large": 1}
    assert first["since"] == first["started"] <= again["since"] < again["started"]
    second = again["series"][-1]
    assert second["approve"] == 1 and second["p50_ms"] <= second["p99_ms"]


def test_without_a_data_directory_the_last_decisions_are_kept_in_memory() -> None:
    with TestClient(new_app(None), base_url="http://127.0.0.1") as client:
        pay(client, "a", 0.3, T0)
        pay(client, "b", 5.0, T0 + 1_000)
        assert [d["transaction_id"] for d in client.get("/v1/decisions").json()] == ["b", "a"]
        assert client.get("/v1/metrics").json()["totals"]["approve"] == 2
