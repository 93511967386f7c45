"""unusual_hour: a card used at an hour of the day it never uses.

Seed 002 (the demo's list: "time of day"). Per card a 24-bit mask of the UTC hours (0..23, from
``tx.hour``) it has transacted in, and a count of its transactions. A transaction fires when the
card already has ``count >= min_history`` transactions and the transaction's hour is not in the
mask, nor (when ``include_neighbours``, the default) either neighbouring hour (h - 1 and h + 1,
modulo 24: 23 and 0 are neighbours), so a card used at 18:00 is not flagged at 19:00. Then the
hour is added to the mask, fired or not. A transaction without a valid hour (outside 0..23)
neither fires nor changes the state.

Features: ``hour_utc`` (the transaction's hour) and ``hours_seen`` (how many distinct hours the
card had used before this transaction).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from fraudstream.detectors.base import (
    I32,
    I64,
    Bools,
    Detector,
    DetectorInput,
    Findings,
)
from fraudstream.engine.state import StateTable

I8 = npt.NDArray[np.int8]


@dataclass(frozen=True, slots=True)
class UnusualHourThresholds:
    """History in transactions; whether the hours either side of a used hour count as used."""

    min_history: int = 20
    include_neighbours: bool = True

    def check(self) -> None:
        """Rejects a history the check could never have."""
        if not self.min_history >= 1:
            raise ValueError(f"unusual_hour: min_history must be >= 1, got {self.min_history}")


@numba.njit(cache=True, nogil=True)
def _kernel(
    card: I32,
    hour: I8,
    hours: I32,
    count: I64,
    min_history: int,
    include_neighbours: bool,
    fired: Bools,
    seen_out: I32,
) -> None:
    for i in range(card.size):
        s = card[i]
        mask = int(hours[s])
        seen = 0
        for b in range(24):
            seen += (mask >> b) & 1
        seen_out[i] = seen
        h = int(hour[i])
        if h < 0 or h > 23:
            continue
        if count[s] >= min_history:
            bits = 1 << h
            if include_neighbours:
                bits |= (1 << ((h + 23) % 24)) | (1 << ((h + 1) % 24))
            fired[i] = (mask & bits) == 0
        hours[s] = mask | (1 << h)
        count[s] += 1


class UnusualHour(Detector[UnusualHourThresholds]):
    """An hour (UTC) neither this card nor its neighbouring hours used in >= 20 transactions.

    >>> from fraudstream.testing import detector_input
    >>> d = UnusualHour(min_history=3)
    >>> hour = 3_600_000
    >>> tx = detector_input(card=[0] * 5, amount=[5.0] * 5,
    ...                     time_ms=[9 * hour, 10 * hour, 33 * hour, 11 * hour, 3 * hour])
    >>> out = d.process(d.new_state(), tx)
    >>> out.fired["unusual_hour"].tolist()
    [False, False, False, False, True]
    >>> out.features["hours_seen"].tolist()
    [0, 1, 2, 2, 3]
    """

    name = "unusual_hour"
    rules = ("unusual_hour",)
    key = "card"
    seed = "002 Confluent Cloud Flink demo (time of day)"
    thresholds_type = UnusualHourThresholds
    state_fields = {
        "hours": (np.int32, 0),
        "count": (np.int64, 0),
    }
    rule_thresholds = {"unusual_hour": ("min_history", "include_neighbours")}

    def process(self, state: StateTable, tx: DetectorInput) -> Findings:
        """Checks each hour against its card's mask, then adds it to the mask."""
        n = len(tx)
        fired = np.zeros(n, dtype=np.bool_)
        seen_out = np.zeros(n, dtype=np.int32)
        t = self.thresholds
        _kernel(
            tx.card, tx.hour, state["hours"], state["count"],
            t.min_history, bool(t.include_neighbours), fired, seen_out,
        )  # fmt: skip
        return Findings(
            {"unusual_hour": fired},
            {"hour_utc": tx.hour.astype(np.int32), "hours_seen": seen_out},
        )

    def message(self, rule: str, values: Mapping[str, Any]) -> str:
        """E.g. "03:00-04:00 UTC, an hour the card never used (... 2 of 24 hours seen ...)"."""
        t = self.thresholds
        h = int(values["hour_utc"])
        around = " nor the hours either side" if t.include_neighbours else ""
        return (
            f"{h:02d}:00-{(h + 1) % 24:02d}:00 UTC, an hour the card never used{around} "
            f"({int(values['hours_seen'])} of 24 hours seen, history >= {t.min_history})"
        )


def reference_step(
    state: dict[str, Any] | None, hour: int, t: UnusualHourThresholds
) -> tuple[dict[str, Any] | None, bool]:
    """One transaction, written plainly: the oracle the kernel is tested against.

    The state holds the set of ``hours`` the card used and its transaction ``count``.
    """
    if not 0 <= hour <= 23:
        return state, False
    hours: set[int] = set(state["hours"]) if state is not None else set()
    count: int = state["count"] if state is not None else 0
    near = {hour, (hour - 1) % 24, (hour + 1) % 24} if t.include_neighbours else {hour}
    fired = count >= t.min_history and not (near & hours)
    return {"hours": hours | {hour}, "count": count + 1}, fired
