"""Alerts (or any output) to a Kinesis stream, the card token as partition key.

``--alerts kinesis://FraudAlerts`` (the stream of seed 000's Flink job) writes each record as
one Kinesis record: the data is its JSON (the same bytes as a JSON-lines output line), the
partition key its card (already a token if it looked like a card number), so one card's
alerts land on one shard in order. Records without a card are keyed by ``source:position``.

``PutRecords`` takes up to 500 records; records it fails (throttling) are sent again with
backoff. Delivery is at least once: after a crash and resume, records written after the
last checkpoint are written again, and consumers deduplicate by ``transaction_id``.
"""

from __future__ import annotations

import random
import time
from typing import Any

import msgspec

from fraudstream.io.aws.clients import AwsError, aws_errors, client
from fraudstream.io.aws.kinesis_shards import stream_name

__all__ = ["KinesisSink", "partition_key"]

BATCH_RECORDS = 500  # PutRecords' maximum
MAX_BATCH_BYTES = 4 * 1024 * 1024  # under the 5 MiB request limit, keys included
MAX_ATTEMPTS = 10
BACKOFF_S = 0.05
_encode = msgspec.json.Encoder().encode


def partition_key(record: dict[str, Any]) -> str:
    """A record's partition key: its card, else ``source:position``, else its id.

    >>> partition_key({"card_id": "tok_ab12", "decision": "decline"})
    'tok_ab12'
    >>> partition_key({"source": "CreditCardTransactions[shardId-000000000001]", "position": 7})
    'CreditCardTransactions[shardId-000000000001]:7'
    """
    card = record.get("card_id")
    if card is None and isinstance(record.get("record"), dict):  # late records
        card = record["record"].get("card_id")
    if card is not None and str(card):
        key = str(card)
    elif "position" in record:
        key = f"{record.get('source', 'input')}:{record['position']}"
    else:
        key = str(record.get("transaction_id", "none")) or "none"
    return key[:256]  # the service's limit


class KinesisSink:
    """Records written to a Kinesis stream (see the module docstring)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.stream = stream_name(uri)
        self.kinesis = client("kinesis")
        with aws_errors(uri):
            self.kinesis.describe_stream_summary(StreamName=self.stream)
        self.sent = 0

    def write_dicts(self, records: list[dict[str, Any]]) -> None:
        """Writes one Kinesis record per output record."""
        batch: list[dict[str, Any]] = []
        size = 0
        for record in records:
            entry = {"Data": _encode(record), "PartitionKey": partition_key(record)}
            length = len(entry["Data"]) + len(entry["PartitionKey"])
            if batch and (len(batch) == BATCH_RECORDS or size + length > MAX_BATCH_BYTES):
                self._put(batch)
                batch, size = [], 0
            batch.append(entry)
            size += length
        if batch:
            self._put(batch)

    def _put(self, entries: list[dict[str, Any]]) -> None:
        for attempt in range(MAX_ATTEMPTS):
            with aws_errors(self.uri):
                response = self.kinesis.put_records(StreamName=self.stream, Records=entries)
            results = response.get("Records", [])
            failed = [e for e, r in zip(entries, results, strict=True) if r.get("ErrorCode")]
            self.sent += len(entries) - len(failed)
            if not failed:
                return
            entries = failed
            time.sleep(random.uniform(0, BACKOFF_S * 2**attempt))
        raise AwsError(
            f"{self.uri}: {len(entries)} records not accepted after {MAX_ATTEMPTS} tries"
        )

    def flush(self) -> None:
        """Every record is written when given."""

    def close(self) -> None:
        """Nothing to release."""
