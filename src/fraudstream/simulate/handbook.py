"""The labelled simulation of the fraud-detection handbook (Le Borgne et al., section 3.2).

Written from the book's published description (its code is GPL and is not used here):

- customers and terminals uniform on a 100 x 100 grid; each customer has a mean amount
  U(5, 100), a standard deviation of half of it, and U(0, 4) transactions a day (Poisson);
- a transaction's second of the day ~ N(43,200, 20,000), dropped when it falls outside the
  day; its amount ~ N(mean, std), a negative one redrawn U(0, 2 mean), two decimals; its
  terminal uniform among the terminals within distance ``radius`` (5) of the customer;
- frauds: (1) every amount > 220; (2) every day 2 random terminals are compromised for the
  next 28 days (all their transactions); (3) every day 3 random customers are compromised for
  the next 14 days, a third of their transactions (drawn at random) multiplied by 5.
  A later scenario overrides an earlier one on the same transaction, as in the book.

Everything is drawn with numpy in whole arrays (the full size, 1.75 M transactions, takes
seconds). Records follow DESIGN.md's transaction contract: the customer is the card and the
user, the terminal the merchant, and the grid is mapped onto a 100 km x 100 km area (1 unit
= 1 km, south-west corner at 48.4 N, 1.9 E: around Paris) so geo-velocity has real
coordinates. ``is_fraud`` and ``fraud_scenario`` (0 = genuine) carry the labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = [
    "BOOK",
    "HandbookConfig",
    "handbook_labels",
    "handbook_table",
    "scenario_counts",
]

DAY_MS = 86_400_000
START = datetime(2018, 4, 1, tzinfo=UTC)
ORIGIN_LAT, ORIGIN_LON = 48.4, 1.9  # the grid's (0, 0)
KM_PER_DEGREE = 111.32
LABEL_DELAY_DAYS = 7  # the book's feedback delay

# What the book's own run printed (section 3.2): transactions, frauds, per scenario.
BOOK = {"transactions": 1_754_155, "frauds": 14_681, 1: 978, 2: 9_099, 3: 4_604}


@dataclass(frozen=True, slots=True)
class HandbookConfig:
    """The simulation's size; the defaults are the book's."""

    customers: int = 5_000
    terminals: int = 10_000
    days: int = 183
    radius: float = 5.0
    seed: int = 4  # the CLI default; its counts are printed in docs/models.md

    def check(self) -> None:
        """Rejects sizes that cannot make a simulation."""
        for name in ("customers", "terminals", "days"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not self.radius > 0:
            raise ValueError(f"radius must be > 0, got {self.radius}")


def _terminals_near(
    customer_xy: npt.NDArray[np.float64], terminal_xy: npt.NDArray[np.float64], radius: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """CSR lists (offsets, terminal ids) of the terminals within ``radius`` of each customer."""
    lists = []
    counts = np.zeros(len(customer_xy), dtype=np.int64)
    for start in range(0, len(customer_xy), 256):
        block = customer_xy[start : start + 256]
        d2 = ((block[:, None, :] - terminal_xy[None, :, :]) ** 2).sum(axis=2)
        rows, cols = np.nonzero(d2 < radius * radius)
        counts[start : start + len(block)] = np.bincount(rows, minlength=len(block))
        lists.append(cols.astype(np.int64))
    offsets = np.zeros(len(customer_xy) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, np.concatenate(lists) if lists else np.empty(0, np.int64)


def handbook_table(config: HandbookConfig | None = None) -> pa.Table:
    """The simulated transactions, sorted by time, as an Arrow table of contract columns."""
    cfg = config or HandbookConfig()
    cfg.check()
    rng = np.random.default_rng(cfg.seed)
    # customer and terminal profiles
    customer_xy = rng.uniform(0, 100, size=(cfg.customers, 2))
    mean_amount = rng.uniform(5, 100, size=cfg.customers)
    std_amount = mean_amount / 2
    per_day = rng.uniform(0, 4, size=cfg.customers)
    terminal_xy = rng.uniform(0, 100, size=(cfg.terminals, 2))
    offsets, near = _terminals_near(customer_xy, terminal_xy, cfg.radius)
    reachable = np.diff(offsets)
    # transactions: a Poisson count per (customer, day), a time and an amount each
    counts = rng.poisson(np.broadcast_to(per_day, (cfg.days, cfg.customers)))
    counts[:, reachable == 0] = 0  # no terminal in reach: no transaction
    day = np.repeat(np.repeat(np.arange(cfg.days), cfg.customers), counts.ravel())
    customer = np.repeat(np.tile(np.arange(cfg.customers), cfg.days), counts.ravel())
    second = np.rint(rng.normal(43_200, 20_000, size=len(day))).astype(np.int64)
    inside = (second > 0) & (second < 86_400)
    day, customer, second = day[inside], customer[inside], second[inside]
    n = len(day)
    mean, std = mean_amount[customer], std_amount[customer]
    amount = rng.normal(mean, std)
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean[negative])
    amount = np.round(amount, 2)
    pick = np.floor(rng.uniform(size=n) * reachable[customer]).astype(np.int64)
    terminal = near[offsets[customer] + pick]
    # time order, as the book sorts them; ids follow that order
    time_ms = (day * 86_400 + second) * 1000 + int(START.timestamp() * 1000)
    order = np.argsort(time_ms, kind="stable")
    day, customer, terminal = day[order], customer[order], terminal[order]
    amount, time_ms = amount[order], time_ms[order]
    scenario = np.zeros(n, dtype=np.int8)
    scenario[amount > 220] = 1
    # (2) compromised terminals: each day, 2 of them for the next 28 days
    by_terminal = np.argsort(terminal, kind="stable")
    terminal_starts = np.searchsorted(terminal[by_terminal], np.arange(cfg.terminals + 1))
    hit = np.zeros(n, dtype=bool)
    for d in range(cfg.days):
        for t in rng.choice(cfg.terminals, size=min(2, cfg.terminals), replace=False):
            rows = by_terminal[terminal_starts[t] : terminal_starts[t + 1]]
            hit[rows[(day[rows] >= d) & (day[rows] < d + 28)]] = True
    scenario[hit] = 2
    # (3) compromised customers: each day, 3 of them for 14 days, a third of their tx x 5
    by_customer = np.argsort(customer, kind="stable")
    starts = np.searchsorted(customer[by_customer], np.arange(cfg.customers + 1))
    for d in range(cfg.days):
        for c in rng.choice(cfg.customers, size=min(3, cfg.customers), replace=False):
            rows = by_customer[starts[c] : starts[c + 1]]
            rows = rows[(day[rows] >= d) & (day[rows] < d + 14)]
            chosen = rng.choice(rows, size=len(rows) // 3, replace=False)
            amount[chosen] = np.round(amount[chosen] * 5, 2)
            scenario[chosen] = 3
    xy = terminal_xy[terminal]
    lat = ORIGIN_LAT + xy[:, 1] / KM_PER_DEGREE
    lon = ORIGIN_LON + xy[:, 0] / (KM_PER_DEGREE * math.cos(math.radians(ORIGIN_LAT + 0.45)))
    customer_ids = pa.array(np.char.add("c", customer.astype(str)).astype(object), pa.string())
    return pa.table(
        {
            "transaction_id": pa.array(np.char.add("tx", np.arange(n).astype(str)).astype(object)),
            "card_id": customer_ids,
            "user_id": customer_ids,
            "timestamp": pa.array(time_ms, pa.int64()),
            "amount": pa.array(amount),
            "currency": pa.array(np.full(n, "EUR", dtype=object), pa.string()),
            "lat": pa.array(np.round(lat, 6)),
            "lon": pa.array(np.round(lon, 6)),
            "merchant_id": pa.array(np.char.add("t", terminal.astype(str)).astype(object)),
            "channel": pa.array(np.full(n, "pos", dtype=object), pa.string()),
            "is_fraud": pa.array(scenario > 0),
            "fraud_scenario": pa.array(scenario),
        }
    )


def handbook_labels(table: pa.Table, delay_days: int = LABEL_DELAY_DAYS) -> pa.Table:
    """The label stream of a simulation: every transaction's ``is_fraud``, ``delay_days`` later.

    Labels are sorted by ``label_time`` (epoch ms), as they would arrive.
    """
    times = table.column("timestamp").to_numpy() + delay_days * DAY_MS
    order = np.argsort(times, kind="stable")
    return pa.table(
        {
            "transaction_id": table.column("transaction_id").take(order),
            "is_fraud": table.column("is_fraud").take(order),
            "label_time": pa.array(times[order], pa.int64()),
        }
    )


def scenario_counts(table: pa.Table) -> dict[str | int, int]:
    """Transactions, frauds and frauds per scenario, keyed as :data:`BOOK` is."""
    scenario = table.column("fraud_scenario").to_numpy()
    counts = np.bincount(scenario, minlength=4)
    return {
        "transactions": len(scenario),
        "frauds": int(counts[1:].sum()),
        1: int(counts[1]),
        2: int(counts[2]),
        3: int(counts[3]),
    }
