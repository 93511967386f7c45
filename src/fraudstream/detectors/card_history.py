"""zip_mismatch and amount_anomaly: seed 001's per-card history (last zip, last time, average).

Seed 001 (Kafka + Flink SQL + Python UDF). A card's first transaction creates its history
(average = amount) and fires nothing. Then, in order: less than ``window_s`` since the
history's last time at a different zip code fires ``zip_mismatch``; otherwise an amount greater
than ``multiplier`` x the running average fires ``amount_anomaly``; otherwise the history takes
this zip code and time and the average becomes (average + amount) / 2. A transaction that fired
either rule leaves the history unchanged. The state changes exactly once per record (the
seed's lookup ran up to three times, with side effects each time). A transaction without a
zip code cannot mismatch; when it updates the history it keeps the previous zip code.
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
    decode_codes,
    filled,
    fmt_money,
    fmt_seconds,
)
from fraudstream.engine.state import StateTable


@dataclass(frozen=True, slots=True)
class CardHistoryThresholds:
    """``window_s`` for zip_mismatch (strictly less than); ``multiplier`` for amount_anomaly."""

    window_s: float = 600.0
    multiplier: float = 8.0

    def check(self) -> None:
        """Rejects a window or multiplier that cannot mean anything."""
        if self.window_s <= 0 or self.multiplier <= 0:
            raise ValueError("zip_mismatch/amount_anomaly: window_s and multiplier must be > 0")


@numba.njit(cache=True, nogil=True, error_model="numpy")  # x / 0.0: inf or nan, as NumPy
def _kernel(
    card: I32,
    time_ms: I64,
    amount: F64,
    zipcode: I32,
    last_ms: I64,
    last_zip: I32,
    average: F64,
    window_ms: int,
    multiplier: float,
    zip_fired: Bools,
    amount_fired: Bools,
    last_zip_out: I32,
    since_out: F64,
    average_out: F64,
    ratio_out: F64,
) -> None:
    for i in range(card.size):
        s = card[i]
        if last_ms[s] == NONE_MS:  # new card: LEGIT - New User
            last_ms[s] = time_ms[i]
            last_zip[s] = zipcode[i]
            average[s] = amount[i]
            continue
        elapsed = time_ms[i] - last_ms[s]
        last_zip_out[i] = last_zip[s]
        since_out[i] = elapsed / 1000.0
        average_out[i] = average[s]
        ratio_out[i] = amount[i] / average[s]  # a zero average is valid
        if elapsed < window_ms and zipcode[i] != -1 and last_zip[s] != -1:
            if zipcode[i] != last_zip[s]:
                zip_fired[i] = True
                continue
        if amount[i] > multiplier * average[s]:
            amount_fired[i] = True
            continue
        last_ms[s] = time_ms[i]
        if zipcode[i] != -1:
            last_zip[s] = zipcode[i]
        average[s] = (average[s] + amount[i]) / 2.0


class CardHistory(Detector[CardHistoryThresholds]):
    """Seed 001's two verdicts from one card history.

    >>> from fraudstream.testing import detector_input
    >>> d = CardHistory()
    >>> tx = detector_input(card=[0, 0, 0, 0], time_ms=[0, 60_000, 1_000_000, 2_000_000],
    ...                     amount=[50.0, 60.0, 900.0, 40.0], zipcode=[1, 2, 1, 1])
    >>> out = d.process(d.new_state(), tx)
    >>> out.fired["zip_mismatch"].tolist(), out.fired["amount_anomaly"].tolist()
    ([False, True, False, False], [False, False, True, False])
    """

    name = "card_history"
    rules = ("zip_mismatch", "amount_anomaly")
    key = "card"
    seed = "001 Kafka + Flink SQL + Python UDF"
    thresholds_type = CardHistoryThresholds
    state_fields = {
        "last_ms": (np.int64, NONE_MS),
        "last_zipcode": (np.int32, -1),
        "running_average": (np.float64, np.nan),
    }
    coded_fields = {"last_zipcode": "zipcode"}
    rule_thresholds = {"zip_mismatch": ("window_s",), "amount_anomaly": ("multiplier",)}

    def process(self, state: StateTable, tx: DetectorInput) -> Findings:
        """Applies the seed's verdicts in order, updating the history once per record."""
        n = len(tx)
        # Few allocations: a one-record batch (an authorization) pays per NumPy call.
        fired = np.zeros((2, n), dtype=np.bool_)  # zip_mismatch, amount_anomaly
        last_zip_out = filled(n, -1, np.int32)
        values = filled((3, n), np.nan, np.float64)  # since, average, ratio
        t = self.thresholds
        window_ms = round(t.window_s * 1000)
        _kernel(
            tx.card, tx.time_ms, tx.amount, tx.zipcode,
            state["last_ms"], state["last_zipcode"], state["running_average"],
            window_ms, t.multiplier,
            fired[0], fired[1], last_zip_out, values[0], values[1], values[2],
        )  # fmt: skip
        return Findings(
            {"zip_mismatch": fired[0], "amount_anomaly": fired[1]},
            {
                "last_zipcode": decode_codes(tx, "zipcode", last_zip_out),
                "seconds_since_last": values[0],
                "running_average": values[1],
                "amount_ratio": values[2],
            },
        )

    def message(self, rule: str, values: Mapping[str, Any]) -> str:
        """The seed's verdicts, with the values: zip codes and time, or amount and average."""
        t = self.thresholds
        if rule == "zip_mismatch":
            return (
                f"zip code {values['zipcode']} differs from {values['last_zipcode']} used "
                f"{fmt_seconds(abs(values['seconds_since_last']))} earlier "
                f"(< {t.window_s:g} s)"
            )
        return (
            f"amount {fmt_money(values['amount'])} is {values['amount_ratio']:,.1f} x the "
            f"card's average {fmt_money(values['running_average'])} (> {t.multiplier:g} x)"
        )

    def messages(self, rule: str, columns: Mapping[str, list[Any]]) -> list[str]:
        """:meth:`message` for many rows, written in one pass (amount_anomaly fires often)."""
        t = self.thresholds
        if rule == "zip_mismatch":
            return super().messages(rule, columns)
        limit = f"{t.multiplier:g}"
        return [
            f"amount {amount:,.2f} is {ratio:,.1f} x the card's average {average:,.2f} "
            f"(> {limit} x)"
            for amount, ratio, average in zip(
                columns["amount"], columns["amount_ratio"], columns["running_average"], strict=True
            )
        ]


def reference_step(
    state: dict[str, Any] | None,
    time_ms: int,
    amount: float,
    zipcode: str | None,
    t: CardHistoryThresholds,
) -> tuple[dict[str, Any], str]:
    """Seed 001's verdict for one transaction, plainly: (state, verdict)."""
    if state is None:
        return {"time_ms": time_ms, "zip": zipcode, "avg": amount}, "LEGIT - New User"
    if (
        time_ms - state["time_ms"] < t.window_s * 1000
        and zipcode is not None
        and state["zip"] is not None
        and zipcode != state["zip"]
    ):
        return state, "FRAUD - ZIP Code Mismatch"
    if amount > t.multiplier * state["avg"]:
        return state, "FRAUD - Amount Anomaly"
    zip_kept = zipcode if zipcode is not None else state["zip"]
    return {"time_ms": time_ms, "zip": zip_kept, "avg": (state["avg"] + amount) / 2}, "LEGIT"
