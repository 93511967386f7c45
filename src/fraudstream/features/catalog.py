"""Names of the streaming features: the handbook's 15 and the ones we add.

The handbook's (section 3.4) are the amount, weekend and night flags, per customer the count
and average amount over 1, 7 and 30 days, and per terminal the count and fraud risk over 1,
7 and 30 days shifted by the 7-day label delay. Ours add the customer's spend relative to
its own history, time since its previous transaction, known frauds, the terminal's current
activity and known frauds, and the detectors' own outputs (geo-velocity, velocity, ...).
"""

from __future__ import annotations

__all__ = [
    "BOOK_FEATURES",
    "CALENDAR_FEATURES",
    "DETECTOR_FEATURES",
    "OUR_FEATURES",
    "customer_features",
    "terminal_features",
]

CALENDAR_FEATURES = ("amount", "weekend", "night", "hour")


def customer_features(windows_days: tuple[int, ...] = (1, 7, 30)) -> tuple[str, ...]:
    """The customer kernel's columns, in order."""
    longest = max(windows_days)
    per_window = tuple(
        name for d in windows_days for name in (f"customer_tx_{d}d", f"customer_avg_amount_{d}d")
    )
    return per_window + (
        "customer_amount_ratio",
        "customer_amount_z",
        "customer_seconds_since_previous",
        f"customer_known_frauds_{longest}d",
        "customer_tx_seen",
        f"customer_amount_over_max_{longest}d",
    )


def terminal_features(windows_days: tuple[int, ...] = (1, 7, 30)) -> tuple[str, ...]:
    """The terminal kernel's columns, in order."""
    longest = max(windows_days)
    per_window = tuple(
        name for d in windows_days for name in (f"terminal_tx_{d}d", f"terminal_risk_{d}d")
    )
    return per_window + (
        "terminal_tx_1d_now",
        f"terminal_known_frauds_{longest}d",
        "terminal_known_fraud_share",
        "terminal_days_since_fraud",
        "terminal_days_since_first_fraud",
        "terminal_cleared_since_fraud",
        "terminal_fraud_share_since_first",
    )


BOOK_FEATURES = (
    "amount",
    "weekend",
    "night",
    *(f"customer_tx_{d}d" for d in (1, 7, 30)),
    *(f"customer_avg_amount_{d}d" for d in (1, 7, 30)),
    *(f"terminal_tx_{d}d" for d in (1, 7, 30)),
    *(f"terminal_risk_{d}d" for d in (1, 7, 30)),
)

# Detector outputs used as model inputs when the detectors run (numeric ones only).
DETECTOR_FEATURES = ("distance_km", "speed_kmh", "transactions_in_window")

OUR_FEATURES = tuple(
    dict.fromkeys(
        (*BOOK_FEATURES, "hour", *customer_features(), *terminal_features(), *DETECTOR_FEATURES)
    )
)
