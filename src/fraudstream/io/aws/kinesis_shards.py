"""Kinesis streams by name, their shards, and the order resharding imposes on reading them.

A stream is named ``kinesis://STREAM`` (the name, as ``aws kinesis create-stream
--stream-name`` gave it). Its shards come from ``ListShards``; a split or a merge closes a
shard (it gets an ending sequence number) and opens children that name it as
``ParentShardId`` / ``AdjacentParentShardId``. A card's records move to a child only after
the split, so a child is read once all its parents are read to their end: per card, records
are still read in the order they were written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fraudstream.config import ConfigError
from fraudstream.io.aws.clients import aws_errors

__all__ = ["SCHEME", "ShardInfo", "list_shards", "ready_shards", "stream_name"]

SCHEME = "kinesis://"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def stream_name(uri: str) -> str:
    """The stream of a ``kinesis://STREAM`` URI, checked.

    >>> stream_name("kinesis://CreditCardTransactions")
    'CreditCardTransactions'
    >>> stream_name("kinesis://bad name")
    Traceback (most recent call last):
    ...
    fraudstream.config.ConfigError: kinesis://bad name: a stream name is 1-128 of A-Z a-z 0-9 _ . -
    """
    if not uri.lower().startswith(SCHEME):
        raise ConfigError(f"{uri}: not a kinesis://STREAM URI")
    name = uri[len(SCHEME) :].rstrip("/")
    if not _NAME.match(name):
        raise ConfigError(f"{uri}: a stream name is 1-128 of A-Z a-z 0-9 _ . -")
    return name


@dataclass(frozen=True)
class ShardInfo:
    """One shard of a stream as ``ListShards`` describes it."""

    shard_id: str
    parents: tuple[str, ...]
    closed: bool  # resharded: it has an ending sequence number and gets no more records

    @classmethod
    def from_listing(cls, shard: dict[str, Any]) -> ShardInfo:
        """From one entry of a ``ListShards`` response.

        >>> ShardInfo.from_listing({"ShardId": "s2", "ParentShardId": "s0",
        ...     "SequenceNumberRange": {"StartingSequenceNumber": "1"}})
        ShardInfo(shard_id='s2', parents=('s0',), closed=False)
        """
        parents = tuple(
            shard[key] for key in ("ParentShardId", "AdjacentParentShardId") if shard.get(key)
        )
        closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
        return cls(shard["ShardId"], parents, closed)


def list_shards(kinesis: Any, stream: str) -> dict[str, ShardInfo]:
    """Every shard of ``stream`` the service still lists (open and closed), by id."""
    shards: dict[str, ShardInfo] = {}
    request: dict[str, Any] = {"StreamName": stream}
    with aws_errors(f"kinesis://{stream}"):
        while True:
            response = kinesis.list_shards(**request)
            for shard in response.get("Shards", []):
                info = ShardInfo.from_listing(shard)
                shards[info.shard_id] = info
            token = response.get("NextToken")
            if not token:
                return shards
            request = {"NextToken": token}


def ready_shards(
    shards: dict[str, ShardInfo], read_to_end: set[str], started: set[str]
) -> list[str]:
    """Shards to start reading now: not started, not read, and every parent read to its end.

    A parent the service no longer lists (its records expired) counts as read.

    >>> shards = {s.shard_id: s for s in (ShardInfo("a", (), True),
    ...     ShardInfo("b", ("a",), False), ShardInfo("c", ("a",), False))}
    >>> ready_shards(shards, set(), set())
    ['a']
    >>> ready_shards(shards, {"a"}, {"a"})
    ['b', 'c']
    """
    return sorted(
        shard_id
        for shard_id, info in shards.items()
        if shard_id not in started
        and shard_id not in read_to_end
        and all(p in read_to_end or p not in shards for p in info.parents)
    )
