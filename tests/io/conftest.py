"""Fixtures of the I/O tests: a fresh librdkafka mock cluster per Kafka test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_kafka_support import MockCluster, mock_cluster


@pytest.fixture
def kafka_cluster() -> Iterator[MockCluster]:
    """A 3-broker mock cluster, gone after the test (no topic outlives it)."""
    yield from mock_cluster()
