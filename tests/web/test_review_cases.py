"""The review queue as cases, through the real app: one case per card, named users, the true
total with pages, bulk actions, escalation as a state with who and why, every action audited."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.exceptions import StarletteDeprecationWarning

from fraudstream.assembly import TimeMode, build_pipeline
from fraudstream.schema import CardTokenizer
from fraudstream.simulate.demo import demo_profiles, write_profiles
from fraudstream.web.app import create_app
from fraudstream.web.cases import case_priority

with warnings.catch_warnings():  # starlette prefers httpx2; the venv has httpx
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKEN = "cases-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_767_225_600_000


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    profiles = write_profiles(tmp_path / "profiles.yaml", demo_profiles(users=3))
    pipeline = build_pipeline(None, profiles, TimeMode.event, 0, 300_000, 1_000, None, None)
    app = create_app(pipeline, TOKEN, CardTokenizer.from_environment(), data_dir=tmp_path)
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


def pay(client: TestClient, tx_id: str, card: str, user: str, amount: float, at: int) -> str:
    record = {"transaction_id": tx_id, "card_id": card, "user_id": user, "amount": amount,
              "timestamp": at}  # fmt: skip
    response = client.post("/v1/transactions", json=record, headers=AUTH)
    assert response.status_code == 200, response.text
    return str(response.json()["decision"])


def alerts_on(client: TestClient, card: str, user: str, at: int, large: list[float]) -> None:
    """A tiny charge before each large one: each large one alerts (``{card}-1``, ``-2``, ...)."""
    for k, amount in enumerate(large, start=1):
        pay(client, f"{card}-small-{k}", card, user, 0.3, at + k * 10_000)
        assert pay(client, f"{card}-{k}", card, user, amount, at + k * 10_000 + 5_000) != "approve"


def act(client: TestClient, **body: Any) -> Any:
    response = client.post("/v1/case-actions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_alerts_of_a_card_are_one_case_named_after_its_user(client: TestClient) -> None:
    alerts_on(client, "card-a", "user_1", T0, [900.0, 950.0])
    alerts_on(client, "card-b", "user_2", T0, [520.0])
    page = client.get("/v1/review-cases").json()
    assert (page["total"], page["alerts"], page["pages"]) == (2, 3, 1)
    first, second = page["cases"]
    assert first["card_id"] == "card-a" and first["alerts"] == 2
    assert first["user_name"] == "Lena Whitaker"
    assert first["amount"] == 1850.0 and first["status"] == "open"
    assert first["priority"] == case_priority(first["score"], 1850.0)
    assert first["priority"] >= second["priority"]
    assert sorted(first["transaction_ids"]) == ["card-a-1", "card-a-2"]
    detail = client.get("/v1/review-cases/card-a").json()
    assert [a["transaction_id"] for a in detail["alert_entries"]] == ["card-a-2", "card-a-1"]
    assert detail["card_history"][0]["transaction_id"] == "card-a-2"
    assert client.get("/v1/review-cases/nope").status_code == 404


def test_the_total_counts_every_case_and_pages_split_them(client: TestClient) -> None:
    for k in range(7):
        alerts_on(client, f"card-{k}", "user_3", T0 + k * 60_000, [600.0 + k])
    first = client.get("/v1/review-cases?per_page=3").json()
    last = client.get("/v1/review-cases?per_page=3&page=3").json()
    assert (first["total"], first["pages"], len(first["cases"])) == (7, 3, 3)
    assert len(last["cases"]) == 1
    seen = {c["card_id"] for p in (1, 2, 3) for c in
            client.get(f"/v1/review-cases?per_page=3&page={p}").json()["cases"]}  # fmt: skip
    assert seen == {f"card-{k}" for k in range(7)}
    found = client.get("/v1/review-cases?search=whitaker").json()
    assert found["total"] == 0  # the cases are user_3's
    assert client.get("/v1/review-cases?search=CARD-4").json()["total"] == 1


def test_bulk_verdicts_close_cases_label_each_alert_and_are_audited(client: TestClient) -> None:
    alerts_on(client, "card-a", "user_1", T0, [900.0, 950.0])
    alerts_on(client, "card-b", "user_2", T0, [640.0])
    done = act(client, card_ids=["card-a", "card-b", "ghost"], action="confirm_fraud",
               analyst="Ada", note="called the bank")  # fmt: skip
    assert done["missing"] == ["ghost"]
    assert sorted(t for d in done["done"] for t in d["transactions"]) == [
        "card-a-1",
        "card-a-2",
        "card-b-1",
    ]
    assert client.get("/v1/review-cases").json()["total"] == 0
    closed = client.get("/v1/review-cases?status=closed").json()
    assert {c["card_id"] for c in closed["cases"]} == {"card-a", "card-b"}
    labels = {label["transaction_id"]: label for label in client.get("/v1/labels").json()}
    assert set(labels) == {"card-a-1", "card-a-2", "card-b-1"}
    assert all(label["is_fraud"] and label["analyst"] == "Ada" for label in labels.values())
    log = client.get("/v1/case-actions").json()
    assert [(a["card_id"], a["action"], a["analyst"], a["note"]) for a in log] == [
        ("card-b", "confirm_fraud", "Ada", "called the bank"),
        ("card-a", "confirm_fraud", "Ada", "called the bank"),
    ]


def test_escalation_is_a_state_with_who_and_why_until_a_verdict(client: TestClient) -> None:
    alerts_on(client, "card-e", "user_1", T0, [700.0])
    refused = client.post("/v1/case-actions", headers=AUTH, json={
        "card_ids": ["card-e"], "action": "escalate", "analyst": "Ada", "note": " "})  # fmt: skip
    assert refused.status_code == 422
    assert "why" in refused.text
    act(client, card_ids=["card-e"], action="assign", analyst="Ada", assignee="Bo")
    act(client, card_ids=["card-e"], action="escalate", analyst="Ada", note="looks like a ring")
    case = client.get("/v1/review-cases?status=escalated").json()["cases"][0]
    assert case["status"] == "escalated" and case["assignee"] == "Bo"
    assert (case["escalation"]["analyst"], case["escalation"]["note"]) == (
        "Ada",
        "looks like a ring",
    )
    assert client.get("/v1/review-cases?status=open").json()["total"] == 0
    assert client.get("/v1/labels").json() == []  # an escalation labels nothing
    act(client, card_ids=["card-e"], action="mark_legitimate", analyst="Bo", note="travelling")
    detail = client.get("/v1/review-cases/card-e").json()
    assert detail["status"] == "closed" and detail["escalation"] is None
    assert [a["action"] for a in detail["actions"]] == ["mark_legitimate", "escalate", "assign"]
    assert client.get("/v1/labels").json()[0]["is_fraud"] is False
    # Escalated again once closed: its alerts wait again, escalated; the label stays.
    act(client, card_ids=["card-e"], action="escalate", analyst="Cy", note="chargeback came in")
    reopened = client.get("/v1/review-cases/card-e").json()
    assert (reopened["status"], reopened["alerts"]) == ("escalated", 1)
    assert reopened["escalation"]["note"] == "chargeback came in"


def test_actions_need_the_token(client: TestClient) -> None:
    alerts_on(client, "card-t", "user_1", T0, [700.0])
    body = {"card_ids": ["card-t"], "action": "confirm_fraud", "analyst": "Ada"}
    assert client.post("/v1/case-actions", json=body).status_code == 401
    assert client.get("/v1/review-cases").json()["total"] == 1


@given(
    st.floats(0, 1, allow_nan=False),
    st.floats(0, 1e12, allow_nan=False),
    st.floats(0, 1e12, allow_nan=False),
)
def test_priority_grows_with_the_amount_and_the_score_counts_more(
    score: float, amount: float, more: float
) -> None:
    assert case_priority(score, amount) <= case_priority(score, amount + more)
    assert case_priority(score, amount) - case_priority(score, 0.0) <= 40


@pytest.fixture(scope="module")
def service() -> Any:
    profiles_app = create_app(
        build_pipeline(None, None, TimeMode.event, 0, 300_000, 1_000, None, None),
        TOKEN,
        CardTokenizer.from_environment(),
    )
    return profiles_app.state.service


ALERTS = st.lists(
    st.tuples(
        st.sampled_from(["c1", "c2", "c3", "c4", "c5"]),
        st.floats(0.5, 1.0),
        st.floats(0.0, 5_000.0),
        st.sampled_from(["open", "escalated", "closed"]),
    ),
    max_size=25,
)


@given(alerts=ALERTS, per_page=st.integers(1, 4), status=st.sampled_from(["waiting", "all"]))
def test_pages_partition_the_cases_and_count_every_waiting_alert(
    service: Any, alerts: list[tuple[str, float, float, str]], per_page: int, status: str
) -> None:
    from sqlalchemy import update

    from fraudstream.web.cases import CaseDesk
    from fraudstream.web.review import ReviewDesk, ReviewStore, queue_table

    desk = ReviewDesk(ReviewStore(None), service)
    service.listeners.remove(desk.observe)  # only what this example enqueues
    items = [
        {"transaction_id": f"t{k}", "card_id": card, "user_id": "user_1",
         "event_time": T0 + k, "decision": "review", "score": score, "reasons": [],
         "transaction": {"amount": amount}}
        for k, (card, score, amount, _) in enumerate(alerts)
    ]  # fmt: skip
    desk.store.enqueue(items)
    with desk.store.engine.begin() as connection:
        for k, (_, _, _, state) in enumerate(alerts):
            where = queue_table.c.transaction_id == f"t{k}"
            connection.execute(update(queue_table).where(where).values(status=state))
    cases = CaseDesk(desk)
    whole = cases.cases(status, "", 1, 200)
    count = cases.cases(status, "", 1, per_page)["pages"]
    pages = [cases.cases(status, "", p, per_page) for p in range(1, count + 1)]
    assert count == max(1, -(-whole["total"] // per_page))
    timeless = [{**c, "age_s": 0} for c in whole["cases"]]  # a second may pass between calls
    assert [{**c, "age_s": 0} for page in pages for c in page["cases"]] == timeless
    assert all(page["total"] == whole["total"] for page in pages)
    waiting = [a for a in alerts if a[3] != "closed"]
    shown = waiting if status == "waiting" else alerts
    cards = {a[0] for a in shown}
    assert whole["total"] == len(cards)
    priorities = [c["priority"] for c in whole["cases"]]
    assert priorities == sorted(priorities, reverse=True)
    for case in whole["cases"]:
        mine = [a for a in alerts if a[0] == case["card_id"]]
        states = {a[3] for a in mine}
        expected = (
            "escalated" if "escalated" in states else "open" if "open" in states else "closed"
        )
        assert case["status"] == expected
        counted = [a for a in mine if a[3] != "closed"] if expected != "closed" else mine
        assert case["alerts"] == len(counted)
        assert case["amount"] == pytest.approx(sum(a[2] for a in counted), abs=0.01)
    desk.store.close()
