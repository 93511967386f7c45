"""User profiles from a compacted Kafka topic (seed 002's ``users-config``).

Each message is one profile as JSON (the fields of :mod:`fraudstream.profiles`), keyed by
``user_id``; a later message for a user replaces the earlier one (an upsert), and a message
with no value (a tombstone) removes the profile, so the user falls back to the defaults.

The feed is not a group member and commits nothing: it always reads the whole (compacted)
topic from the beginning, so every run starts from the current profiles. :meth:`load` reads
up to the end before the first transaction is decided; :meth:`poll` applies, without
waiting, whatever arrived since. The run calls it between batches, so an upsert takes effect
for the next batch decided after it was read.

A profile that is not valid JSON or fails validation is skipped, counted in ``rejected`` and
reported (``on_reject``), never applied half-way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as ClientError

from fraudstream.config import ConfigError
from fraudstream.io.kafka import KafkaError, KafkaURI, client_config, ensure_reachable, log
from fraudstream.io.kafka import topic_partitions as list_partitions
from fraudstream.profiles import ProfileTable

__all__ = ["KafkaProfileFeed"]

LOAD_TIMEOUT_S = 30.0


class KafkaProfileFeed:
    """Applies the profiles of a compacted topic to a :class:`ProfileTable` as they arrive."""

    def __init__(
        self,
        uri: KafkaURI,
        table: ProfileTable,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.uri = uri
        self.table = table
        self.on_reject = on_reject or (lambda message: log.warning("%s", message))
        self.applied = 0
        self.rejected = 0
        self._decode = msgspec.json.Decoder().decode
        ensure_reachable(uri)
        config = client_config(
            uri,
            **{
                # A group id is required by the client; this one is never joined or committed.
                "group.id": f"fraudstream-profiles-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
        try:
            self.consumer = Consumer(config)
        except KafkaException as exc:
            raise ConfigError(f"{uri}: {exc.args[0].str()}") from None
        try:
            self.partitions = list_partitions(self.consumer, uri)
        except ConfigError:
            self.consumer.close()
            raise
        self.consumer.assign(
            [TopicPartition(uri.topic, p, OFFSET_BEGINNING) for p in self.partitions]
        )

    def load(self, timeout_s: float = LOAD_TIMEOUT_S) -> int:
        """Reads every profile up to the topic's current end; returns how many were applied."""
        before = self.applied
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while at_end < set(self.partitions):
            if time.monotonic() > deadline:
                raise KafkaError(f"{self.uri}: profiles not read to the end within {timeout_s} s")
            at_end |= self._consume(0.2)
        return self.applied - before

    def poll(self) -> int:
        """Applies the profiles that arrived since the last call (no waiting); returns how many."""
        before = self.applied
        while True:
            count = self.applied + self.rejected
            self._consume(0)
            if self.applied + self.rejected == count:
                return self.applied - before

    def close(self) -> None:
        """Releases the consumer."""
        try:
            self.consumer.close()
        except RuntimeError:
            pass

    def _consume(self, timeout_s: float) -> set[int]:
        """Applies one batch of messages; returns the partitions found at their end."""
        at_end: set[int] = set()
        for message in self.consumer.consume(1_000, timeout_s):
            error = message.error()
            if error is not None:
                partition = message.partition()
                if error.code() == ClientError._PARTITION_EOF and partition is not None:
                    at_end.add(partition)
                elif error.fatal():
                    raise KafkaError(f"{self.uri}: {error.str()}")
                else:
                    log.warning("%s: %s", self.uri, error.str())
                continue
            self._apply(message)
        return at_end

    def _apply(self, message: Any) -> None:
        where = f"{self.uri.topic}[{message.partition()}] offset {message.offset()}"
        key = message.key()
        value = message.value()
        try:
            if value is None:  # a tombstone: the user's profile is gone
                if key is None:
                    raise ConfigError(f"{where}: a tombstone without a key")
                self.table.upsert({"user_id": key.decode("utf-8", "replace")})
            else:
                raw = self._decode(value)
                if not isinstance(raw, dict):
                    raise ConfigError(f"{where}: a profile must be a JSON object")
                if raw.get("user_id") in (None, "") and key is not None:
                    raw["user_id"] = key.decode("utf-8", "replace")
                self.table.upsert(raw)
        except (ConfigError, msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            if isinstance(exc, RecursionError):  # a value nested past any parser's stack
                exc = ConfigError(f"{where}: nested too deeply")
            self.rejected += 1
            text = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
            self.on_reject(f"profile rejected: {text}")
            return
        self.applied += 1
