"""Fixtures of the browser tests: one live server per test module and a fresh page per test.

The server is module-scoped (starting uvicorn and the pipeline is the slow part) and keeps its
data under a temporary directory named after the module, so modules never share state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import LiveServer, browser_page, live_server


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The app with the demo profiles on a free port, for the tests of one module."""
    name = request.module.__name__.rpartition(".")[2].removeprefix("test_browser_")
    yield from live_server(tmp_path_factory.mktemp(name))


@pytest.fixture
def page(server: LiveServer) -> Iterator[Any]:
    """A headless Chromium page on ``server``; fails the test on JavaScript errors."""
    yield from browser_page(server)
