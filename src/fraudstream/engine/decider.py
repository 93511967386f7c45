"""One rule set deciding over the detectors' findings: live and shadow rules, user rules,
scores, tiers and reasons, under a numbered rule version.

The pipeline runs each detector instance once per micro-batch (:class:`Detected`) and hands
the findings to its :class:`Decider`. A backtest gives the same pipeline a second decider
(another rule set whose detectors agree on their thresholds, :func:`shared_detectors`), so
both rule sets are decided over one decode and one detector pass. A rule in ``mode: shadow``
is evaluated like any other (its detector or aggregates keep their state) but only recorded,
in ``shadow_reasons``: it never adds to the score nor forces a tier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import isnan
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream.decide import Decisions, combine, explain
from fraudstream.detectors import RULE_FAMILY, Detector, DetectorInput
from fraudstream.engine.batch import FEW_ROWS, TxBatch
from fraudstream.engine.messages import BaseValues, RuleTexts
from fraudstream.rules import Rule, RuleSet, thresholds_for
from fraudstream.rules.compile import RuleInput
from fraudstream.rules.user import UserRules

__all__ = ["Decider", "Detected", "DetectorInstance", "detector_instances", "shared_detectors"]

Bools = npt.NDArray[np.bool_]


@dataclass(slots=True)
class DetectorInstance:
    """A detector with its thresholds, and the rule ids its rules report as."""

    detector: Detector[Any]
    rule_ids: dict[str, str]  # the detector's rule name -> the rule id it reports as
    prefix: str  # feature name prefix ("" for standard rules)
    thresholds: dict[str, Any] = field(default_factory=dict)


def detector_instances(rules: RuleSet) -> dict[str, DetectorInstance]:
    """The detector instances ``rules`` runs (live and shadow rules alike), by name: a
    family's name for standard rules (their thresholds merged), ``custom:<id>`` for a second
    rule on a single-rule detector."""
    enabled = rules.enabled()
    instances: dict[str, DetectorInstance] = {}
    for rule in enabled:
        family = RULE_FAMILY[rule.detector]
        if rule.id == rule.detector:
            existing = instances.get(family.name)
            if existing is None:
                thresholds = thresholds_for(family.rules, enabled)
                instances[family.name] = DetectorInstance(
                    family(**thresholds), {rule.id: rule.id}, "", thresholds
                )
            else:
                existing.rule_ids[rule.id] = rule.id
        else:
            instances[f"custom:{rule.id}"] = DetectorInstance(
                family(**rule.thresholds), {rule.detector: rule.id}, f"{rule.id}.", rule.thresholds
            )
    return instances


def shared_detectors(*rule_sets: RuleSet) -> bool:
    """Whether one detector pass serves every rule set: each instance they share has the
    same thresholds in all of them (rules only one of them runs are fine).

    >>> from fraudstream.rules import replace_rule
    >>> rules = RuleSet.default()
    >>> shared_detectors(rules, replace_rule(rules, "velocity", enabled=False, score=0.2))
    True
    >>> shared_detectors(rules, replace_rule(rules, "velocity", thresholds={"window_s": 5}))
    False
    """
    seen: dict[str, dict[str, Any]] = {}
    for rules in rule_sets:
        for name, instance in detector_instances(rules).items():
            if seen.setdefault(name, instance.thresholds) != instance.thresholds:
                return False
    return True


@dataclass(slots=True)
class Detected:
    """The detectors' findings for a batch: fired masks by rule id, features by instance."""

    inputs: DetectorInput
    fired: dict[str, Bools]
    features: dict[str, dict[str, Any]]  # instance name -> prefixed feature -> column
    # (instance, rule name, rule id, the instance's own findings' features)
    found: list[tuple[DetectorInstance, str, str, dict[str, Any]]]
    any_fired: Bools

    def all_features(self) -> dict[str, Any]:
        """Every instance's features in one mapping."""
        merged: dict[str, Any] = {}
        for own in self.features.values():
            merged.update(own)
        return merged


