"""The figures of a backtest, counted batch by batch as the decisions come.

A :class:`Tally` counts one rule set's decisions against the labels: per rule (the
transactions whose ``reasons``, or ``shadow_reasons`` for a rule in shadow, name it; which is
where it fired) its alerts, true and false positives, the fraud amount it caught and its
alerts per UTC day; per tier the counts; for the whole decision (``review`` or ``decline``)
the alerts and true positives. :func:`report` turns two tallies (candidate and baseline) and
the transactions whose tier changed into the report (docs/rules.md, "Backtest").

A transaction is fraud when its label says so, whatever the label time (the last label of a
transaction counts); recall's denominator is every labelled fraud among the decided
transactions. ``alerts_per_day`` divides by the days the history spans (at least one).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.decide import APPROVE, TIERS, Decisions

__all__ = ["DAY_MS", "FraudLookup", "Tally", "report"]

DAY_MS = 86_400_000
Bools = npt.NDArray[np.bool_]


class FraudLookup:
    """Which transaction ids are labelled fraud (each id's last label by ``label_time``).

    >>> lookup = FraudLookup(pa.array(["a", "b", "a"]), np.array([True, True, False]))
    >>> lookup.of(pa.array(["a", "b", "c"])).tolist()
    [False, True, False]
    """

    def __init__(self, transaction_id: pa.Array, is_fraud: Bools) -> None:
        # rows in label-time order: the last one of an id wins
        table = pa.table({"transaction_id": transaction_id, "is_fraud": pa.array(is_fraud)})
        last = table.group_by("transaction_id", use_threads=False).aggregate([("is_fraud", "last")])
        fraud = last.filter(pc.field("is_fraud_last"))
        self.fraud_ids = fraud.column("transaction_id").combine_chunks()

    def of(self, ids: pa.Array) -> Bools:
        """Fraud or not, per id."""
        found = pc.is_in(ids, value_set=self.fraud_ids)
        return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.bool_)


@dataclass
class _RuleCount:
    mode: str
    alerts: int = 0
    true_positives: int = 0
    caught_amount: float = 0.0
    by_day: Counter[int] = field(default_factory=Counter)


class Tally:
    """One rule set's figures, counted batch by batch."""

    def __init__(self, modes: dict[str, str]) -> None:
        self.modes = modes  # rule id -> live | shadow, every enabled rule of the set
        self.rules = {rule_id: _RuleCount(mode) for rule_id, mode in modes.items()}
        self.tiers = np.zeros(3, dtype=np.int64)
        self.alerts = 0
        self.true_positives = 0

    def add(self, decisions: Decisions, fraud: Bools, day: npt.NDArray[np.int64]) -> None:
        """Counts a batch of decisions (``fraud`` and ``day`` row by row)."""
        self.tiers += np.bincount(decisions.tier, minlength=3)
        alert = decisions.tier != APPROVE
        self.alerts += int(alert.sum())
        self.true_positives += int((alert & fraud).sum())
        amount = decisions.tx.amount
        for fired in (decisions.fired, decisions.shadow_fired):
            for rule_id, mask in fired.items():
                count = self.rules.get(rule_id)
                if count is None:
                    count = self.rules[rule_id] = _RuleCount(self.modes.get(rule_id, "live"))
                hits = int(mask.sum())
                if not hits:
                    continue
                count.alerts += hits
                caught = mask & fraud
                count.true_positives += int(caught.sum())
                count.caught_amount += float(amount[caught].sum())
                days, per_day = np.unique(day[mask], return_counts=True)
                count.by_day.update(dict(zip(days.tolist(), per_day.tolist(), strict=True)))

    def rule_rows(self, frauds: int, days: float) -> list[dict[str, Any]]:
        """The per-rule figures, in the rule set's order."""
        rows = []
        for rule_id, count in self.rules.items():
            rows.append(
                {
                    "id": rule_id,
                    "mode": count.mode,
                    "alerts": count.alerts,
                    "true_positives": count.true_positives,
                    "false_positives": count.alerts - count.true_positives,
                    "precision": _ratio(count.true_positives, count.alerts),
                    "recall": _ratio(count.true_positives, frauds),
                    "alerts_per_day": count.alerts / days,
                    "caught_amount": count.caught_amount,
                }
            )
        return rows

    def decision(self, frauds: int) -> dict[str, Any]:
        """Precision and recall of ``review or decline``."""
        return {
            "alerts": self.alerts,
            "true_positives": self.true_positives,
            "false_positives": self.alerts - self.true_positives,
            "precision": _ratio(self.true_positives, self.alerts),
            "recall": _ratio(self.true_positives, frauds),
        }

    def series(self) -> list[dict[str, Any]]:
        """Alerts per UTC day per rule: ``{"day": "2018-04-01", "rule": ..., "alerts": n}``."""
        out = []
        for rule_id, count in self.rules.items():
            for day in sorted(count.by_day):
                out.append({"day": _day_text(day), "rule": rule_id, "alerts": count.by_day[day]})
        return out


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _day_text(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()


def report(
    candidate: Tally,
    baseline: Tally,
    changed: list[dict[str, str]],
    transactions: int,
    frauds: int,
    span_ms: int,
    names: tuple[str, str] = ("candidate", "baseline"),
) -> dict[str, Any]:
    """The backtest report (its shape: docs/rules.md, "Backtest")."""
    days = max(span_ms / DAY_MS, 1.0)
    transitions: Counter[str] = Counter(f"{c['before']} -> {c['after']}" for c in changed)
    return {
        "transactions": transactions,
        "frauds": frauds,
        "days": days,
        "candidate": {"rules": names[0]},
        "baseline": {"rules": names[1]},
        "rules": candidate.rule_rows(frauds, days),
        "baseline_rules": baseline.rule_rows(frauds, days),
        "tiers": {
            "candidate": dict(zip(TIERS, candidate.tiers.tolist(), strict=True)),
            "baseline": dict(zip(TIERS, baseline.tiers.tolist(), strict=True)),
            "transitions": dict(transitions),
        },
        "changed": changed,
        "changed_count": len(changed),
        "decision": {
            "candidate": candidate.decision(frauds),
            "baseline": baseline.decision(frauds),
        },
        "alerts_per_day": {"candidate": candidate.series(), "baseline": baseline.series()},
    }
