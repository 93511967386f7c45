"""The review queue in a real browser: a card's alert, as a case, is confirmed as fraud, leaves
the queue and becomes a label (who, when, note), which the API serves to the models."""

from __future__ import annotations

import time
from typing import Any

from browser_support import (
    LiveServer,
    needs_chromium,
    open_app,
    screenshot,
)

pytestmark = needs_chromium


def test_confirming_a_case_moves_it_from_the_queue_to_the_labels(
    page: Any, server: LiveServer
) -> None:
    now = int(time.time() * 1000)
    base = {"card_id": "card-0003-a", "user_id": "user_3", "lat": 48.85, "lon": 2.35}
    first = server.post("/v1/transactions", {**base, "transaction_id": "r-1", "timestamp": now,
                                             "amount": 0.42, "merchant_id": "m-1"})  # fmt: skip
    assert first.status_code == 200, first.text
    assert first.json()["decision"] == "approve"
    second = server.post("/v1/transactions", {**base, "transaction_id": "r-2",
                                              "timestamp": now + 20_000, "amount": 880.0,
                                              "merchant_id": "m-2"})  # fmt: skip
    assert second.json()["decision"] == "decline"
    other = server.post("/v1/transactions", {**base, "card_id": "card-0002-a",
                                             "user_id": "user_2", "transaction_id": "r-3",
                                             "timestamp": now + 30_000, "amount": 0.5})  # fmt: skip
    assert other.status_code == 200

    open_app(page, server, "review", analyst="Ada Analyst")
    row = page.locator("#queue-body tr[data-card='card-0003-a']")
    row.wait_for()
    assert row.get_attribute("data-status") == "open"
    row.click()
    page.wait_for_selector("#review-detail:not([hidden])")
    summary = page.text_content("#review-summary")
    assert "small_then_large" in summary and "small 0.42 then 880.00" in summary
    alerts = page.locator("#case-alerts-body tr").all_text_contents()
    assert len(alerts) == 1 and "r-2" in alerts[0]
    history = page.locator("#history-body tr").all_text_contents()
    assert [("r-2" in line, "r-1" in line) for line in history] == [(True, False), (False, True)]
    page.fill("#review-note", "customer confirmed the card was stolen")
    screenshot(page, "review-before")
    page.click("#review-actions button[data-verdict='confirm_fraud']")

    page.wait_for_selector("#queue-body tr[data-card='card-0003-a']", state="detached")
    label = page.locator("#labels-body tr[data-id='r-2']")
    label.wait_for()
    assert label.get_attribute("data-fraud") == "true"
    assert "Ada Analyst" in label.text_content()
    screenshot(page, "review-labelled")

    labels = server.get("/v1/labels")
    assert [(x["transaction_id"], x["is_fraud"], x["analyst"]) for x in labels] == [
        ("r-2", True, "Ada Analyst")
    ]
    assert labels[0]["note"] == "customer confirmed the card was stolen"
    assert labels[0]["label_time"].endswith("Z")
    reviews = server.get("/v1/reviews?transaction_id=r-2")
    assert [(r["verdict"], r["analyst"]) for r in reviews] == [("confirm_fraud", "Ada Analyst")]
    assert server.get("/v1/review-queue?status=closed")[0]["transaction_id"] == "r-2"
