"""Kafka addresses and client settings shared by the Kafka source, sinks and profile feed.

A topic is named by a URI, accepted wherever a path is (``run --input``, ``--alerts``,
``--enriched``, ``--dead-letters``, ``produce --to``)::

    kafka://broker1:9092,broker2:9092/card-transactions?session.timeout.ms=6000

The host list is the bootstrap servers, the path the topic, and each query parameter a
librdkafka setting passed to the client as is (security, timeouts, ...). Setting
``FRAUDSTREAM_KAFKA_CONFIG`` to ``key=value`` pairs separated by ``;`` adds settings to every
client without repeating them in each URI (e.g. credentials, which then never appear in a
command line or a dead-letter ``source``).

librdkafka's log lines go to the ``fraudstream.kafka`` logger, not to standard error, so a
broker that cannot be reached gives one readable error, not a screen of retries.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fraudstream.config import ConfigError

__all__ = [
    "SCHEME",
    "KafkaError",
    "KafkaURI",
    "client_config",
    "ensure_reachable",
    "is_kafka_uri",
    "log",
    "raise_for",
    "topic_partitions",
]

SCHEME = "kafka://"
log = logging.getLogger("fraudstream.kafka")
client_log = logging.getLogger("fraudstream.kafka.client")  # librdkafka's own lines
client_log.addHandler(logging.NullHandler())  # shown only where logging is configured
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOST = re.compile(r"^[A-Za-z0-9._\-\[\]:]+:\d{1,5}$")
CONNECT_TIMEOUT_S = 5.0


class KafkaError(ConfigError):
    """A Kafka client failed in a way the run cannot continue past (said in one line).

    A :class:`ConfigError`, so every command reports it as one readable line (most are:
    a wrong address, a missing topic, missing rights).
    """


def is_kafka_uri(target: str | None) -> bool:
    """Whether ``target`` names a Kafka topic rather than a file.

    >>> is_kafka_uri("kafka://localhost:9092/fraud-alerts"), is_kafka_uri("alerts.jsonl")
    (True, False)
    """
    return bool(target) and str(target).lower().startswith(SCHEME)


@dataclass(frozen=True)
class KafkaURI:
    """A topic on a cluster: bootstrap servers, topic name and extra client settings.

    >>> uri = KafkaURI.parse("kafka://a:9092,b:9093/card-transactions?linger.ms=20")
    >>> uri.bootstrap, uri.topic, uri.settings
    ('a:9092,b:9093', 'card-transactions', {'linger.ms': '20'})
    >>> uri.with_topic("fraud-alerts").text
    'kafka://a:9092,b:9093/fraud-alerts?linger.ms=20'
    """

    bootstrap: str
    topic: str
    settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> KafkaURI:
        """Parses ``kafka://host:port[,host:port...]/topic[?setting=value&...]``.

        Raises :class:`ConfigError` saying what is wrong and what the form is.
        """
        form = "expected kafka://host:port/topic"
        if not is_kafka_uri(text):
            raise ConfigError(f"{text!r}: not a Kafka URI ({form})")
        parts = urlsplit(text)
        hosts = [h for h in parts.netloc.split(",") if h]
        if not hosts:
            raise ConfigError(f"{text}: no broker address ({form})")
        for host in hosts:
            if "@" in host:
                raise ConfigError(
                    f"{text}: credentials do not belong in the URI; "
                    "put them in FRAUDSTREAM_KAFKA_CONFIG"
                )
            if not _HOST.match(host) or not 0 < int(host.rsplit(":", 1)[1]) < 65536:
                raise ConfigError(f"{text}: {host!r} is not host:port ({form})")
        topic = parts.path.strip("/")
        if not topic:
            raise ConfigError(f"{text}: no topic ({form})")
        if not _TOPIC.match(topic):
            raise ConfigError(
                f"{text}: {topic!r} is not a topic name "
                "(letters, digits, '.', '_' and '-', at most 249)"
            )
        try:
            settings = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True))
        except ValueError:
            settings = {} if not parts.query else {"": ""}
        if any(not key for key in settings):
            raise ConfigError(f"{text}: settings must be ?name=value&name=value")
        return cls(",".join(hosts), topic, settings)

    def with_topic(self, topic: str) -> KafkaURI:
        """The same cluster and settings, another topic."""
        return KafkaURI(self.bootstrap, topic, dict(self.settings))

    @property
    def text(self) -> str:
        """The URI again (settings included; credentials never are)."""
        query = "&".join(f"{k}={v}" for k, v in self.settings.items())
        return f"{SCHEME}{self.bootstrap}/{self.topic}" + (f"?{query}" if query else "")

    def __str__(self) -> str:
        return f"{SCHEME}{self.bootstrap}/{self.topic}"


def _environment_settings() -> dict[str, str]:
    raw = os.environ.get("FRAUDSTREAM_KAFKA_CONFIG", "")
    settings = {}
    for pair in filter(None, (p.strip() for p in raw.split(";"))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"FRAUDSTREAM_KAFKA_CONFIG: {pair!r} is not name=value")
        settings[key.strip()] = value.strip()
    return settings


def client_config(uri: KafkaURI, **defaults: Any) -> dict[str, Any]:
    """librdkafka settings for a client of ``uri``: defaults < environment < URI settings."""
    config: dict[str, Any] = {"bootstrap.servers": uri.bootstrap, "logger": client_log}
    config.update(defaults)
    config.update(_environment_settings())
    config.update(uri.settings)
    return config


def ensure_reachable(uri: KafkaURI, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raises :class:`ConfigError` unless some bootstrap broker accepts a TCP connection.

    librdkafka itself retries an unreachable broker forever (logging each attempt); a plain
    connect first turns a wrong address into one readable line at once.
    """
    failures = []
    for host in uri.bootstrap.split(","):
        name, _, port = host.rpartition(":")
        try:
            with socket.create_connection((name.strip("[]"), int(port)), timeout=timeout_s):
                return
        except OSError as exc:
            failures.append(f"{host}: {exc.strerror or exc}")
    raise ConfigError(f"{uri}: cannot reach any Kafka broker ({'; '.join(failures)})")


def raise_for(error: Any, what: str) -> None:
    """Raises :class:`KafkaError` for a confluent-kafka ``KafkaError`` (if any)."""
    if error is not None:
        raise KafkaError(f"{what}: {error.str()} ({error.name()})")


def topic_partitions(client: Any, uri: KafkaURI, timeout_s: float = 10.0) -> list[int]:
    """The partitions of ``uri``'s topic (asks the cluster; never creates the topic).

    Raises :class:`ConfigError` if the cluster does not answer or has no such topic.
    """
    from confluent_kafka import KafkaException

    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ConfigError(f"{uri}: the cluster did not answer ({exc.args[0].str()})") from None
    topic = metadata.topics.get(uri.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        known = sorted(t for t in metadata.topics if not t.startswith("__"))
        shown = ", ".join(known[:10]) or "none"
        raise ConfigError(f"{uri}: no topic {uri.topic!r} on the cluster (topics: {shown})")
    return sorted(topic.partitions)
