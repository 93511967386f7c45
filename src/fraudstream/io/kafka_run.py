"""``fraudstream run --input kafka://...``: the source, the profile feed, and a clean finish.

Wiring only: the consumer group source (:mod:`fraudstream.io.kafka_source`), the optional
``users-config`` feed (:mod:`fraudstream.io.kafka_profiles`) loaded before the first batch
and polled between batches, and, when a run ends normally (``--stop-at-end`` at the end of a
backfill, SIGTERM or a first Ctrl-C), a commit of the final offsets after every output was
flushed and closed. A crashed (or twice-interrupted) run commits nothing beyond its last
checkpoint.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from fraudstream.config import ConfigError
from fraudstream.io.kafka import KafkaURI, is_kafka_uri, log
from fraudstream.io.kafka_profiles import KafkaProfileFeed
from fraudstream.io.kafka_source import KafkaSource
from fraudstream.profiles import ProfileTable

__all__ = ["KafkaInput", "profiles_uri"]


def profiles_uri(input_uri: KafkaURI, profiles_topic: str) -> KafkaURI:
    """The profiles topic: a full ``kafka://`` URI, or a topic name on the input's cluster.

    >>> profiles_uri(KafkaURI.parse("kafka://k:9092/card-transactions"), "users-config").text
    'kafka://k:9092/users-config'
    """
    if is_kafka_uri(profiles_topic):
        return KafkaURI.parse(profiles_topic)
    named = KafkaURI.parse(f"kafka://{input_uri.bootstrap}/{profiles_topic}")  # checks the name
    return KafkaURI(named.bootstrap, named.topic, dict(input_uri.settings))


class KafkaInput:
    """The Kafka side of one run: its source and, optionally, its profile feed."""

    def __init__(self, source: KafkaSource, feed: KafkaProfileFeed | None = None) -> None:
        self.source = source
        self.feed = feed
        self._previous: dict[int, Any] = {}  # signal handlers replaced by stop_on_signals

    @classmethod
    def open(
        cls,
        uri: str,
        *,
        group_id: str,
        table: ProfileTable,
        profiles_topic: str | None = None,
        idle_timeout_ms: int = 1_000,
        stop_at_end: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> KafkaInput:
        """Connects (one readable :class:`ConfigError` if anything is wrong) and loads profiles."""
        if not group_id:
            raise ConfigError("--group-id must not be empty")
        parsed = KafkaURI.parse(uri)
        source = KafkaSource(
            parsed, group_id, idle_timeout_ms=idle_timeout_ms, stop_at_end=stop_at_end
        )
        feed = None
        if profiles_topic:
            try:
                feed = KafkaProfileFeed(profiles_uri(parsed, profiles_topic), table, warn)
                feed.load()
            except BaseException:
                source.close()
                if feed is not None:
                    feed.close()
                raise
        return cls(source, feed)

    def between_batches(self, other: Callable[[], Any] | None) -> Callable[[], Any] | None:
        """``other`` (e.g. the rules file watcher) plus the profile feed's poll."""
        feed = self.feed
        if feed is None:
            return other
        if other is None:
            return feed.poll

        def both() -> None:
            other()
            feed.poll()

        return both

    def stop_on_signals(self) -> None:
        """SIGTERM or a first Ctrl-C ends the run normally: the batch in hand is finished, the
        outputs closed and the offsets committed (a second Ctrl-C interrupts at once)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, _frame: Any) -> None:
            if self.source.stopping and signum == signal.SIGINT:
                raise KeyboardInterrupt
            log.warning("%s: stopping after the current batch", self.source)
            self.source.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, stop)

    def finish(self) -> None:
        """After a normal end (outputs flushed and closed): commit the final offsets."""
        self.source.commit(self.source.position())

    def close(self) -> None:
        """Leaves the group, releases the clients and restores the signal handlers."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        self.source.close()
        if self.feed is not None:
            self.feed.close()
