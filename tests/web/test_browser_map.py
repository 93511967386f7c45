"""The map in a real browser: seed 002's impossible travel, clicked by hand.

Lena Whitaker (max 10 km/h) pays twice, ~50 km and one hour apart: 50 km/h, an alert headlined
with its tier and score (REVIEW or DECLINE · score ...). Jordan Blake (max 99,999 km/h) does the
same: APPROVE. The times are typed in the dialog, so the speeds do not depend on how fast the
test clicks.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from browser_support import (
    READ_TOKEN,
    LiveServer,
    needs_chromium,
    open_app,
    screenshot,
)
from playwright.sync_api import expect

pytestmark = needs_chromium

START = (330, 400)  # where the first payment is clicked, in map pixels
EAST_50_KM = """([x, y]) => {
  const map = window.fraudstream.map;
  const from = map.containerPointToLatLng([x, y]);
  const lon = from.lng + 50 / (111.195 * Math.cos(from.lat * Math.PI / 180));
  const to = map.latLngToContainerPoint([from.lat, lon]);
  return [Math.round(to.x), Math.round(to.y)];
}"""


def local(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def pay(page: Any, where: tuple[int, int], amount: str, when: datetime) -> None:
    """Double-clicks the map, fills the amount dialog, sends; waits for the verdict."""
    before = page.locator(".pin").count()
    page.locator("#map").dblclick(position={"x": where[0], "y": where[1]})
    page.wait_for_selector("#tx-dialog[open]")
    page.fill("#tx-form input[name='amount']", amount)
    page.fill("#tx-form input[name='when']", local(when))
    page.click("#tx-send")
    page.wait_for_selector("#tx-dialog[open]", state="detached")
    page.wait_for_function(f"document.querySelectorAll('.pin').length > {before}")


def travel(page: Any, user: str, start: datetime) -> dict[str, Any]:
    """Two payments of ``user`` one hour and ~50 km apart; returns what the page shows."""
    value = page.locator("#user-select option", has_text=user).get_attribute("value")
    page.select_option("#user-select", value)
    page.wait_for_selector(f"#map[data-user='{value}']")  # its track read, the view set
    pay(page, START, "24.90", start)
    assert page.text_content("#count-total") == "1"
    east = page.evaluate(EAST_50_KM, list(START))
    assert 150 < east[0] - START[0] < 400  # on the map, at the home view's zoom
    pay(page, tuple(east), "31.50", start + timedelta(hours=1))
    return {
        "verdict": page.text_content("#map-verdict"),
        "speed": page.text_content("#map-speed"),
        "labels": page.locator(".pin-label").all_text_contents(),
        "lines": page.locator("path.travel-line").count(),
        "total": page.text_content("#count-total"),
        "fraud": page.text_content("#count-fraud"),
    }


def speed_of(text: str) -> float:
    match = re.match(r"([\d,.]+) km/h", text)
    assert match, text
    return float(match.group(1).replace(",", ""))


def test_lena_two_points_50_km_apart_is_fraud_and_jordan_is_valid(
    page: Any, server: LiveServer
) -> None:
    open_app(page, server, "map")
    page.wait_for_selector("#user-select option[value='user_1']", state="attached")
    # No tiles (all external requests are blocked): the page says so and still works.
    expect(page.locator("#tiles-status")).to_contain_text("unreachable")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)

    lena = travel(page, "Lena Whitaker", start)
    decisions = [server.get(f"/v1/decisions/{row['transaction_id']}") for row in
                 server.get("/v1/review-queue?status=all")]  # fmt: skip
    assert [d["user_id"] for d in decisions] == ["user_1"]
    assert decisions[0]["reasons"][0]["rule"] == "geo_velocity"
    tier, score = decisions[0]["decision"], f"{round(decisions[0]['score'], 2):g}"
    assert lena["verdict"] == f"{tier.upper()} · score {score}"  # the tier, not "FRAUD"
    assert 49 < speed_of(lena["speed"]) < 51  # 50 km in one hour
    assert "max 10 km/h" in lena["speed"]
    assert lena["lines"] == 1  # dashed, from the previous transaction
    assert (lena["total"], lena["fraud"]) == ("2", "1")
    assert lena["labels"][-1].startswith(f"2. {tier.upper()} · score {score}")
    screenshot(page, "map-lena-alert")

    jordan = travel(page, "Jordan Blake", start + timedelta(hours=2))
    assert jordan["verdict"] == "APPROVE · score 0"
    assert 49 < speed_of(jordan["speed"]) < 51
    assert "max 99,999 km/h" in jordan["speed"]
    assert (jordan["total"], jordan["fraud"]) == ("2", "0")
    screenshot(page, "map-jordan-valid")


def test_without_a_token_nothing_is_read_and_a_read_token_cannot_pay(
    page: Any, server: LiveServer
) -> None:
    page.goto(server.url + "/#map")
    page.wait_for_selector("body[data-ready='true']")
    page.evaluate("localStorage.clear()")
    page.reload()
    page.wait_for_selector("#token-state[data-state='missing']")
    # The server has a read token: no profiles, no live feed, until a token is given.
    page.locator("#status", has_text="401").wait_for()
    assert page.locator("#user-select option[value='user_2']").count() == 0
    page.fill("#token-form input[name='token']", READ_TOKEN)
    page.click("#token-form button[type='submit']")
    page.wait_for_selector("#token-state[data-state='set']")
    page.wait_for_selector("#user-select option[value='user_2']", state="attached")
    page.wait_for_selector("#live-status[data-state='on']")
    page.select_option("#user-select", "user_2")
    page.locator("#map").dblclick(position={"x": 400, "y": 300})
    page.wait_for_selector("#tx-dialog[open]")
    page.click("#tx-send")
    page.locator("#tx-error", has_text="401").wait_for()
    assert page.locator(".pin").count() == 0
