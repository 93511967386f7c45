"""The rule language's types: what a name means and whether an expression makes sense.

Every value is a ``number``, a ``text`` or a ``bool``; numbers and texts may be null (a
missing field, a user without profile, a first transaction without a previous one), bools
never are: a comparison, ``in``, ``startswith`` with a null operand is false. Checking walks
the tree once and refuses, with the column, an unknown field, function or list, an operator
applied to the wrong type, or a rule whose ``when`` is not a bool.

>>> from fraudstream.rules.parse import parse
>>> check(parse("amount > 1000 and hour < 6"), Names(lists=frozenset(), rules=frozenset()))
'bool'
>>> check(parse("amount + device_id"), Names(lists=frozenset(), rules=frozenset()))
Traceback (most recent call last):
...
fraudstream.rules.check.RuleTypeError: column 1: + needs numbers, got number and text
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fraudstream.rules.parse import (
    Aggregate,
    Arith,
    BoolOp,
    Call,
    Compare,
    Const,
    Field,
    Fired,
    InList,
    IsNull,
    Node,
    Not,
    StartsWith,
)

__all__ = [
    "AGGREGATE_FIELDS",
    "FEATURES",
    "KEY_FIELDS",
    "PROFILE_FIELDS",
    "TX_FIELDS",
    "Names",
    "RuleTypeError",
    "Type",
    "check",
    "field_type",
]

Type = Literal["number", "text", "bool"]

# Transaction fields (DESIGN.md's contract) and `hour`, the UTC hour of the event time.
TX_FIELDS: dict[str, Type] = {
    "transaction_id": "text", "card_id": "text", "user_id": "text", "timestamp": "number",
    "amount": "number", "currency": "text", "lat": "number", "lon": "number",
    "zipcode": "text", "merchant_id": "text", "merchant_category": "text", "country": "text",
    "channel": "text", "device_id": "text", "ip": "text", "hour": "number",
}  # fmt: skip
PROFILE_FIELDS: dict[str, Type] = {
    "first_name": "text", "last_name": "text", "home_country": "text",
    "max_speed_kmh": "number", "home_lat": "number", "home_lon": "number",
    "review_threshold": "number", "decline_threshold": "number",
}  # fmt: skip
# The standard detectors' features (Decisions.features); null where the detector is off.
FEATURES: dict[str, Type] = {
    "small_amount": "number", "seconds_since_small": "number",
    "previous_transaction_id": "text", "previous_timestamp": "number",
    "previous_lat": "number", "previous_lon": "number", "distance_km": "number",
    "speed_kmh": "number", "max_speed_kmh": "number", "first_name": "text",
    "last_name": "text", "last_zipcode": "text", "seconds_since_last": "number",
    "running_average": "number", "amount_ratio": "number",
    "transactions_in_window": "number", "small_transactions": "number",
    "distinct_merchants": "number", "mean_amount": "number", "std_amount": "number",
    "amount_zscore": "number", "hour_utc": "number", "hours_seen": "number",
    "known_devices": "number", "ip_country": "text", "expected_country": "text",
    "network": "text",
}  # fmt: skip
KEY_FIELDS = frozenset(TX_FIELDS)  # by= takes any transaction field
AGGREGATE_FIELDS = frozenset(n for n, t in TX_FIELDS.items() if t == "number")


class RuleTypeError(ValueError):
    """An expression that parses but does not make sense; ``column`` is 1-based."""

    def __init__(self, column: int, message: str) -> None:
        super().__init__(f"column {column}: {message}")
        self.column = column


@dataclass(frozen=True, slots=True)
class Names:
    """The names a rule may use besides fields: its rule set's lists and standard rules."""

    lists: frozenset[str]
    rules: frozenset[str]


def field_type(name: str) -> Type | None:
    """The type of a field name, None when unknown.

    >>> field_type("amount"), field_type("profile.home_country"), field_type("speed_kmh")
    ('number', 'text', 'number')
    """
    if name.startswith("profile."):
        return PROFILE_FIELDS.get(name.removeprefix("profile."))
    return TX_FIELDS.get(name) or FEATURES.get(name)


def check(node: Node, names: Names) -> Type:
    """The type of ``node``; raises :class:`RuleTypeError` naming the column."""
    if isinstance(node, Const):
        if node.value is None:
            raise RuleTypeError(node.column, "null only appears in 'is null' / 'is not null'")
        if isinstance(node.value, bool):
            return "bool"
        return "number" if isinstance(node.value, float) else "text"
    if isinstance(node, Field):
        found = field_type(node.name)
        if found is None:
            raise RuleTypeError(node.column, f"unknown field '{node.name}'")
        return found
    if isinstance(node, Arith):
        left = check(node.left, names)
        right = check(node.right, names) if node.right is not None else "number"
        if left != "number" or right != "number":
            op = "-" if node.op == "neg" else node.op
            got = left if node.right is None else f"{left} and {right}"
            raise RuleTypeError(node.column, f"{op} needs numbers, got {got}")
        return "number"
    if isinstance(node, Compare):
        left, right = check(node.left, names), check(node.right, names)
        if left != right:
            raise RuleTypeError(node.column, f"cannot compare {left} with {right}: {node.text}")
        if left == "bool" and node.op not in ("==", "!="):
            raise RuleTypeError(node.column, f"{node.op} does not order bools")
        return "bool"
    if isinstance(node, BoolOp):
        for item in node.items:
            if check(item, names) != "bool":
                raise RuleTypeError(item.column, f"'{node.op}' needs conditions: {item.text}")
        return "bool"
    if isinstance(node, Not):
        if check(node.operand, names) != "bool":
            raise RuleTypeError(node.column, f"'not' needs a condition: {node.operand.text}")
        return "bool"
    if isinstance(node, InList):
        operand = check(node.operand, names)
        if operand == "bool":
            raise RuleTypeError(node.column, "'in' tests a number or a text")
        if node.list_name is not None:
            if node.list_name not in names.lists:
                known = ", ".join(sorted(names.lists)) or "none"
                raise RuleTypeError(
                    node.column, f"unknown list '{node.list_name}' (lists: {known})"
                )
        else:
            for value in node.values:
                kind = "number" if isinstance(value, float) else "text"
                if kind != operand:
                    raise RuleTypeError(node.column, f"a {operand} tested against a {kind} list")
        return "bool"
    if isinstance(node, IsNull):
        check(node.operand, names)
        return "bool"
    if isinstance(node, StartsWith):
        if check(node.operand, names) != "text":
            raise RuleTypeError(node.column, f"startswith needs a text: {node.operand.text}")
        return "bool"
    if isinstance(node, Call):
        for arg in node.args:
            if check(arg, names) != "number":
                raise RuleTypeError(arg.column, f"{node.function}() needs numbers: {arg.text}")
        return "number"
    if isinstance(node, Fired):
        if node.rule not in names.rules:
            raise RuleTypeError(node.column, f"fired('{node.rule}'): no standard rule of that id")
        return "bool"
    if isinstance(node, Aggregate):
        columns = list(node.columns) or [node.column] * (len(node.by) + 1)
        if node.field is not None:
            allowed = KEY_FIELDS if node.kind == "distinct_count" else AGGREGATE_FIELDS
            if node.field not in allowed:
                what = "transaction" if node.kind == "distinct_count" else "numeric transaction"
                raise RuleTypeError(
                    columns[0], f"{node.kind}() takes a {what} field, not '{node.field}'"
                )
            columns = columns[1:]
        for key, column in zip(node.by, columns, strict=False):
            if key not in KEY_FIELDS:
                known = "unknown field" if field_type(key) is None else "not a transaction field"
                raise RuleTypeError(column, f"by= takes transaction fields: {known} '{key}'")
        return "number"
    raise RuleTypeError(node.column, f"not part of the rule language: {node.text}")
