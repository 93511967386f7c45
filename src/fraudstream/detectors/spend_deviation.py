"""spend_deviation: an amount far above what this card usually spends.

Seed 002 (the demo's list: "deviation from the card's own spending history"). Per card a running
count, mean and sum of squared deviations of amounts (Welford's algorithm; ``std`` is the
population standard deviation ``sqrt(m2 / count)``). A transaction fires when the card already
has ``count >= min_history`` transactions and ``amount > mean + z_threshold * std`` and
``amount - mean >= min_excess`` (so a card that always spends about the same does not fire on a
small absolute change). The transaction is checked against the history *before* it; then every
transaction, fired or not, is added to the statistics. A missing (NaN) amount neither fires nor
changes the state.

Features are the history the transaction was judged against: ``mean_amount``, ``std_amount``
and ``amount_zscore = (amount - mean) / std`` (NaN for a card's first transaction; +-inf when
the history has no spread and the amount differs from it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from fraudstream.detectors.base import (
    F64,
    I32,
    I64,
    Bools,
    Detector,
    DetectorInput,
    Findings,
    fmt_money,
    nan_column,
)
from fraudstream.engine.state import StateTable


@dataclass(frozen=True, slots=True)
class SpendDeviationThresholds:
    """History in transactions; ``z_threshold`` in standard deviations; ``min_excess`` money."""

    min_history: int = 20
    z_threshold: float = 3.0
    min_excess: float = 100.00

    def check(self) -> None:
        """Rejects thresholds that cannot mean anything."""
        if not self.min_history >= 1:
            raise ValueError(f"spend_deviation: min_history must be >= 1, got {self.min_history}")
        if not self.z_threshold >= 0:
            raise ValueError(f"spend_deviation: z_threshold must be >= 0, got {self.z_threshold}")
        if not self.min_excess >= 0:
            raise ValueError(f"spend_deviation: min_excess must be >= 0, got {self.min_excess}")


@numba.njit(cache=True, nogil=True)
def _kernel(
    card: I32,
    amount: F64,
    count: I64,
    mean: F64,
    m2: F64,
    min_history: int,
    z_threshold: float,
    min_excess: float,
    fired: Bools,
    mean_out: F64,
    std_out: F64,
    z_out: F64,
) -> None:
    for i in range(card.size):
        a = amount[i]
        if math.isnan(a):
            continue
        s = card[i]
        c = count[s]
        if c > 0:
            mu = mean[s]
            sd = math.sqrt(m2[s] / c)
            diff = a - mu
            if sd > 0:
                z = diff / sd
            elif diff > 0:
                z = math.inf
            elif diff < 0:
                z = -math.inf
            else:
                z = 0.0
            mean_out[i] = mu
            std_out[i] = sd
            z_out[i] = z
            fired[i] = c >= min_history and a > mu + z_threshold * sd and diff >= min_excess
        c += 1
        delta = a - mean[s]
        mean[s] += delta / c
        m2[s] += delta * (a - mean[s])
        count[s] = c


class SpendDeviation(Detector[SpendDeviationThresholds]):
    """An amount > mean + 3 std of the card's history (>= 20 tx) and >= 100.00 above the mean.

    >>> from fraudstream.testing import detector_input
    >>> d = SpendDeviation(min_history=4)
    >>> tx = detector_input(card=[0] * 6, time_ms=[0, 1, 2, 3, 4, 5],
    ...                     amount=[20.0, 30.0, 20.0, 30.0, 400.0, 31.0])
    >>> out = d.process(d.new_state(), tx)
    >>> out.fired["spend_deviation"].tolist()
    [False, False, False, False, True, False]
    >>> float(out.features["mean_amount"][4]), float(out.features["std_amount"][4])
    (25.0, 5.0)
    """

    name = "spend_deviation"
    rules = ("spend_deviation",)
    key = "card"
    seed = "002 Confluent Cloud Flink demo (deviation from the card's history)"
    thresholds_type = SpendDeviationThresholds
    state_fields = {
        "count": (np.int64, 0),
        "mean": (np.float64, 0.0),
        "m2": (np.float64, 0.0),
    }
    rule_thresholds = {"spend_deviation": ("min_history", "z_threshold", "min_excess")}

    def process(self, state: StateTable, tx: DetectorInput) -> Findings:
        """Checks each amount against its card's history, then adds it to the history."""
        n = len(tx)
        fired = np.zeros(n, dtype=np.bool_)
        mean_out, std_out, z_out = nan_column(n), nan_column(n), nan_column(n)
        t = self.thresholds
        _kernel(
            tx.card, tx.amount, state["count"], state["mean"], state["m2"],
            t.min_history, t.z_threshold, t.min_excess,
            fired, mean_out, std_out, z_out,
        )  # fmt: skip
        return Findings(
            {"spend_deviation": fired},
            {"mean_amount": mean_out, "std_amount": std_out, "amount_zscore": z_out},
        )

    def message(self, rule: str, values: Mapping[str, Any]) -> str:
        """E.g. "amount 400.00 is 75.0 std above the card's mean 25.00 (std 5.00; > 3 std ...)"."""
        t = self.thresholds
        z = float(values["amount_zscore"])
        shown = "infinitely many" if math.isinf(z) else f"{z:,.1f}"
        return (
            f"amount {fmt_money(values['amount'])} is {shown} std above the card's mean "
            f"{fmt_money(values['mean_amount'])} (std {fmt_money(values['std_amount'])}; "
            f"> {t.z_threshold:g} std and >= {fmt_money(t.min_excess)} above, "
            f"history >= {t.min_history})"
        )

    def messages(self, rule: str, columns: Mapping[str, list[Any]]) -> list[str]:
        """:meth:`message` for many rows in one pass (no dict per row)."""
        t = self.thresholds
        tail = f" std and >= {fmt_money(t.min_excess)} above, history >= {t.min_history})"
        out = []
        for amount, z_value, mean, std in zip(
            columns["amount"], columns["amount_zscore"], columns["mean_amount"],
            columns["std_amount"], strict=True,
        ):  # fmt: skip
            z = float(z_value)
            shown = "infinitely many" if math.isinf(z) else f"{z:,.1f}"
            out.append(
                f"amount {amount:,.2f} is {shown} std above the card's mean {mean:,.2f} "
                f"(std {std:,.2f}; > {t.z_threshold:g}" + tail
            )
        return out


def reference_step(
    state: dict[str, Any] | None, amount: float, t: SpendDeviationThresholds
) -> tuple[dict[str, Any] | None, bool]:
    """One transaction, written plainly: the oracle the kernel is tested against.

    The state holds Welford's ``count``, ``mean`` and ``m2`` of the card's amounts.
    """
    if math.isnan(amount):
        return state, False
    count, mean, m2 = (state["count"], state["mean"], state["m2"]) if state else (0, 0.0, 0.0)
    fired = False
    if count > 0:
        std = math.sqrt(m2 / count)
        fired = (
            count >= t.min_history
            and amount > mean + t.z_threshold * std
            and amount - mean >= t.min_excess
        )
    count += 1
    delta = amount - mean
    mean += delta / count
    m2 += delta * (amount - mean)
    return {"count": count, "mean": mean, "m2": m2}, fired
