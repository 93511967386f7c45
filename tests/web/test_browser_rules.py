"""The rules page in a real browser: a threshold changed on the page applies to the very next
decision of the running pipeline (no restart), and the change is in the audit log."""

from __future__ import annotations

import json
import time
from typing import Any

from browser_support import (
    LiveServer,
    needs_chromium,
    open_app,
    screenshot,
)

pytestmark = needs_chromium


def small_then(server: LiveServer, card: str, amount: float, at_ms: int) -> dict[str, Any]:
    """A 0.50 test charge, then ``amount`` 15 s later on the same card; the second decision."""
    for suffix, value, offset in (("a", 0.5, 0), ("b", amount, 15_000)):
        record = {"transaction_id": f"{card}-{suffix}", "card_id": card, "amount": value,
                  "timestamp": at_ms + offset}  # fmt: skip
        response = server.post("/v1/transactions", record)
        assert response.status_code == 200, response.text
    decision: dict[str, Any] = response.json()
    return decision


def fired(decision: dict[str, Any]) -> list[str]:
    return [reason["rule"] for reason in decision["reasons"]]


def test_a_threshold_changed_on_the_page_decides_the_next_transaction(
    page: Any, server: LiveServer
) -> None:
    now = int(time.time() * 1000)
    before = small_then(server, "card-before", 200.0, now)
    assert "small_then_large" not in fired(before)  # 200 is not "large" (> 500)
    assert before["decision"] == "approve"

    open_app(page, server, "rules", analyst="Rosa Rules")
    row = page.locator("#rules-body tr[data-rule='small_then_large']")
    threshold = row.locator("input[data-threshold='large_amount']")
    threshold.wait_for()
    assert threshold.input_value() == "500"
    threshold.fill("150")
    page.fill("#rules-note", "card testing wave: smaller follow-ups")
    row.locator("button.apply").click()
    entry = page.locator("#audit-list li", has_text="small_then_large.large_amount: 500.0 -> 150.0")
    entry.wait_for()
    assert "Rosa Rules" in entry.text_content()
    assert "card testing wave" in entry.text_content()
    page.wait_for_selector("#rules-body tr[data-rule='small_then_large'] label.changed")
    screenshot(page, "rules-changed")

    # The page's live feed, filtered by the rule, shows the next decision following it.
    page.click("nav button[data-tab='feed']")
    page.wait_for_selector("#feed-rule option[value='small_then_large']", state="attached")
    page.select_option("#feed-rule", "small_then_large")
    page.wait_for_selector("#live-status[data-state='on']")
    after = small_then(server, "card-after", 200.0, now + 60_000)
    assert "small_then_large" in fired(after)
    assert after["decision"] == "decline"
    assert "> 150.00" in after["reasons"][0]["message"]
    shown = page.locator("#feed-body tr[data-id='card-after-b']")
    shown.wait_for()
    assert shown.get_attribute("data-decision") == "decline"
    assert page.locator("#feed-body tr[data-id='card-after-a']").count() == 0  # filtered out
    screenshot(page, "feed-after-change")

    audit = server.data_dir / "web" / "rules.audit.jsonl"
    logged = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(e["who"], e["source"]) for e in logged] == [("Rosa Rules", "web")]
    rule = next(r for r in logged[0]["after"]["rules"] if r["id"] == "small_then_large")
    assert rule["thresholds"] == {"large_amount": 150.0}


def test_a_user_rule_is_written_checked_and_applied_on_the_page(
    page: Any, server: LiveServer
) -> None:
    open_app(page, server, "rules", analyst="Rosa Rules")
    page.locator("#user-rules-body td", has_text="none yet").wait_for()
    form = page.locator("#user-rule-form")
    form.locator("input[name='id']").fill("big_at_night")
    when = form.locator("input[name='when']")
    when.press_sequentially("amount > 700 and colour == 'red'")  # checked as typed
    error = page.locator("#user-rule-error[data-column='18']")
    error.wait_for()
    lines = error.text_content().split("\n")
    assert lines[0] == "amount > 700 and colour == 'red'"
    assert lines[1] == " " * 17 + "^"  # under the 'c' of colour
    assert "column 18: unknown field 'colour'" in lines[2]
    screenshot(page, "user-rule-error")

    # Applied anyway: refused, the reason under the expression, nothing changed.
    form.locator("input[name='score']").fill("0.6")
    form.locator("button[type='submit']").click()
    page.locator("#audit-list li.refused", has_text="unknown field 'colour'").wait_for()
    assert "unknown field 'colour'" in page.text_content("#status")
    assert error.is_visible()
    assert page.locator("#user-rules-body tr[data-user-rule]").count() == 0

    when.fill("amount > 700 and hour < 6")
    page.click("#user-rule-validate")
    page.locator("#user-rule-state", has_text="valid").wait_for()
    assert page.locator("#user-rule-error").is_hidden()
    form.locator("input[name='description']").fill("large payments at night")
    form.locator("button[type='submit']").click()
    row = page.locator("#user-rules-body tr[data-user-rule='big_at_night']")
    row.wait_for()
    assert "large payments at night" in row.text_content()
    assert "amount > 700 and hour < 6" in row.text_content()
    page.locator("#audit-list li", has_text="big_at_night.when: None -> ").wait_for()
    screenshot(page, "user-rule-applied")

    day = 86_400_000
    night = (int(time.time() * 1000) // day + 1) * day + 2 * 3_600_000  # 02:00 UTC tomorrow
    response = server.post("/v1/transactions", {"transaction_id": "night-1", "card_id": "cn",
                                                "amount": 800.0, "timestamp": night})  # fmt: skip
    assert response.status_code == 200, response.text
    assert "big_at_night" in fired(response.json())

    # Edited from its row: the form takes the rule, the change applies.
    row.locator("button.edit").click()
    assert when.input_value() == "amount > 700 and hour < 6"
    when.fill("amount > 900 and hour < 6")
    form.locator("button[type='submit']").click()
    row.locator("td.when", has_text="amount > 900").wait_for()
    record = {"transaction_id": "night-2", "card_id": "cn2", "amount": 800.0,
              "timestamp": night + 1_000}  # fmt: skip
    response = server.post("/v1/transactions", record)
    assert "big_at_night" not in fired(response.json())
