"""Rules and profiles changed while the keyed job runs: broadcast to every subtask.

::

  FileSource (a watched directory: each new file one rules version, JSON on one line)
    -> key 0: RulesVersions (check, number, audit: as `fraudstream run` reloads a file)
  FileSource (a watched directory: profiles as JSON lines; flink.profile_updates)
    -> ProfileUpserts (check, audit)
       -> union -> broadcast -> LiveCardDetectors / LiveUserDetectors (broadcast state)

The card and user operators are the keyed job's own (:mod:`.keyed_functions`) with Flink's
broadcast state pattern added: a rules version reaching a subtask switches its stage to the
new rules for its next release (:func:`~fraudstream.flink.rules_live.switch_rules`, detector
state kept), a profile upsert replaces the user's profile for the next release, and both are
kept in broadcast state, so a restored subtask applies them again. PyFlink has no
``applyToKeyedState``: a key group's values are migrated to a new rules layout on its first
release after the change, from a ``ValueState`` of the version they were written under.

The update streams never hold back event time: their records carry a far-future timestamp
and they are idle between updates, so the operators' watermark is the transactions' alone.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyflink.common import Duration, Types, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import (
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
)
from pyflink.datastream.connectors.file_system import (
    FileSource,
    StreamFormat,
)
from pyflink.datastream.functions import KeyedBroadcastProcessFunction
from pyflink.datastream.state import (
    MapStateDescriptor,
    ValueStateDescriptor,
)

from fraudstream.config import ConfigError
from fraudstream.flink.aggregate_rows import key_spaces
from fraudstream.flink.functions import OUTPUT_TAGS, PICKLED
from fraudstream.flink.keyed_functions import CardDetectors, UserDetectors
from fraudstream.flink.profile_updates import PROFILE
from fraudstream.flink.rules_live import ValueMigration, switch_rules
from fraudstream.flink.uris import to_uri
from fraudstream.rules import AuditLog, RuleSet

RULES_STATE = MapStateDescriptor("rules-versions", Types.INT(), PICKLED)
PROFILES_STATE = MapStateDescriptor("profiles", Types.STRING(), PICKLED)
RULES = "rules"  # the broadcast tag of a rules version (profile upserts: profile_updates)
WATCH_MS = 1_000  # how often the directory is listed for new versions
FAR_FUTURE_MS = 2**62
WHO = "flink:rules-updates"
MAIN, SIDE = 0, 1
TAGS = {tag.tag_id: tag for tag in OUTPUT_TAGS.values()}

__all__ = [
    "LiveCardDetectors",
    "LiveUserDetectors",
    "RulesVersions",
    "SideOutputs",
    "updates_broadcast",
]


def updates_broadcast(
    env: Any,
    rules: RuleSet,
    rules_updates: str | None,
    rules_audit: str | None,
    profiles_updates: str | None,
    profiles_audit: str | None,
) -> Any:
    """The broadcast stream of rules versions and profile upserts (see the module)."""
    streams = []
    if rules_updates:
        streams.append(_rules_versions(env, rules_updates, rules, str(rules_audit)))
    if profiles_updates:
        from fraudstream.flink.profile_updates import profile_upserts

        streams.append(profile_upserts(env, profiles_updates, str(profiles_audit), _never_late()))
    joined = streams[0] if len(streams) == 1 else streams[0].union(*streams[1:])
    return joined.broadcast(RULES_STATE, PROFILES_STATE)


def _never_late() -> Any:
    return (
        WatermarkStrategy.for_monotonous_timestamps()
        .with_timestamp_assigner(_FarFuture())
        .with_idleness(Duration.of_millis(WATCH_MS // 2))
    )


def _rules_versions(env: Any, directory: str, rules: RuleSet, audit_log: str) -> Any:
    files = (
        FileSource.for_record_stream_format(StreamFormat.text_line_format(), to_uri(directory))
        .monitor_continuously(Duration.of_millis(WATCH_MS))
        .build()
    )
    lines = env.from_source(files, _never_late(), "rules updates")
    return (
        lines.uid("fraudstream-rules-source")
        .set_parallelism(1)
        .key_by(lambda _: 0, key_type=Types.INT())
        .process(RulesVersions(rules, directory, audit_log), output_type=PICKLED)
        .set_parallelism(1)
        .name("rules versions (checked, audited)")
        .uid("fraudstream-rules-versions")
    )


class _FarFuture(TimestampAssigner):  # type: ignore[misc]
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return FAR_FUTURE_MS


class RulesVersions(KeyedProcessFunction):  # type: ignore[misc]
    """Each line a rules document (JSON); a valid one that differs from the rules in force
    becomes the next version, logged as `fraudstream run` logs a reloaded file; one that does
    not check is refused and logged with the reason."""

    def __init__(self, rules: RuleSet, directory: str, audit_log: str) -> None:
        self.start = rules
        self.directory = directory  # where versions come from, as the audit log names it
        self.audit_log = audit_log

    def open(self, runtime_context: RuntimeContext) -> None:
        self.current = runtime_context.get_state(ValueStateDescriptor("rules-current", PICKLED))
        self.audit = AuditLog(Path(self.audit_log))

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        if not value.strip():
            return
        stored = self.current.value()
        version, before = pickle.loads(stored) if stored is not None else (1, self.start)
        try:
            rules = RuleSet.from_document(json.loads(value))
        except (ConfigError, ValueError, TypeError, RecursionError) as exc:
            self.audit.record(WHO, self.directory, before, None, f"refused: {exc}")
            return
        # An aggregate reads the window stage of its key space: the job has one for each key
        # space of its starting rules, built with the graph.
        built = set(key_spaces(self.start))
        missing = [space for space in key_spaces(rules) if space not in built]
        if missing:
            reason = (
                f"aggregate key space {missing[0]} has no window stage in this job (the job "
                "builds one per key space of its starting rules): restart the job with these "
                "rules"
            )
            self.audit.record(WHO, self.directory, before, None, f"refused: {reason}")
            return
        if rules == before:
            return
        version += 1
        self.current.update(pickle.dumps((version, rules)))
        self.audit.record(WHO, self.directory, before, rules)
        yield pickle.dumps((RULES, version, rules))


class _LiveUpdates:
    """The broadcast side of a keyed operator (mixed into the card and user operators)."""

    stage: Any
    rows: Any

    def _open_updates(self, runtime_context: RuntimeContext, key: str) -> None:
        self.version = 1  # the rules in force: the job's, then each version received
        self.migrations: list[ValueMigration | None] = []  # migrations[i]: version i+1 -> i+2
        self.written = runtime_context.get_state(
            ValueStateDescriptor(f"{key}-rules-version", Types.INT())
        )
        self.profiles_synced = False

    def _apply(self, version: int, rules: RuleSet) -> None:
        while self.version < version - 1:  # a version this subtask missed: never, in order
            self.migrations.append(None)
            self.version += 1
        self.migrations.append(switch_rules(self.stage, rules))
        self.version = version

    def process_broadcast_element(self, value: bytes, ctx: Any) -> Iterator[Any]:
        update = pickle.loads(value)
        if update[0] == PROFILE:
            profile = update[1]
            ctx.get_broadcast_state(PROFILES_STATE).put(profile["user_id"], value)
            self.stage.profiles.upsert(profile)
            return iter(())
        _, version, rules = update
        ctx.get_broadcast_state(RULES_STATE).put(version, value)
        if version > self.version:
            self._apply(version, rules)
        return iter(())

    def _sync(self, ctx: Any) -> None:
        """After a restore: the updates in broadcast state this subtask has not applied."""
        # items(): the only listing PyFlink's thread mode has (its keys() is not wired)
        state = ctx.get_broadcast_state(RULES_STATE)
        missed = sorted((v, value) for v, value in state.items() if v > self.version)
        for version, value in missed:
            self._apply(version, pickle.loads(value)[2])
        if not self.profiles_synced:  # once per start: upserts since only come broadcast
            self.profiles_synced = True
            for _, value in ctx.get_broadcast_state(PROFILES_STATE).items():
                self.stage.profiles.upsert(pickle.loads(value)[1])

    def _catch_up(self) -> None:
        """Rewrites this key group's values in the layout of the rules in force."""
        written = self.written.value() or 1
        if written == self.version:
            return
        pending = [m for m in self.migrations[written - 1 :] if m is not None]
        if pending:
            values = dict(self.rows.items())
            for migration in pending:
                values = migration.migrate(values)
            self.store(values)  # type: ignore[attr-defined]
        self.written.update(self.version)

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        self._sync(ctx)
        yield from _on_main(super().process_element(value, ctx))  # type: ignore[misc]

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        self._sync(ctx)
        yield from _on_main(super().on_timer(timestamp, ctx))  # type: ignore[misc]

    def release(self, parts: list[Any], watermark: int) -> Iterator[Any]:
        self._catch_up()
        yield from super().release(parts, watermark)  # type: ignore[misc]


def _on_main(outputs: Iterator[Any]) -> Iterator[Any]:
    """Side outputs of a broadcast-connected operator never reach PyFlink's side output
    streams (thread mode): they travel on the main output, tagged, to :class:`SideOutputs`."""
    for item in outputs:
        if isinstance(item, tuple) and isinstance(item[0], OutputTag):
            yield SIDE, item[0].tag_id, item[1]
        else:
            yield MAIN, item


class SideOutputs(ProcessFunction):  # type: ignore[misc]
    """Puts what :func:`_on_main` tagged back on the side outputs; the rest goes on."""

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        if value[0] == SIDE:
            yield TAGS[value[1]], value[2]
        else:
            yield value[1]


class LiveCardDetectors(_LiveUpdates, CardDetectors, KeyedBroadcastProcessFunction):  # type: ignore[misc]
    """:class:`~.keyed_functions.CardDetectors` with rules and profiles from the broadcast."""

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self._open_updates(runtime_context, "card")


class LiveUserDetectors(_LiveUpdates, UserDetectors, KeyedBroadcastProcessFunction):  # type: ignore[misc]
    """:class:`~.keyed_functions.UserDetectors` with rules and profiles from the broadcast."""

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self._open_updates(runtime_context, "user")
