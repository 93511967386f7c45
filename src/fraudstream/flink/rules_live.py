"""A rules change on the keyed job's stages: new rules from the next release, state kept.

The embedded runtime switches rules between micro-batches
(:meth:`Pipeline.apply_rules <fraudstream.engine.pipeline.Pipeline.apply_rules>`): a
detector whose state fields stay the same keeps its state, one whose fields change (or that
starts running) starts fresh, and every decision carries the number of the rule version it
was decided under. :func:`switch_rules` does the same to a keyed stage
(:class:`~fraudstream.flink.keyed.CardStage` or :class:`~fraudstream.flink.keyed.UserStage`).

The keyed job keeps each key's state as one packed value whose layout follows the detectors
that run (:mod:`fraudstream.flink.key_rows`). A change that starts or stops a detector
changes the layout, so values written before it are read through the
:class:`ValueMigration` it returns: the fields of the detectors that still run are carried
over, a new detector's fields start fresh. Flink's broadcast pattern cannot visit every key
of a subtask from Python (PyFlink has no ``applyToKeyedState``), so an operator migrates a
key group's values the first time it releases records there after the change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from fraudstream.flink.key_rows import KeyRows
from fraudstream.flink.stages import rules_keyed_by
from fraudstream.rules import RuleSet

__all__ = ["ValueMigration", "switch_rules"]


@dataclasses.dataclass
class ValueMigration:
    """Rewrites values of the ``before`` layout in the ``after`` layout."""

    before: KeyRows
    after: KeyRows

    def migrate(self, values: dict[str, bytes]) -> dict[str, bytes]:
        """The same keys' values in the new layout (fields of detectors still running kept,
        the others fresh)."""
        keys = list(values)
        k = len(keys)
        if k == 0:
            return {}
        before, after = self.before, self.after
        before.load([values[key] for key in keys])  # the tables still used are shared
        for name, table in after.tables.items():
            if before.tables.get(name) is not table:  # started (or its fields changed)
                table.ensure(k)
                table.reset(np.arange(k))
        after.recent_ids = before.recent_ids
        return dict(zip(keys, after.dump(k, before.last_ms[:k].copy()), strict=True))


def switch_rules(stage: Any, rules: RuleSet) -> ValueMigration | None:
    """Runs ``rules`` on ``stage`` from its next release, numbered as the next rule version
    (as the embedded pipeline numbers them); returns how to read values written before, or
    None when their layout did not change.

    >>> from fraudstream.flink.keyed import CardStage
    >>> from fraudstream.flink.stages import PipelineParts
    >>> from fraudstream.profiles import ProfileTable
    >>> from fraudstream.engine.pipeline import TimeConfig
    >>> from fraudstream.reference import IpReference
    >>> from fraudstream.rules import replace_rule
    >>> rules = RuleSet.default()
    >>> stage = CardStage(PipelineParts(rules, ProfileTable(), TimeConfig(), IpReference.default()))
    >>> switch_rules(stage, replace_rule(rules, "velocity", score=0.6)) is None
    True
    >>> switch_rules(stage, replace_rule(rules, "velocity", enabled=False)) is not None
    True
    """
    before = stage.rows
    stage.pipeline.apply_rules(rules_keyed_by(rules, stage.key), source="flink")
    stage.rows = after = KeyRows(stage.pipeline, stage.key)
    full = getattr(stage, "full", None)  # the user stage decides with every rule
    if full is not None:
        full.apply_rules(rules, source="flink")
    if before.dtype == after.dtype and before.coded == after.coded:
        after.recent_ids, after.last_ms = before.recent_ids, before.last_ms
        return None
    return ValueMigration(before, after)
