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
    check_condition,
    names_of,
    replace_rule,
    thresholds_for,
    with_user_rule,
    without_user_rule,
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
    "check_condition",
    "names_of",
    "replace_rule",
    "thresholds_for",
    "with_user_rule",
    "without_user_rule",
]
