"""Every tab of the page in a real browser, over a day of the demo's traffic (44 users, 3,000
transactions with injected frauds, posted before the page opens): the review queue as cases,
the map's tracks, the feed's back-fill, the profiles table, the charts. Each test leaves a
screenshot of its tab (tests/screenshots/tab-*.png; the ones in docs/screenshots/ are
copies)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import LiveServer, live_server, needs_chromium, open_app, screenshot
from playwright.sync_api import expect

from fraudstream.simulate.demo import demo_records

pytestmark = needs_chromium

USERS = 40
RECORDS = 3_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The app with the demo's users, fed the demo's transactions (in time order)."""
    servers = live_server(tmp_path_factory.mktemp("tabs"), users=USERS)
    live = next(servers)
    records = demo_records(count=RECORDS, users=USERS, fraud_rate=0.05)
    for start in range(0, len(records), 500):
        chunk = [
            {k: v for k, v in r.items() if k != "scenario"} for r in records[start : start + 500]
        ]
        response = live.post("/v1/transactions/batch", chunk)
        assert response.status_code == 200, response.text
    yield live
    servers.close()


def rows(page: Any, selector: str) -> list[str]:
    return [str(text) for text in page.locator(selector).all_text_contents()]


def test_the_review_queue_is_a_paged_list_of_cases_worked_from_the_keyboard(
    page: Any, server: LiveServer
) -> None:
    first_page = server.get("/v1/review-cases?per_page=25")
    assert first_page["total"] > 25  # more cases than one page: the pager is needed
    open_app(page, server, "review", analyst="Ada Analyst")
    page.wait_for_selector("#queue-body tr")
    count = page.text_content("#queue-count")
    assert (
        f"{first_page['total']:,} case(s)" in count
        and f"{first_page['alerts']:,} alert(s)" in count
    )
    assert page.text_content("#case-page") == f"page 1 of {first_page['pages']}"
    cards = [c["card_id"] for c in first_page["cases"]]
    assert page.eval_on_selector_all("#queue-body tr", "rs => rs.map(r => r.dataset.card)") == cards
    # Names, not ids; one line per case however narrow the list gets beside the detail.
    named = first_page["cases"][0]
    assert (
        named["user_name"]
        and page.locator("#queue-body tr td.user").first.text_content() == named["user_name"]
    )
    page.keyboard.press("j")
    page.wait_for_selector(f"#queue-body tr.selected[data-card='{cards[0]}']")
    page.wait_for_selector("#review-detail:not([hidden])")
    heights = page.eval_on_selector_all(
        "#queue-body tr", "rs => rs.map(r => r.getBoundingClientRect().height)"
    )
    assert max(heights) < 2 * min(heights), heights
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    page.wait_for_selector(f"#queue-body tr.selected[data-card='{cards[1]}']")
    page.locator(
        "#review-summary h3", has_text=first_page["cases"][1]["user_name"] or ""
    ).wait_for()
    # The detail stays in view when the list is scrolled (on a short screen).
    page.set_viewport_size({"width": 1400, "height": 600})
    assert page.evaluate("() => { window.scrollTo(0, 200); return window.scrollY; }") == 200
    box = page.locator("#review-detail").bounding_box()
    assert box is not None and 0 <= box["y"] < 20 and box["height"] <= 600, box
    page.evaluate("() => window.scrollTo(0, 0)")
    page.set_viewport_size({"width": 1400, "height": 900})
    screenshot(page, "tab-review")

    # c: confirmed as fraud, every alert of the case labelled, the next case shown.
    confirmed = cards[1]
    alerts = first_page["cases"][1]["transaction_ids"]
    page.keyboard.press("c")
    page.wait_for_selector(f"#queue-body tr[data-card='{confirmed}']", state="detached")
    page.wait_for_selector(f"#queue-body tr.selected[data-card='{cards[2]}']")
    assert "confirmed as fraud by Ada Analyst" in page.text_content("#status")
    labels = {label["transaction_id"]: label for label in server.get("/v1/labels")}
    assert all(labels[t]["is_fraud"] and labels[t]["analyst"] == "Ada Analyst" for t in alerts)
    assert page.text_content("#queue-count").startswith(f"{first_page['total'] - 1:,} case(s)")

    # e: an escalation needs a why; with it, the case is escalated with who and why.
    escalated = cards[2]
    page.keyboard.press("e")
    page.locator("#status", has_text="needs a note").wait_for()
    page.fill("#review-note", "same device as a confirmed ring")
    page.keyboard.press("Escape")
    page.keyboard.press("e")
    page.locator(
        "#review-summary .escalation", has_text="same device as a confirmed ring"
    ).wait_for()
    row = page.locator(f"#queue-body tr[data-card='{escalated}']")
    assert row.get_attribute("data-status") == "escalated"
    assert "Ada Analyst" in page.text_content("#review-summary .escalation")

    # Bulk: two cases ticked, marked legitimate at once; every action is in the log.
    ticks = [cards[3], cards[4]]
    for card in ticks:
        page.locator(f"#queue-body tr[data-card='{card}'] input.tick").check()
    assert page.text_content("#bulk-count") == "2 selected"
    page.click(".bulk button[data-bulk='mark_legitimate']")
    for card in ticks:
        page.wait_for_selector(f"#queue-body tr[data-card='{card}']", state="detached")
    log = server.get("/v1/case-actions")
    assert [(a["card_id"], a["action"], a["analyst"]) for a in log[:4]] == [
        (ticks[1], "mark_legitimate", "Ada Analyst"),
        (ticks[0], "mark_legitimate", "Ada Analyst"),
        (escalated, "escalate", "Ada Analyst"),
        (confirmed, "confirm_fraud", "Ada Analyst"),
    ]

    # x ticks the case shown, l marks it legitimate.
    shown_card = page.locator("#queue-body tr.selected").get_attribute("data-card")
    page.keyboard.press("x")
    assert page.text_content("#bulk-count") == "1 selected"
    page.keyboard.press("l")
    page.wait_for_selector(f"#queue-body tr[data-card='{shown_card}']", state="detached")
    assert server.get("/v1/case-actions?limit=1")[0]["action"] == "mark_legitimate"
    assert page.text_content("#bulk-count") == "0 selected"

    # Paging: the next page holds the next cases, as the server orders them.
    page.click("#case-next")
    page.wait_for_selector("#case-page >> text=page 2")
    second = server.get("/v1/review-cases?per_page=25&page=2")["cases"]
    shown = page.eval_on_selector_all("#queue-body tr", "rs => rs.map(r => r.dataset.card)")
    assert shown == [c["card_id"] for c in second]


