"""Screenshots of every tab of a running analyst app, for docs/screenshots/ and the README.

    FRAUDSTREAM_TOKEN=shot fraudstream demo --directory /tmp/demo --serve --port 8888 &
    # wait a minute or two, so the live simulator fills the feed and the charts
    .venv/bin/python scripts/app_screenshots.py http://127.0.0.1:8888 shot docs/screenshots

Opens each tab in headless Chromium (Debian's /usr/bin/chromium, 1400x900, UTC) as an analyst
would: the review queue with its first case open, the map on Lena Whitaker after two payments
(London, then Paris three seconds later),
the feed, the profiles with one open, the rules, the metrics. Map tiles are blocked, so the
map shows the offline basemap as it does without internet.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright


def main(url: str, token: str, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    auth = {"Authorization": f"Bearer {token}"}
    # The map's story: Lena Whitaker (user_1) pays at home in London, then in Paris seconds
    # later (stamped with the wall clock, as the live simulator's records are).
    for k, (lat, lon) in enumerate([(51.5074, -0.1278), (48.8566, 2.3522)]):
        record = {"transaction_id": f"shot-{int(time.time())}-{k}", "card_id": "map-user_1",
                  "user_id": "user_1", "timestamp": int(time.time() * 1000), "amount": 48.0 + k,
                  "lat": lat, "lon": lon, "channel": "pos"}  # fmt: skip
        httpx.post(f"{url}/v1/transactions", json=record, headers=auth, timeout=30)
        time.sleep(3)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        context = browser.new_context(
            viewport={"width": 1400, "height": 900}, timezone_id="UTC", locale="en-US"
        )
        context.route(
            "**/*", lambda r: r.continue_() if r.request.url.startswith(url) else r.abort()
        )
        page = context.new_page()
        page.goto(f"{url}/#token={token}")
        page.wait_for_selector("body[data-ready='true']")
        page.fill("#analyst", "Ada Analyst")

        def tab(name: str) -> None:
            page.click(f"nav button[data-tab='{name}']")
            page.wait_for_selector(f"#tab-{name}:not([hidden])")

        tab("review")
        page.wait_for_selector("#queue-body tr")
        page.keyboard.press("j")
        page.wait_for_selector("#review-detail:not([hidden]) #review-summary h3")
        page.screenshot(path=str(target / "review.png"))

        tab("map")
        page.wait_for_selector("#map[data-basemap='countries']")
        page.wait_for_selector("#user-select option[value='user_1']", state="attached")
        page.select_option("#user-select", "user_1")
        page.wait_for_selector(".pin")
        page.wait_for_timeout(1000)  # the basemap redraws after fitting the track
        page.screenshot(path=str(target / "map.png"))

        tab("feed")
        page.wait_for_selector("#feed-body tr")
        page.screenshot(path=str(target / "feed.png"))

        tab("profiles")
        page.wait_for_selector("#profiles-body tr")
        page.click("#profiles-body tr[data-user='user_1']")
        page.wait_for_selector("#profile-edit:not([hidden])")
        page.screenshot(path=str(target / "profiles.png"))

        tab("rules")
        page.wait_for_selector("#rules-body tr")
        page.screenshot(path=str(target / "rules.png"))

        tab("metrics")
        page.wait_for_selector("#rule-chart .uplot")
        page.wait_for_timeout(2500)  # one refresh, so the charts hold the last seconds
        page.screenshot(path=str(target / "metrics.png"))
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
