"""The streaming features written plainly, one transaction at a time: the kernels' oracle.

For each transaction, in processing order, at decision time ``t``: the customer's earlier
transactions (in processing order) and this one with event time in ``(t - w, t]``; the
terminal's earlier ones in ``(t - delay - w, t - delay]`` and, of those, the ones with a
fraud label whose ``label_time <= t``; the terminal's fraud episode from its frauds known by
``t`` in ``(t - delay - longest, t]``. Nothing here is fast; everything here is obvious.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["Tx", "reference_features"]

DAY_MS = 86_400_000


class Tx(NamedTuple):
    """One transaction as the reference sees it."""

    transaction_id: str
    customer: int
    terminal: int
    time_ms: int
    amount: float


def reference_features(
    transactions: Sequence[Tx],
    fraud_labels: dict[str, int],
    windows_days: Sequence[int] = (1, 7, 30),
    delay_days: int = 7,
) -> list[dict[str, float]]:
    """Features per transaction; ``fraud_labels`` maps a transaction id to its label time."""
    out = []
    seen: list[Tx] = []
    delay = delay_days * DAY_MS
    longest = max(windows_days) * DAY_MS

    def known(tx: Tx, t: int) -> bool:
        return tx.transaction_id in fraud_labels and fraud_labels[tx.transaction_id] <= t

    for tx in transactions:
        t = tx.time_ms
        row: dict[str, float] = {}
        mine = [o for o in seen if o.customer == tx.customer]
        for d in windows_days:
            inside = [o.amount for o in [*mine, tx] if t - d * DAY_MS < o.time_ms <= t]
            row[f"customer_tx_{d}d"] = float(len(inside))
            row[f"customer_avg_amount_{d}d"] = sum(inside) / len(inside)
        recent = [o for o in mine if t - longest < o.time_ms <= t]
        row[f"customer_known_frauds_{max(windows_days)}d"] = float(sum(known(o, t) for o in recent))
        amounts = [o.amount for o in mine]
        mean = sum(amounts) / len(amounts) if amounts else math.nan
        row["customer_amount_ratio"] = tx.amount / mean if amounts and mean > 0 else math.nan
        row["customer_tx_seen"] = float(len(mine))
        theirs = [o for o in seen if o.terminal == tx.terminal]
        for d in windows_days:
            delayed = [o for o in theirs if t - delay - d * DAY_MS < o.time_ms <= t - delay]
            frauds = sum(known(o, t) for o in delayed)
            row[f"terminal_tx_{d}d"] = float(len(delayed))
            row[f"terminal_risk_{d}d"] = frauds / len(delayed) if delayed else 0.0
        row["terminal_tx_1d_now"] = float(1 + sum(t - DAY_MS < o.time_ms <= t for o in theirs))
        row[f"terminal_known_frauds_{max(windows_days)}d"] = float(
            sum(known(o, t) for o in theirs if t - longest < o.time_ms <= t)
        )
        episode = [
            o.time_ms for o in theirs if t - delay - longest < o.time_ms <= t and known(o, t)
        ]
        if episode:
            first, last = min(episode), max(episode)
            since = [o for o in theirs if first <= o.time_ms <= t - delay]
            row["terminal_days_since_fraud"] = (t - last) / DAY_MS
            row["terminal_days_since_first_fraud"] = (t - first) / DAY_MS
            row["terminal_cleared_since_fraud"] = float(
                sum(last < o.time_ms <= t - delay for o in theirs)
            )
            row["terminal_fraud_share_since_first"] = (
                sum(known(o, t) for o in since) / len(since) if since else math.nan
            )
        else:
            for name in (
                "terminal_days_since_fraud",
                "terminal_days_since_first_fraud",
                "terminal_cleared_since_fraud",
                "terminal_fraud_share_since_first",
            ):
                row[name] = math.nan
        out.append(row)
        seen.append(tx)
    return out
