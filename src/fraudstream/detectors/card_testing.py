"""card_testing: a stolen card probed with tiny charges at several merchants.

Seed 004 (card testing). A *small* transaction has ``amount <= max_amount``. Per card, a small
transaction fires when, this one included, at least ``min_transactions`` small transactions and
at least ``min_merchants`` distinct merchants of small transactions lie within ``window_s`` of
it (``|time - other time| < window_s``: half-open, so exactly ``window_s`` apart is outside,
equal timestamps are inside). A transaction that is not small never fires and leaves the state
as it is. A small transaction without a merchant (code -1) counts as a transaction but not as
a merchant.

The state is exact and bounded: a ring of the card's last ``RING_WIDTH`` (32) small-transaction
times, and its ``MERCHANT_WIDTH`` (16) most recently used distinct merchants, each with the time
of its latest small transaction (least recently used merchant evicted first). So
``small_transactions`` tops out at 32 and ``distinct_merchants`` at 16, and the thresholds may be
at most those widths; for input in time order both counts are exact up to those caps.
The features are computed for every transaction (the current one counted only when small).
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
)
from fraudstream.engine.state import StateTable

RING_WIDTH = 32  # small-transaction times kept per card
MERCHANT_WIDTH = 16  # distinct merchants kept per card


@dataclass(frozen=True, slots=True)
class CardTestingThresholds:
    """Small means ``amount <= max_amount``; counts include the current transaction."""

    max_amount: float = 2.00
    min_transactions: int = 3
    min_merchants: int = 3
    window_s: float = 600.0

    def check(self) -> None:
        """Rejects thresholds that cannot mean anything or exceed the kept state."""
        if not self.max_amount >= 0:
            raise ValueError(f"card_testing: max_amount must be >= 0, got {self.max_amount}")
        if not self.window_s > 0:
            raise ValueError(f"card_testing: window_s must be > 0, got {self.window_s}")
        if not 1 <= self.min_transactions <= RING_WIDTH:
            raise ValueError(
                f"card_testing: min_transactions must be between 1 and {RING_WIDTH} "
                f"(the small transactions kept per card), got {self.min_transactions}"
            )
        if not 0 <= self.min_merchants <= MERCHANT_WIDTH:
            raise ValueError(
                f"card_testing: min_merchants must be between 0 and {MERCHANT_WIDTH} "
                f"(the merchants kept per card), got {self.min_merchants}"
            )

    @property
    def window_ms(self) -> int:
        """The window in whole milliseconds."""
        return round(self.window_s * 1000)


@numba.njit(cache=True, nogil=True)
def _kernel(
    card: I32,
    time_ms: I64,
    amount: F64,
    merchant: I32,
    small_ms: I64,
    small_count: I64,
    merchants: I32,
    merchant_ms: I64,
    max_amount: float,
    min_transactions: int,
    min_merchants: int,
    window_ms: int,
    fired: Bools,
    small_out: I32,
    merchants_out: I32,
) -> None:
    ring = small_ms.shape[1]
    kept = merchants.shape[1]
    for i in range(card.size):
        s = card[i]
        t = time_ms[i]
        small = amount[i] <= max_amount
        if small:
            c = small_count[s]
            small_ms[s, c % ring] = t
            small_count[s] = c + 1
            m = merchant[i]
            if m != -1:
                # Move m to the front (most recent); a new one takes the last slot's place.
                j = kept - 1
                for k in range(kept):
                    if merchants[s, k] == m or merchants[s, k] == -1:
                        j = k
                        break
                for k in range(j, 0, -1):
                    merchants[s, k] = merchants[s, k - 1]
                    merchant_ms[s, k] = merchant_ms[s, k - 1]
                merchants[s, 0] = m
                merchant_ms[s, 0] = t
        n_small = 0
        for k in range(min(small_count[s], ring)):
            if abs(t - small_ms[s, k]) < window_ms:
                n_small += 1
        n_merchants = 0
        for k in range(kept):
            if merchants[s, k] == -1:
                break
            if abs(t - merchant_ms[s, k]) < window_ms:
                n_merchants += 1
        small_out[i] = n_small
        merchants_out[i] = n_merchants
        fired[i] = small and n_small >= min_transactions and n_merchants >= min_merchants


class CardTesting(Detector[CardTestingThresholds]):
    """Seed 004's card testing: >= 3 charges of <= 2.00 at >= 3 merchants within 10 min.

    >>> from fraudstream.testing import detector_input
    >>> d = CardTesting()
    >>> tx = detector_input(card=[0, 0, 0, 0], merchant=[7, 8, 8, 9],
    ...                     time_ms=[0, 60_000, 120_000, 180_000], amount=[1.0, 0.5, 1.5, 2.0])
    >>> out = d.process(d.new_state(), tx)
    >>> out.fired["card_testing"].tolist()
    [False, False, False, True]
    >>> out.features["distinct_merchants"].tolist()
    [1, 2, 2, 3]
    """

    name = "card_testing"
    rules = ("card_testing",)
    key = "card"
    seed = "004 card testing"
    thresholds_type = CardTestingThresholds
    state_fields = {
        "small_times_ms": ((np.int64, RING_WIDTH), NONE_MS),
        "small_count": (np.int64, 0),
        "merchants": ((np.int32, MERCHANT_WIDTH), -1),
        "merchant_times_ms": ((np.int64, MERCHANT_WIDTH), NONE_MS),
    }
    coded_fields = {"merchants": "merchant"}
    rule_thresholds = {
        "card_testing": ("max_amount", "min_transactions", "min_merchants", "window_s")
    }

    def process(self, state: StateTable, tx: DetectorInput) -> Findings:
        """Records each small transaction and its merchant, then counts both in the window."""
        n = len(tx)
        fired = np.zeros(n, dtype=np.bool_)
        small_out = np.zeros(n, dtype=np.int32)
        merchants_out = np.zeros(n, dtype=np.int32)
        t = self.thresholds
        _kernel(
            tx.card, tx.time_ms, tx.amount, tx.merchant,
            state["small_times_ms"], state["small_count"],
            state["merchants"], state["merchant_times_ms"],
            t.max_amount, t.min_transactions, t.min_merchants, t.window_ms,
            fired, small_out, merchants_out,
        )  # fmt: skip
        return Findings(
            {"card_testing": fired},
            {"small_transactions": small_out, "distinct_merchants": merchants_out},
        )

    def message(self, rule: str, values: Mapping[str, Any]) -> str:
        """E.g. "4 charges of <= 2.00 at 3 merchants within 10.0 min (>= 3 at >= 3 ...)"."""
        t = self.thresholds
        window = fmt_seconds(t.window_s)
        return (
            f"{int(values['small_transactions'])} charges of <= {fmt_money(t.max_amount)} "
            f"at {int(values['distinct_merchants'])} merchants within {window} "
            f"(>= {t.min_transactions} at >= {t.min_merchants} merchants within {window})"
        )


def reference_step(
    state: dict[str, Any] | None,
    time_ms: int,
    amount: float,
    merchant: int,
    t: CardTestingThresholds,
) -> tuple[dict[str, Any] | None, bool]:
    """One transaction, written plainly: the oracle the kernel is tested against.

    ``state["small_times_ms"]``: the card's last 32 small-transaction times, oldest first;
    ``state["merchants"]``: merchant -> time of its latest small transaction, at most 16,
    least recently used first.
    """
    if not amount <= t.max_amount:
        return state, False
    times: list[int] = list(state["small_times_ms"]) if state is not None else []
    merchants: dict[int, int] = dict(state["merchants"]) if state is not None else {}
    times = [*times, time_ms][-RING_WIDTH:]
    if merchant != -1:
        merchants.pop(merchant, None)
        merchants[merchant] = time_ms
        while len(merchants) > MERCHANT_WIDTH:
            del merchants[next(iter(merchants))]
    n_small = sum(1 for other in times if abs(time_ms - other) < t.window_ms)
    n_merchants = sum(1 for other in merchants.values() if abs(time_ms - other) < t.window_ms)
    fired = n_small >= t.min_transactions and n_merchants >= t.min_merchants
    return {"small_times_ms": times, "merchants": merchants}, fired