def test_the_map_draws_a_users_transactions_in_event_time_order_on_the_offline_basemap(
    page: Any, server: LiveServer
) -> None:
    traveller = next(
        c for c in server.get("/v1/review-cases?status=all&per_page=200")["cases"]
        if "geo_velocity" in c["rules"] and c["user_id"]
    )  # fmt: skip
    user = traveller["user_id"]
    track = server.get(f"/v1/decisions?user_id={user}&limit=500")
    placed = [d for d in track if "lat" in d["transaction"]]
    open_app(page, server, "map")
    page.wait_for_selector("#map[data-basemap='countries']")
    expect(page.locator("#tiles-status")).to_contain_text("unreachable")
    assert page.locator(".leaflet-basemap-pane canvas").count() == 1  # the country borders
    page.wait_for_selector(f"#user-select option[value='{user}']", state="attached")
    page.select_option("#user-select", user)
    expect(page.locator(".pin")).to_have_count(len(placed))
    assert page.locator("path.travel-line").count() >= len(placed) - 1
    assert page.text_content("#count-total") == str(len(placed))
    alerts = sum(d["decision"] != "approve" for d in placed)
    assert page.text_content("#count-fraud") == str(alerts)
    newest = max(placed, key=lambda d: d["event_time"])
    score = f"{round(newest['score'], 2):g}"  # as the page writes it (en-US, 2 digits at most)
    assert page.text_content("#map-verdict") == f"{newest['decision'].upper()} · score {score}"
    # The pins' labels name the tier: nothing says "FRAUD DETECTED" over a review.
    labels = rows(page, ".pin-label")
    assert labels and all(re.match(r"\d+\. (APPROVE|REVIEW|DECLINE) · score", t) for t in labels)
    screenshot(page, "tab-map")

    # A transaction from elsewhere (the live simulator's path) is drawn when it is decided.
    page.wait_for_selector("#live-status[data-state='on']")
    later = server.get("/v1/decisions?limit=1")[0]["event_time"]  # not late: the newest
    live = {"transaction_id": "live-map-1", "card_id": newest["card_id"], "user_id": user,
            "timestamp": later, "amount": 42.0, "lat": -33.87, "lon": 151.21}  # fmt: skip
    assert server.post("/v1/transactions", live).status_code == 200
    expect(page.locator(".pin")).to_have_count(len(placed) + 1)
    page.locator("#map-result dd", has_text="live-map-1").wait_for()


