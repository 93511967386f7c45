"""The embedded pipeline cut into the three stages a Flink job runs, with no Flink in sight.

1. :class:`Sequencer` (one instance, parallelism 1): decode, dedupe and the event clock, i.e.
   exactly :meth:`Pipeline.submit` up to the detectors. It decides the processing order
   and lateness as if records arrived one at a time, so both runtimes agree, and splits each
   released micro-batch into :class:`Part` s by card shard and by user shard.
2. :class:`DetectorStage` (one per shard key, any parallelism): the card-keyed detectors (or
   the user-keyed ones) of one shard, run by a :class:`Pipeline` whose other rules are off,
   over that shard's records in processing order. Its state is the pipeline's snapshot.
3. :func:`assemble` joins the two stages' findings of a micro-batch back into one
   :class:`Decisions`, in the embedded runtime's processing order and reason order.

Everything here is the embedded code (decoder, dedup, clock, kernels, combine, explain);
the Flink functions in :mod:`fraudstream.flink.functions` only move these objects around.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.decide import Decisions, combine, explain
from fraudstream.detectors import RULE_FAMILY
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.keys import string_buffers
from fraudstream.engine.pipeline import TIMER_SWEEP_MS, Pipeline, TimeConfig
from fraudstream.flink.aggregate_rows import AGGREGATE
from fraudstream.flink.model import BatchKeys, SequencedFeatures, take_rows
from fraudstream.io.decode import DeadLetter, Decoder, ParsedBlock
from fraudstream.io.limits import RecordLimits
from fraudstream.io.records import duplicate_letters, late_dicts
from fraudstream.profiles import ProfileTable
from fraudstream.reference import IpReference
from fraudstream.rules import RuleSet
from fraudstream.rules.compile import RuleInput
from fraudstream.schema import CardTokenizer

Key = Literal["card", "user"]
I64 = npt.NDArray[np.int64]
NEVER = -(2**62)

__all__ = [
    "Part",
    "PipelineParts",
    "Released",
    "Sequencer",
    "DetectorStage",
    "StageResult",
    "assemble",
    "rules_keyed_by",
    "shard_of",
]


@dataclass(frozen=True)
class PipelineParts:
    """What every stage builds its pipeline from (pickled into the job once)."""

    rules: RuleSet
    profiles: ProfileTable
    time: TimeConfig
    reference: IpReference
    state_ttl_ms: int | None = None
    model: Any = None  # fraudstream.flink.model.ModelSpec: --model / --labels (features)
    limits: RecordLimits = RecordLimits()  # --max-record-bytes, --max-nesting-depth

    def pipeline(self, key: Key | None = None) -> Pipeline:
        """A fresh pipeline: every rule, or only the rules whose state is keyed by ``key``."""
        rules = self.rules if key is None else rules_keyed_by(self.rules, key)
        profiles = copy.deepcopy(self.profiles)  # each pipeline grows its own user slots
        return Pipeline(rules, profiles, self.time, self.reference, self.state_ttl_ms)

    def decider(self) -> Pipeline:
        """The pipeline :func:`assemble` decides with: every rule, and the model if any."""
        full = self.pipeline()
        if self.model is not None:
            full.model_stage = self.model.stage()
        return full


def rules_keyed_by(rules: RuleSet, key: Key) -> RuleSet:
    """The rule set with every rule whose detector keeps state under the other key disabled
    (and no user rule: their aggregates span keys no card or user shard holds)."""
    kept = tuple(
        r if RULE_FAMILY[r.detector].key == key else dataclasses.replace(r, enabled=False)
        for r in rules.rules
    )
    return dataclasses.replace(rules, rules=kept, user_rules=())


@numba.njit(cache=True, nogil=True)
def _fnv(offsets: I64, data: npt.NDArray[np.uint8], shards: int) -> npt.NDArray[np.int32]:
    out = np.empty(offsets.size - 1, dtype=np.int32)
    for i in range(offsets.size - 1):
        h = np.uint64(14695981039346656037)
        for k in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[k])) * np.uint64(1099511628211)
        out[i] = np.int32(h % np.uint64(shards))
    return out


def shard_of(column: pa.Array, shards: int) -> npt.NDArray[np.int32]:
    """A stable shard (0..shards-1) per key: FNV-1a of the UTF-8 bytes (same on every run).

    >>> shard_of(pa.array(["card-1", "card-2", "card-1"]), 64).tolist()
    [37, 12, 37]
    """
    offsets, data, _ = string_buffers(column)
    return _fnv(offsets, data, shards)


@dataclass(slots=True)
class Part:
    """The records of one released micro-batch that belong to one shard, in processing order.

    ``seq`` is each record's row in the micro-batch (``total`` rows): the join puts the
    stages' answers back in that order. ``sweep_before`` / ``sweep_after`` are the event-time
    timer sweeps (watermarks) the embedded pipeline runs around this micro-batch.
    """

    batch: int
    total: int
    seq: I64
    tx: TxBatch
    sweep_before: int
    sweep_after: int | None
    features: dict[str, Any] | None = None  # streaming features (card parts, with a model)


@dataclass(slots=True)
class Released:
    """What one step of the sequencer produced (the JSON-ready side outputs and the parts)."""

    dead_letters: list[dict[str, Any]]
    late: list[dict[str, Any]]
    card_parts: dict[int, Part]
    user_parts: dict[int, Part]


class Sequencer:
    """Decode, dedupe, event clock and sharding: the single-threaded head of the job."""

    def __init__(self, parts: PipelineParts, shards: int, source: str = "input") -> None:
        self.pipeline = parts.pipeline()
        self.shards = shards
        self.decoder = Decoder(CardTokenizer.from_environment(), source, parts.limits)
        self.lines_seen = 0
        self.batches = 0
        self.last_sweep = NEVER  # the watermark of the last timer sweep (embedded cadence)
        # With a model or labels: the streaming features, computed here in processing order.
        spec, ttl = parts.model, parts.state_ttl_ms
        self.features = None if spec is None else SequencedFeatures(spec.labels, ttl)

    def snapshot(self) -> dict[str, Any]:
        """Dedup, clock, counters and the streaming features (arrays of what was used)."""
        return {
            "pipeline": self.pipeline.snapshot(),
            "lines": self.lines_seen,
            "batches": self.batches,
            "last_sweep": self.last_sweep,
            "features": None if self.features is None else self.features.snapshot(),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Loads a :meth:`snapshot`."""
        self.pipeline.restore(snapshot["pipeline"])
        self.lines_seen = snapshot["lines"]
        self.batches = snapshot["batches"]
        self.last_sweep = snapshot["last_sweep"]
        if self.features is not None:
            self.features.restore(snapshot["features"])

    def lines(self, lines: list[bytes], arrival_ms: float) -> Released:
        """One micro-batch of input lines (positions continue from the previous ones)."""
        positions, kept = [], []
        for line in lines:
            self.lines_seen += 1
            line = line.rstrip(b"\r\n")
            if line.strip():
                kept.append(line)
                positions.append(self.lines_seen)
        return self._sequence(*self.decoder.lines(kept, positions, [arrival_ms] * len(kept)))

    def block(self, block: ParsedBlock, arrival_ms: float) -> Released:
        """:meth:`lines` of a block of whole lines as read from a file (not split in Python)."""
        first = self.lines_seen + 1
        self.lines_seen += block.lines
        return self._sequence(*self.decoder.block(block, first, arrival_ms))

    def _sequence(self, batch: TxBatch, dead: list[DeadLetter]) -> Released:
        letters = [d.to_dict() for d in dead]
        if self.pipeline.time.mode == "processing":  # as Pipeline.submit: arrival order
            return self._release(letters, [], self._first_seen(batch, letters))
        # Pipeline.submit up to the detectors: the event clock, then dedup of the released.
        clock = self.pipeline.clock
        released = clock.admit(batch)
        late = late_dicts(released.late, released.late_watermark, clock.allowed_lateness_ms)
        return self._release(letters, late, self._first_seen(released.ready, letters))

    def flush(self) -> Released:
        """End of input (or an idle source): the watermark jumps, every record is released."""
        letters: list[dict[str, Any]] = []
        ready = self._first_seen(self.pipeline.clock.flush(), letters)
        return self._release(letters, [], ready)

    def _first_seen(self, batch: TxBatch, letters: list[dict[str, Any]]) -> TxBatch:
        if len(batch) == 0:
            return batch
        duplicates = self.pipeline.dedup.admit(batch.transaction_id)
        if len(duplicates) == 0:
            return batch
        keep = np.ones(len(batch), dtype=bool)
        keep[duplicates] = False
        letters.extend(duplicate_letters(batch.take(duplicates)))
        return batch.take(np.flatnonzero(keep))

    def _release(
        self, letters: list[dict[str, Any]], late: list[dict[str, Any]], ready: TxBatch
    ) -> Released:
        if len(ready) == 0:
            return Released(letters, late, {}, {})
        self.batches += 1
        before = self.last_sweep
        watermark = self.pipeline.clock.watermark
        if self.pipeline.time.mode == "processing":  # timers run on the latest arrival
            watermark = int(ready.arrival_ms[-1])
        else:  # as the embedded sweep: the allowed lateness behind, for late records' state
            watermark -= self.pipeline.time.allowed_lateness_ms
        after = None
        if watermark - self.last_sweep >= TIMER_SWEEP_MS:
            after = self.last_sweep = watermark
        features = None if self.features is None else self.features.compute(ready)
        cards = self._split(ready, shard_of(ready.card_id, self.shards), before, after, features)
        users = self._split(ready, shard_of(ready.user_id, self.shards), before, after)
        return Released(letters, late, cards, users)

    def _split(
        self,
        ready: TxBatch,
        shard: npt.NDArray[np.int32],
        before: int,
        after: int | None,
        features: dict[str, Any] | None = None,
    ) -> dict[int, Part]:
        order = np.argsort(shard, kind="stable")
        bounds = np.flatnonzero(np.diff(shard[order])) + 1
        parts = {}
        for rows in np.split(order, bounds):
            seq = rows.astype(np.int64)
            parts[int(shard[rows[0]])] = Part(
                self.batches, len(ready), seq, ready.take(seq), before, after,
                None if features is None else take_rows(features, seq),
            )  # fmt: skip
        return parts


