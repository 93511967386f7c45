"""Deciding for the web app: one embedded :class:`Pipeline`, what it decided, who is listening.

Requests are decided in micro-batches (:mod:`fraudstream.web.batching`): each batch is one
decode and one pipeline step, its records in arrival order, each with its own position, so
results map back to requests exactly. Each step is submit (+ flush when the clock holds
records back), so a record is decided (or found late) before its request returns; with an
out-of-orderness of 0 (the default) the decisions equal ``fraudstream run`` over the same
records in the same order, however they are batched. A record that is not valid is answered
alone (422, a dead letter); it never fails the batch. Callers on another thread use
:meth:`DecisionService.decide_now` (under a lock).

Other parts of the app (the review queue, the metrics) register a *listener*: called on the
event loop's thread after every batch with the decision rows and the transactions' own
fields (amount, place, merchant), which the decision record does not carry.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any, overload

import msgspec

from fraudstream.cardnumbers import mask_card_numbers_in_json, mask_raw_text
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline, StepResult
from fraudstream.io.decode import DeadLetter, Decoder
from fraudstream.io.limits import RecordLimits, decode_record
from fraudstream.io.records import decision_dicts, late_dicts
from fraudstream.schema import CardTokenizer, InvalidRecord, mask_card_numbers
from fraudstream.web.batching import Batching, Job, MicroBatcher, Outcome

__all__ = [
    "MAX_DECISIONS_KEPT",
    "DecisionService",
    "Listener",
    "Outcome",
    "error_body",
    "transaction_summaries",
]

MAX_DECISIONS_KEPT = 100_000
MAX_DEAD_LETTERS_KEPT = 10_000
MAX_LATE_KEPT = 10_000
SUBSCRIBER_QUEUE = 1_000

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

Listener = Callable[[list[dict[str, Any]], list[dict[str, Any]]], object]
"""Called with the decision rows of a batch and, row for row, the transactions' summaries."""

_SUMMARY_TEXT = ("currency", "merchant_id", "merchant_category", "country", "channel")


def transaction_summaries(tx: TxBatch) -> list[dict[str, Any]]:
    """What a person reviewing a decision wants of its transaction: amount, place, merchant."""
    columns: dict[str, list[Any]] = {name: getattr(tx, name).to_pylist() for name in _SUMMARY_TEXT}
    amounts = tx.amount.tolist()
    lats = tx.lat.tolist()
    lons = tx.lon.tolist()
    out = []
    for i, amount in enumerate(amounts):
        summary: dict[str, Any] = {"amount": amount}
        if not math.isnan(lats[i]):
            summary["lat"], summary["lon"] = lats[i], lons[i]
        for name, values in columns.items():
            if values[i] is not None:
                summary[name] = values[i]
        out.append(summary)
    return out


def error_body(field_name: str, message: str) -> dict[str, Any]:
    """The API's 4xx body: ``{"detail": [{"field": ..., "message": ...}]}``."""
    return {"detail": [{"field": field_name, "message": message}]}


def _field_of(reason: str) -> str:
    return reason.split(":", 1)[0].strip() or "record"


class _Subscriber:
    """One SSE client: a bounded queue that drops its oldest event when full."""

    def __init__(self, size: int, with_transaction: bool = False) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=size)
        self.dropped = 0
        self.with_transaction = with_transaction

    def put(self, event: bytes) -> None:
        if self.queue.full():
            try:
                self.queue.get_nowait()
                self.dropped += 1
            except asyncio.QueueEmpty:  # pragma: no cover - only with one consumer
                pass
        self.queue.put_nowait(event)


