"""The rule language's grammar: a ``when:`` expression text -> a small tree, never ``eval``.

Python's own parser reads the text (``ast.parse(mode="eval")``), and only a short whitelist
of its node kinds is turned into this module's nodes; anything else (attribute access other
than ``profile.<name>`` and ``.startswith``, subscripts, lambdas, comprehensions, calls of
unknown functions...) is refused with its position. The grammar, in Python spelling:

- literals: numbers, ``'text'``, ``true``/``false`` (or ``True``/``False``), ``null``
- fields: ``amount``, ``device_id``, ``hour``, ``profile.max_speed_kmh``, ``speed_kmh``, ...
- arithmetic ``+ - * / %``, unary ``-``; comparisons ``== != < <= > >=`` (chains allowed);
  ``and``, ``or``, ``not``
- ``x in list('name')``, ``x in ['a', 'b']``, ``not in``; ``x is null``, ``x is not null``
- ``x.startswith('m-')`` (or ``startswith(x, 'm-')``); ``abs(x)``, ``min(x, y, ...)``,
  ``max(x, y, ...)``, ``log(x)``; ``fired('geo_velocity')``
- aggregates ``count(by=K, over=W)``, ``sum|avg|min|max(field, by=K, over=W)``,
  ``distinct_count(field, by=K, over=W)``: ``K`` a field or a tuple ``(f1, f2)`` of fields,
  ``W`` a window text like ``'30s'``, ``'15min'``, ``'1h'``, ``'7d'``.

Errors are :class:`RuleSyntaxError` with the 1-based column of the offending part.

>>> tree = parse("amount > 1000 and device_id in list('blocked')")
>>> type(tree).__name__, [type(item).__name__ for item in tree.items]
('BoolOp', ['Compare', 'InList'])
>>> parse("count(by=(card_id, ip), over='1h')").by
('card_id', 'ip')
>>> parse("amount > 5 and device_id[0] == 'd'")
Traceback (most recent call last):
...
fraudstream.rules.parse.RuleSyntaxError: column 16: not part of the rule language: device_id[0]
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

__all__ = [
    "AGGREGATES",
    "Aggregate",
    "Arith",
    "BoolOp",
    "Call",
    "Compare",
    "Const",
    "Field",
    "Fired",
    "InList",
    "IsNull",
    "Node",
    "Not",
    "RuleSyntaxError",
    "StartsWith",
    "parse",
    "parse_window",
]

MAX_LENGTH = 4_000  # characters of one expression
MAX_DEPTH = 64  # nesting of one expression (its evaluation recurses that deep)
AGGREGATES = ("count", "sum", "avg", "min", "max", "distinct_count")
FUNCTIONS = ("abs", "min", "max", "log")
_UNITS_MS = {"ms": 1, "s": 1_000, "min": 60_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)\s*$")


class RuleSyntaxError(ValueError):
    """An expression that is not in the language; ``column`` is 1-based."""

    def __init__(self, column: int, message: str) -> None:
        super().__init__(f"column {column}: {message}")
        self.column = column
        self.reason = message


@dataclass(frozen=True, slots=True)
class Node:
    """Every node knows its 1-based column and its source text."""

    column: int
    text: str


@dataclass(frozen=True, slots=True)
class Const(Node):
    value: float | str | bool | None


@dataclass(frozen=True, slots=True)
class Field(Node):
    name: str  # "amount", "profile.max_speed_kmh", "speed_kmh"


@dataclass(frozen=True, slots=True)
class Arith(Node):
    op: str  # + - * / % and "neg"
    left: Node
    right: Node | None


@dataclass(frozen=True, slots=True)
class Compare(Node):
    op: str  # == != < <= > >=
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class BoolOp(Node):
    op: str  # and | or
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True, slots=True)
class InList(Node):
    operand: Node
    list_name: str | None  # in list('name')
    values: tuple[float | str, ...]  # in [..]
    negated: bool


@dataclass(frozen=True, slots=True)
class IsNull(Node):
    operand: Node
    negated: bool


@dataclass(frozen=True, slots=True)
class StartsWith(Node):
    operand: Node
    prefix: str


@dataclass(frozen=True, slots=True)
class Call(Node):
    function: str  # abs | min | max | log
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Fired(Node):
    rule: str


@dataclass(frozen=True, slots=True)
class Aggregate(Node):
    kind: str  # count | sum | avg | min | max | distinct_count
    field: str | None  # None for count
    by: tuple[str, ...]
    over_ms: int
    over_text: str
    columns: tuple[int, ...] = ()  # of the aggregated field (if any), then of each key field


def parse_window(text: str) -> int:
    """A window text in milliseconds.

    >>> parse_window("1h"), parse_window("15min"), parse_window("1.5s")
    (3600000, 900000, 1500)
    """
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(f"bad window {text!r}; write e.g. '30s', '15min', '1h', '7d'")
    ms = round(float(match.group(1)) * _UNITS_MS[match.group(2)])
    if ms <= 0:
        raise ValueError(f"bad window {text!r}: must be > 0")
    return ms


_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}
_NAMED_CONSTANTS: dict[str, bool | None] = {"true": True, "false": False, "null": None}


def parse(source: str) -> Node:
    """The tree of an expression; raises :class:`RuleSyntaxError` with the column."""
    if "\n" in source.strip():
        raise RuleSyntaxError(1, "an expression is one line")
    if len(source.strip()) > MAX_LENGTH:
        raise RuleSyntaxError(MAX_LENGTH + 1, f"an expression is at most {MAX_LENGTH} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
        return _Converter(source.strip()).node(tree.body)
    except SyntaxError as exc:
        if not exc.offset:  # Python gives no offset when the text ends too early
            raise RuleSyntaxError(len(source.strip()) + 1, "the expression ends early") from None
        raise RuleSyntaxError(exc.offset, exc.msg) from None
    except (RecursionError, MemoryError):  # absurd nesting: refused, never a crash
        raise RuleSyntaxError(1, "nested too deeply") from None


class _Converter:
    def __init__(self, source: str) -> None:
        self.source = source
        self.depth = 0

    def fail(self, node: ast.AST, message: str) -> RuleSyntaxError:
        return RuleSyntaxError(getattr(node, "col_offset", 0) + 1, message)

    def text(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or ""

    def node(self, node: ast.expr) -> Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self.fail(node, f"nested more than {MAX_DEPTH} deep")
            return self.convert(node)
        finally:
            self.depth -= 1

    def convert(self, node: ast.expr) -> Node:
        column, text = node.col_offset + 1, self.text(node)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or node.value is None:
                return Const(column, text, node.value)
            if isinstance(node.value, int | float):
                return Const(column, text, float(node.value))
            if isinstance(node.value, str):
                return Const(column, text, node.value)
            raise self.fail(node, f"unsupported literal {text}")
        if isinstance(node, ast.Name):
            if node.id in _NAMED_CONSTANTS:
                return Const(column, text, _NAMED_CONSTANTS[node.id])
            if node.id in ("True", "False", "None"):
                return Const(column, text, {"True": True, "False": False}.get(node.id))
            return Field(column, text, node.id)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "profile":
                return Field(column, text, f"profile.{node.attr}")
            raise self.fail(node, f"unknown field {text}")
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return Not(column, text, self.node(node.operand))
            if isinstance(node.op, ast.USub):
                operand = self.node(node.operand)
                if isinstance(operand, Const) and isinstance(operand.value, float):
                    return Const(column, text, -operand.value)
                return Arith(column, text, "neg", operand, None)
            if isinstance(node.op, ast.UAdd):
                return self.node(node.operand)
            raise self.fail(node, "unsupported operator")
        if isinstance(node, ast.BinOp):
            op = _ARITH.get(type(node.op))
            if op is None:
                raise self.fail(node, "unsupported operator; use + - * / %")
            return Arith(column, text, op, self.node(node.left), self.node(node.right))
        if isinstance(node, ast.BoolOp):
            op = "and" if isinstance(node.op, ast.And) else "or"
            return BoolOp(column, text, op, tuple(self.node(v) for v in node.values))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(node, f"not part of the rule language: {text}")

    def compare(self, node: ast.Compare) -> Node:
        parts: list[Node] = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            parts.append(self.comparison(node, left, op, right))
            left = right
        if len(parts) == 1:
            return parts[0]
        return BoolOp(node.col_offset + 1, self.text(node), "and", tuple(parts))

    def comparison(
        self, whole: ast.Compare, left: ast.expr, op: ast.cmpop, right: ast.expr
    ) -> Node:
        column, text = left.col_offset + 1, self.text(whole)
        if isinstance(op, ast.Is | ast.IsNot):
            if not _is_null(right):
                raise self.fail(right, "'is' only tests 'is null' / 'is not null'")
            return IsNull(column, text, self.node(left), isinstance(op, ast.IsNot))
        if isinstance(op, ast.In | ast.NotIn):
            negated = isinstance(op, ast.NotIn)
            operand = self.node(left)
            if isinstance(right, ast.List | ast.Tuple):
                values: list[float | str] = []
                for item in right.elts:
                    value = self.node(item)
                    if not isinstance(value, Const) or not isinstance(value.value, float | str):
                        raise self.fail(item, "a list holds numbers or texts only")
                    values.append(value.value)
                return InList(column, text, operand, None, tuple(values), negated)
            if (
                isinstance(right, ast.Call)
                and isinstance(right.func, ast.Name)
                and right.func.id == "list"
            ):
                if len(right.args) != 1 or right.keywords or not _is_text(right.args[0]):
                    raise self.fail(right, "write list('name')")
                name = right.args[0].value  # type: ignore[attr-defined]
                return InList(column, text, operand, str(name), (), negated)
            raise self.fail(right, "'in' takes list('name') or [values]")
        name = _COMPARE.get(type(op))
        if name is None:
            raise self.fail(whole, "unsupported comparison")
        return Compare(column, text, name, self.node(left), self.node(right))

    def call(self, node: ast.Call) -> Node:
        column, text = node.col_offset + 1, self.text(node)
        if isinstance(node.func, ast.Attribute) and node.func.attr == "startswith":
            if len(node.args) != 1 or node.keywords or not _is_text(node.args[0]):
                raise self.fail(node, "write x.startswith('prefix')")
            prefix = node.args[0].value  # type: ignore[attr-defined]
            return StartsWith(column, text, self.node(node.func.value), str(prefix))
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, f"unknown function {self.text(node.func)}")
        name = node.func.id
        if name not in (*AGGREGATES, *FUNCTIONS, "startswith", "fired"):
            raise self.fail(node, f"unknown function {name}()")
        keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
        if len(keywords) != len(node.keywords):
            raise self.fail(node, "no ** arguments")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, "no * arguments")
        if name in AGGREGATES and ("by" in keywords or "over" in keywords):
            return self.aggregate(node, name, keywords)
        if keywords:
            raise self.fail(node, f"{name}() takes no keyword arguments")
        if name == "startswith":
            if len(node.args) != 2 or not _is_text(node.args[1]):
                raise self.fail(node, "write startswith(x, 'prefix')")
            prefix = node.args[1].value  # type: ignore[attr-defined]
            return StartsWith(column, text, self.node(node.args[0]), str(prefix))
        if name == "fired":
            if len(node.args) != 1 or not _is_text(node.args[0]):
                raise self.fail(node, "write fired('rule_id')")
            return Fired(column, text, str(node.args[0].value))  # type: ignore[attr-defined]
        if name in FUNCTIONS:
            wanted = (1, 1) if name in ("abs", "log") else (2, 99)
            if not wanted[0] <= len(node.args) <= wanted[1]:
                many = "one argument" if wanted[1] == 1 else "two or more arguments"
                raise self.fail(node, f"{name}() takes {many}")
            return Call(column, text, name, tuple(self.node(a) for a in node.args))
        if name in AGGREGATES:
            raise self.fail(node, f"{name}() needs by= and over=")
        raise self.fail(node, f"unknown function {name}()")

    def aggregate(self, node: ast.Call, kind: str, keywords: dict[str, ast.expr]) -> Aggregate:
        column, text = node.col_offset + 1, self.text(node)
        unknown = set(keywords) - {"by", "over"}
        if unknown:
            raise self.fail(node, f"{kind}() takes by= and over=, not {sorted(unknown)}")
        if "by" not in keywords or "over" not in keywords:
            raise self.fail(node, f"{kind}() needs both by= and over=")
        expected = 0 if kind == "count" else 1
        if len(node.args) != expected:
            shape = "count(by=K, over=W)" if kind == "count" else f"{kind}(field, by=K, over=W)"
            raise self.fail(node, f"write {shape}")
        field = None
        columns: list[int] = []
        if expected:
            argument = node.args[0]
            parsed = self.node(argument)
            if not isinstance(parsed, Field):
                raise self.fail(argument, f"{kind}() aggregates a field, not {parsed.text}")
            field = parsed.name
            columns.append(parsed.column)
        by_node = keywords["by"]
        items = by_node.elts if isinstance(by_node, ast.Tuple | ast.List) else [by_node]
        by: list[str] = []
        for item in items:
            key = self.node(item)
            if not isinstance(key, Field):
                raise self.fail(item, "by= takes a field or a tuple of fields")
            by.append(key.name)
            columns.append(key.column)
        if not by:
            raise self.fail(by_node, "by= takes a field or a tuple of fields")
        over = keywords["over"]
        if not _is_text(over):
            raise self.fail(over, "over= takes a window text like '1h'")
        over_text = str(over.value)  # type: ignore[attr-defined]
        try:
            over_ms = parse_window(over_text)
        except ValueError as exc:
            raise self.fail(over, str(exc)) from None
        return Aggregate(column, text, kind, field, tuple(by), over_ms, over_text, tuple(columns))


def _is_null(node: ast.expr) -> bool:
    return (isinstance(node, ast.Constant) and node.value is None) or (
        isinstance(node, ast.Name) and node.id in ("null", "None")
    )


def _is_text(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)
