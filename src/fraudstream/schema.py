"""Records of DESIGN.md: the transaction contract, its validation and card-number tokenizing.

A raw transaction (a JSON object, a CSV row, a Parquet row) is checked field by field by
:func:`validate_record`. It either becomes a normalised :class:`ValidTx` tuple or an error
message a person understands ("amount: must be >= 0, got -5.0"). The columnar path
(:mod:`fraudstream.io.columns`) validates whole Parquet batches at once and must agree with
this function; a test holds them to that.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from fraudstream.cardnumbers import MIN_DIGITS as MIN_CARD_DIGITS
from fraudstream.cardnumbers import CardTokenizer as CardTokenizer
from fraudstream.cardnumbers import mask_card_numbers as mask_card_numbers

MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 256
MAX_RECORD_BYTES = 64 * 1024  # default size limit of one raw record (fraudstream.io.limits)
MAX_LINE_BYTES = MAX_RECORD_BYTES  # its earlier name
MAX_NESTING_DEPTH = 64  # default nesting limit of one record, the record itself level 1

REQUIRED = ("transaction_id", "card_id", "timestamp", "amount")
TEXT_FIELDS = (
    "zipcode",
    "merchant_id",
    "merchant_category",
    "country",
    "channel",
    "device_id",
    "ip",
)
KNOWN_FIELDS = frozenset(
    (
        "transaction_id",
        "card_id",
        "account_id",
        "card_number",
        "user_id",
        "timestamp",
        "amount",
        "currency",
        "lat",
        "lon",
        "lng",
        *TEXT_FIELDS,
    )
)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# 0001-01-01 .. 9999-12-31 in epoch ms: anything outside cannot be a real event time.
MIN_TIMESTAMP_MS = -62_135_596_800_000
MAX_TIMESTAMP_MS = 253_402_300_799_999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidRecord(ValueError):
    """A record that breaks the transaction contract; the message names the field."""


class ValidTx(NamedTuple):
    """A transaction that passed validation, with ids tokenized and aliases resolved."""

    transaction_id: str
    card_id: str
    user_id: str
    timestamp_ms: int
    amount: float
    currency: str
    lat: float  # NaN when absent
    lon: float  # NaN when absent
    zipcode: str | None
    merchant_id: str | None
    merchant_category: str | None
    country: str | None
    channel: str | None
    device_id: str | None
    ip: str | None
    extras: dict[str, Any] | None


# --- field checks ---------------------------------------------------------------------------


def _text(
    name: str,
    value: Any,
    max_length: int,
    required: bool,
    clean: Callable[[str], str] | None = None,
) -> str | None:
    """The field as text, ``clean``-ed (card numbers tokenized) before its length counts."""
    if value is None:
        if required:
            raise InvalidRecord(f"{name}: required field is missing")
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON's 5.0 is the number 5 (JSON Schema agrees): the id "5"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidRecord(f"{name}: must be a string, got {type(value).__name__}")
    text = str(value)
    if clean is not None and len(text) >= MIN_CARD_DIGITS:  # shorter: never a card number
        text = clean(text)
    if not text:
        if required:
            raise InvalidRecord(f"{name}: must not be empty")
        return None
    if len(text) > max_length:
        raise InvalidRecord(f"{name}: longer than {max_length} characters ({len(text)})")
    if max_length == MAX_ID_LENGTH and len(text.encode()) > MAX_ID_LENGTH:
        # ids are kept as UTF-8 in fixed-width state: 128 bytes at most
        raise InvalidRecord(f"{name}: longer than {MAX_ID_LENGTH} bytes in UTF-8")
    return text


def _quoted(text: str) -> str:
    """A bad value for a reason: card numbers masked before it is cut to 40 characters."""
    return repr(mask_card_numbers(text)[:40])


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise InvalidRecord(f"{name}: must be a number, got bool")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidRecord(f"{name}: must be a number, got {_quoted(value)}") from None
    if not isinstance(value, int | float):
        raise InvalidRecord(f"{name}: must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidRecord(f"{name}: must be finite, got a number too large") from None
    if not math.isfinite(number):
        raise InvalidRecord(f"{name}: must be finite, got {number}")
    return number


def parse_timestamp(value: Any) -> int:
    """Epoch milliseconds from an int or an ISO-8601 string with an offset.

    >>> parse_timestamp("2019-01-01T00:06:00Z"), parse_timestamp(1546300800000)
    (1546301160000, 1546300800000)
    """
    if isinstance(value, bool):
        raise InvalidRecord("timestamp: must be epoch milliseconds or ISO-8601, got bool")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise InvalidRecord(f"timestamp: must be whole epoch milliseconds, got {value}")
        ms = int(value)
    elif isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text.startswith("-") else text
        if digits.isascii() and digits.isdigit():
            if len(digits) > 19:
                raise InvalidRecord(f"timestamp: out of range ({len(digits)} digits)")
            ms = int(text)
        else:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise InvalidRecord(f"timestamp: not ISO-8601, got {_quoted(text)}") from None
            if parsed.tzinfo is None:
                raise InvalidRecord(f"timestamp: ISO-8601 needs an offset, got {_quoted(text)}")
            ms = int(parsed.timestamp() * 1000)
    elif isinstance(value, datetime):
        # A typed date-time (Parquet/Arrow timestamp columns); one without a zone is UTC,
        # as Arrow reads it. Floored to the millisecond exactly, without float rounding.
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        ms = (aware - _EPOCH) // timedelta(milliseconds=1)
    elif value is None:
        raise InvalidRecord("timestamp: required field is missing")
    else:
        raise InvalidRecord(f"timestamp: must be epoch ms or ISO-8601, got {type(value).__name__}")
    if not MIN_TIMESTAMP_MS <= ms <= MAX_TIMESTAMP_MS:
        raise InvalidRecord(f"timestamp: out of range, got {ms}")
    return ms


def _coordinate(name: str, value: Any, limit: float) -> float:
    if value is None:
        return math.nan
    number = _number(name, value)
    if not -limit <= number <= limit:
        raise InvalidRecord(f"{name}: must be within [-{limit:g}, {limit:g}], got {number:g}")
    return number


def validate_record(record: Any, tokenize: CardTokenizer) -> ValidTx:
    """Checks one decoded record against the contract; raises :class:`InvalidRecord`.

    >>> tok = CardTokenizer(b"k")
    >>> validate_record({"transaction_id": "t1", "account_id": 3, "timestamp": 0,
    ...                  "amount": 0.5}, tok).card_id
    '3'
    >>> validate_record({"transaction_id": "t1", "card_id": "c", "timestamp": 0,
    ...                  "amount": -1}, tok)
    Traceback (most recent call last):
    ...
    fraudstream.schema.InvalidRecord: amount: must be >= 0, got -1
    """
    if not isinstance(record, dict):
        raise InvalidRecord(f"record: must be a JSON object, got {type(record).__name__}")
    get = record.get
    scrub = tokenize.scrub

    transaction_id = _text("transaction_id", get("transaction_id"), MAX_ID_LENGTH, True, scrub)
    raw_card = get("card_id")
    card_field = "card_id"
    if raw_card is None:
        for alias in ("account_id", "card_number"):
            if get(alias) is not None:
                raw_card, card_field = get(alias), alias
                break
    if raw_card is None:
        raise InvalidRecord("card_id: required field is missing (or account_id / card_number)")
    card_text = _text(card_field, raw_card, MAX_ID_LENGTH, True, tokenize)
    user_text = _text("user_id", get("user_id"), MAX_ID_LENGTH, False, tokenize)
    timestamp_ms = parse_timestamp(get("timestamp"))
    if get("amount") is None:
        raise InvalidRecord("amount: required field is missing")
    amount = _number("amount", get("amount"))
    if amount < 0:
        raise InvalidRecord(f"amount: must be >= 0, got {get('amount')}")
    currency = _text("currency", get("currency"), 3, False) or "USD"
    if not _CURRENCY.match(currency):
        raise InvalidRecord(f"currency: must be an ISO-4217 code like USD, got {currency!r}")
    lat = _coordinate("lat", get("lat"), 90.0)
    lon_value = get("lon")
    lon = _coordinate(
        "lon" if lon_value is not None else "lng",
        lon_value if lon_value is not None else get("lng"),
        180.0,
    )
    if math.isnan(lat) != math.isnan(lon):
        raise InvalidRecord("lat/lon: give both coordinates or neither")
    zipcode, merchant_id, merchant_category, country, channel, device_id, ip = (
        _text(name, get(name), MAX_TEXT_LENGTH, False, scrub) for name in TEXT_FIELDS
    )
    extras = None
    if len(record) > len(KNOWN_FIELDS.intersection(record)):
        extras = tokenize.scrub_value({k: v for k, v in record.items() if k not in KNOWN_FIELDS})
    assert transaction_id is not None and card_text is not None
    card_id = card_text
    user_id = user_text if user_text is not None else card_id
    return ValidTx(
        transaction_id,
        card_id,
        user_id,
        timestamp_ms,
        amount,
        currency,
        lat,
        lon,
        zipcode,
        merchant_id,
        merchant_category,
        country,
        channel,
        device_id,
        ip,
        extras,
    )
