"""The rule lifecycle through the API of a running app: a shadow rule recorded but never
scored (decisions, /metrics, hits), numbered versions on every decision, a rollback while the
pipeline runs that keeps detector state, refused changes audited (schema refusals too), and a
backtest of edited rules on the server's history that equals the CLI's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_analyst_api import AUTH, T0, TOKEN, TestClient, new_app, tx
from typer.testing import CliRunner

from fraudstream.assembly import TimeMode, build_pipeline
from fraudstream.cli import app
from fraudstream.schema import CardTokenizer
from fraudstream.web.app import create_app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(new_app(tmp_path), base_url="http://127.0.0.1") as test_client:
        yield test_client


def decide(client: TestClient, record: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/transactions", json=record, headers=AUTH)
    assert response.status_code == 200, response.text
    decision: dict[str, Any] = response.json()
    return decision


def test_a_shadow_rule_is_recorded_and_never_scored(client: TestClient) -> None:
    change = {"who": "rosa", "mode": "shadow", "note": "try it quietly"}
    response = client.patch("/v1/rules/small_then_large", json=change, headers=AUTH)
    assert response.status_code == 200, response.text
    shown = {r["id"]: r for r in response.json()["rules"]}
    assert shown["small_then_large"]["mode"] == "shadow"
    decide(client, tx("s-1", "s", 0.4, T0))
    second = decide(client, tx("s-2", "s", 900.0, T0 + 5_000))
    assert [r["rule"] for r in second["shadow_reasons"]] == ["small_then_large"]
    assert "small_then_large" not in [r["rule"] for r in second["reasons"]]
    assert second["decision"] == "approve" and second["score"] < 0.5
    metrics = client.get("/metrics").text
    assert 'fraudstream_shadow_rule_fired_total{rule="small_then_large"} 1.0' in metrics
    hits = {r["id"]: r["hits"] for r in client.get("/v1/rules").json()["rules"]}
    assert hits["small_then_large"] == 1

    live = {"who": "rosa", "mode": "live"}
    assert client.patch("/v1/rules/small_then_large", json=live, headers=AUTH).status_code == 200
    decide(client, tx("s-3", "t", 0.4, T0 + 10_000))
    third = decide(client, tx("s-4", "t", 900.0, T0 + 15_000))
    assert third["decision"] == "decline" and third["shadow_reasons"] == []


def test_versions_and_a_rollback_that_keeps_detector_state(
    client: TestClient, tmp_path: Path
) -> None:
    first = decide(client, tx("v-1", "v", 5.0, T0))
    assert first["rule_version"] == 1
    change = {"who": "rosa", "score": 0.2, "note": "quieter"}
    assert client.patch("/v1/rules/small_then_large", json=change, headers=AUTH).status_code == 200
    small = decide(client, tx("v-2", "v", 0.4, T0 + 1_000))  # small_then_large's first half
    assert small["rule_version"] == 2

    rollback = {"version": 1, "who": "lee", "note": "too quiet"}
    assert client.post("/v1/rules/rollback", json=rollback).status_code == 401
    rolled = client.post("/v1/rules/rollback", json=rollback, headers=AUTH)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["version"] == 3
    large = decide(client, tx("v-3", "v", 900.0, T0 + 6_000))  # the state survived
    assert large["rule_version"] == 3
    assert large["decision"] == "decline"
    assert large["reasons"][0]["rule"] == "small_then_large"

    versions = client.get("/v1/rules/versions").json()
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert [v["current"] for v in versions] == [True, False, False]
    assert versions[0]["who"] == "lee" and versions[0]["source"] == "rollback"
    assert versions[0]["note"] == "rollback to version 1: too quiet"
    assert versions[0]["changes"] == ["small_then_large.score: 0.2 -> 0.9"]
    assert versions[1]["changes"] == ["small_then_large.score: 0.9 -> 0.2"]
    kept = [
        json.loads(line) for line in (tmp_path / "rules.versions.jsonl").read_text().splitlines()
    ]
    assert [v["version"] for v in kept] == [1, 2, 3]

    missing = client.post("/v1/rules/rollback", json={**rollback, "version": 99}, headers=AUTH)
    assert missing.status_code == 404
    assert "no rule version 99" in missing.json()["detail"][0]["message"]
    audit = client.get("/v1/rules/audit").json()
    assert audit[0]["refused"] and "no rule version 99" in audit[0]["note"]
    assert audit[1]["source"] == "rollback" and audit[1]["changes"]


def test_a_change_the_schema_refuses_is_audited(client: TestClient, tmp_path: Path) -> None:
    bad = {"who": "rosa", "score": 2}
    response = client.patch("/v1/rules/velocity", json=bad, headers=AUTH)
    assert response.status_code == 422
    entry = client.get("/v1/rules/audit").json()[0]
    assert entry["refused"] and entry["who"] == "rosa"
    assert "/v1/rules/velocity" in entry["note"] and "score" in entry["note"]
    logged = [
        json.loads(line) for line in (tmp_path / "rules.audit.jsonl").read_text().splitlines()
    ]
    assert logged[-1]["after"] is None and "score" in logged[-1]["note"]
    assert client.get("/v1/rules").json()["version"] == 1  # nothing applied
    # without the token nothing is audited, not even a body that is not JSON
    broken = {"Content-Type": "application/json"}
    assert client.patch("/v1/rules/velocity", content=b"{bad", headers=broken).status_code == 422
    assert client.patch("/v1/rules/velocity", json=bad).status_code == 401
    assert len(client.get("/v1/rules/audit").json()) == 1


def test_a_backtest_on_the_server_history_equals_the_cli(tmp_path: Path) -> None:
    history, labels = tmp_path / "history.parquet", tmp_path / "labels.parquet"
    runner = CliRunner()
    made = runner.invoke(app, [
        "simulate", "--scenario", "handbook", "--customers", "80", "--terminals", "150",
        "--days", "10", "--output", str(history), "--labels-out", str(labels),
    ])  # fmt: skip
    assert made.exit_code == 0, made.output
    rules = {"rules": [{"id": "big", "when": "amount > 150", "score": 0.6},
                       {"id": "velocity", "enabled": False}]}  # fmt: skip
    (tmp_path / "candidate.json").write_text(json.dumps(rules))
    report_path = tmp_path / "report.json"
    done = runner.invoke(app, [
        "backtest", "--quiet", "--input", str(history), "--labels", str(labels),
        "--rules", str(tmp_path / "candidate.json"), "--report", str(report_path),
    ])  # fmt: skip
    assert done.exit_code == 0, done.output
    expected = json.loads(report_path.read_text())

    pipeline = build_pipeline(None, None, TimeMode.event, 0, 300_000, 1_000, None, None)
    served = create_app(
        pipeline, TOKEN, CardTokenizer.from_environment(), history=history, history_labels=labels
    )
    with TestClient(served, base_url="http://127.0.0.1") as client:
        assert client.post("/v1/rules/backtest", json={"rules": rules}).status_code == 401
        response = client.post("/v1/rules/backtest", json={"rules": rules}, headers=AUTH)
        assert response.status_code == 200, response.text
        report = response.json()
        refused = client.post(
            "/v1/rules/backtest", json={"rules": {"rules": [{"id": "x"}]}}, headers=AUTH
        )
        assert refused.status_code == 422
        assert client.get("/v1/rules").json()["version"] == 1  # nothing applied
    for name in ("transactions", "frauds", "rules", "baseline_rules", "changed", "decision"):
        assert report[name] == expected[name], name
    assert report["tiers"] == expected["tiers"]

    with TestClient(new_app(None), base_url="http://127.0.0.1") as client:
        none = client.post("/v1/rules/backtest", json={"rules": rules}, headers=AUTH)
        assert none.status_code == 409
