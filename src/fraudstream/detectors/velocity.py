"""velocity: a burst of transactions on one card.

Seed 004 (velocity attacks). Per card, a transaction fires when, of the card's last
``RING_WIDTH`` (32) transactions with this one included, at least ``min_transactions`` lie
within ``window_s`` of it: ``|time - other time| < window_s`` (half-open, so a transaction
exactly ``window_s`` earlier is outside; equal timestamps are inside). Measuring the distance
both ways means a burst that arrives slightly out of order counts the same as in order. State is
a ring of the card's last 32 transaction times and its transaction count, so it stays bounded
however busy the card is; ``transactions_in_window`` therefore tops out at 32, and
``min_transactions`` may be at most 32. For input in time order the count is exactly
``min(32, transactions of the card in (time - window_s, time])``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from fraudstream.detectors.base import (
    I32,
    I64,
    NONE_MS,
    Bools,
    Detector,
    DetectorInput,
    Findings,
)
from fraudstream.engine.state import StateTable

RING_WIDTH = 32  # transaction times kept per card


@dataclass(frozen=True, slots=True)
class VelocityThresholds:
    """``min_transactions`` (this one included) within ``window_s`` seconds (strictly less)."""

    min_transactions: int = 5
    window_s: float = 30.0

    def check(self) -> None:
        """Rejects thresholds that cannot mean anything or exceed the ring."""
        if not 1 <= self.min_transactions <= RING_WIDTH:
            raise ValueError(
                f"velocity: min_transactions must be between 1 and {RING_WIDTH} "
                f"(the transactions kept per card), got {self.min_transactions}"
            )
        if not self.window_s > 0:
            raise ValueError(f"velocity: window_s must be > 0, got {self.window_s}")

    @property
    def window_ms(self) -> int:
        """The window in whole milliseconds."""
        return round(self.window_s * 1000)


@numba.njit(cache=True, nogil=True)
def _kernel(
    card: I32,
    time_ms: I64,
    times: I64,
    count: I64,
    min_transactions: int,
    window_ms: int,
    fired: Bools,
    in_window: I32,
) -> None:
    width = times.shape[1]
    for i in range(card.size):
        s = card[i]
        t = time_ms[i]
        c = count[s]
        times[s, c % width] = t
        c += 1
        count[s] = c
        k = 0
        for j in range(min(c, width)):
            if abs(t - times[s, j]) < window_ms:
                k += 1
        in_window[i] = k
        fired[i] = k >= min_transactions


class Velocity(Detector[VelocityThresholds]):
    """Seed 004's velocity attack: >= 5 transactions of one card within 30 s.

    >>> from fraudstream.testing import detector_input
    >>> d = Velocity()
    >>> tx = detector_input(card=[0, 0, 0, 0, 0, 0], amount=[9.0] * 6,
    ...                     time_ms=[0, 5_000, 10_000, 15_000, 20_000, 30_000])
    >>> out = d.process(d.new_state(), tx)
    >>> out.fired["velocity"].tolist()
    [False, False, False, False, True, True]
    >>> out.features["transactions_in_window"].tolist()
    [1, 2, 3, 4, 5, 5]
    """

    name = "velocity"
    rules = ("velocity",)
    key = "card"
    seed = "004 velocity attacks"
    thresholds_type = VelocityThresholds
    state_fields = {
        "times_ms": ((np.int64, RING_WIDTH), NONE_MS),
        "count": (np.int64, 0),
    }
    rule_thresholds = {"velocity": ("min_transactions", "window_s")}

    def process(self, state: StateTable, tx: DetectorInput) -> Findings:
        """Adds each transaction to its card's ring, then counts the ring within the window."""
        n = len(tx)
        fired = np.zeros(n, dtype=np.bool_)
        in_window = np.zeros(n, dtype=np.int32)
        t = self.thresholds
        _kernel(
            tx.card,
            tx.time_ms,
            state["times_ms"],
            state["count"],
            t.min_transactions,
            t.window_ms,
            fired,
            in_window,
        )
        return Findings({"velocity": fired}, {"transactions_in_window": in_window})

    def message(self, rule: str, values: Mapping[str, Any]) -> str:
        """E.g. "6 transactions in 30 s (>= 5 within 30 s)"."""
        t = self.thresholds
        return (
            f"{int(values['transactions_in_window'])} transactions in {t.window_s:g} s "
            f"(>= {t.min_transactions} within {t.window_s:g} s)"
        )


def reference_step(
    state: dict[str, Any] | None, time_ms: int, t: VelocityThresholds
) -> tuple[dict[str, Any] | None, bool]:
    """One transaction, written plainly: the oracle the kernel is tested against.

    ``state["times_ms"]`` is the card's last 32 transaction times, oldest first.
    """
    times = [*(state["times_ms"] if state is not None else []), time_ms][-RING_WIDTH:]
    in_window = sum(1 for other in times if abs(time_ms - other) < t.window_ms)
    return {"times_ms": times}, in_window >= t.min_transactions
