"""Alerts to an SQS queue or an SNS topic: seed 000's alert handler (a Lambda, or anyone).

``--alerts sqs://QUEUE`` (a queue name, or its URL with or without ``https://``) sends each
alert as one message; ``--alerts sns://ARN`` publishes it to the topic. The body is the alert
record's JSON, the same bytes as a line of a JSON-lines alerts file. Every message carries
the attributes ``transaction_id`` and ``decision`` (a subscription can filter on the tier).

FIFO queues and topics (names ending in ``.fifo``) get the transaction id as deduplication id
and the card as message group: an alert sent again after a crash and resume (alerts are
delivered at least once) is dropped by the service within its five-minute window, and one
card's alerts stay in order. On a standard queue or topic the subscriber deduplicates on the
``transaction_id`` attribute.

Messages go in batches of ten; entries the service fails are sent again with backoff.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from typing import Any

import msgspec

from fraudstream.config import ConfigError
from fraudstream.io.aws.clients import AwsError, aws_errors, client

__all__ = ["SnsAlertSink", "SqsAlertSink", "fifo_id", "queue_url"]

BATCH = 10  # SendMessageBatch / PublishBatch maximum
MAX_BATCH_BYTES = 256 * 1024
MAX_ATTEMPTS = 8
BACKOFF_S = 0.05
_FIFO_ID = re.compile(r"^[!-~]{1,128}$")  # printable ASCII, no space, as SQS/SNS accept
_encode = msgspec.json.Encoder().encode


def queue_url(uri: str) -> str | None:
    """The queue URL an ``sqs://`` URI names, or None when it names a queue by name only.

    >>> queue_url("sqs://sqs.us-east-1.amazonaws.com/123456789012/fraud-alerts.fifo")
    'https://sqs.us-east-1.amazonaws.com/123456789012/fraud-alerts.fifo'
    >>> queue_url("sqs://http://127.0.0.1:5000/123456789012/alerts")
    'http://127.0.0.1:5000/123456789012/alerts'
    >>> queue_url("sqs://fraud-alerts") is None
    True
    """
    rest = uri[len("sqs://") :]
    if not rest:
        raise ConfigError(f"{uri}: expected sqs://QUEUE-NAME or sqs://QUEUE-URL")
    if rest.startswith(("http://", "https://")):
        return rest
    if "/" in rest.strip("/"):
        return "https://" + rest
    return None


def fifo_id(value: Any) -> str:
    """A FIFO deduplication or group id for ``value``: itself when SQS/SNS accept it, else a
    digest of it (same value, same id).

    >>> fifo_id("tx-42"), len(fifo_id("tx 42 with spaces"))
    ('tx-42', 64)
    """
    text = str(value)
    if _FIFO_ID.match(text):
        return text
    return hashlib.sha256(text.encode()).hexdigest()


def _attributes(record: dict[str, Any], string_value: str) -> dict[str, Any]:
    return {
        name: {"DataType": "String", string_value: str(record[name])}
        for name in ("transaction_id", "decision")
        if record.get(name) not in (None, "")
    }


def _batches(entries: list[dict[str, Any]], body: str) -> list[list[dict[str, Any]]]:
    """Entries in groups of at most ten and 256 KiB of bodies."""
    groups: list[list[dict[str, Any]]] = [[]]
    size = 0
    for entry in entries:
        length = len(entry[body].encode())
        if groups[-1] and (len(groups[-1]) == BATCH or size + length > MAX_BATCH_BYTES):
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += length
    return [group for group in groups if group]


class _BatchSender:
    """Sends entries in batches, resending failed ones with backoff (subclasses: the call)."""

    body = "MessageBody"
    name = ""
    fifo = False
    sent = 0  # messages accepted

    def _send(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def _entries(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entries = []
        for record in records:
            entry: dict[str, Any] = {
                self.body: _encode(record).decode(),
                "MessageAttributes": _attributes(record, "StringValue"),
            }
            if self.fifo:
                entry["MessageDeduplicationId"] = fifo_id(record["transaction_id"])
                entry["MessageGroupId"] = fifo_id(record.get("card_id") or "none")
            entries.append(entry)
        return entries

    def write_dicts(self, records: list[dict[str, Any]]) -> None:
        """Sends one message per alert record."""
        entries = self._entries(records)
        for index, entry in enumerate(entries):
            entry["Id"] = str(index)
        for group in _batches(entries, self.body):
            self._deliver(group)
        self.sent += len(records)

    def _deliver(self, entries: list[dict[str, Any]]) -> None:
        by_id = {e["Id"]: e for e in entries}
        for attempt in range(MAX_ATTEMPTS):
            with aws_errors(self.name):
                response = self._send(list(by_id.values()))
            failed = response.get("Failed") or []
            if not failed:
                return
            rejected = [f for f in failed if f.get("SenderFault")]
            if rejected:
                raise AwsError(f"{self.name}: message refused: {rejected[0].get('Message')}")
            by_id = {f["Id"]: by_id[f["Id"]] for f in failed}
            time.sleep(random.uniform(0, BACKOFF_S * 2**attempt))
        raise AwsError(f"{self.name}: {len(by_id)} alerts not accepted after {MAX_ATTEMPTS} tries")

    def flush(self) -> None:
        """Every message is sent when written."""

    def close(self) -> None:
        """Nothing to release."""


class SqsAlertSink(_BatchSender):
    """Alerts as messages of an SQS queue."""

    def __init__(self, uri: str) -> None:
        self.name = uri
        self.sqs = client("sqs")
        url = queue_url(uri)
        with aws_errors(uri):
            if url is None:
                url = str(self.sqs.get_queue_url(QueueName=uri[len("sqs://") :])["QueueUrl"])
            self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        self.url = url
        self.fifo = url.endswith(".fifo")
        self.sent = 0

    def _send(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        response: dict[str, Any] = self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
        return response


class SnsAlertSink(_BatchSender):
    """Alerts published to an SNS topic."""

    body = "Message"

    def __init__(self, uri: str) -> None:
        self.name = uri
        self.arn = uri[len("sns://") :]
        if not self.arn.startswith("arn:"):
            raise ConfigError(f"{uri}: expected sns://arn:aws:sns:REGION:ACCOUNT:TOPIC")
        self.sns = client("sns")
        with aws_errors(uri):
            self.sns.get_topic_attributes(TopicArn=self.arn)
        self.fifo = self.arn.endswith(".fifo")
        self.sent = 0

    def _send(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        response: dict[str, Any] = self.sns.publish_batch(
            TopicArn=self.arn, PublishBatchRequestEntries=entries
        )
        return response
