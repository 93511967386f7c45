"""The decision store and the alert hooks as Flink operators (see :mod:`.hooks`).

The job's deciding operator emits the decisions and the alerts as JSON lines (side outputs,
one string per released micro-batch). Each operator here, at the job's parallelism, hands an
element's records to the embedded runtime's own sink:

- the decision store (:class:`~fraudstream.io.sqlstore.DecisionStore`, or DynamoDB): an
  upsert by transaction id, so records replayed after a restore overwrite themselves;
- alert webhooks and commands (:mod:`fraudstream.io.webhook`): delivered while the operator
  handles the element, so before the checkpoint barrier behind it passes: every alert of a
  completed checkpoint was delivered (or parked in the retry table) and a restore replays
  only later ones. At least once, the transaction id as delivery id, as in `run`.

The webhook's HMAC secret is read from the named environment variable where the operator
runs (a TaskManager), never put in the job graph.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import msgspec
from pyflink.datastream import ProcessFunction
from pyflink.datastream.connectors.base import Sink
from pyflink.java_gateway import get_gateway

from fraudstream.flink.functions import PICKLED

RETRY_EVERY_S = 1.0  # how often an operator retries its parked alerts

__all__ = ["AlertDelivery", "StoreWriter", "add_writer", "records_of"]

_decode = msgspec.json.Decoder(dict[str, Any]).decode


def records_of(lines: str) -> list[dict[str, Any]]:
    """The records of a side output's JSON-lines string.

    >>> records_of('{"transaction_id": "a"}\\n{"transaction_id": "b"}')
    [{'transaction_id': 'a'}, {'transaction_id': 'b'}]
    """
    return [_decode(line) for line in lines.split("\n") if line]


def add_writer(stream: Any, name: str, writer: ProcessFunction) -> None:
    """``writer`` on ``stream``; it writes by itself, so its (empty) output ends in a
    discarding sink: Flink runs only operators that lead to a sink."""
    discarding = get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2
    (
        stream.process(writer, output_type=PICKLED)
        .name(f"-> {name}")
        .uid(f"fraudstream-{name}-hook")
        .sink_to(Sink(discarding.DiscardingSink()))
        .name(f"{name} (written by the operator before)")
        .uid(f"fraudstream-{name}-hook-end")
    )


class StoreWriter(ProcessFunction):  # type: ignore[misc]
    """Upserts each element's decisions into the decision store."""

    def __init__(self, store: str) -> None:
        self.store = store

    def open(self, runtime_context: Any) -> None:
        if self.store.lower().startswith("dynamodb://"):
            from fraudstream.io.aws.dynamodb_store import DynamoDecisionStore

            self.sink: Any = DynamoDecisionStore(self.store)
        else:
            from fraudstream.io.sqlstore import DecisionStore

            self.sink = DecisionStore(self.store)

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        self.sink.write_dicts(records_of(value))
        self.sink.flush()
        return iter(())

    def close(self) -> None:
        self.sink.close()


class AlertDelivery(ProcessFunction):  # type: ignore[misc]
    """Delivers each element's alerts to a webhook (``url``) or a command; retries parked
    ones at most every :data:`RETRY_EVERY_S`."""

    def __init__(
        self,
        retry_db: str,
        url: str | None = None,
        secret_env: str | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.retry_db = retry_db
        self.url = url
        self.secret_env = secret_env
        self.command = command

    def open(self, runtime_context: Any) -> None:
        from fraudstream.io.webhook import CommandHook, WebhookSink

        if self.url is not None:
            secret = os.environ.get(self.secret_env) if self.secret_env else None
            self.hook: Any = WebhookSink(
                self.url, secret.encode() if secret else None, retry_db=self.retry_db
            )
        else:
            assert self.command is not None
            self.hook = CommandHook(self.command, retry_db=self.retry_db)
        self.retried = time.monotonic()

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        self.hook.write_dicts(records_of(value))
        if time.monotonic() - self.retried >= RETRY_EVERY_S:
            self.hook.flush()  # parked alerts that are due
            self.retried = time.monotonic()
        return iter(())

    def close(self) -> None:
        self.hook.close()  # retries what is due once more
