"""A rule set as a person reads it, and what changed between two of them.

:func:`effective_rules` is every rule with all its thresholds (defaults filled in), its
mode and a description (the standard rules have one of their own); :func:`rule_changes`
lists each value that differs between two rule sets, ``"small_then_large.large_amount:
500.0 -> 100.0"``, the diff an audit entry and a rule version show.
"""

from __future__ import annotations

from typing import Any

from fraudstream.detectors import RULE_FAMILY
from fraudstream.rules.ruleset import RuleSet

__all__ = ["STANDARD_DESCRIPTIONS", "changes_between", "effective_rules", "rule_changes"]

# What each standard rule looks for (README's table, one line each).
STANDARD_DESCRIPTIONS = {
    "small_then_large": "an amount under small_amount, then the card's next one above "
    "large_amount within window_s",
    "geo_velocity": "two transactions of a card too far apart for the time between them "
    "(faster than the profile's max speed)",
    "zip_mismatch": "a different zip code less than window_s after the card's last one",
    "amount_anomaly": "an amount above multiplier x the card's running average",
    "velocity": "min_transactions of one card within window_s",
    "card_testing": "several small amounts at distinct merchants within window_s",
    "spend_deviation": "an amount far above the card's own mean (z_threshold standard "
    "deviations and min_excess)",
    "unusual_hour": "a UTC hour the card never used before",
    "new_device": "a device not among the card's recent ones",
    "ip_country_mismatch": "the IP's country differs from the transaction's (or the home) country",
    "anonymous_network": "the IP is in a listed anonymous network (tor, vpn, proxy, hosting)",
}


def effective_rules(rules: RuleSet) -> dict[str, Any]:
    """The rule set as shown: every rule with all its thresholds (defaults filled in).

    >>> shown = effective_rules(RuleSet.default())
    >>> rule = shown["rules"][0]
    >>> rule["id"], rule["thresholds"]["large_amount"], rule["mode"]
    ('small_then_large', 500.0, 'live')
    """
    shown = []
    for rule in rules.rules:
        family = RULE_FAMILY[rule.detector]
        defaults = family.thresholds_type()
        names = family.rule_thresholds.get(rule.detector, ())
        default_values = {name: getattr(defaults, name) for name in names}
        shown.append(
            {
                "id": rule.id,
                "detector": rule.detector,
                "enabled": rule.enabled,
                "mode": rule.mode,
                "score": rule.score,
                "severity": rule.severity,
                "description": rule.description or STANDARD_DESCRIPTIONS.get(rule.detector, ""),
                "thresholds": default_values | dict(rule.thresholds),
                "defaults": default_values,
            }
        )
    return {
        "decision": {
            "review_threshold": rules.review_threshold,
            "decline_threshold": rules.decline_threshold,
        },
        "rules": shown,
        "user_rules": [
            {
                "id": rule.id,
                "when": rule.when,
                "score": rule.score,
                "outcome": rule.outcome,
                "enabled": rule.enabled,
                "mode": rule.mode,
                "severity": rule.severity,
                "description": rule.description,
            }
            for rule in rules.user_rules
        ],
    }


def _flat(rules: dict[str, Any]) -> dict[str, Any]:
    out = {f"decision.{k}": v for k, v in rules["decision"].items()}
    for rule in rules["rules"]:
        for name in ("enabled", "mode", "score", "severity"):
            out[f"{rule['id']}.{name}"] = rule.get(name)
        for name, value in rule["thresholds"].items():
            out[f"{rule['id']}.{name}"] = value
    for rule in rules.get("user_rules", ()):
        for name in ("when", "score", "outcome", "enabled", "mode", "severity", "description"):
            out[f"{rule['id']}.{name}"] = rule.get(name)
    return out


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``"small_then_large.large_amount: 500.0 -> 100.0"`` for each value that changed
    between two :func:`effective_rules` views."""
    old, new = _flat(before), _flat(after)
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def rule_changes(before: RuleSet, after: RuleSet) -> list[str]:
    """What changed from ``before`` to ``after``, one line per value.

    >>> from fraudstream.rules.ruleset import replace_rule
    >>> rules = RuleSet.default()
    >>> rule_changes(rules, replace_rule(rules, "velocity", mode="shadow"))
    ["velocity.mode: 'live' -> 'shadow'"]
    """
    return changes_between(effective_rules(before), effective_rules(after))
