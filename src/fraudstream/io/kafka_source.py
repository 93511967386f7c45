"""The Kafka source: a consumer group on ``card-transactions``, offsets committed at checkpoints.

Values are JSON transactions (the key is the card; the value is what is decided). Messages
are consumed in batches and validated per partition with the columnar JSON path of
:class:`~fraudstream.io.decode.Decoder`; a malformed value becomes a dead letter whose source
is ``topic[partition]`` and whose position is its offset.

Offsets and checkpoints (the :class:`~fraudstream.run.Source` protocol):

* ``position()`` is ``{"format": "kafka", "topic": ..., "offsets": {partition: next offset}}``
  after the last batch yielded;
* ``commit(position)`` commits those offsets to the group; it is called only once a
  checkpoint holding them is durable, so auto-commit is off and nothing else commits;
* on assignment a partition starts at the offset of the checkpoint being resumed
  (``seek(position)``) if it has one, else at the group's committed offset, else at the
  beginning (``auto.offset.reset=earliest``: a new group reads the topic from its start).

A consumer that takes over partitions from one that died therefore starts at the last
checkpoint's offsets, and with that checkpoint's state nothing is lost; what the dead one
processed after its checkpoint is processed again, and the sinks are idempotent (decisions
upserted by transaction id) so it is not doubled.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as ClientError

from fraudstream.config import ConfigError
from fraudstream.io.decode import Decoder
from fraudstream.io.files import IDLE, Item
from fraudstream.io.kafka import (
    KafkaError,
    KafkaURI,
    client_config,
    ensure_reachable,
    log,
    topic_partitions,
)
from fraudstream.io.kafka_align import PartitionAligner

__all__ = ["KafkaSource"]

BATCH_MESSAGES = 10_000
POLL_TIMEOUT_S = 0.1
ALIGN_WAIT_S = 0.5  # a partition that sends nothing this long stops holding the others


class KafkaSource:
    """Transactions from a Kafka topic, read by a member of a consumer group.

    ``stop_at_end`` ends :meth:`batches` once every assigned partition has been read to its
    end (a backfill, a test); otherwise the source runs until :meth:`stop` or an interrupt,
    yielding ``IDLE`` after ``idle_timeout_ms`` without messages so time still advances.
    """

    live = True
    total_bytes = 0
    done_bytes = 0

    def __init__(
        self,
        uri: KafkaURI,
        group_id: str = "fraudstream",
        *,
        idle_timeout_ms: int = 1_000,
        stop_at_end: bool = False,
        batch_messages: int = BATCH_MESSAGES,
    ) -> None:
        self.uri = uri
        self.name = str(uri)
        self.group_id = group_id
        self.idle_timeout_s = max(idle_timeout_ms, 1) / 1000
        self.stop_at_end = stop_at_end
        self.batch_messages = batch_messages
        self._next: dict[int, int] = {}  # partition -> next offset after the last batch yielded
        self._resume: dict[int, int] = {}  # partition -> offset from the checkpoint resumed
        self._assigned: set[int] = set()
        self._at_end: set[int] = set()
        self._end_offset: dict[int, int] = {}  # partition -> offset of its last end event
        self._stopping = False
        self.aligner = PartitionAligner(max_buffered=20 * batch_messages)
        self._fatal: str | None = None
        self.commits = 0
        ensure_reachable(uri)
        config = client_config(
            uri,
            **{
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                # An empty fetch returns after 100 ms (librdkafka: 500): a quiet partition
                # that gets a transaction delays it less. Data is returned as soon as it is there.
                "fetch.wait.max.ms": 100,
                "error_cb": self._on_error,
            },
        )
        try:
            self.consumer = Consumer(config)
        except KafkaException as exc:
            raise ConfigError(f"{uri}: {exc.args[0].str()}") from None
        try:
            self.partitions = topic_partitions(self.consumer, uri)
        except ConfigError:
            self.consumer.close()
            raise
        self._subscribed = False

    # --- the Source protocol -----------------------------------------------------------------

    def position(self) -> dict[str, Any]:
        """Next offset per partition after the last batch yielded (JSON-serialisable)."""
        offsets = {}
        for partition, read_up_to in sorted(self._next.items()):
            buffered = self.aligner.first_unreleased(partition)  # not decided yet
            offsets[str(partition)] = read_up_to if buffered is None else buffered
        return {"format": "kafka", "topic": self.uri.topic, "offsets": offsets}

    def seek(self, position: dict[str, Any]) -> None:
        """Resumes each partition at the checkpoint's offset when it is assigned."""
        if position.get("format") != "kafka":
            raise ValueError(f"checkpoint was taken on a {position.get('format')} input, not Kafka")
        if position.get("topic") != self.uri.topic:
            raise ValueError(
                f"checkpoint was taken on topic {position.get('topic')!r}, not {self.uri.topic!r}"
            )
        self._resume = {int(p): int(o) for p, o in position.get("offsets", {}).items()}
        self._next.update(self._resume)

    def commit(self, position: dict[str, Any]) -> None:
        """Commits the offsets of ``position`` (a durable checkpoint) for partitions still ours.

        A partition handed to another member since is left alone: its new owner's progress
        must not be moved back. A failed commit is logged, not raised: the checkpoint is
        already durable and the next one commits again.
        """
        offsets = [
            TopicPartition(self.uri.topic, int(p), int(o))
            for p, o in position.get("offsets", {}).items()
            if int(p) in self._assigned
        ]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("%s: offsets not committed (%s); the next checkpoint will", self, exc)
            return
        self.commits += 1

    # --- reading -------------------------------------------------------------------------------

    def batches(self, decoder: Decoder) -> Iterator[Item]:
        """Validated batches, partitions merged in event-time order (each in offset order);
        IDLE when quiet."""

        def partition_decoder(partition: int) -> Decoder:
            return Decoder(decoder.tokenize, f"{self.uri.topic}[{partition}]", decoder.limits)

        decoders = {p: partition_decoder(p) for p in self.partitions}
        if not self._subscribed:
            self.consumer.subscribe(
                [self.uri.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
            self._subscribed = True
        quiet_since = last_message_at = time.monotonic()
        idle_reported = False
        while not self._stopping:
            messages = self._next_messages()
            if self._fatal is not None:
                raise KafkaError(self._fatal)
            by_partition: dict[int, list[Any]] = {}
            for message in messages:
                error = message.error()
                partition = message.partition()  # None only for client-level errors
                if error is None and partition is not None:
                    by_partition.setdefault(partition, []).append(message)
                    self._at_end.discard(partition)
                elif error is None:
                    continue
                elif error.code() == ClientError._PARTITION_EOF and partition is not None:
                    self._at_end.add(partition)
                    self._end_offset[partition] = message.offset()  # where reading stands
                else:
                    self._consumer_error(error)
            now = time.time() * 1000
            for partition, batch in by_partition.items():
                if partition not in decoders:  # the topic grew
                    decoders[partition] = partition_decoder(partition)
                values = [m.value() or b"" for m in batch]
                offsets = [m.offset() for m in batch]
                valid, dead = decoders[partition].lines(values, offsets, [now] * len(values))
                self.aligner.add(partition, valid, dead, offsets)
                self._next[partition] = offsets[-1] + 1
            # Released in event-time order across partitions; everything once the source has
            # been quiet for ALIGN_WAIT_S (nothing more is on its way to be merged with).
            if messages:
                last_message_at = time.monotonic()
            quiet = time.monotonic() - last_message_at >= ALIGN_WAIT_S
            released = self.aligner.release(self._assigned - self._at_end, force=quiet)
            if released is not None:
                quiet_since = time.monotonic()
                idle_reported = False
                yield released
            elif by_partition:
                quiet_since = time.monotonic()
            elif not idle_reported and time.monotonic() - quiet_since >= self.idle_timeout_s:
                idle_reported = True
                yield IDLE
            if self.stop_at_end and self._assigned and self._assigned <= self._at_end:
                if self.aligner.holding() == 0 and self._read_to_the_end():
                    return
        rest = self.aligner.release(set(), force=True)  # stopped: nothing left behind
        if rest is not None:
            yield rest

    def _read_to_the_end(self) -> bool:
        """Whether every assigned partition is read up to the broker's high watermark now.

        End-of-partition events say the fetcher caught up with the watermark it last saw;
        the broker is asked again before stopping, as replicas may still be advancing it.
        """
        for partition in sorted(self._assigned):
            tp = TopicPartition(self.uri.topic, partition)
            try:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            except KafkaException as exc:
                log.warning("%s: end offsets unknown (%s); reading on", self, exc)
                return False
            if max(self._next.get(partition, 0), self._end_offset.get(partition, 0)) < high:
                self._at_end.discard(partition)
                return False
        return True

    def _next_messages(self) -> list[Any]:
        """What is queued, at once; if nothing, the first message to arrive (within the poll
        timeout) and whatever came with it: big batches when behind, no wait when live."""
        consume = self.consumer.consume
        messages = consume(self.batch_messages, 0)
        if not messages:
            messages = consume(1, POLL_TIMEOUT_S)
            if messages:
                messages += consume(self.batch_messages - 1, 0)
        return messages

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopping

    def stop(self) -> None:
        """Ends :meth:`batches` after the batch being processed (records buffered for the
        partition merge are released first, so the final position covers all it read)."""
        self._stopping = True

    def close(self) -> None:
        """Leaves the group (its partitions go to the other members) without committing."""
        try:
            self.consumer.close()
        except RuntimeError:  # already closed
            pass

    # --- callbacks -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            start = self._resume.pop(tp.partition, None)  # a checkpoint's offset, used once
            if start is not None:
                tp.offset = start
            self._assigned.add(tp.partition)
            self._at_end.discard(tp.partition)
        log.info("%s: assigned partitions %s", self, sorted(self._assigned))
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._assigned.discard(tp.partition)
            self._at_end.discard(tp.partition)
            self._next.pop(tp.partition, None)
            self.aligner.drop(tp.partition)  # its new owner reads the buffered records
        log.info("%s: partitions revoked, now %s", self, sorted(self._assigned))

    def _on_error(self, error: Any) -> None:
        if error.fatal():
            self._fatal = f"{self}: {error.str()}"
        else:
            log.warning("%s: %s", self, error.str())

    def _consumer_error(self, error: Any) -> None:
        if error.fatal() or not error.retriable() and error.code() in _STOPPING_ERRORS:
            raise KafkaError(f"{self}: {error.str()} ({error.name()})")
        log.warning("%s: %s", self, error.str())

    def __str__(self) -> str:
        return f"{self.name} (group {self.group_id})"


_STOPPING_ERRORS = {
    ClientError.UNKNOWN_TOPIC_OR_PART,
    ClientError.TOPIC_AUTHORIZATION_FAILED,
    ClientError.GROUP_AUTHORIZATION_FAILED,
}