@dataclass(slots=True)
class StageResult:
    """One detector stage's answer for one part: fired masks, features and reasons by rule."""

    key: Key
    batch: int
    total: int
    seq: I64
    tx: TxBatch | None  # the card stage carries the records to the join; the user stage not
    fired: dict[str, npt.NDArray[np.bool_]]
    features: dict[str, Any]
    messages: dict[str, tuple[I64, list[str]]]  # rule id -> (rows in seq, messages)


def stage_result(key: Key, decisions: Decisions, seq: I64, tx: TxBatch | None) -> StageResult:
    """A stage's decisions as its answer: fired masks, features, and each rule's messages
    at the rows ``seq`` (``tx``: the records, for the card stage to carry)."""
    messages: dict[str, tuple[list[int], list[str]]] = {}
    # shadow rules ride along with the live ones; assemble() splits them again
    for reasons in (decisions.reasons, decisions.shadow_reasons):
        if reasons is None:
            continue
        for row in reasons:
            for reason in reasons[row]:
                rows, texts = messages.setdefault(reason["rule"], ([], []))
                rows.append(int(seq[row]))
                texts.append(reason["message"])
    return StageResult(
        key,
        0,
        len(seq),
        seq,
        tx,
        {**decisions.fired, **decisions.shadow_fired},
        decisions.features,
        {rule: (np.array(rows, np.int64), texts) for rule, (rows, texts) in messages.items()},
    )


