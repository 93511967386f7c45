"""Shared test settings: a fixed card-token key and single-threaded numeric libraries.

Set at import time (before any test module imports fraudstream) so subprocesses started by
tests inherit them too; the autouse fixture re-asserts them for tests that change the
environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

TEST_ENV = {"FRAUDSTREAM_TOKEN_KEY": "test", "OMP_NUM_THREADS": "1"}
os.environ.update(TEST_ENV)


@pytest.fixture(autouse=True)
def _test_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    yield
