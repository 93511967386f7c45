"""The embedded pipeline: dedupe -> time -> key -> detectors -> decide, one micro-batch at a time.

It owns every piece of keyed state (detector tables, key spaces, profiles, the event clock)
and nothing else: sources feed it validated :class:`TxBatch` es and sinks take the
:class:`Decisions` it returns. Rules can be swapped while it runs (:meth:`apply_rules`);
detector state survives when a rule's thresholds change.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.decide import Decisions, combine, explain
from fraudstream.detectors import RULE_FAMILY, Detector, DetectorInput
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.clock import EventClock
from fraudstream.engine.keys import KeySpace
from fraudstream.engine.state import StateTable
from fraudstream.profiles import ProfileTable
from fraudstream.reference import IpReference
from fraudstream.rules import Rule, RuleSet, thresholds_for

TIMER_SWEEP_MS = 1_000


@dataclass(frozen=True, slots=True)
class TimeConfig:
    """How time advances: event time (the default) or processing (arrival) time."""

    mode: Literal["event", "processing"] = "event"
    out_of_orderness_ms: int = 0
    allowed_lateness_ms: int = 300_000
    idle_timeout_ms: int = 1_000


@dataclass(slots=True)
class StepResult:
    """What one call into the pipeline produced."""

    decisions: Decisions | None = None
    late: TxBatch = field(default_factory=TxBatch.empty)
    duplicates: TxBatch = field(default_factory=TxBatch.empty)


@dataclass(slots=True)
class _Instance:
    detector: Detector[Any]
    rule_ids: dict[str, str]  # the detector's rule name -> the rule id it reports as
    prefix: str  # feature name prefix ("" for standard rules)


class Dedup:
    """Transaction ids seen recently; bounded by keeping two generations of ``horizon`` ids."""

    def __init__(self, horizon: int = 5_000_000) -> None:
        self.horizon = horizon
        self.current: set[str] = set()
        self.previous: set[str] = set()

    def __contains__(self, transaction_id: str) -> bool:
        return transaction_id in self.current or transaction_id in self.previous

    def admit(self, ids: list[str]) -> list[int]:
        """Adds ``ids``; returns the positions of those already seen (or twice in ``ids``)."""
        if self.current.isdisjoint(ids) and self.previous.isdisjoint(ids):
            before = len(self.current)
            self.current.update(ids)
            duplicates = []
            if len(self.current) != before + len(ids):
                counts = Counter(ids)
                seen_here: set[str] = set()
                for position, tid in enumerate(ids):
                    if counts[tid] > 1:
                        if tid in seen_here:
                            duplicates.append(position)
                        seen_here.add(tid)
        else:
            duplicates = []
            for position, tid in enumerate(ids):
                if tid in self:
                    duplicates.append(position)
                else:
                    self.current.add(tid)
        if len(self.current) >= self.horizon:
            self.previous, self.current = self.current, set()
        return duplicates


class Pipeline:
    """All keyed state and the step from validated transactions to decisions."""

    def __init__(
        self,
        rules: RuleSet | None = None,
        profiles: ProfileTable | None = None,
        time_config: TimeConfig | None = None,
        reference: IpReference | None = None,
    ) -> None:
        self.time = time_config or TimeConfig()
        self.cards = KeySpace()
        self.profiles = profiles or ProfileTable(KeySpace())
        self.users = self.profiles.users
        self.codes = {name: KeySpace() for name in ("zipcode", "merchant", "device", "country")}
        self.codes["network"] = KeySpace()
        self.reference = reference or IpReference.default()
        self.clock = EventClock(
            self.time.out_of_orderness_ms, self.time.allowed_lateness_ms, self.time.idle_timeout_ms
        )
        self.dedup = Dedup()
        self.states: dict[str, StateTable] = {}
        self.instances: dict[str, _Instance] = {}
        self.last_sweep_ms = -(2**62)
        self.apply_rules(rules or RuleSet.default())

    # --- rules -------------------------------------------------------------------------------

    def apply_rules(self, rules: RuleSet) -> None:
        """Switches to ``rules`` for the next transaction, keeping detector state."""
        enabled = rules.enabled()
        instances: dict[str, _Instance] = {}
        for rule in enabled:
            family = RULE_FAMILY[rule.detector]
            if rule.id == rule.detector:
                name = family.name
                thresholds = thresholds_for(family.rules, rules.enabled())
                existing = instances.get(name)
                if existing is None:
                    instances[name] = _Instance(family(**thresholds), {rule.id: rule.id}, "")
                else:
                    existing.rule_ids[rule.id] = rule.id
            else:
                instances[rule.id] = _Instance(
                    family(**rule.thresholds), {rule.detector: rule.id}, f"{rule.id}."
                )
        for name, instance in instances.items():
            table = self.states.get(name)
            if table is None or table.spec != instance.detector.state_fields:
                self.states[name] = instance.detector.new_state()
        self.instances = instances
        self.rules = rules
        self.scores: dict[str, float] = {r.id: r.score for r in enabled}
        self.rule_by_id: dict[str, Rule] = {r.id: r for r in enabled}

    # --- steps -------------------------------------------------------------------------------

    def submit(self, batch: TxBatch, now_ms: float | None = None) -> StepResult:
        """Takes validated transactions in arrival order; decides what time lets through."""
        now_ms = time.time() * 1000 if now_ms is None else now_ms
        result = StepResult()
        if len(batch) == 0:
            return result
        duplicates = self.dedup.admit(batch.transaction_id.to_pylist())
        if duplicates:
            keep = np.ones(len(batch), dtype=bool)
            keep[duplicates] = False
            result.duplicates = batch.take(np.asarray(duplicates, dtype=np.int64))
            batch = batch.take(np.flatnonzero(keep))
        if self.time.mode == "processing":
            clock_ms = batch.arrival_ms.astype(np.int64)
            result.decisions = self.process(batch, clock_ms, now_ms)
            return result
        released = self.clock.admit(batch)
        result.late = released.late
        if len(released.ready):
            ready = released.ready
            result.decisions = self.process(ready, ready.timestamp_ms, now_ms)
        return result

    def flush(self, now_ms: float | None = None) -> StepResult:
        """End of input, or an idle source: releases every buffered record."""
        now_ms = time.time() * 1000 if now_ms is None else now_ms
        ready = self.clock.flush()
        if len(ready) == 0:
            return StepResult()
        return StepResult(self.process(ready, ready.timestamp_ms, now_ms))

    @property
    def pending(self) -> int:
        """Records waiting for the watermark."""
        return len(self.clock.pending)

    # --- the detectors -------------------------------------------------------------------------

    def detector_input(self, tx: TxBatch, clock_ms: np.ndarray[Any, Any]) -> DetectorInput:
        """Keys and codes for a batch; grows every state table to the keys seen."""
        card = self.cards.slots(tx.card_id)
        user = self.users.slots(tx.user_id)
        codes = self.codes
        profile = self.profiles.table
        profile.ensure(len(self.users))
        for name, table in self.states.items():
            keys = self.users if self.instances[name].detector.key == "user" else self.cards
            table.ensure(len(keys))
        countries, networks = self.reference.lookup(tx.ip)
        home = pa.array(profile["home_country"][user], pa.string())
        expected = pc.coalesce(tx.country, home)
        first = pa.array(profile["first_name"][user], pa.string())
        last = pa.array(profile["last_name"][user], pa.string())
        return DetectorInput(
            time_ms=np.ascontiguousarray(clock_ms, dtype=np.int64),
            event_ms=tx.timestamp_ms,
            amount=tx.amount,
            lat=tx.lat,
            lon=tx.lon,
            card=card,
            user=user,
            zipcode=codes["zipcode"].slots(tx.zipcode),
            merchant=codes["merchant"].slots(tx.merchant_id),
            device=codes["device"].slots(tx.device_id),
            hour=((tx.timestamp_ms // 3_600_000) % 24).astype(np.int8),
            ip_country=codes["country"].slots(countries),
            expected_country=codes["country"].slots(expected),
            anonymous_network=codes["network"].slots(networks),
            max_speed_kmh=profile["max_speed_kmh"][user],
            transaction_id=tx.transaction_id,
            first_name=first,
            last_name=last,
            decode={
                "zipcode": codes["zipcode"].keys,
                "country": codes["country"].keys,
                "network": codes["network"].keys,
            },
        )

    def process(self, tx: TxBatch, clock_ms: np.ndarray[Any, Any], now_ms: float) -> Decisions:
        """Runs released transactions, in processing order, through detectors and decide."""
        n = len(tx)
        inputs = self.detector_input(tx, clock_ms)
        fired: dict[str, np.ndarray[Any, Any]] = {}
        features: dict[str, Any] = {}
        owner: dict[str, _Instance] = {}
        for name, instance in self.instances.items():
            findings = instance.detector.process(self.states[name], inputs)
            for rule_name, mask in findings.fired.items():
                rule_id = instance.rule_ids.get(rule_name)
                if rule_id is not None:
                    fired[rule_id] = mask
                    owner[rule_id] = instance
            for feature, column in findings.features.items():
                features[instance.prefix + feature] = column
        profile = self.profiles.table
        review = profile["review_threshold"][inputs.user]
        decline = profile["decline_threshold"][inputs.user]
        review = np.where(np.isnan(review), self.rules.review_threshold, review)
        decline = np.where(np.isnan(decline), self.rules.decline_threshold, decline)
        score, tier = combine(fired, self.scores, review, decline)
        any_fired = np.zeros(n, dtype=bool)
        for mask in fired.values():
            any_fired |= mask
        rows = np.flatnonzero(any_fired)

        def describe(rule_id: str, row: int) -> str:
            instance = owner[rule_id]
            values = row_values(tx, inputs, features, row, instance.prefix)
            rule_name = next(k for k, v in instance.rule_ids.items() if v == rule_id)
            return instance.detector.message(rule_name, values)

        reasons = explain(rows, fired, self.scores, describe, n)
        self._sweep_timers(int(clock_ms[-1]) if n else None)
        return Decisions(tx, inputs.time_ms, score, tier, fired, reasons, features, now_ms)

    def _sweep_timers(self, latest_ms: int | None) -> None:
        now = self.clock.watermark if self.time.mode == "event" else latest_ms
        if now is None or now - self.last_sweep_ms < TIMER_SWEEP_MS:
            return
        self.last_sweep_ms = now
        for name, instance in self.instances.items():
            keys = self.users if instance.detector.key == "user" else self.cards
            instance.detector.on_time(self.states[name], now, len(keys))


def row_values(
    tx: TxBatch, inputs: DetectorInput, features: dict[str, Any], row: int, prefix: str = ""
) -> dict[str, Any]:
    """One row's transaction fields and features, as plain Python values (for messages)."""
    values: dict[str, Any] = {
        "transaction_id": tx.transaction_id[row].as_py(),
        "amount": float(tx.amount[row]),
        "time_ms": int(inputs.time_ms[row]),
        "event_ms": int(tx.timestamp_ms[row]),
        "zipcode": tx.zipcode[row].as_py(),
        "merchant_id": tx.merchant_id[row].as_py(),
        "device_id": tx.device_id[row].as_py(),
        "ip": tx.ip[row].as_py(),
        "country": tx.country[row].as_py(),
    }
    for name, column in features.items():
        key = name[len(prefix) :] if prefix and name.startswith(prefix) else name
        if prefix and not name.startswith(prefix) and key in values:
            continue
        values[key] = column[row].as_py() if isinstance(column, pa.Array) else column[row].item()
    return values
