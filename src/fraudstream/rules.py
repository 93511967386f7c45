"""Rules are data: which detectors run, with which thresholds, and what each is worth.

A rules file (YAML or JSON) lists rules by id; the id of a standard rule is its detector's
rule name (``small_then_large``, ``geo_velocity``, ...). Each has ``enabled``, a ``score`` in
[0, 1], a ``severity`` and ``thresholds`` for its detector. Rules left out of the file keep
their defaults, so a file only needs what it changes. A second rule on a single-rule detector
(``id: velocity_burst``, ``detector: velocity``) runs its own instance with its own state.
The ``decision`` section holds the global review and decline thresholds. Editing the file
changes a running pipeline without a restart (:class:`RulesFileWatcher`), and every change is
kept in an audit log (:class:`AuditLog`) with who, when and the before/after.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraudstream.config import ConfigError, load_document
from fraudstream.detectors import FAMILIES, RULE_FAMILY

FAMILY_NAMES = frozenset(family.name for family in FAMILIES)

SEVERITIES = ("low", "medium", "high", "critical")

# Strong signals alert on their own; weak ones (score < review) only together with others.
DEFAULT_SCORES: dict[str, tuple[float, str]] = {
    "small_then_large": (0.9, "high"),
    "geo_velocity": (0.8, "high"),
    "zip_mismatch": (0.7, "high"),
    "amount_anomaly": (0.4, "medium"),
    "velocity": (0.45, "medium"),
    "card_testing": (0.9, "high"),
    "spend_deviation": (0.35, "medium"),
    "unusual_hour": (0.15, "low"),
    "new_device": (0.25, "low"),
    "ip_country_mismatch": (0.3, "low"),
    "anonymous_network": (0.5, "medium"),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: a detector's output with thresholds, a score and a severity."""

    id: str
    detector: str
    enabled: bool = True
    score: float = 0.5
    severity: str = "medium"
    thresholds: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules and the global decision thresholds."""

    rules: tuple[Rule, ...]
    review_threshold: float = 0.5
    decline_threshold: float = 0.9

    @classmethod
    def default(cls) -> RuleSet:
        """Every standard rule with DESIGN.md's thresholds."""
        return cls.from_document({})

    @classmethod
    def load(cls, path: Path) -> RuleSet:
        """A rules file; raises ConfigError with the file and the rule named."""
        document = load_document(path) or {}  # its errors already name the file
        try:
            return cls.from_document(document)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_document(cls, document: Any) -> RuleSet:
        """Rules from a parsed document (``rules:`` list and ``decision:`` mapping)."""
        if not isinstance(document, dict):
            raise ConfigError("expected a mapping with 'rules' and 'decision'")
        unknown = set(document) - {"rules", "decision"}
        if unknown:
            raise ConfigError(f"unknown section(s) {sorted(unknown)}; known: rules, decision")
        given = document.get("rules") or []
        if not isinstance(given, list):
            raise ConfigError("'rules' must be a list")
        by_id: dict[str, Rule] = {
            rule_id: Rule(rule_id, rule_id, True, score, severity)
            for rule_id, (score, severity) in DEFAULT_SCORES.items()
        }
        for position, raw in enumerate(given, 1):
            rule = _parse_rule(raw, position, by_id)
            by_id[rule.id] = rule
        decision = document.get("decision") or {}
        if not isinstance(decision, dict):
            raise ConfigError("'decision' must be a mapping")
        review = _unit(decision.get("review_threshold", 0.5), "decision.review_threshold")
        decline = _unit(decision.get("decline_threshold", 0.9), "decision.decline_threshold")
        if review > decline:
            raise ConfigError("decision.review_threshold must be <= decline_threshold")
        return cls(tuple(by_id.values()), review, decline)

    def enabled(self) -> list[Rule]:
        """The rules that run."""
        return [r for r in self.rules if r.enabled]

    def get(self, rule_id: str) -> Rule | None:
        """A rule by id."""
        return next((r for r in self.rules if r.id == rule_id), None)

    def to_document(self) -> dict[str, Any]:
        """The rule set as a rules-file document (round-trips through from_document)."""
        return {
            "decision": {
                "review_threshold": self.review_threshold,
                "decline_threshold": self.decline_threshold,
            },
            "rules": [
                {
                    "id": r.id,
                    "detector": r.detector,
                    "enabled": r.enabled,
                    "score": r.score,
                    "severity": r.severity,
                    "thresholds": dict(r.thresholds),
                    **({"description": r.description} if r.description else {}),
                }
                for r in self.rules
            ],
        }


