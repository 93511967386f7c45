"""The decision store, the alert hooks and the lakehouse as Flink operators (see :mod:`.hooks`).

The job's deciding operator emits the decisions and the alerts as JSON lines (side outputs,
one string per released micro-batch). Each operator here, at the job's parallelism, hands an
element's records to the embedded runtime's own sink:

- the decision store (:class:`~fraudstream.io.sqlstore.DecisionStore`, or DynamoDB): an
  upsert by transaction id, so records replayed after a restore overwrite themselves;
- alert webhooks and commands (:mod:`fraudstream.io.webhook`): delivered while the operator
  handles the element, so before the checkpoint barrier behind it passes: every alert of a
  completed checkpoint was delivered (or parked in the retry table) and a restore replays
  only later ones. At least once, the transaction id as delivery id, as in `run`.

- the lakehouse (:mod:`fraudstream.io.lakehouse_staging`): each micro-batch's rows, one line,
  go to a ``FileSink`` whose parts become visible when their checkpoint completes; a committer
  (one subtask; it sees one small token per micro-batch, never the records) sweeps the visible
  parts into Iceberg every ``commit_every_ms``, each part exactly once. Parts of the last
  checkpoint of a job that ends are swept by the client (`fraudstream flink run`, attached)
  or ``fraudstream flink lakehouse-commit``, or by the next job's committer when it opens.

The webhook's HMAC secret is read from the named environment variable where the operator
runs (a TaskManager), never put in the job graph.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, ProcessFunction
from pyflink.datastream.connectors.base import Sink
from pyflink.java_gateway import get_gateway

from fraudstream.flink.functions import PICKLED

RETRY_EVERY_S = 1.0  # how often an operator retries its parked alerts

__all__ = [
    "AlertDelivery",
    "LakehouseCommitter",
    "StoreWriter",
    "add_lakehouse",
    "add_writer",
    "file_sink",
    "records_of",
]

_decode = msgspec.json.Decoder(dict[str, Any]).decode


def records_of(lines: str) -> list[dict[str, Any]]:
    """The records of a side output's JSON-lines string.

    >>> records_of('{"transaction_id": "a"}\\n{"transaction_id": "b"}')
    [{'transaction_id': 'a'}, {'transaction_id': 'b'}]
    """
    return [_decode(line) for line in lines.split("\n") if line]


def add_writer(stream: Any, name: str, writer: Any, parallelism: int | None = None) -> None:
    """``writer`` on ``stream``; it writes by itself, so its (empty) output ends in a
    discarding sink: Flink runs only operators that lead to a sink."""
    discarding = get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2
    written = stream.process(writer, output_type=PICKLED).name(f"-> {name}")
    if parallelism is not None:
        written = written.set_parallelism(parallelism)
    ended = written.uid(f"fraudstream-{name}-hook").sink_to(Sink(discarding.DiscardingSink()))
    if parallelism is not None:
        ended = ended.set_parallelism(parallelism)
    ended.name(f"{name} (written by the operator before)").uid(f"fraudstream-{name}-hook-end")


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


def file_sink(directory: str, prefix: str, suffix: str) -> Any:
    """Flink's ``FileSink`` of lines into ``directory``: exactly once, a part becomes visible
    (loses its hidden in-progress name) when the checkpoint holding it completes."""
    from pyflink.common.serialization import Encoder
    from pyflink.datastream.connectors.file_system import (
        BucketAssigner,
        FileSink,
        OutputFileConfig,
        RollingPolicy,
    )

    return (
        FileSink.for_row_format(directory, Encoder.simple_string_encoder())
        .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner())
        .with_rolling_policy(RollingPolicy.on_checkpoint_rolling_policy())
        .with_output_file_config(
            OutputFileConfig.builder().with_part_prefix(prefix).with_part_suffix(suffix).build()
        )
        .build()
    )


def add_lakehouse(stream: Any, location: str, staging: str, commit_every_ms: int) -> None:
    """The lakehouse's rows (``stream``: a line per micro-batch) staged in part files, and the
    committer that appends the visible ones to Iceberg."""
    from fraudstream.io.lakehouse_staging import PART_PREFIX, PART_SUFFIX

    (
        stream.sink_to(file_sink(Path(staging).as_uri(), PART_PREFIX, PART_SUFFIX))
        .name(f"lakehouse rows -> {staging}")
        .uid("fraudstream-lakehouse-staging")
    )
    add_writer(
        stream.map(lambda _: 0, output_type=Types.INT())
        .name("lakehouse batches")
        .uid("fraudstream-lakehouse-batches")
        .key_by(lambda _: 0, key_type=Types.INT()),
        "lakehouse",
        LakehouseCommitter(location, staging, commit_every_ms),
        parallelism=1,
    )


class LakehouseCommitter(KeyedProcessFunction):  # type: ignore[misc]
    """Appends the staged parts that became visible to the Iceberg table (one subtask).

    It keeps no state: which parts are in the table is in the table (each snapshot lists
    its parts). The first micro-batch's token starts a processing-time timer that sweeps
    every ``commit_every_ms`` while the job runs (a sweep of an empty directory is one
    listing), so the last checkpoint's parts of a job still running are committed too.
    """

    def __init__(self, location: str, staging: str, commit_every_ms: int) -> None:
        self.location = location
        self.staging = staging
        self.commit_every_ms = commit_every_ms
        self._due: int | None = None

    def open(self, runtime_context: Any) -> None:
        self._due = None
        self._sweep()  # what an earlier job left (its last checkpoint's parts)

    def process_element(self, value: int, ctx: Any) -> Iterator[Any]:
        if self._due is None:
            self._due = ctx.timer_service().current_processing_time() + self.commit_every_ms
            ctx.timer_service().register_processing_time_timer(self._due)
        yield from ()

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        self._sweep()
        # Every interval from the first batch on: a batch's token can reach this operator
        # before the FileSink has written its rows, which then become visible with a later
        # checkpoint and no token after them. A job that ends drops the timer.
        self._due = timestamp + self.commit_every_ms
        ctx.timer_service().register_processing_time_timer(self._due)
        yield from ()

    def _sweep(self) -> None:
        from fraudstream.io.lakehouse_staging import commit_staged

        commit_staged(self.location, self.staging)
