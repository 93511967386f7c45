"""User profiles from a DynamoDB table (``--profiles dynamodb://TABLE``).

Each item is one profile with the attributes of a profiles file (``user_id``, ``first_name``,
``last_name``, ``max_speed_kmh``, ``home_lat``, ``home_lon``, ``home_country``,
``review_threshold``, ``decline_threshold``); an item without ``user_id`` takes its hash key
as the user id (a table keyed ``UserId``, say). The table is scanned once, when the run
starts.
"""

from __future__ import annotations

from typing import Any

from fraudstream.config import ConfigError
from fraudstream.io.aws.clients import aws_errors, client
from fraudstream.io.aws.dynamodb_store import plain_item, table_name
from fraudstream.profiles import ProfileTable

__all__ = ["load_profiles"]


def load_profiles(uri: str, profiles: ProfileTable) -> int:
    """Upserts every item of the table into ``profiles``; returns how many."""
    table, _ = table_name(uri)
    dynamodb = client("dynamodb")
    count = 0
    with aws_errors(uri):
        schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
        key = next(k["AttributeName"] for k in schema if k["KeyType"] == "HASH")
        for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            for item in page.get("Items", []):
                row: dict[str, Any] = plain_item(item)
                if "user_id" not in row:
                    row["user_id"] = str(row.pop(key))
                count += 1
                try:
                    profiles.upsert(row)
                except ConfigError as exc:
                    raise ConfigError(f"{uri}: item {row.get('user_id')!r}: {exc}") from None
    return count