class Decider:
    """A rule set's decisions over detector findings, with its user rules' window state."""

    def __init__(self, rules: RuleSet, version: int, previous: Decider | None = None) -> None:
        self.rules = rules
        self.version = version
        enabled = rules.enabled()
        instances = detector_instances(rules)
        self.instance_names = tuple(instances)  # in this rule set's order
        # Where each rule's finding comes in a pipeline of this rule set alone (its detector
        # instance, then the rule's place in its detector): reasons of equal score keep
        # this order, also when this rule set is another's alternative.
        self.finding_rank = {
            instance.rule_ids[rule_name]: (k, j)
            for k, instance in enumerate(instances.values())
            for j, rule_name in enumerate(instance.detector.rules)
            if rule_name in instance.rule_ids
        }
        self.rule_ids = frozenset(r.id for r in enabled)
        self.shadow = rules.shadow_ids()
        self.scores: dict[str, float] = {r.id: r.score for r in enabled}
        self.rule_by_id: dict[str, Rule] = {r.id: r for r in enabled}
        user = rules.enabled_user_rules()
        # Window state of aggregates the new rules still use carries over.
        kept = previous.user_rules if previous is not None else None
        self.user_rules: UserRules | None = (
            UserRules(user, rules.list_values(), kept) if user else None
        )
        if self.user_rules is not None:
            self.scores.update(self.user_rules.scores)

    def decide(
        self,
        tx: TxBatch,
        detected: Detected,
        profile_reader: Any,
        thresholds: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
        now_ms: float,
        model_stage: Any = None,
        only_own: bool = False,
    ) -> Decisions:
        """Decides the batch; ``only_own``: read only this rule set's detectors (the
        pipeline runs others' too, for another decider)."""
        n = len(tx)
        inputs = detected.inputs
        if only_own:
            fired = {k: v for k, v in detected.fired.items() if k in self.rule_ids}
            features: dict[str, Any] = {}
            for name in self.instance_names:
                features.update(detected.features.get(name, {}))
        else:
            fired = dict(detected.fired)
            features = detected.all_features()
        user = self.user_rules
        outcome = None
        user_found = None
        if user is not None:
            view = RuleInput(
                tx, inputs.time_ms, profile_reader, features, fired,
                {"merchant_id": inputs.merchant, "device_id": inputs.device,
                 "zipcode": inputs.zipcode},
            )  # fmt: skip
            user.step_aggregates(view)
            user_found = user.evaluate(view)
            fired.update(user_found.fired)
            outcome = user_found.outcome
        messages: dict[str, Any] = {}
        if detected.any_fired.any():
            base = BaseValues(tx, inputs.time_ms)
            found = detected.found
            if only_own:  # the shared pipeline's order may be another rule set's
                places = self.finding_rank
                found = sorted(found, key=lambda f: places.get(f[2], (len(places), 0)))
            for instance, rule_name, rule_id, own in found:
                mask = fired.get(rule_id)
                if mask is None:
                    continue
                rows = np.flatnonzero(mask)
                if len(rows):
                    texts = RuleTexts(instance.detector, rule_name, base, own, rows)
                    messages[rule_id] = (rows, texts)
        user_messages = user_found.messages if user_found is not None else {}
        shadow_fired: dict[str, Bools] = {}
        shadow_messages: dict[str, Any] = {}
        if self.shadow:
            for rule_id in self.shadow:
                if rule_id in fired:
                    shadow_fired[rule_id] = fired.pop(rule_id)
                for source in (messages, user_messages):
                    if rule_id in source:
                        shadow_messages[rule_id] = source[rule_id]
            messages = {k: v for k, v in messages.items() if k not in self.shadow}
            user_messages = {k: v for k, v in user_messages.items() if k not in self.shadow}
        review = _or_default(thresholds[0], self.rules.review_threshold)
        decline = _or_default(thresholds[1], self.rules.decline_threshold)
        stage = model_stage
        model = stage.score(tx, inputs, features) if stage is not None else None
        score, tier = combine(fired, self.scores, review, decline, model)
        if outcome is not None:  # a forced outcome beats the score's tier
            tier = np.where(outcome >= 0, outcome, tier).astype(np.int8)
        scores = self.scores if stage is None else stage.explain(tier, fired, messages, self.scores)
        rank = self.scores
        if user is not None:
            messages.update(user_messages)
            scores = {**scores, **user.rank}
            rank = {**rank, **user.rank}
        reasons = explain(messages, scores, n)
        shadow_reasons = explain(shadow_messages, rank, n) if shadow_messages else None
        info = stage.model.info if stage is not None and stage.model is not None else None
        model_id = (info.name, info.version) if info is not None else None
        return Decisions(
            tx, inputs.time_ms, score, tier, fired, reasons, features, now_ms, model_id,
            shadow_fired, shadow_reasons, self.version,
        )  # fmt: skip

    def compact(self, low_ms: int) -> None:
        """Drops user-rule window state no record from ``low_ms`` on can see."""
        if self.user_rules is not None:
            self.user_rules.compact(low_ms)


def _or_default(values: npt.NDArray[np.float64], default: float) -> npt.NDArray[np.float64]:
    """A profile's threshold per row, ``default`` where it has none (NaN)."""
    if len(values) <= FEW_ROWS:  # an authorization's: two NumPy calls cost more
        return np.array([default if isnan(v) else v for v in values.tolist()], dtype=np.float64)
    return np.where(np.isnan(values), default, values)
