"""Shared pieces of the browser tests: a live server on a free port and headless Chromium.

The server is the real app (uvicorn in a thread, the embedded pipeline in this process, the
demo profiles), with a read token, so the page is tested as it runs with every read closed.
Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright; every request that is not to
the test server (map tiles) is aborted, so the page runs as it does offline and the tests
never depend on the network. Tests wait on DOM state, never on sleeps.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "browser-test-token"
READ_TOKEN = "browser-read-token"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (CI installs Debian's chromium)"
)


@dataclass
class LiveServer:
    """The app served on ``url``; ``post`` sends with the token."""

    url: str
    app: Any
    data_dir: Path

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(
            self.url + path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def get(self, path: str) -> Any:
        auth = {"Authorization": f"Bearer {READ_TOKEN}"}
        response = httpx.get(self.url + path, headers=auth, timeout=10)
        response.raise_for_status()
        return response.json()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def live_server(
    data_dir: Path,
    users: int = 4,
    history: Path | None = None,
    history_labels: Path | None = None,
) -> Iterator[LiveServer]:
    """Starts the app with the demo profiles (the seed users and ``users`` generated ones) on
    a free port (and a ``history`` for the Rules tab's backtest); stops it afterwards."""
    import uvicorn

    from fraudstream.assembly import TimeMode, build_pipeline
    from fraudstream.schema import CardTokenizer
    from fraudstream.simulate.demo import demo_profiles, write_profiles
    from fraudstream.web.app import create_app

    profiles = write_profiles(data_dir / "profiles.yaml", demo_profiles(users=users))
    pipeline = build_pipeline(None, profiles, TimeMode.event, 0, 300_000, 1_000, None, None)
    app = create_app(
        pipeline,
        TOKEN,
        CardTokenizer.from_environment(),
        data_dir=data_dir / "web",
        read_token=READ_TOKEN,
        history=history,
        history_labels=history_labels,
    )
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app, data_dir)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def browser_page(server: LiveServer) -> Iterator[Any]:
    """A fresh headless Chromium page, external requests blocked, UTC, 1400x900."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(
            viewport={"width": 1400, "height": 900}, timezone_id="UTC", locale="en-US"
        )
        context.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith(server.url) else route.abort()
            ),
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def open_app(
    page: Any, server: LiveServer, tab: str = "map", analyst: str = "", token: str = TOKEN
) -> None:
    """Opens the page with the token in the fragment, then the tab; waits until it is ready."""
    page.goto(f"{server.url}/#token={token}")
    page.wait_for_selector("body[data-ready='true']")
    page.wait_for_selector("#token-state[data-state='set']")
    if analyst:
        page.fill("#analyst", analyst)
    page.click(f"nav button[data-tab='{tab}']")
    page.wait_for_selector(f"#tab-{tab}:not([hidden])")


def screenshot(page: Any, name: str) -> Path:
    """Saves a screenshot under tests/screenshots/ (gitignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
