"""The Kinesis source: every shard of a stream, sequence numbers in checkpoints.

Each record's data is one JSON transaction. Every shard is read with its own shard iterator
(``GetRecords``); a shard closed by a split or a merge is read to its end before its
children start (:mod:`fraudstream.io.aws.kinesis_shards`), and the shard list is asked again
whenever a shard ends and every ``relist_interval_s``. Shards are merged in event-time order
exactly as Kafka partitions are (:class:`~fraudstream.io.kafka_align.PartitionAligner`), so a
shard whose backlog is read first does not make the others' records late. A shard found at its
tip holds back no record read before that answer, but does hold back those read after it (they
may have been written with older records of its own, after it was asked): they wait until it
is asked again.

Positions and checkpoints (the :class:`~fraudstream.run.Source` protocol):

* ``position()`` is ``{"format": "kinesis", "stream": ..., "shards": {shard id: sequence
  number of the last record decided or buffered by the clock, or None}, "read_to_end":
  [shard ids]}``; records still held for the merge are not covered, so a crash loses none;
* ``seek(position)`` resumes each shard ``AFTER_SEQUENCE_NUMBER`` of its checkpointed
  number (a shard it does not name starts at ``TRIM_HORIZON``, as a new stream does);
* ``commit`` has nothing to do: the checkpoint is where the position is kept (there is no
  consumer group as in Kafka; two runs on one stream each read all of it).

A malformed record becomes a dead letter whose source is ``STREAM[shard id]`` and whose
position is its sequence number.

A stream never ends: with ``stop_at_end`` the run ends once every shard is at its tip
(``MillisBehindLatest`` 0 and nothing returned) and every closed shard is read, like a Kafka
input with ``--stop-at-end``; otherwise it runs until :meth:`stop` (SIGTERM, Ctrl-C), yielding
``IDLE`` after ``idle_timeout_ms`` without records so time still advances.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from fraudstream.io.aws.clients import AwsError, aws_errors, client, error_code, log
from fraudstream.io.aws.kinesis_shards import ShardInfo, list_shards, ready_shards, stream_name
from fraudstream.io.decode import DeadLetter, Decoder
from fraudstream.io.files import IDLE, Item
from fraudstream.io.kafka_align import PartitionAligner

__all__ = ["KinesisSource", "stop_on_signals"]

BATCH_RECORDS = 10_000  # GetRecords' own maximum
POLL_INTERVAL_S = 0.25  # a quiet shard is asked 4 times a second (its limit is 5 reads)
RELIST_INTERVAL_S = 10.0
ALIGN_WAIT_S = 0.5  # a shard that sends nothing this long stops holding the others


@dataclass
class _Reader:
    """Reading one shard in this process."""

    info: ShardInfo
    number: int  # the shard's partition number in the aligner
    after: str | None  # where this process started it (None: its first record)
    iterator: str | None = None
    last_sequence: str | None = None  # of the last record read (renews an expired iterator)
    read: int = 0  # records read; record i has local position i
    sequences: dict[int, str] = field(default_factory=dict)  # local position -> sequence
    at_tip: bool = False
    answered_at: int = 0  # the source's count of GetRecords answers at its last answer
    read_to_end: bool = False


class KinesisSource:
    """Transactions from every shard of a Kinesis stream (see the module docstring)."""

    live = True
    total_bytes = 0
    done_bytes = 0

    def __init__(
        self,
        uri: str,
        *,
        idle_timeout_ms: int = 1_000,
        stop_at_end: bool = False,
        batch_records: int = BATCH_RECORDS,
        poll_interval_s: float = POLL_INTERVAL_S,
        relist_interval_s: float = RELIST_INTERVAL_S,
    ) -> None:
        self.stream = stream_name(uri)
        self.name = f"kinesis://{self.stream}"
        self.idle_timeout_s = max(idle_timeout_ms, 1) / 1000
        self.stop_at_end = stop_at_end
        self.batch_records = min(max(batch_records, 1), BATCH_RECORDS)
        self.poll_interval_s = poll_interval_s
        self.relist_interval_s = relist_interval_s
        self.kinesis = client("kinesis")
        self.shards: dict[str, ShardInfo] = list_shards(self.kinesis, self.stream)
        self._listed_at = time.monotonic()
        self.readers: dict[str, _Reader] = {}
        self._resume: dict[str, str | None] = {}  # shard -> sequence from the checkpoint
        self._read_to_end: set[str] = set()  # shards read to their end (this run or before)
        self.aligner = PartitionAligner(max_buffered=20 * self.batch_records)
        self._answers = 0  # GetRecords answers so far (orders tips and records for the merge)
        self._stopping = False

    # --- the Source protocol -----------------------------------------------------------------

    def position(self) -> dict[str, Any]:
        """Per shard, the sequence number of the last record past the merge (see above)."""
        listed = self.shards.keys() | self.readers.keys()  # expired shards are forgotten
        shards = {s: q for s, q in self._resume.items() if s in listed}
        done = self._read_to_end & listed
        for shard_id, reader in self.readers.items():
            upto = self._released_upto(reader)
            shards[shard_id] = reader.sequences[upto - 1] if upto > 0 else reader.after
            if reader.read_to_end and upto == reader.read:
                done.add(shard_id)
            else:
                done.discard(shard_id)
        return {
            "format": "kinesis",
            "stream": self.stream,
            "shards": dict(sorted(shards.items())),
            "read_to_end": sorted(done),
        }

    def seek(self, position: dict[str, Any]) -> None:
        """Resumes each shard right after the checkpoint's sequence number."""
        if position.get("format") != "kinesis":
            raise ValueError(
                f"checkpoint was taken on a {position.get('format')} input, not Kinesis"
            )
        if position.get("stream") != self.stream:
            raise ValueError(
                f"checkpoint was taken on stream {position.get('stream')!r}, not {self.stream!r}"
            )
        shards = position.get("shards", {})
        self._resume = {str(s): None if q is None else str(q) for s, q in shards.items()}
        self._read_to_end = {str(s) for s in position.get("read_to_end", [])}

    def commit(self, position: dict[str, Any]) -> None:
        """Nothing to do: Kinesis keeps no consumer offsets; the checkpoint holds them."""

    # --- reading -------------------------------------------------------------------------------

    def batches(self, decoder: Decoder) -> Iterator[Item]:
        """Validated batches, shards merged in event-time order (each in sequence order);
        IDLE when quiet."""
        self._start_ready_shards()
        decoders: dict[str, Decoder] = {}
        quiet_since = last_record_at = time.monotonic()
        idle_reported = False
        while not self._stopping:
            got = 0
            relist = time.monotonic() - self._listed_at >= self.relist_interval_s
            now = time.time() * 1000
            for reader in list(self.readers.values()):
                if reader.read_to_end:
                    continue
                records = self._get_records(reader)
                relist = relist or reader.read_to_end
                if not records:
                    continue
                got += len(records)
                shard_id = reader.info.shard_id
                if shard_id not in decoders:
                    decoders[shard_id] = Decoder(
                        decoder.tokenize, f"{self.stream}[{shard_id}]", decoder.limits
                    )
                first = reader.read
                positions = list(range(first, first + len(records)))
                for i, record in zip(positions, records, strict=True):
                    reader.sequences[i] = record["SequenceNumber"]
                reader.read += len(records)
                reader.last_sequence = records[-1]["SequenceNumber"]
                values = [bytes(r["Data"]) for r in records]
                valid, dead = decoders[shard_id].lines(values, positions, [now] * len(values))
                self.aligner.add(reader.number, valid, dead, positions, reader.answered_at)
            if relist:
                self._relist()
            if got:
                last_record_at = time.monotonic()
            quiet = time.monotonic() - last_record_at >= ALIGN_WAIT_S
            active = {r.number for r in self.readers.values() if not (r.at_tip or r.read_to_end)}
            # a shard at its tip holds back what other shards sent after it said so
            tips = {
                r.number: r.answered_at
                for r in self.readers.values()
                if r.at_tip and not r.read_to_end
            }
            released = self.aligner.release(active, force=quiet, ended_at=tips)
            if released is not None:
                quiet_since = time.monotonic()
                idle_reported = False
                yield self._with_sequences(released)
            elif got:
                quiet_since = time.monotonic()
            elif not idle_reported and time.monotonic() - quiet_since >= self.idle_timeout_s:
                idle_reported = True
                yield IDLE
            if self.stop_at_end and self._at_the_end():
                return
            if not got:
                time.sleep(self.poll_interval_s)
        rest = self.aligner.release(set(), force=True)  # stopped: nothing left behind
        if rest is not None:
            yield self._with_sequences(rest)

    def _at_the_end(self) -> bool:
        """Every shard at its tip or read to its end, nothing held, no shard left to start."""
        if self.aligner.holding():
            return False
        if not all(r.at_tip or r.read_to_end for r in self.readers.values()):
            return False
        self._relist()  # a split since the last listing: its children are still to be read
        return all(r.at_tip or r.read_to_end for r in self.readers.values())

    def _get_records(self, reader: _Reader) -> list[dict[str, Any]]:
        """The shard's next records; marks it at its tip, or read to its end."""
        from botocore.exceptions import ClientError

        closed = reader.info.closed  # known before the call: an empty answer then means drained
        for attempt in range(2):
            if reader.iterator is None:
                reader.iterator = self._iterator(reader)
            try:
                response = self.kinesis.get_records(
                    ShardIterator=reader.iterator, Limit=self.batch_records
                )
                break
            except ClientError as exc:
                code = error_code(exc)
                if code == "ExpiredIteratorException" and attempt == 0:
                    reader.iterator = None  # renewed after the last record read
                    continue
                if code in ("ProvisionedThroughputExceededException", "KMSThrottlingException"):
                    log.warning("%s: throttled after retries; reading on", self.name)
                    return []
                raise AwsError(f"{self.name}: {exc}") from None
        records: list[dict[str, Any]] = response.get("Records", [])
        self._answers += 1
        reader.answered_at = self._answers
        reader.iterator = response.get("NextShardIterator")
        behind = int(response.get("MillisBehindLatest", 0) or 0)
        reader.at_tip = not records and behind == 0
        if reader.iterator is None or (closed and reader.at_tip):
            reader.read_to_end = True
            log.info("%s: %s read to its end", self.name, reader.info.shard_id)
        return records

    def _iterator(self, reader: _Reader) -> str:
        after = reader.last_sequence or reader.after
        request: dict[str, Any] = {"StreamName": self.stream, "ShardId": reader.info.shard_id}
        if after is None:
            request["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        with aws_errors(f"{self.name} {reader.info.shard_id}"):
            return str(self.kinesis.get_shard_iterator(**request)["ShardIterator"])

    def _relist(self) -> None:
        self.shards = list_shards(self.kinesis, self.stream)
        self._listed_at = time.monotonic()
        for reader in self.readers.values():
            info = self.shards.get(reader.info.shard_id)
            if info is not None:
                reader.info = info
        self._start_ready_shards()

    def _start_ready_shards(self) -> None:
        done = self._read_to_end | {s for s, r in self.readers.items() if r.read_to_end}
        for shard_id in ready_shards(self.shards, done, set(self.readers)):
            number = len(self.readers)  # readers are never removed: numbers stay unique
            reader = _Reader(self.shards[shard_id], number, self._resume.get(shard_id))
            self.readers[shard_id] = reader
            log.info("%s: reading %s", self.name, shard_id)

    def _released_upto(self, reader: _Reader) -> int:
        """Local position of the shard's first record not yet past the merge."""
        first = self.aligner.first_unreleased(reader.number)
        return reader.read if first is None else first

    def _with_sequences(self, released: tuple[Any, list[DeadLetter]]) -> Item:
        """The released records' dead letters, positioned by sequence number; old ones forgotten."""
        batch, dead = released
        by_source = {f"{self.stream}[{r.info.shard_id}]": r for r in self.readers.values()}
        shown = []
        for letter in dead:
            reader = by_source.get(letter.source)
            sequence = None if reader is None else reader.sequences.get(letter.position)
            shown.append(letter if sequence is None else replace(letter, position=int(sequence)))
        for reader in self.readers.values():  # a checkpoint needs only the one before the cut
            keep_from = self._released_upto(reader) - 1
            for position in [p for p in reader.sequences if p < keep_from]:
                del reader.sequences[position]
        return batch, shown

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopping

    def stop(self) -> None:
        """Ends :meth:`batches` after the batch being processed."""
        self._stopping = True

    def close(self) -> None:
        """Nothing is held open between calls (boto3 clients pool their connections)."""

    def __str__(self) -> str:
        return self.name


def stop_on_signals(source: Any) -> Callable[[], None]:
    """SIGTERM or a first Ctrl-C end a run normally (the batch in hand finished, outputs
    closed); a second Ctrl-C interrupts at once. Returns what restores the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def stop(signum: int, _frame: Any) -> None:
        if source.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("%s: stopping after the current batch", source)
        source.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, stop)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore
