"""User rules through the API: added, edited and removed on the running pipeline (no restart,
detector state kept), a bad expression refused with its column and nothing changed, every
change audited, and an expression checked without applying it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_analyst_api import AUTH, T0, TestClient, new_app, tx


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(new_app(tmp_path), base_url="http://127.0.0.1") as test_client:
        yield test_client


def fired(client: TestClient, record: dict[str, Any]) -> dict[str, str]:
    response = client.post("/v1/transactions", json=record, headers=AUTH)
    assert response.status_code == 200, response.text
    return {r["rule"]: r["message"] for r in response.json()["reasons"]}


BIG_AT_NIGHT = {
    "who": "rosa",
    "when": "amount > 700 and hour < 6",
    "score": 0.6,
    "description": "large payments at night",
    "note": "night wave",
}


def test_a_user_rule_added_edited_and_removed_applies_to_the_next_transaction(
    client: TestClient, tmp_path: Path
) -> None:
    night = T0 + 2 * 3_600_000  # 02:00 UTC
    assert "big_at_night" not in fired(client, tx("n-1", "n", 800.0, night))
    assert client.put("/v1/rules/user/big_at_night", json=BIG_AT_NIGHT).status_code == 401

    added = client.put("/v1/rules/user/big_at_night", json=BIG_AT_NIGHT, headers=AUTH)
    assert added.status_code == 200, added.text
    assert added.json()["user_rules"] == [
        {"id": "big_at_night", "when": "amount > 700 and hour < 6", "score": 0.6,
         "outcome": None, "enabled": True, "mode": "live", "severity": "medium",
         "description": "large payments at night", "hits": 0}
    ]  # fmt: skip
    assert client.get("/v1/rules").json()["user_rules"][0]["id"] == "big_at_night"
    reasons = fired(client, tx("n-2", "n", 800.0, night + 1_000))
    assert "big_at_night" in reasons
    assert "800" in reasons["big_at_night"]

    edited = {**BIG_AT_NIGHT, "when": "amount > 900 and hour < 6", "outcome": "decline"}
    assert client.put("/v1/rules/user/big_at_night", json=edited, headers=AUTH).status_code == 200
    assert "big_at_night" not in fired(client, tx("n-3", "n", 800.0, night + 2_000))
    response = client.post("/v1/transactions", json=tx("n-4", "m", 950.0, night), headers=AUTH)
    assert response.json()["decision"] == "decline"
    assert "big_at_night" in [r["rule"] for r in response.json()["reasons"]]

    removed = client.delete("/v1/rules/user/big_at_night", params={"who": "rosa"}, headers=AUTH)
    assert removed.status_code == 200 and removed.json()["user_rules"] == []
    assert "big_at_night" not in fired(client, tx("n-5", "m", 950.0, night + 1_000))
    gone = client.delete("/v1/rules/user/big_at_night", params={"who": "rosa"}, headers=AUTH)
    assert gone.status_code == 404

    audit = client.get("/v1/rules/audit").json()
    assert [(e["who"], e["refused"]) for e in audit] == [("rosa", False)] * 3
    assert "big_at_night.when: None -> 'amount > 700 and hour < 6'" in audit[-1]["changes"]
    assert audit[-1]["note"] == "night wave"
    assert "big_at_night.outcome: None -> 'decline'" in audit[-2]["changes"]
    assert "big_at_night.enabled: True -> None" in audit[0]["changes"]
    assert len((tmp_path / "rules.audit.jsonl").read_text().splitlines()) == 3


def test_a_user_rule_keeps_the_detectors_state(client: TestClient) -> None:
    """The standard detectors' state survives adding a user rule: the small charge before the
    change and the large one after still make a small-then-large pair."""
    assert client.post("/v1/transactions", json=tx("s-1", "s", 0.3, T0), headers=AUTH)
    client.put("/v1/rules/user/big_at_night", json=BIG_AT_NIGHT, headers=AUTH)
    assert "small_then_large" in fired(client, tx("s-2", "s", 900.0, T0 + 5_000))


def test_a_bad_expression_is_refused_with_its_column_and_nothing_changes(
    client: TestClient, tmp_path: Path
) -> None:
    client.put("/v1/rules/user/big_at_night", json=BIG_AT_NIGHT, headers=AUTH)
    before = client.get("/v1/rules").json()
    bad = {**BIG_AT_NIGHT, "when": "amount > 700 and colour == 'red'"}
    refused = client.put("/v1/rules/user/big_at_night", json=bad, headers=AUTH)
    assert refused.status_code == 422
    assert refused.json() == {
        "detail": [
            {
                "field": "when",
                "column": 18,
                "message": "rule 'big_at_night': when column 18: unknown field 'colour'",
            }
        ]
    }
    assert client.get("/v1/rules").json() == before
    night = T0 + 2 * 3_600_000
    assert "big_at_night" in fired(client, tx("b-1", "b", 800.0, night))  # the old one runs

    no_outcome = {"who": "rosa", "when": "amount > 1"}  # neither score nor outcome
    response = client.put("/v1/rules/user/other", json=no_outcome, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "rule"
    assert "give a score, an outcome or both" in response.json()["detail"][0]["message"]
    standard = client.put("/v1/rules/user/velocity", json=BIG_AT_NIGHT, headers=AUTH)
    assert standard.status_code == 422  # a standard rule's id

    audit = client.get("/v1/rules/audit").json()
    assert [e["refused"] for e in audit] == [True, True, True, False]
    assert "unknown field 'colour'" in audit[2]["note"]
    logged = [json.loads(x) for x in (tmp_path / "rules.audit.jsonl").read_text().splitlines()]
    assert logged[1]["after"] is None and "column 18" in logged[1]["note"]


@pytest.mark.parametrize(
    ("when", "column", "message"),
    [
        ("amount > ", 9, "column 9: the expression ends early"),
        ("amount > 1 and device_id in list('nope')", 16, "unknown list 'nope'"),
        ("amount + 1", 1, "is a number, not a condition"),
        ("fired('nope')", 1, "no standard rule of that id"),
    ],
)
def test_validate_answers_the_error_and_its_column_without_applying(
    client: TestClient, when: str, column: int, message: str
) -> None:
    response = client.post("/v1/rules/validate", json={"when": when})
    assert response.status_code == 422
    (detail,) = response.json()["detail"]
    assert (detail["field"], detail["column"]) == ("when", column)
    assert message in detail["message"]
    assert client.get("/v1/rules/audit").json() == []


def test_validate_takes_a_condition_and_applies_nothing(client: TestClient) -> None:
    when = "count(by=card_id, over='1h') >= 3 and fired('velocity')"
    response = client.post("/v1/rules/validate", json={"when": when})
    assert response.status_code == 200 and response.json() == {"valid": True}
    assert client.get("/v1/rules").json()["user_rules"] == []


TOKENS = ["amount", "hour", "colour", "device_id", ">", "<=", "==", "+", "and", "or", "not",
          "(", ")", "1000", "'d-1'", "in", "list('nope')", "[1, 2]", "is null", "abs(", ",",
          "count(by=card_id, over='1h')", "fired('velocity')", "over='1 week'"]  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(st.sampled_from(TOKENS), min_size=1, max_size=7))
def test_validate_answers_what_applying_would(client: TestClient, parts: list[str]) -> None:
    """Whatever the text, validate says 200 exactly when applying the rule is taken, and a
    refusal's column is inside the expression (or just past its end)."""
    when = " ".join(parts)
    checked = client.post("/v1/rules/validate", json={"when": when})
    rule = {"who": "prop", "when": when, "score": 0.5}
    applied = client.put("/v1/rules/user/prop", json=rule, headers=AUTH)
    assert checked.status_code in (200, 422), checked.text
    assert applied.status_code == checked.status_code, (when, applied.text)
    if checked.status_code == 422:
        (detail,) = checked.json()["detail"]
        assert 1 <= detail["column"] <= len(when) + 1
        assert applied.json()["detail"][0]["column"] == detail["column"]
