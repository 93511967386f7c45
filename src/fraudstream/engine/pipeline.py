"""The embedded pipeline: dedupe -> time -> key -> detectors -> decide, one micro-batch at a time.

It owns every piece of keyed state (detector tables, key spaces, profiles, the event clock)
and nothing else: sources feed it validated :class:`TxBatch` es and sinks take the
:class:`Decisions` it returns. Rules can be swapped while it runs (:meth:`apply_rules`);
detector state survives when a rule's thresholds change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.config import ConfigError
from fraudstream.decide import Decisions, concat_decisions
from fraudstream.detectors import Detector, DetectorInput
from fraudstream.engine.batch import FEW_ROWS, TxBatch
from fraudstream.engine.clock import EventClock
from fraudstream.engine.decider import Decider, Detected, DetectorInstance, detector_instances
from fraudstream.engine.digits import digit_like_counts
from fraudstream.engine.expiry import StateExpiry
from fraudstream.engine.ids import IdSet
from fraudstream.engine.keys import KeySpace
from fraudstream.engine.state import StateTable
from fraudstream.profiles import ProfileTable
from fraudstream.reference import IpReference
from fraudstream.rules import Rule, RuleSet
from fraudstream.rules.user import UserRules
from fraudstream.rules.versions import RuleVersions

TIMER_SWEEP_MS = 1_000


@dataclass(frozen=True, slots=True)
class TimeConfig:
    """How time advances: event time (the default) or processing (arrival) time."""

    mode: Literal["event", "processing"] = "event"
    out_of_orderness_ms: int = 0
    allowed_lateness_ms: int = 300_000
    idle_timeout_ms: int = 1_000


@dataclass(slots=True)
class StepResult:
    """What one call into the pipeline produced."""

    decisions: Decisions | None = None
    late: TxBatch = field(default_factory=TxBatch.empty)
    late_watermark: np.ndarray[Any, Any] = field(default_factory=lambda: np.empty(0, np.int64))
    duplicates: TxBatch = field(default_factory=TxBatch.empty)


class Dedup:
    """Transaction ids seen recently: the last ``horizon`` to ``2 * horizon`` ids (bounded).

    Two generations: when the current one holds ``horizon`` ids it becomes the previous one
    and the one before is forgotten, so memory stays flat on an endless stream.
    """

    def __init__(self, horizon: int = 2_000_000) -> None:
        self.horizon = horizon
        self.current = IdSet(expected_ids=horizon)
        self.previous = IdSet()

    def __contains__(self, transaction_id: str) -> bool:
        column = pa.array([transaction_id], pa.string())
        return bool(self.current.contains(column)[0] or self.previous.contains(column)[0])

    def admit(self, ids: pa.Array) -> npt.NDArray[np.int64]:
        """Adds ``ids``; returns the rows already seen (earlier, or before in ``ids``)."""
        duplicate = self.current.admit(ids, older=self.previous)
        if len(self.current) >= self.horizon:
            self.previous, self.current = self.current, IdSet(expected_ids=self.horizon)
        return np.flatnonzero(duplicate)

    def snapshot(self) -> dict[str, Any]:
        """Both generations as arrays (views: write them before the next batch)."""
        arrays = {f"current.{k}": v for k, v in self.current.snapshot().items()}
        arrays.update({f"previous.{k}": v for k, v in self.previous.snapshot().items()})
        return arrays

    def restore(self, arrays: dict[str, Any]) -> None:
        """Loads a :meth:`snapshot`."""
        for name, ids in (("current", self.current), ("previous", self.previous)):
            ids.restore({k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(name)})


def _codes_at(
    countries: npt.NDArray[np.int32], networks: npt.NDArray[np.int32], slots: npt.NDArray[np.int32]
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """``countries[slots]`` and ``networks[slots]`` (the IP slots' codes), -1 where the slot is
    -1 (no address), without copying either table.

    >>> _codes_at(np.array([7, 8], np.int32), np.array([0, 1], np.int32),
    ...           np.array([1, -1], np.int32))
    (array([ 8, -1], dtype=int32), array([ 1, -1], dtype=int32))
    """
    if len(countries) == 0:
        missing = np.full(len(slots), -1, dtype=np.int32)
        return missing, missing.copy()
    if len(slots) <= FEW_ROWS:  # an authorization's batch: a NumPy call per step costs more
        rows = slots.tolist()
        return (
            np.array([countries[s] if s >= 0 else -1 for s in rows], dtype=np.int32),
            np.array([networks[s] if s >= 0 else -1 for s in rows], dtype=np.int32),
        )
    known = slots >= 0
    at = np.maximum(slots, 0)
    return (
        np.where(known, countries[at], np.int32(-1)).astype(np.int32, copy=False),
        np.where(known, networks[at], np.int32(-1)).astype(np.int32, copy=False),
    )


class Pipeline:
    """All keyed state and the step from validated transactions to decisions."""

    def __init__(
        self,
        rules: RuleSet | None = None,
        profiles: ProfileTable | None = None,
        time_config: TimeConfig | None = None,
        reference: IpReference | None = None,
        state_ttl_ms: int | None = None,
        versions: RuleVersions | None = None,
    ) -> None:
        self.time = time_config or TimeConfig()
        self.expiry = StateExpiry(state_ttl_ms) if state_ttl_ms else None
        self.cards = KeySpace()
        self.profiles = profiles or ProfileTable()
        self.users = self.profiles.users
        self.codes = {name: KeySpace() for name in ("zipcode", "merchant", "device", "country")}
        self.codes["network"] = KeySpace()
        self.codes["country"] = self.profiles.countries
        self.ips = KeySpace()
        self.ip_country = np.empty(0, dtype=np.int32)
        self.ip_network = np.empty(0, dtype=np.int32)
        self.reference = reference or IpReference.default()
        self.clock = EventClock(
            self.time.out_of_orderness_ms, self.time.allowed_lateness_ms, self.time.idle_timeout_ms
        )
        self.dedup = Dedup()
        self.states: dict[str, StateTable] = {}
        self.instances: dict[str, DetectorInstance] = {}
        self.last_sweep_ms = -(2**62)
        # Streaming features + an optional model (fraudstream.models.stage.ModelStage).
        self.model_stage: Any = None
        # Every rule set applied, numbered (each decision carries its number).
        self.versions = versions if versions is not None else RuleVersions()
        self.decider: Decider | None = None
        self.alternatives: list[Decider] = []  # a backtest's other rule sets
        self.apply_rules(rules or RuleSet.default(), who="start", source="start")

    # --- rules -------------------------------------------------------------------------------

    def apply_rules(
        self, rules: RuleSet, who: str = "pipeline", source: str = "apply", note: str = ""
    ) -> int:
        """Switches to ``rules`` for the next transaction, keeping detector state; numbers
        them as a rule version (who, where from, why) and returns the version."""
        version = self.versions.record(rules, who, source, note)
        self.decider = Decider(rules, version, self.decider)
        self._build_instances()
        return version

    def add_alternative(self, rules: RuleSet) -> None:
        """Also decides every batch under ``rules`` (a backtest's second rule set): same
        detectors, its own user-rule state; ConfigError when the detectors disagree."""
        self.alternatives.append(Decider(rules, 0))
        try:
            self._build_instances()
        except ConfigError:
            self.alternatives.pop()
            raise

    def _build_instances(self) -> None:
        instances: dict[str, DetectorInstance] = {}
        for decider in (self.decider, *self.alternatives):
            assert decider is not None
            for name, instance in detector_instances(decider.rules).items():
                have = instances.get(name)
                if have is None:
                    instances[name] = instance
                elif have.thresholds != instance.thresholds:
                    raise ConfigError(f"detector {name}: the rule sets' thresholds differ")
                else:
                    have.rule_ids.update(instance.rule_ids)
        for name, instance in instances.items():
            table = self.states.get(name)
            if table is None or table.spec != instance.detector.state_fields:
                self.states[name] = instance.detector.new_state()
        self.instances = instances

    @property
    def rules(self) -> RuleSet:
        """The rules in force."""
        assert self.decider is not None
        return self.decider.rules

    @property
    def rule_version(self) -> int:
        """The number of the rule version in force."""
        assert self.decider is not None
        return self.decider.version

    @property
    def scores(self) -> dict[str, float]:
        """Each enabled rule's score, by id."""
        assert self.decider is not None
        return self.decider.scores

    @property
    def rule_by_id(self) -> dict[str, Rule]:
        """The enabled standard rules, by id."""
        assert self.decider is not None
        return self.decider.rule_by_id

    @property
    def user_rules(self) -> UserRules | None:
        """The enabled user rules with their window state (None: no user rule runs)."""
        return self.decider.user_rules if self.decider is not None else None

    @user_rules.setter
    def user_rules(self, value: UserRules | None) -> None:
        assert self.decider is not None
        self.decider.user_rules = value

    # --- steps -------------------------------------------------------------------------------

    def submit(self, batch: TxBatch, now_ms: float | None = None) -> StepResult:
        """Takes validated transactions in arrival order; decides what time lets through."""
        now_ms = time.time() * 1000 if now_ms is None else now_ms
        result = StepResult()
        if len(batch) == 0:
            return result
        if self.time.mode == "processing":
            batch = self._first_seen(batch, result)
            if len(batch):  # a batch of duplicates only leaves nothing to decide
                clock_ms = batch.arrival_ms.astype(np.int64)
                result.decisions = self.process(batch, clock_ms, now_ms)
        else:
            # Late first, then duplicates among the records released to be decided, in the
            # order they are decided: a late record's copy is late too, and which copy of a
            # transaction counts does not depend on where the input is cut or split (the
            # Flink job finds duplicates per card as it releases them, in this order).
            released = self.clock.admit(batch)
            result.late, result.late_watermark = released.late, released.late_watermark
            ready = self._first_seen(released.ready, result)
            if len(ready):
                result.decisions = self.process(ready, ready.timestamp_ms, now_ms)
        if self.expiry is not None and self.expiry.due():
            self.expiry.reclaim(self)
        if result.decisions is not None:
            self._compact_windows(int(result.decisions.time_ms.max()))
        return result

    def _first_seen(self, batch: TxBatch, result: StepResult) -> TxBatch:
        """``batch`` without the transactions already seen (they go to ``result``)."""
        if len(batch) == 0:
            return batch
        duplicates = self.dedup.admit(batch.transaction_id)
        if len(duplicates) == 0:
            return batch
        keep = np.ones(len(batch), dtype=bool)
        keep[duplicates] = False
        result.duplicates = batch.take(duplicates)
        return batch.take(np.flatnonzero(keep))

    def _compact_windows(self, latest_ms: int) -> None:
        """Drops aggregate window state that no record still to come can see: a record
        admitted from now on has a time >= watermark - allowed lateness (event time)."""
        if self.time.mode == "event":
            latest_ms = self.clock.watermark
        for decider in (self.decider, *self.alternatives):
            if decider is not None and decider.user_rules is not None:
                decider.compact(latest_ms - self.time.allowed_lateness_ms)

    def flush(self, now_ms: float | None = None) -> StepResult:
        """End of input, or an idle source: releases every buffered record."""
        now_ms = time.time() * 1000 if now_ms is None else now_ms
        result = StepResult()
        ready = self._first_seen(self.clock.flush(), result)
        if len(ready) == 0:
            return result
        result.decisions = self.process(ready, ready.timestamp_ms, now_ms)
        self._compact_windows(int(ready.timestamp_ms.max()))
        return result

    @property
    def pending(self) -> int:
        """Records waiting for the watermark."""
        return len(self.clock.pending)

    # --- the detectors -------------------------------------------------------------------------

    def detector_input(self, tx: TxBatch, clock_ms: np.ndarray[Any, Any]) -> DetectorInput:
        """Keys and codes for a batch; grows every state table to the keys seen."""
        card = self.cards.slots(tx.card_id)
        user = self.users.slots(tx.user_id)
        codes = self.codes
        profile = self.profiles.table
        key_counts = {"card": len(self.cards), "user": len(self.users)}
        profile.ensure(key_counts["user"])
        for name, instance in self.instances.items():
            self.states[name].ensure(key_counts[instance.detector.key])
        ip = self.ips.slots(tx.ip)
        if len(self.ips) > len(self.ip_country):
            self._look_up_new_ips()
        ip_country, anonymous_network = _codes_at(self.ip_country, self.ip_network, ip)
        country = codes["country"].slots(tx.country)
        home = profile["home_country_code"][user]
        first_name, last_name = self.profiles.names(user)
        return DetectorInput(
            time_ms=np.ascontiguousarray(clock_ms, dtype=np.int64),
            event_ms=tx.timestamp_ms,
            amount=tx.amount,
            lat=tx.lat,
            lon=tx.lon,
            card=card,
            user=user,
            zipcode=codes["zipcode"].slots(tx.zipcode),
            merchant=codes["merchant"].slots(tx.merchant_id),
            device=codes["device"].slots(tx.device_id),
            hour=((tx.timestamp_ms // 3_600_000) % 24).astype(np.int8),
            ip_country=ip_country,
            expected_country=np.where(country >= 0, country, home).astype(np.int32),
            anonymous_network=anonymous_network,
            max_speed_kmh=profile["max_speed_kmh"][user],
            transaction_id=tx.transaction_id,
            first_name=first_name,
            last_name=last_name,
            decode={
                "zipcode": codes["zipcode"],
                "country": codes["country"].keys,
                "network": codes["network"].keys,
            },
        )

    def _look_up_new_ips(self) -> None:
        """Country and anonymous-network codes for addresses seen for the first time."""
        known = len(self.ip_country)
        fresh = self.ips.key_array(known)
        countries, networks = self.reference.lookup(fresh)
        self.ip_country = np.concatenate([self.ip_country, self.codes["country"].slots(countries)])
        self.ip_network = np.concatenate([self.ip_network, self.codes["network"].slots(networks)])

    def _profile_reader(self, inputs: DetectorInput) -> Any:
        """``profile.<name>`` columns for the rules, by the batch's user slots."""
        return self.profile_reader(inputs.user, (inputs.first_name, inputs.last_name))

    def profile_reader(
        self, users: npt.NDArray[np.int32], names: tuple[Any, Any] | None = None
    ) -> Any:
        """``profile.<name>`` columns for the rules of rows whose user slots are ``users``
        (``names``: their first and last names, if already looked up)."""
        table = self.profiles.table
        looked_up: list[tuple[Any, Any]] = [] if names is None else [names]

        def read(name: str) -> Any:
            if name in ("first_name", "last_name"):
                if not looked_up:  # only for a rule that reads a name
                    looked_up.append(self.profiles.names(users))
                return looked_up[0][name == "last_name"]
            if name == "home_country":
                codes = table["home_country_code"][users]
                countries = np.array([*self.codes["country"].keys, None], dtype=object)
                return pa.array(countries[codes], pa.string())
            return np.asarray(table[name][users], dtype=np.float64)

        return read

    def customer_features(self) -> Any:
        """The model stage's streaming features (their customers are user slots), if any."""
        stage = self.model_stage
        return stage.features if stage is not None else None

    def tables_keyed_by(self, key: str) -> list[StateTable]:
        """The detector state tables indexed by card slots ("card") or user slots ("user")."""
        return [
            self.states[name]
            for name, instance in self.instances.items()
            if instance.detector.key == key and name in self.states
        ]

    def process(
        self, tx: TxBatch, clock_ms: np.ndarray[Any, Any], now_ms: float, sweep: bool = True
    ) -> Decisions:
        """Runs released transactions, in processing order, through detectors and decide;
        then timers fire at the watermark (``sweep``), after every record of the batch."""
        n = len(tx)
        inputs = self.detector_input(tx, clock_ms)
        if self.expiry is not None:
            slots = {"card": inputs.card, "user": inputs.user}
            cuts = self.expiry.cuts(slots, inputs.time_ms)
            if len(cuts):  # keys expire inside the batch: decide it in parts, in order
                parts = [
                    self.process(tx.take(rows), clock_ms[rows], now_ms, sweep=False)
                    for rows in np.split(np.arange(n), cuts)
                ]
                # Timers fire after the whole batch, as when it is not cut: a sweep between
                # parts would clear state that the next part's records must still see.
                if sweep:
                    self._sweep_timers(int(clock_ms[-1]))
                return concat_decisions(parts)
            self.expiry.expire(self, slots, inputs.time_ms)
        detected = self.detect(inputs)
        profile = self.profiles.table
        thresholds = (
            profile["review_threshold"][inputs.user],
            profile["decline_threshold"][inputs.user],
        )
        reader = self._profile_reader(inputs)
        assert self.decider is not None
        shared = bool(self.alternatives)
        decisions = self.decider.decide(
            tx, detected, reader, thresholds, now_ms, self.model_stage, only_own=shared
        )
        for decider in self.alternatives:
            decisions.alternatives.append(
                decider.decide(tx, detected, reader, thresholds, now_ms, only_own=True)
            )
        if sweep:
            self._sweep_timers(int(clock_ms[-1]) if n else None)
        return decisions

    def detect(self, inputs: DetectorInput) -> Detected:
        """Runs every detector instance over the batch (updating their state)."""
        fired: dict[str, np.ndarray[Any, Any]] = {}
        features: dict[str, dict[str, Any]] = {}
        found: list[tuple[DetectorInstance, str, str, dict[str, Any]]] = []
        for name, instance in self.instances.items():
            findings = instance.detector.process(self.states[name], inputs)
            prefix = instance.prefix
            own = findings.features
            features[name] = {prefix + k: v for k, v in own.items()} if prefix else own
            for rule_name, mask in findings.fired.items():
                rule_id = instance.rule_ids.get(rule_name)
                if rule_id is not None:
                    fired[rule_id] = mask
                    found.append((instance, rule_name, rule_id, findings.features))
        masks = list(fired.values())  # (one call, not one per rule)
        any_fired = (
            np.logical_or.reduce(masks) if masks else np.zeros(len(inputs.time_ms), dtype=bool)
        )
        return Detected(inputs, fired, features, found, any_fired)

    def snapshot(self) -> Any:
        """Every piece of keyed state, for a checkpoint (see :mod:`.checkpoint`)."""
        from fraudstream.engine.checkpoint import snapshot_pipeline

        return snapshot_pipeline(self)

    def restore(self, snapshot: Any) -> None:
        """Loads a :meth:`snapshot` (rules, keys, state, clock, dedup, profiles) in place."""
        from fraudstream.engine.checkpoint import restore_pipeline

        restore_pipeline(self, snapshot)

    def _sweep_timers(self, latest_ms: int | None) -> None:
        now = self.clock.watermark if self.time.mode == "event" else latest_ms
        if now is not None and self.time.mode == "event":
            # Timers fire only where no record still to be decided (at most the allowed
            # lateness behind the watermark) can need their state: a record late within
            # the lateness sees what it would in one batch, wherever the batches are cut.
            now -= self.time.allowed_lateness_ms
        if now is None or now - self.last_sweep_ms < TIMER_SWEEP_MS:
            return
        self.last_sweep_ms = now
        for name, instance in self.instances.items():
            detector = instance.detector
            if type(detector).on_time is Detector.on_time:  # (no timers: most detectors)
                continue
            keys = self.users if detector.key == "user" else self.cards
            detector.on_time(self.states[name], now, len(keys))


def warm_up(rules: RuleSet | None = None) -> None:
    """Compiles (or loads from cache) every detector kernel, so no live record waits for it:
    for writable columns (records decoded one by one) and for read-only ones (numeric columns
    read from Arrow are read-only views, a signature of their own to numba)."""
    from fraudstream.schema import ValidTx

    pipeline = Pipeline(rules, state_ttl_ms=3_600_000)  # a TTL: its kernels too
    for part, read_only in enumerate((False, True)):
        start = 600_000 * part
        rows = [
            ValidTx(f"warm-{part}-{i}", "warm", "warm", start + 60_000 * i, amount, "USD", 52.5,
                    13.4 + i, "10115", f"m{i}", None, None, "pos", "d1", "192.0.2.1", None)
            for i, amount in enumerate((0.5, 900.0, 1.5, 1.0))
        ]  # fmt: skip
        batch = TxBatch.from_valid(rows, np.arange(len(rows)), np.zeros(len(rows)))
        if read_only:
            for column in (batch.timestamp_ms, batch.amount, batch.lat, batch.lon):
                column.flags.writeable = False
        pipeline.submit(batch, now_ms=0.0)
        one = TxBatch.from_valid([rows[-1]._replace(transaction_id=f"warm-{part}")],
                                 np.zeros(1, np.int64), np.zeros(1))  # fmt: skip
        pipeline.submit(one, now_ms=0.0)  # an authorization's batch: its own paths
    pipeline.flush(now_ms=0.0)
    KeySpace().slots(pa.array([str(k) for k in range(10_000)]))  # outgrows its table: rehash
    for text_type in (pa.string(), pa.large_string()):  # the decoder's card-number prefilter
        digit_like_counts(pa.array(["4111 1111 1111 1111"], text_type))
