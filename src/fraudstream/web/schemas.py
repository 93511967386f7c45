"""The API's documented shapes (OpenAPI): transactions, decisions, errors.

Requests on the hot path are decoded with msgspec and validated by fraudstream's own schema;
these pydantic models document them. The admin and review endpoints validate with them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BatchItem", "Decision", "ErrorBody", "FieldError", "Reason", "Transaction"]


class Transaction(BaseModel):
    """A card transaction (DESIGN.md); unknown extra fields are carried through."""

    model_config = ConfigDict(extra="allow")

    transaction_id: str = Field(min_length=1, max_length=128)
    card_id: str = Field(
        min_length=1, max_length=128, description="aliases: account_id, card_number"
    )
    user_id: str | None = None
    timestamp: int | str = Field(description="epoch ms, or ISO-8601 with an offset")
    amount: float = Field(ge=0)
    currency: str | None = Field(default=None, description="ISO-4217, default USD")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180, description="alias: lng")
    zipcode: str | None = None
    merchant_id: str | None = None
    merchant_category: str | None = None
    country: str | None = None
    channel: str | None = None
    device_id: str | None = None
    ip: str | None = None


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
