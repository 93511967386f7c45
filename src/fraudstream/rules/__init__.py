"""Rules as data: rule sets, the rule language (parse, check, compile, aggregates), lists,
live reload and audit. The names below are the public API (``from fraudstream.rules import
RuleSet``)."""

from fraudstream.rules.audit import AuditLog, RulesFileWatcher
from fraudstream.rules.lists import NamedList
from fraudstream.rules.ruleset import (
    DEFAULT_SCORES,
    FAMILY_NAMES,
    OUTCOMES,
    SEVERITIES,
    Rule,
    RuleSet,
    UserRule,
    replace_rule,
    thresholds_for,
)

__all__ = [
    "DEFAULT_SCORES",
    "FAMILY_NAMES",
    "OUTCOMES",
    "SEVERITIES",
    "AuditLog",
    "NamedList",
    "Rule",
    "RuleSet",
    "RulesFileWatcher",
    "UserRule",
    "replace_rule",
    "thresholds_for",
]