def _unit(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number in [0, 1], got {value!r}") from None
    if not (math.isfinite(number) and 0 <= number <= 1):
        raise ConfigError(f"{where} must be a number in [0, 1], got {value!r}")
    return number


def _parse_rule(raw: Any, position: int, known: dict[str, Rule]) -> Rule:
    if not isinstance(raw, dict) or "id" not in raw:
        raise ConfigError(f"rule {position}: must be a mapping with an 'id'")
    rule_id = str(raw["id"])
    where = f"rule '{rule_id}'"
    allowed = {"id", "detector", "enabled", "score", "severity", "thresholds", "description"}
    extra = set(raw) - allowed
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}; known: {sorted(allowed)}")
    base = known.get(rule_id)
    detector = str(raw.get("detector", base.detector if base else rule_id))
    family = RULE_FAMILY.get(detector)
    if family is None:
        raise ConfigError(
            f"{where}: unknown detector '{detector}'; known: {', '.join(sorted(RULE_FAMILY))}"
        )
    if rule_id != detector and (rule_id in RULE_FAMILY or rule_id in FAMILY_NAMES):
        raise ConfigError(
            f"{where}: '{rule_id}' is a standard rule or detector name; pick another id"
        )
    if rule_id != detector and len(family.rules) > 1:
        raise ConfigError(f"{where}: '{detector}' shares state with {family.rules}; use its id")
    enabled = raw.get("enabled", base.enabled if base else True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: enabled must be true or false, got {enabled!r}")
    score = _unit(raw.get("score", base.score if base else 0.5), f"{where}: score")
    severity = str(raw.get("severity", base.severity if base else "medium"))
    if severity not in SEVERITIES:
        raise ConfigError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
    thresholds = raw.get("thresholds") or {}
    if not isinstance(thresholds, dict):
        raise ConfigError(f"{where}: thresholds must be a mapping")
    names = family.rule_thresholds.get(detector, ())
    for name, value in thresholds.items():
        if name not in names:
            raise ConfigError(
                f"{where}: unknown threshold '{name}'; known: {', '.join(names) or 'none'}"
            )
        default = getattr(family.thresholds_type(), name)
        if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
            value, int | float | bool
        ):
            raise ConfigError(f"{where}: threshold {name} must be like {default!r}, got {value!r}")
    try:
        family(**thresholds)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    description = str(raw.get("description", base.description if base else ""))
    return Rule(rule_id, detector, enabled, score, severity, dict(thresholds), description)


def thresholds_for(family_rules: tuple[str, ...], rules: list[Rule]) -> dict[str, Any]:
    """The merged thresholds of a shared-state family's standard rules."""
    merged: dict[str, Any] = {}
    for rule in rules:
        if rule.id in family_rules:
            merged.update(rule.thresholds)
    return merged


def replace_rule(rules: RuleSet, rule_id: str, **changes: Any) -> RuleSet:
    """A copy of ``rules`` with one rule changed (validated like a file entry)."""
    current = rules.get(rule_id)
    if current is None:
        raise ConfigError(f"no rule '{rule_id}'")
    merged = dataclasses.asdict(current) | changes
    document = rules.to_document()
    document["rules"] = [merged if r["id"] == rule_id else r for r in document["rules"]]
    return RuleSet.from_document(document)


class AuditLog:
    """Every change of the running rules: who, when, from where, and the before/after.

    One JSON object per line, appended and flushed at once, so the log survives a crash.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(
        self, who: str, source: str, before: RuleSet, after: RuleSet | None, note: str = ""
    ) -> None:
        """Appends one change (``after`` None: a change that was refused, with ``note``)."""
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "who": who,
            "source": source,
            "before": before.to_document(),
            "after": after.to_document() if after is not None else None,
            "note": note,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


class RulesFileWatcher:
    """Reloads a rules file when it changes, for a running pipeline (no restart).

    ``poll()`` is cheap (one ``stat``); call it between micro-batches. A file that no longer
    parses keeps the rules that run and is logged as refused, with the reason.
    """

    def __init__(
        self,
        path: Path,
        apply: Callable[[RuleSet], None],
        current: RuleSet,
        audit: AuditLog | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.apply = apply
        self.current = current
        self.audit = audit
        self.on_error = on_error
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def poll(self) -> bool:
        """Applies the file if it changed since last time; True when new rules now run."""
        stamp = self._stamp()
        if stamp == self._seen or stamp is None:
            return False
        self._seen = stamp
        who = f"file:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'unknown'}"
        try:
            rules = RuleSet.load(self.path)
        except ConfigError as exc:
            if self.audit is not None:
                self.audit.record(who, str(self.path), self.current, None, f"refused: {exc}")
            if self.on_error is not None:
                self.on_error(f"rules not reloaded: {exc}")
            return False
        if rules == self.current:
            return False
        before, self.current = self.current, rules
        self.apply(rules)
        if self.audit is not None:
            self.audit.record(who, str(self.path), before, rules)
        return True