class DetectorStage:
    """The detectors of one key (card or user) for one shard, as the embedded pipeline runs them."""

    def __init__(self, parts: PipelineParts, key: Key) -> None:
        self.key = key
        self.pipeline = parts.pipeline(key)
        self.pipeline.clock.watermark = NEVER  # sweeps come from the sequencer only
        self.last_sweep = NEVER

    def snapshot(self) -> dict[str, Any]:
        """The shard's keyed state (key spaces, detector arrays, TTL times)."""
        return {"pipeline": self.pipeline.snapshot(), "last_sweep": self.last_sweep}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Loads a :meth:`snapshot`."""
        self.pipeline.restore(snapshot["pipeline"])
        self.pipeline.clock.watermark = NEVER
        self.last_sweep = snapshot["last_sweep"]

    def process(self, part: Part, now_ms: float) -> StageResult:
        """Runs the part's records through this key's detectors, in processing order."""
        self._sweep(part.sweep_before)
        tx = part.tx
        processing = self.pipeline.time.mode == "processing"
        clock = tx.arrival_ms.astype(np.int64) if processing else tx.timestamp_ms
        decisions = self.pipeline.process(tx, clock, now_ms)
        if part.sweep_after is not None:
            self._sweep(part.sweep_after)
        expiry = self.pipeline.expiry
        if expiry is not None and expiry.due():  # as Pipeline.submit: compact long-idle keys
            expiry.reclaim(self.pipeline)
        features = decisions.features
        if part.features is not None:  # the streaming features ride to the join with the card
            features = {**features, **part.features}
        result = stage_result(
            self.key, decisions, part.seq, part.tx if self.key == "card" else None
        )
        result.batch, result.total, result.features = part.batch, part.total, features
        return result

    def _sweep(self, watermark: int) -> None:
        """The embedded timer sweep at ``watermark`` (once per watermark, like the pipeline)."""
        if watermark <= self.last_sweep:
            return
        self.last_sweep = watermark
        pipeline = self.pipeline
        for name, instance in pipeline.instances.items():
            keys = pipeline.users if instance.detector.key == "user" else pipeline.cards
            instance.detector.on_time(pipeline.states[name], watermark, len(keys))


def _scatter(total: int, seqs: list[I64], columns: list[Any]) -> Any:
    """One column of ``total`` rows from per-part columns at rows ``seqs``."""
    if isinstance(columns[0], pa.Array):
        joined = pa.concat_arrays(columns)
        order = np.argsort(np.concatenate(seqs), kind="stable")
        return joined.take(pa.array(order, pa.int64()))
    out = np.empty(total, dtype=columns[0].dtype)
    for seq, column in zip(seqs, columns, strict=True):
        out[seq] = column
    return out


def assemble(results: list[StageResult], full: Pipeline, now_ms: float) -> Decisions:
    """The decisions of one micro-batch from both stages' answers (embedded order and reasons)."""
    cards = [r for r in results if r.key == "card"]
    total = results[0].total
    seqs = [r.seq for r in cards]
    order = np.argsort(np.concatenate(seqs), kind="stable")
    tx = TxBatch.concat([r.tx for r in cards if r.tx is not None]).take(order)
    fired: dict[str, npt.NDArray[np.bool_]] = {}
    features: dict[str, Any] = {}
    messages: dict[str, tuple[I64, list[str]]] = {}
    for key in ("card", "user"):
        mine = [r for r in results if r.key == key]
        seq = [r.seq for r in mine]
        for rule in mine[0].fired:
            fired[rule] = _scatter(total, seq, [r.fired[rule] for r in mine])
        for name in mine[0].features:
            features[name] = _scatter(total, seq, [r.features[name] for r in mine])
        for r in mine:
            for rule, (rows, texts) in r.messages.items():
                have_rows, have_texts = messages.get(rule, (np.empty(0, np.int64), []))
                messages[rule] = (np.concatenate([have_rows, rows]), have_texts + texts)
    users = full.users.slots(tx.user_id)
    # aggregates the keyed job's aggregate stages computed (its `when:` rules read them)
    shipped = {
        name[len(AGGREGATE) :]: features.pop(name)
        for name in list(features)
        if name.startswith(AGGREGATE)
    }
    user_rules = full.user_rules  # `when:` rules
    found = None
    if user_rules is not None:  # as Decider.decide: over every detector's answers
        processing = full.time.mode == "processing"
        clock = tx.arrival_ms.astype(np.int64) if processing else tx.timestamp_ms
        view = RuleInput(tx, clock, full.profile_reader(users), features, fired)
        if shipped:
            user_rules.read_aggregates(view, shipped)
        else:  # none: no aggregates (the sharded job refuses them)
            user_rules.step_aggregates(view)
        found = user_rules.evaluate(view)
        fired.update(found.fired)
    ordered: dict[str, tuple[I64, list[str]]] = {}
    for instance in full.instances.values():  # the embedded pipeline's rule order (ties)
        for rule_name in instance.detector.rules:
            rule_id = instance.rule_ids.get(rule_name)
            if rule_id in messages:
                rows, texts = messages[rule_id]
                sort = np.argsort(rows, kind="stable")
                ordered[rule_id] = (rows[sort], [texts[i] for i in sort.tolist()])
    user_messages: dict[str, Any] = dict(found.messages) if found is not None else {}
    shadow = full.rules.shadow_ids()  # recorded in shadow_reasons, never scored
    shadow_fired = {k: fired.pop(k) for k in list(fired) if k in shadow}
    shadow_ordered: dict[str, Any] = {k: ordered.pop(k) for k in list(ordered) if k in shadow}
    shadow_ordered.update({k: v for k, v in user_messages.items() if k in shadow})
    user_messages = {k: v for k, v in user_messages.items() if k not in shadow}
    profile = full.profiles.table
    profile.ensure(len(full.users))
    review = profile["review_threshold"][users]
    decline = profile["decline_threshold"][users]
    review = np.where(np.isnan(review), full.rules.review_threshold, review)
    decline = np.where(np.isnan(decline), full.rules.decline_threshold, decline)
    stage = full.model_stage  # as Pipeline.process: the model scores, then explains
    keys = BatchKeys(users, None, tx.timestamp_ms)
    model = stage.score(tx, keys, features) if stage is not None else None
    score, tier = combine(fired, full.scores, review, decline, model)
    if found is not None and found.outcome is not None:  # a forced outcome beats the tier
        tier = np.where(found.outcome >= 0, found.outcome, tier).astype(np.int8)
    scores = full.scores if stage is None else stage.explain(tier, fired, ordered, full.scores)
    rank = full.scores
    if user_rules is not None:
        ordered.update(user_messages)
        scores = {**scores, **user_rules.rank}
        rank = {**rank, **user_rules.rank}
    reasons = explain(ordered, scores, total)
    shadow_reasons = explain(shadow_ordered, rank, total) if shadow_ordered else None
    info = stage.model.info if stage is not None and stage.model is not None else None
    model_id = (info.name, info.version) if info is not None else None
    return Decisions(
        tx, tx.timestamp_ms, score, tier, fired, reasons, features, now_ms, model_id,
        shadow_fired, shadow_reasons, full.rule_version,
    )  # fmt: skip
