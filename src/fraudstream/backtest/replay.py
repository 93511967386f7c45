"""A backtest: history replayed through the live pipeline under two rule sets at once.

Replay and live are the same pipeline, so a backtest runs the code that runs in production.
The history is decoded once and its detectors run once: the pipeline decides every batch
under the candidate rule set and, as an alternative decider, under the baseline
(:meth:`~fraudstream.engine.pipeline.Pipeline.add_alternative`). Only when the two rule sets
give a shared detector different thresholds does it fall back to two pipelines fed the same
decoded batches. Either way each side's decisions equal what ``fraudstream run`` writes with
that rule set (a test holds them to it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream.backtest.tally import DAY_MS, FraudLookup, Tally, report
from fraudstream.config import ConfigError
from fraudstream.decide import TIERS, Decisions
from fraudstream.engine.pipeline import Pipeline, StepResult
from fraudstream.io.decode import Decoder
from fraudstream.io.files import IDLE
from fraudstream.io.labels import Labels
from fraudstream.rules import RuleSet
from fraudstream.schema import CardTokenizer

__all__ = ["Backtest", "BacktestResult", "rule_modes"]


def rule_modes(rules: RuleSet) -> dict[str, str]:
    """Every enabled rule id of ``rules`` with its mode, in the rule set's order."""
    modes = {r.id: r.mode for r in rules.enabled()}
    modes.update({r.id: r.mode for r in rules.enabled_user_rules()})
    return modes


@dataclass
class BacktestResult:
    """The report and how the replay went."""

    report: dict[str, Any]
    records: int
    dead_letters: int
    seconds: float
    shared_detectors: bool


class Backtest:
    """Replays a source under ``candidate`` and ``baseline`` and counts both against labels.

    ``make_pipeline(rules)`` builds a pipeline as ``fraudstream run`` would (profiles, time
    settings, IP reference, state TTL).
    """

    def __init__(
        self,
        candidate: RuleSet,
        baseline: RuleSet,
        labels: Labels,
        make_pipeline: Callable[[RuleSet], Pipeline],
        tokenizer: CardTokenizer,
        names: tuple[str, str] = ("candidate", "baseline"),
    ) -> None:
        self.candidate = candidate
        self.baseline = baseline
        self.lookup = FraudLookup(labels.transaction_id, labels.is_fraud)
        self.names = names
        self.tokenizer = tokenizer
        main = make_pipeline(candidate)
        try:
            main.add_alternative(baseline)
            self.pipelines = [main]
        except ConfigError:  # the detectors differ: a second pipeline, same batches
            self.pipelines = [main, make_pipeline(baseline)]
        self.tallies = (Tally(rule_modes(candidate)), Tally(rule_modes(baseline)))
        self.changed: list[dict[str, str]] = []
        self.decided = 0
        self.frauds = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    @property
    def shared(self) -> bool:
        """Whether both rule sets share one detector pass."""
        return len(self.pipelines) == 1

    def run(
        self, source: Any, progress: Callable[[int, int], None] | None = None
    ) -> BacktestResult:
        """Replays ``source`` (a file source) to its end; returns the report."""
        started = time.perf_counter()
        decoder = Decoder(self.tokenizer, getattr(source, "name", "history"))
        records = dead = 0
        for item in source.batches(decoder):
            now = time.time() * 1000
            if item is IDLE:
                self._count([p.flush(now) for p in self.pipelines])
            else:
                batch, letters = item
                records += len(batch) + len(letters)
                dead += len(letters)
                self._count([p.submit(batch, now) for p in self.pipelines])
            if progress is not None:
                progress(source.done_bytes, source.total_bytes)
        now = time.time() * 1000
        self._count([p.flush(now) for p in self.pipelines])
        span = 0 if self.first_ms is None or self.last_ms is None else self.last_ms - self.first_ms
        built = report(*self.tallies, self.changed, self.decided, self.frauds, span, self.names)
        return BacktestResult(built, records, dead, time.perf_counter() - started, self.shared)

    def _count(self, results: list[StepResult]) -> None:
        first = results[0].decisions
        if first is None or len(first) == 0:
            return
        if self.shared:
            other = first.alternatives[0]
        else:
            second = results[1].decisions
            assert second is not None and len(second) == len(first)
            other = second
        self._add(first, other)

    def _add(self, candidate: Decisions, baseline: Decisions) -> None:
        tx = candidate.tx
        fraud = self.lookup.of(tx.transaction_id)
        day = np.asarray(tx.timestamp_ms, dtype=np.int64) // DAY_MS
        self.decided += len(candidate)
        self.frauds += int(fraud.sum())
        low, high = int(tx.timestamp_ms.min()), int(tx.timestamp_ms.max())
        self.first_ms = low if self.first_ms is None else min(self.first_ms, low)
        self.last_ms = high if self.last_ms is None else max(self.last_ms, high)
        self.tallies[0].add(candidate, fraud, day)
        self.tallies[1].add(baseline, fraud, day)
        differ = np.flatnonzero(candidate.tier != baseline.tier)
        if len(differ):
            ids = tx.transaction_id.take(differ).to_pylist()
            before = baseline.tier[differ].tolist()
            after = candidate.tier[differ].tolist()
            self.changed.extend(
                {"transaction_id": i, "before": TIERS[b], "after": TIERS[a]}
                for i, b, a in zip(ids, before, after, strict=True)
            )
