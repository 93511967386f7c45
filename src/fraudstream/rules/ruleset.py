"""Rules are data: which detectors run, with which thresholds, and what each is worth.

A rules file (YAML or JSON) lists rules by id; the id of a standard rule is its detector's
rule name (``small_then_large``, ``geo_velocity``, ...). Each has ``enabled``, a ``score`` in
[0, 1], a ``severity`` and ``thresholds`` for its detector. Rules left out of the file keep
their defaults, so a file only needs what it changes. A second rule on a single-rule detector
(``id: velocity_burst``, ``detector: velocity``) runs its own instance with its own state.
The ``decision`` section holds the global review and decline thresholds. Editing the file
changes a running pipeline without a restart (:class:`~.audit.RulesFileWatcher`), and every
change is kept in an audit log (:class:`~.audit.AuditLog`) with who, when and the before/after.

A rule with ``when:`` is a user rule (:class:`UserRule`): an expression of the rule language
(:mod:`.parse`, :mod:`.check`) that adds its ``score`` to the noisy-or and/or forces an
``outcome``; ``lists:`` holds the named lists its expressions test (:mod:`.lists`). Its
expression is parsed and checked when the file is read, so a bad one is refused with the rule
id and the column.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudstream.config import ConfigError, load_document
from fraudstream.detectors import FAMILIES, RULE_FAMILY
from fraudstream.rules.check import Names, RuleTypeError, check
from fraudstream.rules.lists import NamedList, load_lists
from fraudstream.rules.parse import Node, RuleSyntaxError, parse

FAMILY_NAMES = frozenset(family.name for family in FAMILIES)

SEVERITIES = ("low", "medium", "high", "critical")
OUTCOMES = ("decline", "review", "approve")
# ``shadow``: evaluated with its own state and recorded (``shadow_reasons``), never scored.
MODES = ("live", "shadow")

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
    mode: str = "live"


@dataclass(frozen=True, slots=True)
class UserRule:
    """A rule a fraud team writes: ``when`` an expression holds, add ``score`` and/or force
    ``outcome`` (``decline`` beats ``approve`` beats ``review`` beats the score)."""

    id: str
    when: str
    score: float | None = None
    outcome: str | None = None
    enabled: bool = True
    severity: str = "medium"
    description: str = ""
    tree: Node | None = field(default=None, compare=False, repr=False)  # checked `when`
    mode: str = "live"

    def to_document(self) -> dict[str, Any]:
        """Its entry in a rules file."""
        entry: dict[str, Any] = {"id": self.id, "when": self.when, "enabled": self.enabled}
        if self.score is not None:
            entry["score"] = self.score
        if self.outcome is not None:
            entry["outcome"] = self.outcome
        entry["severity"] = self.severity
        if self.description:
            entry["description"] = self.description
        if self.mode != "live":
            entry["mode"] = self.mode
        return entry


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules, the global decision thresholds, the user rules and their lists."""

    rules: tuple[Rule, ...]
    review_threshold: float = 0.5
    decline_threshold: float = 0.9
    user_rules: tuple[UserRule, ...] = ()
    lists: tuple[NamedList, ...] = ()

    @classmethod
    def default(cls) -> RuleSet:
        """Every standard rule with DESIGN.md's thresholds."""
        return cls.from_document({})

    @classmethod
    def load(cls, path: Path) -> RuleSet:
        """A rules file; raises ConfigError with the file and the rule named."""
        document = load_document(path) or {}  # its errors already name the file
        try:
            return cls.from_document(document, base=path.parent)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_document(cls, document: Any, base: Path | None = None) -> RuleSet:
        """Rules from a parsed document (``rules:`` list, ``decision:`` and ``lists:``
        mappings); ``base`` is where relative list files are (the rules file's folder)."""
        if not isinstance(document, dict):
            raise ConfigError("expected a mapping with 'rules' and 'decision'")
        unknown = set(document) - {"rules", "decision", "lists"}
        if unknown:
            raise ConfigError(
                f"unknown section(s) {sorted(unknown)}; known: rules, decision, lists"
            )
        lists = load_lists(document.get("lists"), base)
        given = document.get("rules") or []
        if not isinstance(given, list):
            raise ConfigError("'rules' must be a list")
        by_id: dict[str, Rule] = {
            rule_id: Rule(rule_id, rule_id, True, score, severity)
            for rule_id, (score, severity) in DEFAULT_SCORES.items()
        }
        user_entries: list[tuple[int, Any]] = []
        for position, raw in enumerate(given, 1):
            if isinstance(raw, dict) and "when" in raw:
                user_entries.append((position, raw))
                continue
            rule = _parse_rule(raw, position, by_id)
            by_id[rule.id] = rule
        names = Names(frozenset(x.name for x in lists), frozenset(by_id))
        user_rules: dict[str, UserRule] = {}
        for position, raw in user_entries:
            user = _parse_user_rule(raw, position, names)
            if user.id in user_rules:
                raise ConfigError(f"rule '{user.id}': a second rule with this id")
            user_rules[user.id] = user
        decision = document.get("decision") or {}
        if not isinstance(decision, dict):
            raise ConfigError("'decision' must be a mapping")
        review = _unit(decision.get("review_threshold", 0.5), "decision.review_threshold")
        decline = _unit(decision.get("decline_threshold", 0.9), "decision.decline_threshold")
        if review > decline:
            raise ConfigError("decision.review_threshold must be <= decline_threshold")
        return cls(tuple(by_id.values()), review, decline, tuple(user_rules.values()), lists)

    def enabled(self) -> list[Rule]:
        """The rules that run."""
        return [r for r in self.rules if r.enabled]

    def get(self, rule_id: str) -> Rule | None:
        """A rule by id."""
        return next((r for r in self.rules if r.id == rule_id), None)

    def shadow_ids(self) -> frozenset[str]:
        """The ids of the enabled rules (standard and user) that run in shadow."""
        every: list[Rule | UserRule] = [*self.enabled(), *self.enabled_user_rules()]
        return frozenset(r.id for r in every if r.mode == "shadow")

    def enabled_user_rules(self) -> list[UserRule]:
        """The user rules that run."""
        return [r for r in self.user_rules if r.enabled]

    def list_values(self) -> dict[str, tuple[str, ...]]:
        """Each named list's values."""
        return {x.name: x.values for x in self.lists}

    def to_document(self) -> dict[str, Any]:
        """The rule set as a rules-file document (round-trips through from_document)."""
        document = self._standard_document()
        if self.user_rules:
            document["rules"] += [r.to_document() for r in self.user_rules]
        if self.lists:
            document["lists"] = {x.name: x.to_document() for x in self.lists}
        return document

    def _standard_document(self) -> dict[str, Any]:
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
                    **({"mode": r.mode} if r.mode != "live" else {}),
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


