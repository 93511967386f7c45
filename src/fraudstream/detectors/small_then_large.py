"""small_then_large: a tiny test charge followed at once by a big one on the same card.

Seed 003 (Apache Flink DataStream walkthrough, ``FraudDetector``). Per card, an amount below
``small_amount`` sets a flag; the card's *next* transaction fires when its amount is above
``large_amount`` and it comes less than ``window_s`` after the small one. The next transaction
always clears the flag (and may set it again if it is small itself); a timer clears it
``window_s`` after the small one. In event time "within the window" is decided from the two
timestamps, never from when the timer happens to fire, so replays are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from fraudstream.detectors.base import (
    F64,
    I32,
    I64,
    NONE_MS,
    Bools,
    Detector,
    DetectorInput,
    Findings,
    fmt_money,
    fmt_seconds,
    nan_column,
)
from fraudstream.engine.state import StateTable


@dataclass(frozen=True, slots=True)
class SmallThenLargeThresholds:
    """Amounts in the card's currency; the window in seconds (strictly less than)."""

    small_amount: float = 1.00
    large_amount: float = 500.00
    window_s: float = 60.0

    def check(self) -> None:
        """Rejects thresholds that cannot mean anything."""
        if self.window_s <= 0 or self.small_amount < 0 or self.large_amount < 0:
            raise ValueError("small_then_large: amounts must be >= 0 and window_s > 0")


@numba.njit(cache=True, nogil=True)
def _kernel(
    card: I32,
    time_ms: I64,
    amount: F64,
    small_at_ms: I64,
    small_amount_state: F64,
    small: float,
    large: float,
    window_ms: int,
    fired: Bools,
    small_out: F64,
    elapsed_out: F64,
) -> None:
    for i in range(card.size):
        s = card[i]
        flagged_at = small_at_ms[s]
        if flagged_at != NONE_MS:
            elapsed = time_ms[i] - flagged_at
            if amount[i] > large and abs(elapsed) < window_ms:
                fired[i] = True
                small_out[i] = small_amount_state[s]
                elapsed_out[i] = elapsed / 1000.0
            small_at_ms[s] = NONE_MS  # the next transaction always clears the flag
        if amount[i] < small:
            small_at_ms[s] = time_ms[i]
            small_amount_state[s] = amount[i]


@numba.njit(cache=True, nogil=True)
def _expire(small_at_ms: I64, used: int, now_ms: int, window_ms: int) -> None:
    for s in range(used):
        at = small_at_ms[s]
        if at != NONE_MS and at + window_ms <= now_ms:
            small_at_ms[s] = NONE_MS


class SmallThenLarge(Detector[SmallThenLargeThresholds]):
    """Flink walkthrough's detector: small (< 1.00) then large (> 500.00) within 60 s.

    >>> import numpy as np
    >>> from fraudstream.testing import detector_input
    >>> d = SmallThenLarge()
    >>> state = d.new_state()
    >>> tx = detector_input(card=[0, 0, 0], time_ms=[0, 30_000, 40_000],
    ...                     amount=[0.5, 600.0, 900.0])
    >>> d.process(state, tx).fired["small_then_large"].tolist()
    [False, True, False]
    """

    name = "small_then_large"
    rules = ("small_then_large",)
    key = "card"
    seed = "003 Flink DataStream walkthrough"
    thresholds_type = SmallThenLargeThresholds
    state_fields = {
        "small_at_ms": (np.int64, NONE_MS),
        "small_amount": (np.float64, np.nan),
    }
    rule_thresholds = {"small_then_large": ("small_amount", "large_amount", "window_s")}

    def process(self, state: StateTable, tx: DetectorInput) -> Findings:
        """Checks each transaction against its card's flag, then sets or clears the flag."""
        n = len(tx)
        fired = np.zeros(n, dtype=np.bool_)
        small_out, elapsed_out = nan_column(n), nan_column(n)
        t = self.thresholds
        _kernel(
            tx.card,
            tx.time_ms,
            tx.amount,
            state["small_at_ms"],
            state["small_amount"],
            t.small_amount,
            t.large_amount,
            round(t.window_s * 1000),
            fired,
            small_out,
            elapsed_out,
        )
        return Findings(
            {"small_then_large": fired},
            {"small_amount": small_out, "seconds_since_small": elapsed_out},
        )

    def on_time(self, state: StateTable, now_ms: int, used: int) -> None:
        """The walkthrough's timer: the flag expires ``window_s`` after the small amount."""
        _expire(state["small_at_ms"], used, now_ms, round(self.thresholds.window_s * 1000))

    def message(self, rule: str, values: Mapping[str, Any]) -> str:
        """E.g. "small 0.80 then 871.15 within 0.5 s (< 1.00 then > 500.00 within 60 s)"."""
        t = self.thresholds
        return (
            f"small {fmt_money(values['small_amount'])} then {fmt_money(values['amount'])} "
            f"within {fmt_seconds(values['seconds_since_small'])} "
            f"(< {fmt_money(t.small_amount)} then > {fmt_money(t.large_amount)} "
            f"within {t.window_s:g} s)"
        )


def reference_step(
    state: dict[str, Any] | None, time_ms: int, amount: float, t: SmallThenLargeThresholds
) -> tuple[dict[str, Any] | None, bool]:
    """One transaction, written plainly: the oracle the kernel is tested against."""
    fired = False
    if state is not None:
        fired = amount > t.large_amount and abs(time_ms - state["small_at_ms"]) < t.window_s * 1000
        state = None
    if amount < t.small_amount:
        state = {"small_at_ms": time_ms, "small_amount": amount}
    return state, fired
