"""The decision store on DynamoDB: seed 000's ``FraudDetectionResults``, keyed by transaction.

``--store dynamodb://FraudDetectionResults`` writes every decision as one item whose hash key
is the transaction id. The key attribute is whatever the table's key schema names (the
seed's ``TransactionId``, created as the seed creates it); the other attributes are the
decision record's own fields (``card_id``, ``decision``, ``score``, ``reasons`` as a list of
maps, ``features`` and ``model`` as maps, times as ISO-8601 strings), numbers as DynamoDB
numbers. ``?create=true`` creates a missing table (on-demand billing).

Writes are ``BatchWriteItem`` puts of up to 25 items, up to eight calls in flight (a batch's
chunks hold different keys, so their order does not matter; every call of a batch is done
before the next batch is written): a put replaces the item with the same
key, so replaying a stream after a crash writes each decision once, the last one winning.
Items the service leaves unprocessed (throttling, partition limits) are sent again with
exponential backoff and jitter until accepted or :data:`MAX_ATTEMPTS` is spent; throttled
calls themselves are retried by botocore (standard mode).

Reading (``fraudstream decisions show/list``): ``show`` is a consistent ``GetItem``; ``list``
scans the table (a filter on tier and card), newest event first.
"""

from __future__ import annotations

import builtins
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec

from fraudstream.config import ConfigError
from fraudstream.io.aws.clients import AwsError, aws_errors, client, error_code

__all__ = [
    "SEED_KEY",
    "DynamoDecisionStore",
    "dynamodb_number",
    "from_item",
    "plain_item",
    "table_name",
    "to_item",
]

SCHEME = "dynamodb://"
SEED_KEY = "TransactionId"  # seed 000's hash key
BATCH_ITEMS = 25  # BatchWriteItem's maximum
WRITERS = 8  # BatchWriteItem calls in flight: one call is 25 items, a round trip each
MAX_ATTEMPTS = 12
BACKOFF_S = 0.05
BACKOFF_CAP_S = 5.0
_encode = msgspec.json.Encoder().encode
_FLOAT_FIELDS = ("score", "latency_ms")


def table_name(uri: str) -> tuple[str, dict[str, str]]:
    """The table of ``dynamodb://TABLE[?create=true]`` and its settings.

    >>> table_name("dynamodb://FraudDetectionResults?create=true")
    ('FraudDetectionResults', {'create': 'true'})
    """
    if not uri.lower().startswith(SCHEME):
        raise ConfigError(f"{uri}: not a dynamodb://TABLE URI")
    parts = urlsplit(uri)
    name = (parts.netloc + parts.path).strip("/")
    settings = dict(parse_qsl(parts.query))
    unknown = set(settings) - {"create"}
    if not name or unknown:
        raise ConfigError(f"{uri}: expected dynamodb://TABLE or dynamodb://TABLE?create=true")
    return name, settings


def _numbers(value: Any) -> Any:
    """DynamoDB numbers (Decimal) back as int or float, everywhere in a value."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def dynamodb_number(text: str) -> Decimal | str:
    """A JSON number as DynamoDB can store it (magnitude 1e-130 to 1e126, 38 digits).

    Smaller magnitudes become 0, larger ones (and integers of more than 38 digits) are kept
    as their text: a decision is never refused for a number in it.

    >>> dynamodb_number("0.25"), dynamodb_number("5e-324"), dynamodb_number("1e300")
    (Decimal('0.25'), Decimal('0'), '1e300')
    >>> dynamodb_number("49590338271490256608559692538361571095921575989136588898")
    '49590338271490256608559692538361571095921575989136588898'
    """
    number = Decimal(text)
    if number == 0 or abs(number) >= Decimal("1e-130"):
        if abs(number) < Decimal("1e126") and len(number.as_tuple().digits) <= 38:
            return number
        return text
    return Decimal(0)


def to_item(record: dict[str, Any], key: str = SEED_KEY) -> dict[str, Any]:
    """A decision record as a DynamoDB item (attribute values), keyed by ``key``.

    Non-finite numbers become null, as in the JSON outputs.

    >>> to_item({"transaction_id": "t1", "score": 0.5, "reasons": []})
    {'TransactionId': {'S': 't1'}, 'score': {'N': '0.5'}, 'reasons': {'L': []}}
    """
    from boto3.dynamodb.types import TypeSerializer

    # msgspec writes inf/nan as null; numbers DynamoDB cannot hold are made to fit
    plain = json.loads(_encode(record), parse_float=dynamodb_number, parse_int=dynamodb_number)
    plain[key] = str(plain.pop("transaction_id"))
    serialize = TypeSerializer().serialize
    item = {key: serialize(plain.pop(key))}
    item.update((name, serialize(value)) for name, value in plain.items())
    return item


def plain_item(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item's values as plain Python (numbers as int or float).

    >>> plain_item({"UserId": {"S": "user_2"}, "max_speed_kmh": {"N": "100"}})
    {'UserId': 'user_2', 'max_speed_kmh': 100}
    """
    from boto3.dynamodb.types import TypeDeserializer

    deserialize = TypeDeserializer().deserialize
    return {name: _numbers(deserialize(value)) for name, value in item.items()}


def from_item(item: dict[str, Any], key: str = SEED_KEY) -> dict[str, Any]:
    """The decision record of a DynamoDB item (the inverse of :func:`to_item`).

    >>> from_item({"TransactionId": {"S": "t1"}, "score": {"N": "0"}})
    {'transaction_id': 't1', 'score': 0.0}
    """
    values = plain_item(item)
    record = {"transaction_id": values.pop(key, None)}
    record.update(values)
    for name in _FLOAT_FIELDS:  # DynamoDB keeps 0.0 as 0: the record's own type back
        if isinstance(record.get(name), int):
            record[name] = float(record[name])
    return record


