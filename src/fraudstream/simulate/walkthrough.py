"""The Apache Flink DataStream walkthrough's transaction source (seed 003).

Fifty amounts looped forever, account ids round-robin 1..5, event time starting
2019-01-01T00:00:00Z and advancing 6 minutes per record. Only account 3 has small amounts
(0.219, 0.77, 0.80) and the only large one (871.15, record 28), which is labelled
``small_then_large``. The walkthrough paces its source at 10 records/s (a 100 ms sleep per
record); that is not done here: wrap the generator in :func:`fraudstream.simulate.paced`.

>>> first = next(walkthrough_records(1))
>>> first["transaction_id"], first["card_id"], first["timestamp"], first["amount"]
('wt-1', '1', 1546300800000, 188.23)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

WALKTHROUGH_AMOUNTS: tuple[float, ...] = (
    188.23, 374.79, 112.15, 478.75, 208.85, 379.64, 351.44, 320.75, 259.42, 273.44,
    267.25, 397.15, 0.219, 231.94, 384.73, 419.62, 412.91, 0.77, 22.10, 377.54,
    375.44, 230.18, 0.80, 350.89, 127.55, 483.91, 228.22, 871.15, 64.19, 79.43,
    56.12, 256.48, 148.16, 199.95, 252.37, 274.73, 473.54, 119.92, 323.59, 353.16,
    211.90, 280.93, 347.89, 459.86, 82.31, 373.26, 479.83, 454.25, 83.64, 292.44,
)  # fmt: skip
"""The walkthrough's amounts, in source order (record k has account ((k - 1) % 5) + 1)."""

WALKTHROUGH_START_MS = 1_546_300_800_000
"""2019-01-01T00:00:00Z in epoch milliseconds: the first record's event time."""

WALKTHROUGH_STEP_MS = 6 * 60 * 1000
"""Event time advances 6 minutes per record."""

WALKTHROUGH_ACCOUNTS = 5
WALKTHROUGH_FRAUD_INDEX = WALKTHROUGH_AMOUNTS.index(871.15)
"""0-based position of the one large amount (record 28, account 3)."""


def walkthrough_records(count: int | None = None) -> Iterator[dict[str, Any]]:
    """The walkthrough's records: ``count`` of them, or forever when ``count`` is None.

    Record ``n`` (1-based, counted across loops) has transaction_id ``wt-<n>``, card_id the
    account id as a string, and timestamp ``2019-01-01T00:00Z + (n - 1) * 6 min``.

    >>> [r["card_id"] for r in walkthrough_records(7)]
    ['1', '2', '3', '4', '5', '1', '2']
    """
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    numbers = itertools.count(1) if count is None else iter(range(1, count + 1))
    size = len(WALKTHROUGH_AMOUNTS)
    for n in numbers:
        index = (n - 1) % size
        fraud = index == WALKTHROUGH_FRAUD_INDEX
        yield {
            "transaction_id": f"wt-{n}",
            "card_id": str((n - 1) % WALKTHROUGH_ACCOUNTS + 1),
            "timestamp": WALKTHROUGH_START_MS + (n - 1) * WALKTHROUGH_STEP_MS,
            "amount": WALKTHROUGH_AMOUNTS[index],
            "scenario": "small_then_large" if fraud else "normal",
            "is_fraud": fraud,
        }
