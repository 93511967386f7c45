"""The run loop: a source into the pipeline, decisions out to the sinks, and the summary."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fraudstream.decide import APPROVE, TIERS, Decisions
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline, StepResult
from fraudstream.io.decode import DeadLetter, Decoder
from fraudstream.io.files import IDLE, Item, Sink, open_sink
from fraudstream.io.limits import RecordLimits
from fraudstream.io.records import (
    decision_dicts,
    decision_table,
    duplicate_letters,
    enriched_dicts,
    late_dicts,
)
from fraudstream.schema import CardTokenizer


class DictSink(Protocol):
    """A sink of record dicts (files, the decision store, alert hooks)."""

    def write_dicts(self, records: list[dict[str, Any]]) -> None:
        """Writes records."""

    def flush(self) -> None:
        """Makes what was written visible (or delivered)."""

    def close(self) -> None:
        """Flushes and releases."""


class Source(Protocol):
    """Anything that yields validated batches (or IDLE), and can say and find where it is.

    How a source takes part in checkpoints (see :mod:`fraudstream.engine.checkpoint`):

    * ``position()`` is called between batches, after the last batch yielded has been fully
      processed; it returns a JSON-serialisable dict naming the point *after* that batch
      (a file's byte offset or row, Kafka's next offset per partition). It goes into the
      checkpoint manifest as is.
    * ``seek(position)`` is called once, before ``batches()``, when a run resumes from a
      checkpoint: the source starts reading right after that point.
    * ``commit(position)`` is called after the checkpoint holding ``position`` is durable
      (renamed into place). A Kafka source commits its group offsets there (so a consumer that
      takes over resumes from them); a file source has nothing to do. A crash before
      ``commit`` is harmless: the restart seeks to the checkpoint's own position.
    """

    live: bool
    total_bytes: int
    done_bytes: int

    def batches(self, decoder: Decoder) -> Any:
        """Validated batches and their dead letters, or IDLE."""

    def position(self) -> dict[str, Any]:
        """Where the source stands after the last batch it yielded (JSON-serialisable)."""

    def seek(self, position: dict[str, Any]) -> None:
        """Starts the next ``batches()`` right after ``position`` (called before reading)."""

    def commit(self, position: dict[str, Any]) -> None:
        """A checkpoint holding ``position`` is durable (Kafka commits offsets here)."""


@dataclass
class Outputs:
    """Where each output goes; None means not written."""

    decisions: str | None = None
    alerts: str | None = None
    enriched: str | None = None
    dead_letters: str | None = None
    late: str | None = None
    store: str | None = None  # decision store: a SQLite path, an SQLAlchemy URL, dynamodb://
    webhook: str | None = None  # alerts POSTed here (HMAC-signed with webhook_secret)
    webhook_secret: bytes | None = None
    alert_command: list[str] | None = None  # alerts piped to this command, one by one
    retry_store: str | None = None  # undeliverable alerts wait here (default: the store)
    lakehouse: str | None = None  # Iceberg: a directory, or a pyiceberg catalog config file
    sinks: dict[str, Sink] = field(default_factory=dict)
    hooks: dict[str, DictSink] = field(default_factory=dict)
    # Set by checkpointing (fraudstream.recovery): sinks take part in checkpoints; a resumed
    # run opens each sink at its marker from the checkpoint it resumes from.
    checkpointed: bool = False
    resume: dict[str, dict[str, Any]] | None = None
    run_id: str | None = None
    resume_checkpoint: int = 0

    def open(self) -> None:
        """Opens every configured sink; if one cannot be opened, those already open are
        closed again before the error goes on."""
        try:
            self._open_all()
        except BaseException:
            self.close()
            raise

    def _open_all(self) -> None:
        markers = self.resume
        for name in ("decisions", "alerts", "enriched", "dead_letters", "late"):
            target = getattr(self, name)
            if target:
                self.sinks[name] = open_sink(
                    target,
                    checkpointed=self.checkpointed,
                    resume=markers.get(name, {}) if markers is not None else None,
                )
        dynamodb = bool(self.store) and str(self.store).lower().startswith("dynamodb://")
        sql_store = None if dynamodb else self.store
        retry = self.retry_store or sql_store or "fraudstream-alerts.db"
        if dynamodb:
            from fraudstream.io.aws.dynamodb_store import DynamoDecisionStore

            self.hooks["store"] = DynamoDecisionStore(str(self.store))
        elif self.store:
            from fraudstream.io.sqlstore import DecisionStore

            self.hooks["store"] = DecisionStore(self.store)
        if self.webhook:
            from fraudstream.io.webhook import WebhookSink

            self.hooks["webhook"] = WebhookSink(self.webhook, self.webhook_secret, retry_db=retry)
        if self.alert_command:
            from fraudstream.io.webhook import CommandHook

            self.hooks["command"] = CommandHook(self.alert_command, retry_db=retry)
        if self.lakehouse:
            from fraudstream.io.lakehouse import LakehouseSink

            self.hooks["lakehouse"] = LakehouseSink.open(
                self.lakehouse, run_id=self.run_id, resume_from=self.resume_checkpoint
            )

    def commit(self, checkpoint_id: int) -> dict[str, dict[str, Any]]:
        """Makes every output durable for checkpoint ``checkpoint_id``; returns the markers."""
        markers: dict[str, dict[str, Any]] = {}
        for name, sink in self.sinks.items():
            markers[name] = sink.checkpoint() if hasattr(sink, "checkpoint") else {}
            sink.flush()
        for name, hook in self.hooks.items():
            hook.flush()
            checkpoint = getattr(hook, "checkpoint", None)
            if checkpoint is not None:
                markers[name] = checkpoint(checkpoint_id)
        return markers

    def flush(self) -> None:
        """Makes everything written so far visible."""
        for sink in self.sinks.values():
            sink.flush()
        for hook in self.hooks.values():
            hook.flush()

    def close(self) -> None:
        """Closes every sink."""
        for sink in self.sinks.values():
            sink.close()
        for hook in self.hooks.values():
            hook.close()


@dataclass
class Summary:
    """Counts for the end-of-run table."""

    records: int = 0
    decided: int = 0
    tiers: Counter[str] = field(default_factory=Counter)
    alerts_by_rule: Counter[str] = field(default_factory=Counter)
    fired_by_rule: Counter[str] = field(default_factory=Counter)
    shadow_fired_by_rule: Counter[str] = field(default_factory=Counter)  # recorded only
    dead_letters: int = 0
    duplicates: int = 0
    late: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of this process over the same span (all threads)
    dead_reasons: Counter[str] = field(default_factory=Counter)
    expired_keys: int = 0  # keys whose state expired (TTL) when they came back
    reclaimed_keys: int = 0  # key slots freed by compaction (TTL)
    checkpoints: int = 0  # checkpoints taken by this process
    resumed_from: int | None = None  # the checkpoint this process resumed from
    restore_seconds: float = 0.0  # time to restore that checkpoint

    _COUNTERS = ("tiers", "alerts_by_rule", "fired_by_rule", "shadow_fired_by_rule", "dead_reasons")
    _COUNTS = ("records", "decided", "dead_letters", "duplicates", "late")

    def state(self) -> dict[str, Any]:
        """The counts a checkpoint keeps, so a resumed run's summary covers the whole input."""
        out: dict[str, Any] = {name: getattr(self, name) for name in self._COUNTS}
        out.update({name: dict(getattr(self, name)) for name in self._COUNTERS})
        return out

    def restore(self, state: dict[str, Any]) -> None:
        """Loads :meth:`state`."""
        for name in self._COUNTS:
            setattr(self, name, int(state.get(name, 0)))
        for name in self._COUNTERS:
            setattr(self, name, Counter(state.get(name, {})))

    @property
    def throughput(self) -> float:
        """Records per second over the whole run."""
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for JSON."""
        return {
            "records": self.records,
            "decided": self.decided,
            "decisions": dict(self.tiers),
            "alerts_by_rule": dict(self.alerts_by_rule),
            "fired_by_rule": dict(self.fired_by_rule),
            "shadow_fired_by_rule": dict(self.shadow_fired_by_rule),
            "dead_letters": self.dead_letters,
            "duplicates": self.duplicates,
            "late": self.late,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "throughput_tx_s": round(self.throughput),
            "expired_keys": self.expired_keys,
            "reclaimed_keys": self.reclaimed_keys,
            "checkpoints": self.checkpoints,
            "resumed_from": self.resumed_from,
            "restore_seconds": round(self.restore_seconds, 3),
        }


class Runner:
    """Feeds a source through a pipeline into outputs, counting everything."""

    def __init__(
        self,
        pipeline: Pipeline,
        outputs: Outputs,
        tokenizer: CardTokenizer,
        on_decisions: Callable[[Decisions], None] | None = None,
        between_batches: Callable[[], Any] | None = None,
        recovery: Any = None,
        limits: RecordLimits | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.limits = limits or RecordLimits()  # how large and deep one record may be
        self.outputs = outputs
        self.tokenizer = tokenizer
        self.summary = Summary()
        self.on_decisions = on_decisions
        self.between_batches = between_batches  # e.g. reloading a changed rules file
        self.recovery = recovery  # fraudstream.recovery.Recovery: checkpoints and resume

    def run(self, source: Source, progress: Callable[[int, int], None] | None = None) -> Summary:
        """Runs the source to its end; returns the summary."""
        decoder = Decoder(self.tokenizer, getattr(source, "name", "input"), self.limits)
        started = time.perf_counter()
        cpu_started = time.process_time()
        recovery = self.recovery
        if recovery is not None:
            recovery.start(self, source)  # restores state and positions when resuming
        self.outputs.open()
        try:
            item: Item
            for item in source.batches(decoder):
                if self.between_batches is not None:
                    self.between_batches()
                if item is IDLE:
                    self._handle(self.pipeline.flush())
                else:
                    batch, dead = item
                    self._dead(dead)
                    self.summary.records += len(batch)
                    self._handle(self.pipeline.submit(batch))
                if source.live:
                    self.outputs.flush()
                if progress is not None:
                    progress(source.done_bytes, source.total_bytes)
                if recovery is not None and recovery.due(self.summary.records, self.outputs):
                    recovery.take(self, source)
            self._handle(self.pipeline.flush())
            if recovery is not None:
                recovery.take(self, source)  # the end: outputs committed once, state final
        finally:
            self.outputs.close()
            self.summary.seconds = time.perf_counter() - started
            self.summary.cpu_seconds = time.process_time() - cpu_started
            expiry = self.pipeline.expiry
            if expiry is not None:
                self.summary.expired_keys = expiry.expired_keys
                self.summary.reclaimed_keys = expiry.reclaimed_keys
        return self.summary

    def _dead(self, dead: list[DeadLetter]) -> None:
        if not dead:
            return
        self.summary.records += len(dead)
        self.summary.dead_letters += len(dead)
        for letter in dead:
            self.summary.dead_reasons[letter.reason.split(":")[0]] += 1
        sink = self.outputs.sinks.get("dead_letters")
        if sink is not None:
            sink.write_dicts([d.to_dict() for d in dead])

    def _handle(self, result: StepResult) -> None:
        summary = self.summary
        sinks = self.outputs.sinks
        if len(result.duplicates):
            self._duplicates(result.duplicates)
        if len(result.late):
            summary.late += len(result.late)
            sink = sinks.get("late")
            if sink is not None:
                lateness = self.pipeline.clock.allowed_lateness_ms
                sink.write_dicts(late_dicts(result.late, result.late_watermark, lateness))
        decisions = result.decisions
        if decisions is None or len(decisions) == 0:
            return
        summary.decided += len(decisions)
        counts = np.bincount(decisions.tier, minlength=3)
        for tier, count in zip(TIERS, counts.tolist(), strict=True):
            summary.tiers[tier] += count
        alert = decisions.tier != APPROVE
        for rule, mask in decisions.fired.items():
            fired = int(mask.sum())
            if fired:
                summary.fired_by_rule[rule] += fired
                summary.alerts_by_rule[rule] += int((mask & alert).sum())
        for rule, mask in decisions.shadow_fired.items():
            fired = int(mask.sum())
            if fired:
                summary.shadow_fired_by_rule[rule] += fired
        self._write(decisions)
        if self.on_decisions is not None:
            self.on_decisions(decisions)

    def _write(self, decisions: Decisions) -> None:
        sinks = self.outputs.sinks
        hooks = self.outputs.hooks
        alerts = decisions.alerts()
        made: dict[str, list[dict[str, Any]]] = {}  # dicts are built once, only if needed

        def all_rows() -> list[dict[str, Any]]:
            if "all" not in made:
                made["all"] = decision_dicts(decisions)
            return made["all"]

        def alert_rows() -> list[dict[str, Any]]:
            if "alerts" not in made:
                made["alerts"] = (
                    [made["all"][i] for i in alerts.tolist()]
                    if "all" in made
                    else decision_dicts(decisions.take(alerts))
                )
            return made["alerts"]

        decision_sink = sinks.get("decisions")
        if decision_sink is not None:
            if hasattr(decision_sink, "write_table"):
                decision_sink.write_table(decision_table(decisions))
            else:
                decision_sink.write_dicts(all_rows())
        store = hooks.get("store")
        if store is not None:
            store.write_dicts(all_rows())
        lakehouse: Any = hooks.get("lakehouse")
        if lakehouse is not None:
            lakehouse.write_decisions(decisions)
        if len(alerts):
            alert_sink = sinks.get("alerts")
            if alert_sink is not None:
                if hasattr(alert_sink, "write_table"):
                    alert_sink.write_table(decision_table(decisions).take(alerts))
                else:
                    alert_sink.write_dicts(alert_rows())
            for name in ("webhook", "command"):
                hook = hooks.get(name)
                if hook is not None:
                    hook.write_dicts(alert_rows())
        enriched_sink = sinks.get("enriched")
        if enriched_sink is not None:
            enriched_sink.write_dicts(enriched_dicts(decisions))

    def _duplicates(self, batch: TxBatch) -> None:
        self.summary.duplicates += len(batch)
        self.summary.dead_letters += len(batch)
        self.summary.records += 0
        self.summary.dead_reasons["duplicate"] += len(batch)
        sink = self.outputs.sinks.get("dead_letters")
        if sink is None:
            return
        sink.write_dicts(duplicate_letters(batch))


def decide_records(
    records: list[dict[str, Any]],
    *,
    rules: Any = None,
    profiles: Any = None,
    time_config: Any = None,
    tokenizer: CardTokenizer | None = None,
) -> list[dict[str, Any]]:
    """Decides a list of transaction dicts with a fresh pipeline; returns decision dicts.

    The quickest way to try rules in a notebook or a test. Invalid records raise
    ``ValueError`` naming the first one (``fraudstream run`` sends them to dead letters).

    >>> decisions = decide_records([
    ...     {"transaction_id": "t1", "card_id": "3", "timestamp": 0, "amount": 0.80},
    ...     {"transaction_id": "t2", "card_id": "3", "timestamp": 20_000, "amount": 871.15},
    ... ])
    >>> [(d["transaction_id"], d["decision"]) for d in decisions]
    [('t1', 'approve'), ('t2', 'decline')]
    """
    pipeline = Pipeline(rules, profiles, time_config)
    decoder = Decoder(tokenizer or CardTokenizer.from_environment(), "records")
    now = time.time() * 1000
    positions = list(range(1, len(records) + 1))
    batch, dead = decoder.records(records, positions, [now] * len(records))
    if dead:
        raise ValueError(f"record {dead[0].position}: {dead[0].reason}")
    out: list[dict[str, Any]] = []
    for result in (pipeline.submit(batch, now), pipeline.flush(now)):
        if result.decisions is not None:
            out.extend(decision_dicts(result.decisions))
    return out