class DynamoDecisionStore:
    """Decisions in a DynamoDB table, put by transaction id; a sink and a reader."""

    def __init__(self, uri: str, *, create: bool | None = None) -> None:
        self.uri = uri
        self.table, settings = table_name(uri)
        if create is None:
            create = settings.get("create", "false").lower() in ("1", "true", "yes")
        self.dynamodb = client("dynamodb")
        self.key = self._key(create)
        self.count = 0
        self._pool: ThreadPoolExecutor | None = None  # BatchWriteItem calls side by side
        self.retried_items = 0  # items sent again after the service left them unprocessed

    def _key(self, create: bool) -> str:
        """The table's hash key (the table created first when missing and ``create``)."""
        from botocore.exceptions import ClientError

        with aws_errors(self.uri):
            try:
                description = self.dynamodb.describe_table(TableName=self.table)["Table"]
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                description = None
        if description is None:
            if not create:
                raise ConfigError(
                    f"{self.uri}: no such table; create it (aws dynamodb create-table ...) or "
                    f"use {SCHEME}{self.table}?create=true"
                )
            self._create()
            return SEED_KEY
        schema = {k["KeyType"]: k["AttributeName"] for k in description["KeySchema"]}
        if set(schema) != {"HASH"}:
            raise ConfigError(f"{self.uri}: the table needs a hash key only (one item per id)")
        return str(schema["HASH"])

    def _create(self) -> None:
        with aws_errors(self.uri):
            self.dynamodb.create_table(
                TableName=self.table,
                AttributeDefinitions=[{"AttributeName": SEED_KEY, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": SEED_KEY, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
            self.dynamodb.get_waiter("table_exists").wait(
                TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )

    # sink interface

    def write_dicts(self, records: builtins.list[dict[str, Any]]) -> None:
        """Puts a batch of decision records (the last one of an id wins)."""
        if not records:
            return
        # BatchWriteItem refuses two puts of one key in a request: keep the last, as a
        # sequence of puts would.
        items = list({str(r["transaction_id"]): to_item(r, self.key) for r in records}.values())
        chunks = [items[i : i + BATCH_ITEMS] for i in range(0, len(items), BATCH_ITEMS)]
        if len(chunks) == 1:
            self.retried_items += self._put(chunks[0])
        else:  # chunks hold different keys: written side by side, all done before returning
            if self._pool is None:
                self._pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="dynamodb-writer")
            for done in [self._pool.submit(self._put, chunk) for chunk in chunks]:
                self.retried_items += done.result()  # the first failure goes on to the run
        self.count += len(records)

    def _put(self, items: builtins.list[dict[str, Any]]) -> int:
        """One BatchWriteItem, its unprocessed items sent again with backoff; returns how
        many items were sent again."""
        request = {self.table: [{"PutRequest": {"Item": item}} for item in items]}
        retried = 0
        for attempt in range(MAX_ATTEMPTS):
            with aws_errors(self.uri):
                response = self.dynamodb.batch_write_item(RequestItems=request)
            left = response.get("UnprocessedItems") or {}
            if not left.get(self.table):
                return retried
            request = left
            retried += len(left[self.table])
            # Full jitter: writers throttled together do not come back together.
            time.sleep(random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_S * 2**attempt)))
        raise AwsError(
            f"{self.uri}: {len(request[self.table])} items still unprocessed after "
            f"{MAX_ATTEMPTS} attempts (the table is throttling writes)"
        )

    def flush(self) -> None:
        """Every batch is written when given; nothing to push."""

    def close(self) -> None:
        """Stops the writer threads (boto3 pools its own connections)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # reading

    def get(self, transaction_id: str) -> dict[str, Any] | None:
        """The decision record for a transaction, or None."""
        with aws_errors(self.uri):
            response = self.dynamodb.get_item(
                TableName=self.table, Key={self.key: {"S": transaction_id}}, ConsistentRead=True
            )
        item = response.get("Item")
        return None if item is None else from_item(item, self.key)

    def items(
        self, decision: str | None = None, card_id: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Every decision record (a scan), optionally of one tier and/or one card."""
        request: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        filters, names, values = [], {}, {}
        for field, wanted in (("decision", decision), ("card_id", card_id)):
            if wanted is not None:
                filters.append(f"#{field} = :{field}")
                names[f"#{field}"] = field
                values[f":{field}"] = {"S": wanted}
        if filters:
            request.update(
                FilterExpression=" AND ".join(filters),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        records: builtins.list[dict[str, Any]] = []
        with aws_errors(self.uri):
            for page in self.dynamodb.get_paginator("scan").paginate(**request):
                records.extend(from_item(item, self.key) for item in page.get("Items", []))
        return records

    def list(
        self, decision: str | None = None, limit: int = 20, card_id: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Decision records, newest event first, optionally of one tier and/or one card."""
        records = self.items(decision, card_id)
        records.sort(
            key=lambda r: (
                r.get("event_time") or "",
                r.get("processed_at") or "",
                str(r["transaction_id"]),
            ),
            reverse=True,
        )
        return records[:limit]

    def __len__(self) -> int:
        total = 0
        with aws_errors(self.uri):
            for page in self.dynamodb.get_paginator("scan").paginate(
                TableName=self.table, Select="COUNT"
            ):
                total += int(page.get("Count", 0))
        return total

    def __enter__(self) -> DynamoDecisionStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
