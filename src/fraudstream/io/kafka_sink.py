"""Kafka sinks: alerts, enriched transactions, dead letters (or decisions) to a topic.

Each record is one message: the value is its JSON (msgspec, the same bytes as a JSON-lines
output line), the key is the card (``card_id``, which the decoder has already replaced by a
token if it looked like a card number, so no full card number reaches a key). Records without
a card (dead letters of unreadable input) are keyed by ``source:position``, so a replay of
the same bad input lands in the same partition.

The producer is idempotent (``enable.idempotence``): retries inside the client never write a
message twice. ``checkpoint()`` and ``close()`` wait for every message to be acknowledged
and raise :class:`~fraudstream.io.kafka.KafkaError` naming the first failure if any was not,
so a checkpoint is never taken (nor offsets committed) over an undelivered alert;
``flush()``, called after every live batch, raises for failures already reported without
waiting. Across a crash, messages sent after the
last checkpoint are sent again on resume (at-least-once); consumers deduplicate by
``transaction_id`` as the decision store does. With ``transactional_id`` (``?transactional.id=``
in the URI) every checkpoint commits a Kafka transaction instead, and ``read_committed`` readers
see each checkpoint's messages once.
"""

from __future__ import annotations

from typing import Any

import msgspec
from confluent_kafka import KafkaException, Producer

from fraudstream.config import ConfigError
from fraudstream.io.kafka import (
    KafkaError,
    KafkaURI,
    client_config,
    ensure_reachable,
    is_kafka_uri,
    log,
)

__all__ = ["KafkaSink", "open_kafka_sink", "record_key"]

FLUSH_TIMEOUT_S = 60.0


def record_key(record: dict[str, Any]) -> bytes | None:
    """The message key of an output record: its card, else ``source:position``.

    >>> record_key({"card_id": "tok_ab12", "decision": "decline"})
    b'tok_ab12'
    >>> record_key({"source": "card-transactions[2]", "position": 17, "reason": "invalid JSON"})
    b'card-transactions[2]:17'
    """
    card = record.get("card_id")
    if card is None and isinstance(record.get("record"), dict):  # late records
        card = record["record"].get("card_id")
    if card is not None:
        return str(card).encode()
    if "position" in record:
        return f"{record.get('source', 'input')}:{record['position']}".encode()
    return None


class KafkaSink:
    """Records as JSON messages on one topic, keyed by card; delivery checked at ``flush``."""

    def __init__(self, uri: KafkaURI | str, flush_timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        self.uri = uri if isinstance(uri, KafkaURI) else KafkaURI.parse(uri)
        self.target = str(self.uri)
        self.flush_timeout_s = flush_timeout_s
        self.count = 0
        self.delivered = 0
        self._failures: list[str] = []
        self._failed = 0
        self._encode = msgspec.json.Encoder().encode
        self._fatal: str | None = None
        ensure_reachable(self.uri)
        config = client_config(
            self.uri,
            **{
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                "error_cb": self._on_error,
            },
        )
        self.transactional = bool(config.get("transactional.id"))
        try:
            self.producer = Producer(config)
            if self.transactional:
                self.producer.init_transactions(self.flush_timeout_s)
                self.producer.begin_transaction()
        except KafkaException as exc:
            raise ConfigError(f"{self.uri}: {exc.args[0].str()}") from None

    def write_dicts(self, records: list[dict[str, Any]]) -> None:
        """Queues one message per record (waits for room if the client's queue is full)."""
        if self._fatal is not None:
            raise KafkaError(self._fatal)
        produce = self.producer.produce
        topic = self.uri.topic
        encode = self._encode
        for record in records:
            self._produce(produce, topic, encode(record), record_key(record))
        self.count += len(records)
        self.producer.poll(0)

    def send(self, value: bytes, key: bytes | None) -> None:
        """Queues one message as given (``fraudstream produce`` sends input lines unchanged)."""
        if self._fatal is not None:
            raise KafkaError(self._fatal)
        self._produce(self.producer.produce, self.uri.topic, value, key)
        self.count += 1
        self.producer.poll(0)

    def _produce(self, produce: Any, topic: str, value: bytes, key: bytes | None) -> None:
        while True:
            try:
                produce(topic, value, key, on_delivery=self._on_delivery)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.1)
            except KafkaException as exc:  # refused at once (too large, ...)
                error = exc.args[0]
                raise KafkaError(
                    f"{self.target}: message for key {key!r} refused: "
                    f"{error.str()} ({error.name()})"
                ) from None

    def flush(self) -> None:
        """Pushes what is queued and raises for any delivery already known to have failed.

        Does not wait for acknowledgements: the run calls this after every live batch, and a
        round trip per batch would cap the stream at the broker's latency. Messages leave
        within ``linger.ms`` anyway; :meth:`checkpoint` and :meth:`close` wait for them all.
        """
        self.producer.poll(0)
        self._raise_failures()

    def wait(self) -> None:
        """Waits until every queued message is acknowledged; raises if any was not."""
        left = self.producer.flush(self.flush_timeout_s)
        self._raise_failures()
        if left:
            raise KafkaError(
                f"{self.target}: {left} messages not acknowledged within {self.flush_timeout_s:g} s"
            )
        if self.transactional:
            try:
                self.producer.commit_transaction(self.flush_timeout_s)
                self.producer.begin_transaction()
            except KafkaException as exc:
                raise KafkaError(f"{self.target}: transaction not committed ({exc})") from None

    def _raise_failures(self) -> None:
        if self._fatal is not None:
            raise KafkaError(self._fatal)
        if self._failed:
            failed, first = self._failed, self._failures[0]
            self._failed, self._failures = 0, []
            raise KafkaError(f"{self.target}: {failed} messages not delivered ({first})")

    def checkpoint(self) -> dict[str, Any]:
        """Waits for every message (raising if any was not delivered); returns the marker.

        Messages on a topic cannot be taken back, so a resumed run does not cut anything at
        the marker: what it sends again after the checkpoint is deduplicated downstream by
        ``transaction_id`` (or, with a transactional producer, was never committed).
        """
        self.wait()
        return {"topic": self.uri.topic, "delivered": self.delivered}

    def close(self) -> None:
        """Waits for every message (raising if anything was not delivered)."""
        self.wait()

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is None:
            self.delivered += 1
            return
        self._failed += 1
        if len(self._failures) < 5:
            self._failures.append(f"{error.str()} ({error.name()})")

    def _on_error(self, error: Any) -> None:
        if error.fatal():
            self._fatal = f"{self.target}: {error.str()}"
        else:
            log.warning("%s: %s", self.target, error.str())


def open_kafka_sink(target: str) -> KafkaSink:
    """A sink for a ``kafka://`` target (the ``open_sink`` branch for URIs)."""
    if not is_kafka_uri(target):
        raise ConfigError(f"{target!r}: not a Kafka URI")
    return KafkaSink(KafkaURI.parse(target))
