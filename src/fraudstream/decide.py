"""Rules + detectors' findings -> score, tier and the reasons a person reads.

The score of a transaction combines the scores of the rules it fired as independent
evidence (noisy-or: 1 - prod(1 - score)); the tier is ``decline`` at or above the decline
threshold, ``review`` at or above the review threshold, else ``approve``. Thresholds are the
user profile's when it has them (seed 004's per-profile thresholds), else the rule set's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream.engine.batch import TxBatch

TIERS = ("approve", "review", "decline")
APPROVE, REVIEW, DECLINE = 0, 1, 2
F64 = npt.NDArray[np.float64]


@dataclass(slots=True)
class Decisions:
    """The decisions for one processed micro-batch, aligned with ``tx`` row by row."""

    tx: TxBatch
    time_ms: npt.NDArray[np.int64]
    score: F64
    tier: npt.NDArray[np.int8]
    fired: dict[str, npt.NDArray[np.bool_]]
    reasons: dict[int, list[dict[str, str]]]  # only rows that fired a rule
    features: dict[str, Any]
    processed_at_ms: float

    def __len__(self) -> int:
        return len(self.score)

    def alerts(self) -> npt.NDArray[np.int64]:
        """Rows that are not approved."""
        return np.flatnonzero(self.tier != APPROVE)


def combine(
    fired: Mapping[str, npt.NDArray[np.bool_]],
    scores: Mapping[str, float],
    review: F64,
    decline: F64,
) -> tuple[F64, npt.NDArray[np.int8]]:
    """Noisy-or score and tier per row.

    >>> import numpy as np
    >>> s, t = combine({"a": np.array([True, False, True]), "b": np.array([True, False, False])},
    ...                {"a": 0.5, "b": 0.8}, np.full(3, 0.5), np.full(3, 0.9))
    >>> s.round(2).tolist(), t.tolist()
    ([0.9, 0.0, 0.5], [2, 0, 1])
    """
    n = len(review)
    keep = np.ones(n, dtype=np.float64)
    for rule, mask in fired.items():
        keep[mask] *= 1.0 - scores[rule]
    score = np.round(1.0 - keep, 6)
    tier = np.zeros(n, dtype=np.int8)
    tier[score >= review] = REVIEW
    tier[score >= decline] = DECLINE
    return score, tier


def explain(
    messages: Mapping[str, tuple[npt.NDArray[np.int64], list[str]]],
    scores: Mapping[str, float],
) -> dict[int, list[dict[str, str]]]:
    """Reasons by row, only for rows that fired something, strongest rule first.

    >>> import numpy as np
    >>> reasons = explain({"a": (np.array([2]), ["small"]), "b": (np.array([2, 5]), ["x", "y"])},
    ...                   {"a": 0.2, "b": 0.9})
    >>> [r["rule"] for r in reasons[2]], reasons[5]
    (['b', 'a'], [{'rule': 'b', 'message': 'y'}])
    """
    reasons: dict[int, list[dict[str, str]]] = {}
    for rule in sorted(messages, key=lambda r: -scores[r]):
        rows, texts = messages[rule]
        for row, text in zip(rows.tolist(), texts, strict=True):
            reasons.setdefault(row, []).append({"rule": rule, "message": text})
    return reasons