class DecisionService:
    """The pipeline, what it decided, what it rejected, and who is listening."""

    def __init__(
        self,
        pipeline: Pipeline,
        tokenizer: CardTokenizer,
        max_decisions: int = MAX_DECISIONS_KEPT,
        max_dead_letters: int = MAX_DEAD_LETTERS_KEPT,
        max_late: int = MAX_LATE_KEPT,
        limits: RecordLimits | None = None,
        batching: Batching | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.decoder = Decoder(tokenizer, "api", limits)
        self.lock = threading.Lock()
        # Kept as JSON bytes, not dicts: bytes are invisible to the cyclic garbage collector,
        # whose passes over 100,000 kept dicts paused every request (tens of ms each).
        self.decisions: OrderedDict[str, bytes] = OrderedDict()
        self.max_decisions = max_decisions
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=max_dead_letters)
        self.late: deque[dict[str, Any]] = deque(maxlen=max_late)
        self.subscribers: set[_Subscriber] = set()
        self.position = 0
        self.counts = {"decided": 0, "dead_letters": 0, "duplicates": 0, "late": 0}
        self.listeners: list[Listener] = []
        self.batcher = MicroBatcher(batching or Batching(), self.decide_jobs)

    async def decide(self, records: list[Any], raws: list[bytes | str] | None) -> list[Outcome]:
        """Decides ``records`` in order (after any submitted earlier) in the batch that is
        open, or in a new one (:class:`~fraudstream.web.batching.MicroBatcher`); one
        outcome each."""
        return await self.batcher.submit(records, raws)

    def decide_now(self, records: list[Any]) -> list[Outcome]:
        """The synchronous path (any thread): decides ``records`` as one batch."""
        job = Job(records, None, time.time() * 1000)
        self.decide_jobs([job])
        return job.outcomes

    def decide_jobs(self, jobs: list[Job]) -> None:
        """Runs the jobs' records through the pipeline as one batch, in order."""
        try:
            with self.lock:
                self._decide_jobs(jobs)
        except BaseException as exc:
            for job in jobs:
                job.settle(exc)
            raise
        for job in jobs:
            job.settle(None)

    def _decide_jobs(self, jobs: list[Job]) -> None:
        slots: list[tuple[Job, int]] = []
        records: list[Any] = []
        arrival: list[float] = []
        raws: list[bytes | str | None] = []
        for job in jobs:
            n = len(job.records)
            job.outcomes = [Outcome(500, {})] * n
            slots.extend((job, index) for index in range(n))
            records.extend(job.records)
            arrival.extend([job.arrival_ms] * n)
            raws.extend(job.raws if job.raws is not None else [None] * n)
        # One decode for the whole batch: its fixed cost is paid once, not per request.
        first = self.position + 1
        self.position += len(records)
        slot_of = _Slots(first, slots)
        positions = range(first, first + len(records))
        batch, dead = self.decoder.records(records, positions, arrival, _Raws(raws, records))
        for letter in dead:
            self._dead_letter(letter)
            job, index = slot_of[letter.position]
            job.outcomes[index] = Outcome(422, error_body(_field_of(letter.reason), letter.reason))
        if len(batch):
            now = time.time() * 1000
            self._collect(self.pipeline.submit(batch, now), slot_of)
            if self.pipeline.pending:  # records the clock holds back (out-of-orderness > 0)
                self._collect(self.pipeline.flush(now), slot_of)

    def _collect(self, result: StepResult, slots: _Slots) -> None:
        if len(result.duplicates):
            self._duplicates(result.duplicates, slots)
        if len(result.late):
            self._late(result.late, result.late_watermark, slots)
        decisions = result.decisions
        if decisions is None or len(decisions) == 0:
            return
        rows = decision_dicts(decisions)
        positions = decisions.tx.position.tolist()
        kept = self.decisions
        self.counts["decided"] += len(rows)
        for position, row in zip(positions, rows, strict=True):
            job, index = slots[position]
            job.outcomes[index] = Outcome(200, row)
            kept[row["transaction_id"]] = _encoder.encode(row)
        while len(kept) > self.max_decisions:
            kept.popitem(last=False)
        summaries: list[dict[str, Any]] | None = None
        if self.listeners or any(s.with_transaction for s in self.subscribers):
            summaries = transaction_summaries(decisions.tx)
        if self.subscribers:
            self._publish(rows, summaries)
        for listener in self.listeners:
            assert summaries is not None
            listener(rows, summaries)

    def _publish(self, rows: list[dict[str, Any]], summaries: list[dict[str, Any]] | None) -> None:
        plain: list[bytes] | None = None
        full: list[bytes] | None = None
        for subscriber in self.subscribers:
            if subscriber.with_transaction:
                if full is None:
                    assert summaries is not None
                    full = [
                        b"data: " + _encoder.encode({**row, "transaction": summary}) + b"\n\n"
                        for row, summary in zip(rows, summaries, strict=True)
                    ]
                events = full
            else:
                if plain is None:
                    plain = [b"data: " + _encoder.encode(row) + b"\n\n" for row in rows]
                events = plain
            for event in events:
                subscriber.put(event)

    def _duplicates(self, batch: TxBatch, slots: _Slots) -> None:
        self.counts["duplicates"] += len(batch)
        for i in range(len(batch)):
            record = batch.record(i)
            position = int(batch.position[i])
            message = (
                f"duplicate: transaction_id {record['transaction_id']!r} "
                "was already processed; not decided twice"
            )
            self._dead_letter(DeadLetter("api", position, message, _raw_of(record)))
            job, index = slots[position]
            job.outcomes[index] = Outcome(409, error_body("transaction_id", message))

    def _late(self, batch: TxBatch, watermark: Any, slots: _Slots) -> None:
        self.counts["late"] += len(batch)
        rows = late_dicts(batch, watermark, self.pipeline.clock.allowed_lateness_ms)
        self.late.extend(rows)
        for row in rows:
            job, index = slots[row["position"]]
            message = f"{row['reason']}; not decided, kept in the late output"
            job.outcomes[index] = Outcome(409, error_body("timestamp", message))

    def _dead_letter(self, letter: DeadLetter) -> None:
        self.counts["dead_letters"] += 1
        self.dead_letters.append(letter.to_dict())

    def parse(self, body: bytes, batch_bytes: int | None = None) -> tuple[Any, Any]:
        """A request body's JSON and None; or None and the 4xx body saying why it is not
        JSON within the decoder's record limits, kept as a dead letter. ``batch_bytes``: the
        body is a list of records (one level deeper) of at most that many bytes.

        Any byte sequence gets one of the two: invalid UTF-8, nesting past the limit (which
        would make a parser recurse off its stack), numbers beyond any type, a byte-order
        mark (ignored), NUL bytes.
        """
        try:
            return _decoder.decode(body), None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            pass  # decoded again, within the limits, to say why
        limits = record_limits = self.decoder.limits
        if batch_bytes is not None:
            size = max(batch_bytes, limits.max_record_bytes)
            limits = RecordLimits(size, limits.max_depth + 1)
        try:
            return decode_record(body, limits), None
        except InvalidRecord as exc:
            why = str(exc)
            if why == limits.too_deep_reason:  # said of the records, not of the list
                why = record_limits.too_deep_reason
            return None, self.reject(f"body: {why.removeprefix('record: ')}", body)

    def reject(self, reason: str, raw: bytes | str) -> dict[str, Any]:
        """A request body that is not even a record (bad JSON): dead letter + 4xx body."""
        self.position += 1
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        reason = mask_card_numbers(reason)
        self._dead_letter(DeadLetter("api", self.position, reason, mask_raw_text(text, 4096)))
        return error_body(_field_of(reason), reason)

    # --- the live feed ---------------------------------------------------------------------

    def subscribe(
        self, size: int = SUBSCRIBER_QUEUE, with_transaction: bool = False
    ) -> _Subscriber:
        """A new live-feed client (``with_transaction``: events carry a ``transaction``)."""
        subscriber = _Subscriber(size, with_transaction)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        self.subscribers.discard(subscriber)


class _Slots:
    """The request (job, index) of each position of a batch: positions are consecutive."""

    def __init__(self, first: int, slots: list[tuple[Job, int]]) -> None:
        self.first = first
        self.slots = slots

    def __getitem__(self, position: int) -> tuple[Job, int]:
        return self.slots[position - self.first]


class _Raws(Sequence[bytes | str]):
    """What a dead letter shows of each record: the request body, or (for records that came
    without one) the record as JSON, made only for the few records that are refused."""

    def __init__(self, raws: list[bytes | str | None], records: list[Any]) -> None:
        self.raws = raws
        self.records = records

    def __len__(self) -> int:
        return len(self.raws)

    @overload
    def __getitem__(self, index: int) -> bytes | str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes | str]: ...
    def __getitem__(self, index: int | slice) -> bytes | str | Sequence[bytes | str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        raw = self.raws[index]
        return raw if raw is not None else _raw_of(self.records[index])


def _raw_of(record: dict[str, Any]) -> str:
    try:
        return mask_card_numbers_in_json(_encoder.encode(record).decode())
    except (TypeError, ValueError, RecursionError):
        try:
            return mask_card_numbers(repr(record))
        except (RecursionError, ValueError):
            return f"<a {type(record).__name__} that cannot be shown>"