def _did_you_mean(name: str, names: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``names``, or nothing.

    >>> _did_you_mean("velocty_burst", ["velocity_burst", "new_device"])
    " (did you mean 'velocity_burst'?)"
    """
    close = difflib.get_close_matches(name, sorted(set(names)), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _parse_rule(raw: Any, position: int, known: dict[str, Rule]) -> Rule:
    if not isinstance(raw, dict) or "id" not in raw:
        raise ConfigError(f"rule {position}: must be a mapping with an 'id'")
    rule_id = str(raw["id"])
    where = f"rule '{rule_id}'"
    allowed = {"id", "detector", "enabled", "score", "severity", "thresholds", "description"}
    allowed |= {"mode"}
    extra = set(raw) - allowed
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}; known: {sorted(allowed)}")
    base = known.get(rule_id)
    detector = str(raw.get("detector", base.detector if base else rule_id))
    family = RULE_FAMILY.get(detector)
    if family is None and "detector" not in raw:  # a misspelt rule id, most likely
        guess = _did_you_mean(rule_id, [*known, *RULE_FAMILY])
        raise ConfigError(
            f"{where}: no such rule{guess}; a new rule names its detector (detector: one of "
            f"{', '.join(sorted(RULE_FAMILY))})"
        )
    if family is None:
        guess = _did_you_mean(detector, list(RULE_FAMILY))
        raise ConfigError(
            f"{where}: unknown detector '{detector}'{guess}; known: "
            f"{', '.join(sorted(RULE_FAMILY))}"
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
    mode = _mode(raw.get("mode", base.mode if base else "live"), where)
    return Rule(rule_id, detector, enabled, score, severity, dict(thresholds), description, mode)


def _mode(value: Any, where: str) -> str:
    if value not in MODES:
        raise ConfigError(f"{where}: mode must be one of {', '.join(MODES)}, got {value!r}")
    return str(value)


def _parse_user_rule(raw: dict[str, Any], position: int, names: Names) -> UserRule:
    rule_id = str(raw.get("id", ""))
    if not rule_id:
        raise ConfigError(f"rule {position}: a rule with 'when' needs an 'id'")
    where = f"rule '{rule_id}'"
    allowed = {"id", "when", "score", "outcome", "enabled", "severity", "description", "mode"}
    extra = set(raw) - allowed
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}; known: {sorted(allowed)}")
    if rule_id in names.rules or rule_id in FAMILY_NAMES:
        raise ConfigError(f"{where}: '{rule_id}' is a standard rule or detector name")
    when = raw["when"]
    if not isinstance(when, str) or not when.strip():
        raise ConfigError(f"{where}: 'when' must be an expression text")
    try:
        tree = check_condition(when, names)
    except (RuleSyntaxError, RuleTypeError) as exc:
        raise ConfigError(f"{where}: when {exc}") from None
    score = _unit(raw["score"], f"{where}: score") if raw.get("score") is not None else None
    outcome = raw.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise ConfigError(f"{where}: outcome must be one of {', '.join(OUTCOMES)}")
    if score is None and outcome is None:
        raise ConfigError(f"{where}: give a score, an outcome or both")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: enabled must be true or false, got {enabled!r}")
    severity = str(raw.get("severity", "medium"))
    if severity not in SEVERITIES:
        raise ConfigError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
    description = str(raw.get("description", ""))
    mode = _mode(raw.get("mode", "live"), where)
    return UserRule(
        rule_id, when.strip(), score, outcome, enabled, severity, description, tree, mode
    )


def check_condition(when: str, names: Names) -> Node:
    """The checked tree of a ``when`` expression; raises :class:`RuleSyntaxError` or
    :class:`RuleTypeError` (both with ``column``, 1-based) when it is not a condition.

    >>> names = Names(frozenset(), frozenset())
    >>> check_condition("amount > 1000", names).column
    1
    >>> check_condition("amount + 1", names)
    Traceback (most recent call last):
    fraudstream.rules.check.RuleTypeError: column 1: is a number, not a condition: amount + 1
    """
    tree = parse(when)
    kind = check(tree, names)
    if kind != "bool":
        raise RuleTypeError(1, f"is a {kind}, not a condition: {when.strip()}")
    return tree


def names_of(rules: RuleSet) -> Names:
    """What a ``when`` expression of ``rules`` may name: its lists and standard rule ids."""
    return Names(frozenset(x.name for x in rules.lists), frozenset(r.id for r in rules.rules))


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


def with_user_rule(rules: RuleSet, entry: dict[str, Any]) -> RuleSet:
    """A copy of ``rules`` with the user rule ``entry`` (a rules-file entry with ``when``)
    replacing the one of its id, or added last; validated like a file entry."""
    document = rules.to_document()
    entries = document["rules"]
    at = next((i for i, r in enumerate(entries) if r["id"] == entry["id"] and "when" in r), None)
    if at is None:
        entries.append(entry)
    else:
        entries[at] = entry
    return RuleSet.from_document(document)


def without_user_rule(rules: RuleSet, rule_id: str) -> RuleSet:
    """A copy of ``rules`` without the user rule ``rule_id``."""
    if not any(r.id == rule_id for r in rules.user_rules):
        raise ConfigError(f"no user rule '{rule_id}'")
    return dataclasses.replace(
        rules, user_rules=tuple(r for r in rules.user_rules if r.id != rule_id)
    )
