"""A rules change mid-stream on the keyed job's stages decides as on the embedded runtime.

Both runtimes take the same stream in processing time (arrival order: the moment of the
change is the same record on both) and switch to the changed rules after the same chunk:
the embedded pipeline with ``apply_rules`` between micro-batches, the keyed stages with
:func:`~fraudstream.flink.rules_live.switch_rules`, each key group migrating its values the
first time it releases records after the change (as the Flink operators do). Every decision
(tier, score, reasons, features, rule version) must be the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_keyed_processing_time import (
    ARRIVAL_T0_MS,
    KEY_GROUPS,
    NO_WATERMARK,
    PROCESSING,
    chunks,
    comparable,
    decode,
    stream,
)

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline
from fraudstream.flink.keyed import CardStage, UserStage, release_order
from fraudstream.flink.rules_live import ValueMigration, switch_rules
from fraudstream.flink.stages import PipelineParts, StageResult, shard_of
from fraudstream.flink.transport import pack_result, take_part, unpack_result
from fraudstream.io.records import decision_dicts
from fraudstream.profiles import ProfileTable
from fraudstream.reference import IpReference
from fraudstream.rules import RuleSet, replace_rule

DEFAULT = RuleSet.default()
CHANGES = {
    "disable a card detector": replace_rule(DEFAULT, "velocity", enabled=False),
    "disable a user detector": replace_rule(DEFAULT, "geo_velocity", enabled=False),
    "thresholds": replace_rule(DEFAULT, "small_then_large", thresholds={"large_amount": 100.0}),
    "window": replace_rule(
        DEFAULT, "velocity", thresholds={"window_s": 600, "min_transactions": 3}
    ),
    "shadow": replace_rule(DEFAULT, "card_testing", mode="shadow"),
    "score": replace_rule(DEFAULT, "new_device", score=0.9),
    "decision thresholds": dataclasses.replace(DEFAULT, review_threshold=0.3),
}
START = {  # a rule off at the start, switched on by the change
    "enable a card detector": replace_rule(DEFAULT, "spend_deviation", enabled=False),
    "enable a user detector": replace_rule(DEFAULT, "ip_country_mismatch", enabled=False),
}


@dataclass
class KeyGroup:
    values: dict[str, bytes] = field(default_factory=dict)
    migrated: int = 0  # how many of the changes its values are written after

    def fetch(self, keys: list[str]) -> list[bytes | None]:
        return [self.values.get(key) for key in keys]

    def catch_up(self, migrations: list[ValueMigration | None]) -> None:
        for migration in migrations[self.migrated :]:
            if migration is not None:
                self.values = migration.migrate(self.values)
        self.migrated = len(migrations)


def embedded(batch: TxBatch, size: int, start: RuleSet, after: int, new: RuleSet) -> Any:
    pipeline = Pipeline(start, ProfileTable(), PROCESSING, IpReference.default())
    decided = []
    for k, part in enumerate(chunks(batch, size)):
        if k == after:
            pipeline.apply_rules(new)
        step = pipeline.submit(part, ARRIVAL_T0_MS)
        if step.decisions is not None:
            decided.extend(decision_dicts(step.decisions))
    return comparable(decided)


def keyed(batch: TxBatch, size: int, start: RuleSet, after: int, new: RuleSet) -> Any:
    parts = PipelineParts(start, ProfileTable(), PROCESSING, IpReference.default())
    card_stage, user_stage = CardStage(parts), UserStage(parts)
    cards = [KeyGroup() for _ in range(KEY_GROUPS)]
    users = [KeyGroup() for _ in range(KEY_GROUPS)]
    card_changes: list[ValueMigration | None] = []
    user_changes: list[ValueMigration | None] = []
    decided = []
    for k, part in enumerate(chunks(batch, size)):
        if k == after:  # the broadcast reaches every subtask before the next record
            card_changes.append(switch_rules(card_stage, new))
            user_changes.append(switch_rules(user_stage, new))
        waiting: dict[int, list[StageResult]] = {}
        to_card = shard_of(part.card_id, KEY_GROUPS)
        for g in np.unique(to_card).tolist():
            cards[g].catch_up(card_changes)
            tx = part.take(np.flatnonzero(to_card == g))
            tx = tx.take(release_order(tx, processing=True))
            result, _, values = card_stage.process(tx, cards[g].fetch, NO_WATERMARK, ARRIVAL_T0_MS)
            cards[g].values.update(values)
            assert result.tx is not None
            to_user = shard_of(result.tx.user_id, KEY_GROUPS)
            for u in np.unique(to_user).tolist():
                waiting.setdefault(u, []).append(
                    unpack_result(take_part(pack_result(result), np.flatnonzero(to_user == u)))
                )
        for u, results in waiting.items():
            users[u].catch_up(user_changes)
            decisions, values, _ = user_stage.process(
                results, users[u].fetch, NO_WATERMARK, ARRIVAL_T0_MS
            )
            users[u].values.update(values)
            decided.extend(decision_dicts(decisions))
    return comparable(decided)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    size=st.sampled_from([7, 40, 150]),
    after=st.integers(1, 4),
    change=st.sampled_from(sorted(CHANGES) + sorted(START)),
)
def test_a_rules_change_mid_stream_decides_as_embedded(
    seed: int, size: int, after: int, change: str
) -> None:
    start, new = (START[change], DEFAULT) if change in START else (DEFAULT, CHANGES[change])
    batch = decode(stream(seed, 300), step_ms=500)
    want = embedded(batch, size, start, after, new)
    got = keyed(batch, size, start, after, new)
    assert got == want
    changed = after < len(list(chunks(batch, size)))  # the change comes before the last chunk
    versions = {row["rule_version"] for row in got.values()}
    assert versions == ({1, 2} if changed else {1})  # numbered as embedded


def test_a_changed_layout_keeps_the_state_of_detectors_still_running() -> None:
    parts = PipelineParts(DEFAULT, ProfileTable(), PROCESSING, IpReference.default())
    stage = CardStage(parts)
    batch = decode(stream(3, 40), step_ms=500)
    tx = batch.take(release_order(batch, processing=True))
    group = KeyGroup()
    _, _, values = stage.process(tx, group.fetch, NO_WATERMARK, ARRIVAL_T0_MS)
    group.values.update(values)
    migration = switch_rules(stage, CHANGES["disable a card detector"])
    assert migration is not None
    migrated = migration.migrate(group.values)
    assert set(migrated) == set(group.values)
    assert all(len(v) < len(group.values[k]) for k, v in migrated.items())  # velocity's gone
    stage.rows.load(list(migrated.values()))
    history = stage.pipeline.states["card_history"]["last_ms"][: len(migrated)]
    assert (history > 0).all()  # the card history came along
