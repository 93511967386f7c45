"""The API's documented shapes (OpenAPI): transactions, decisions, errors.

Requests on the hot path are decoded with msgspec and validated by fraudstream's own schema;
:func:`transaction_schema` documents exactly what that validation accepts (JSON Schema, which
schemathesis checks against the running server). The pydantic models document the responses;
the admin and review endpoints validate their bodies with theirs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from fraudstream.schema import (
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    TEXT_FIELDS,
)

__all__ = [
    "AlertEntry",
    "BatchItem",
    "DeadLetterShown",
    "Decision",
    "ErrorBody",
    "FieldError",
    "Health",
    "Label",
    "LateShown",
    "MetricsPanel",
    "Profile",
    "ProfileAudit",
    "Reason",
    "Review",
    "RuleAudit",
    "RulesShown",
    "UserRuleShown",
    "ExpressionChecked",
    "ExpressionError",
    "ExpressionErrorBody",
    "VerdictResult",
    "transaction_schema",
]


def _text(max_length: int, min_length: int = 0, nullable: bool = True) -> dict[str, Any]:
    """Text up to ``max_length`` characters, or an integer (read as its digits)."""
    variants: list[dict[str, Any]] = [
        {"type": "string", "minLength": min_length, "maxLength": max_length},
        # Its digits count against the length too. Bounds that large (10^128) are not given:
        # generators round them through floats and step past them.
        {"type": "integer", "description": f"at most {max_length} characters written out"},
    ]
    if nullable:
        variants.append({"type": "null"})
    return {"anyOf": variants}


def _coordinate(limit: int, text_pattern: str) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "number", "minimum": -limit, "maximum": limit},
            {"type": "string", "pattern": text_pattern},
            {"type": "null"},
        ]
    }


def _is_null(*names: str) -> dict[str, Any]:
    # Absent or null: "properties" only constrains the names that are present.
    return {"properties": {name: {"type": "null"} for name in names}}


def _given(*names: str) -> dict[str, Any]:
    return {
        "required": list(names),
        "properties": {name: {"not": {"type": "null"}} for name in names},
    }


def transaction_schema() -> dict[str, Any]:
    """The transaction a client may send, as JSON Schema: exactly what the decoder accepts.

    Ids and text fields take text or an integer (read as its digits); numbers also come as
    text; a null is the same as an absent field. The card is ``card_id``, else
    ``account_id``, else ``card_number``; ``lat`` comes with ``lon`` (else ``lng``). An id
    also has at most 128 bytes in UTF-8 (JSON Schema counts characters: said, not encoded).
    Unknown extra fields are carried through.

    >>> schema = transaction_schema()
    >>> schema["required"], sorted(schema["properties"])[:4]
    (['transaction_id', 'timestamp', 'amount'], ['account_id', 'amount', 'card_id', 'card_number'])
    """
    lat_text = r"^-?[0-8]?[0-9](\.[0-9]{1,6})?$"  # text within [-90, 90]
    lon_text = r"^-?(1[0-7][0-9]|[0-9]?[0-9])(\.[0-9]{1,6})?$"  # text within [-180, 180]
    text = _text(MAX_TEXT_LENGTH)
    properties: dict[str, Any] = {
        "transaction_id": _text(MAX_ID_LENGTH, 1, nullable=False)
        | {"description": "unique; a repeated id is refused (409)"},
        "card_id": _text(MAX_ID_LENGTH, 1) | {"description": "a card number is tokenized"},
        "account_id": {"description": "the card when card_id is absent or null (same form)"},
        "card_number": {"description": "the card when card_id and account_id are absent"},
        "user_id": _text(MAX_ID_LENGTH) | {"description": "default: the card"},
        "timestamp": {
            "description": "event time: epoch milliseconds (a number or its digits), or "
            "ISO-8601 with an offset; years 1-9999",
            "anyOf": [
                {"type": "integer", "minimum": MIN_TIMESTAMP_MS, "maximum": MAX_TIMESTAMP_MS},
                {"type": "string", "pattern": "^[0-9]{1,14}$"},
                {"type": "string", "format": "date-time"},
            ],
        },
        "amount": {
            "description": "a number >= 0, or its decimal text",
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^[0-9]{1,15}(\.[0-9]{1,6})?$"},
            ],
        },
        "currency": {
            "description": "ISO-4217; absent, null or empty: USD",
            "anyOf": [
                {"type": "string", "maxLength": 3, "pattern": "^([A-Z]{3})?$"},
                {"type": "null"},
            ],
        },
        "lat": _coordinate(90, lat_text) | {"description": "with lon (or lng)"},
        "lon": _coordinate(180, lon_text) | {"description": "with lat"},
        "lng": {"description": "lon's alias, read when lon is absent or null"},
        **{name: dict(text) for name in TEXT_FIELDS},
    }
    return {
        "title": "Transaction",
        "type": "object",
        "properties": properties,
        "required": ["transaction_id", "timestamp", "amount"],
        "additionalProperties": True,
        "allOf": [
            {  # the card: card_id, else account_id, else card_number
                "anyOf": [
                    _given("card_id"),
                    {"required": ["account_id"],
                     "properties": {"card_id": {"type": "null"},
                                    "account_id": _text(MAX_ID_LENGTH, 1, nullable=False)}},
                    {"required": ["card_number"],
                     "properties": {"card_id": {"type": "null"}, "account_id": {"type": "null"},
                                    "card_number": _text(MAX_ID_LENGTH, 1, nullable=False)}},
                ]
            },
            {  # both coordinates or neither
                "anyOf": [
                    _is_null("lat", "lon", "lng"),
                    _given("lat", "lon"),
                    {"required": ["lat", "lng"],
                     "properties": {"lat": {"not": {"type": "null"}}, "lon": {"type": "null"},
                                    "lng": _coordinate(180, lon_text)
                                    | {"not": {"type": "null"}}}},
                ]
            },
        ],
    }  # fmt: skip


class Reason(BaseModel):
    rule: str
    message: str


class Decision(BaseModel):
    """The decision record (DESIGN.md)."""

    transaction_id: str
    card_id: str
    user_id: str
    event_time: str
    decision: str = Field(description="approve | review | decline")
    score: float
    reasons: list[Reason]
    shadow_reasons: list[Reason] = Field(
        default_factory=list, description="rules in shadow mode that fired (never scored)"
    )
    rule_version: int = Field(0, description="the rule version that decided it")
    model: dict[str, Any] | None
    features: dict[str, Any]
    processed_at: str
    latency_ms: float


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    detail: list[FieldError]


class BatchItem(BaseModel):
    index: int
    status: int
    decision: Decision | None = None
    detail: list[FieldError] | None = None


# --- response bodies (documentation: the handlers encode with msgspec, unvalidated) ---------


class Health(BaseModel):
    status: str
    decided: int
    dead_letters: int
    duplicates: int
    late: int
    kept_decisions: int
    subscribers: int
    watermark: int


class DeadLetterShown(BaseModel):
    """A rejected record: where it came from, its position, why, and the raw text."""

    source: str
    position: int
    reason: str
    raw: str | None


class LateShown(BaseModel):
    """A record too late to decide, with why."""

    position: int
    reason: str
    record: dict[str, Any]


class Profile(BaseModel):
    """A user profile; a number not set is null."""

    user_id: str
    first_name: str | None
    last_name: str | None
    max_speed_kmh: float | None
    home_lat: float | None
    home_lon: float | None
    home_country: str | None
    review_threshold: float | None
    decline_threshold: float | None


class ProfileAudit(BaseModel):
    at: str | None = None
    who: str | None = None
    user_id: str | None = None
    note: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


class DecisionThresholds(BaseModel):
    review_threshold: float
    decline_threshold: float


class RuleShown(BaseModel):
    """A running rule with every threshold (defaults filled in) and the defaults."""

    id: str
    detector: str
    enabled: bool
    mode: Literal["live", "shadow"] = "live"
    score: float
    severity: str
    description: str
    thresholds: dict[str, Any]
    defaults: dict[str, Any]
    hits: int = Field(0, description="transactions it fired on since the app started")


class UserRuleShown(BaseModel):
    """A rule a fraud team wrote: ``when`` its expression holds, add ``score`` and/or force
    ``outcome``."""

    id: str
    when: str
    score: float | None
    outcome: Literal["decline", "review", "approve"] | None
    enabled: bool
    mode: Literal["live", "shadow"] = "live"
    severity: str
    description: str
    hits: int = Field(0, description="transactions it fired on since the app started")


class RulesShown(BaseModel):
    decision: DecisionThresholds
    rules: list[RuleShown]
    user_rules: list[UserRuleShown]
    version: int = Field(0, description="the rule version in force")


class RuleVersionShown(BaseModel):
    """A numbered rule set that was applied: who, when, from where, what changed."""

    version: int
    at: str
    who: str
    source: str
    note: str
    changes: list[str]
    current: bool = False


class BacktestRule(BaseModel):
    id: str
    alerts: int
    true_positives: int
    false_positives: int
    precision: float | None
    recall: float | None
    alerts_per_day: float
    caught_amount: float


class BacktestReport(BaseModel):
    """A rule set replayed over history against the labels (docs/rules.md, backtest)."""

    transactions: int
    frauds: int
    days: float
    candidate: dict[str, Any]
    baseline: dict[str, Any]
    rules: list[BacktestRule]
    baseline_rules: list[BacktestRule]
    tiers: dict[str, dict[str, int]]
    changed: list[dict[str, str]]
    changed_count: int
    decision: dict[str, dict[str, Any]]
    alerts_per_day: dict[str, list[dict[str, Any]]]


class ExpressionError(FieldError):
    """An error in a ``when`` expression: ``column`` is where (1-based), when known."""

    column: int | None = None


class ExpressionErrorBody(BaseModel):
    detail: list[ExpressionError]


class ExpressionChecked(BaseModel):
    """A ``when`` expression the running rules would take."""

    valid: bool


class RuleAudit(BaseModel):
    at: str | None
    who: str | None
    source: str | None
    note: str | None
    changes: list[str]
    refused: bool


class Review(BaseModel):
    transaction_id: str
    verdict: str
    analyst: str
    note: str
    at: str
    id: int | None = None


class Label(BaseModel):
    transaction_id: str
    is_fraud: bool
    label_time: str
    analyst: str
    verdict: str
    note: str


class VerdictResult(BaseModel):
    review: Review
    label: Label | None


class AlertEntry(BaseModel):
    """A queued alert: the decision (a batch run's alert has no ``processed_at`` and
    ``latency_ms``), its transaction and its review status; read by id it also carries
    ``card_history`` and ``reviews``."""

    transaction_id: str
    card_id: str
    user_id: str | None
    event_time: str | None
    decision: str
    score: float
    reasons: list[Reason]
    model: dict[str, Any] | None
    features: dict[str, Any]
    transaction: dict[str, Any]
    status: str = Field(description="open | escalated | closed")
    queued_at: str
    processed_at: str | None = None
    latency_ms: float | None = None


class LatencyFigures(BaseModel):
    p50: float | None
    p99: float | None
    max: float | None
    samples: int


class MetricsPanel(BaseModel):
    throughput_per_s: float
    latency_ms: LatencyFigures
    totals: dict[str, int] = Field(description="decisions by tier since `since`")
    totals_since_start: dict[str, int] = Field(description="decisions by tier since `started`")
    alerts_by_rule: dict[str, int] = Field(
        description="alerts (not approve) per rule, since `since`"
    )
    since: str = Field(description="the decision store's first decision (or the app's start)")
    started: str = Field(description="when the app started")
    series: list[dict[str, float]] = Field(
        description="per second (t, epoch s): approve, review, decline, p50_ms, p99_ms"
    )