def test_the_feed_back_fills_from_the_store_and_says_when_a_filter_is_empty(
    page: Any, server: LiveServer
) -> None:
    stored = server.get("/v1/decisions?limit=500")
    open_app(page, server, "review", analyst="Ada Analyst")
    page.wait_for_selector("#queue-body tr")
    page.keyboard.press("j")
    page.keyboard.press("e")  # no note: the status line says so ...
    page.locator("#status", has_text="needs a note").wait_for()
    page.click("nav button[data-tab='feed']")
    page.wait_for_selector("#feed-body tr")
    assert page.text_content("#status") == ""  # ... and not on another tab
    ids = page.eval_on_selector_all("#feed-body tr", "rs => rs.map(r => r.dataset.id)")
    assert ids[:50] == [d["transaction_id"] for d in stored[:50]]
    names = {
        p["user_id"]: f"{p['first_name']} {p['last_name']}" for p in server.get("/v1/profiles")
    }
    first_user = page.locator("#feed-body tr td:nth-child(4)").first
    assert first_user.text_content() == names[stored[0]["user_id"]]
    screenshot(page, "tab-feed")
    # A tier's own newest decisions are read when it is chosen: every decline, not only
    # those among the newest 500 of all tiers.
    declines = server.get("/v1/decisions?decision=decline&limit=500")
    assert len(declines) > sum(d["decision"] == "decline" for d in stored)
    page.select_option("#feed-tier", "decline")
    expect(page.locator("#feed-body tr")).to_have_count(len(declines))
    page.select_option("#feed-tier", "approve")
    page.select_option("#feed-rule", "small_then_large")
    empty = page.locator("#feed-empty")
    empty.wait_for()
    assert 'tier "approve" and rule "small_then_large"' in empty.text_content()
    assert page.locator("#feed-body tr").count() == 0


def test_profiles_are_a_searchable_paged_table_edited_one_at_a_time(
    page: Any, server: LiveServer
) -> None:
    profiles = server.get("/v1/profiles")
    open_app(page, server, "profiles", analyst="Ada Analyst")
    page.wait_for_selector("#profiles-body tr")
    assert page.locator("#profiles-body tr").count() == 25
    assert page.locator("#profiles-body input").count() == 0  # no wall of input boxes
    assert page.text_content("#profile-count") == f"{len(profiles)} of {len(profiles)} profiles"
    assert page.text_content("#profile-page") == "page 1 of 2"
    page.click("#profile-next")
    assert page.locator("#profiles-body tr").count() == len(profiles) - 25
    page.fill("#profile-filter", "whitaker")
    expect(page.locator("#profiles-body tr")).to_have_count(1)
    page.click("#profiles-body tr[data-user='user_1']")
    page.wait_for_selector("#profile-edit:not([hidden])")
    assert page.input_value("#profile-form input[name='first_name']") == "Lena"
    page.fill("#profile-form input[name='max_speed_kmh']", "120")
    page.fill("#profile-form input[name='note']", "moved to a car")
    screenshot(page, "tab-profiles")
    page.click("#profile-form button[type='submit']")
    page.locator("#profiles-body tr[data-user='user_1'] td", has_text="120").wait_for()
    assert server.get("/v1/profiles/user_1")["max_speed_kmh"] == 120
    audit = server.get("/v1/profiles/audit")[0]
    assert (audit["who"], audit["note"]) == ("Ada Analyst", "moved to a car")
    page.fill("#profile-filter", "nobody-is-called-this")
    page.locator("#profiles-empty", has_text="no profile matches").wait_for()


def test_the_metrics_are_charts_with_axes_and_legends_counting_from_the_store(
    page: Any, server: LiveServer
) -> None:
    panel = server.get("/v1/metrics")
    open_app(page, server, "metrics")
    page.wait_for_selector("#rule-chart .uplot")
    assert page.locator(".uplot").count() == 3
    legends = rows(page, ".u-legend .u-label")
    for name in ("approve", "review", "decline", "p50", "p99", "alerts"):
        assert name in legends, legends
    assert page.locator("#tier-chart .u-axis").count() == 2
    approve = page.text_content(".card[data-metric='approve'] .big")
    assert int(approve.replace(",", "")) >= panel["totals"]["approve"] > 0
    assert "decision store's first decision" in page.text_content("#metrics-since")
    screenshot(page, "tab-metrics")


def test_the_rules_tab_opens(page: Any, server: LiveServer) -> None:
    open_app(page, server, "rules")
    page.wait_for_selector("#rules-body tr")
    screenshot(page, "tab-rules")
