"""Comparing decoding outcomes: shared by the decode agreement tests."""

from __future__ import annotations

import math
from typing import Any

from fraudstream.engine.batch import TxBatch
from fraudstream.io.decode import DeadLetter


def clean(value: Any) -> Any:
    """NaN made comparable (NaN != NaN), inside dicts too."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    return value


def outcome(
    batch: TxBatch, dead: list[DeadLetter], raw: bool = True
) -> tuple[list[Any], list[Any]]:
    """Accepted (position, normalised record) and dead (position, reason[, raw]), by position."""
    accepted = [(int(batch.position[i]), clean(batch.record(i))) for i in range(len(batch))]
    accepted.sort(key=lambda item: item[0])
    if raw:
        return accepted, sorted((d.position, d.reason, d.raw) for d in dead)
    return accepted, sorted((d.position, d.reason) for d in dead)
