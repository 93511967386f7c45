"""One detector pass for two rule sets decides exactly as two pipelines do: for random edits
of the defaults (rules off, scores, modes, the review threshold, user rules with aggregates,
in shadow or not) and any cut of the stream into micro-batches, the pipeline's alternative
decider gives, row for row, the tiers, scores, reasons and shadow reasons that a pipeline of
its own gives, and so does the main one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.decide import Decisions
from fraudstream.engine.decider import shared_detectors
from fraudstream.engine.pipeline import Pipeline
from fraudstream.io.decode import Decoder
from fraudstream.rules import DEFAULT_SCORES, RuleSet
from fraudstream.schema import CardTokenizer
from fraudstream.simulate.workload import benchmark_table

USER_RULES = [
    {"id": "big", "when": "amount > 300", "score": 0.4},
    {"id": "busy", "when": "count(by=card_id, over='1h') >= 3", "outcome": "review"},
    {"id": "merchant_spree", "when": "distinct_count(card_id, by=merchant_id, over='2h') >= 2",
     "score": 0.2},
]  # fmt: skip


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    table = benchmark_table(400, cards=25, seed=3, days=0.2)
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSet:
    rules: list[dict[str, Any]] = []
    for rule_id in DEFAULT_SCORES:
        entry: dict[str, Any] = {"id": rule_id}
        if draw(st.booleans()):
            entry["enabled"] = draw(st.booleans())
            entry["score"] = draw(st.sampled_from([0.1, 0.45, 0.9]))
            entry["mode"] = draw(st.sampled_from(["live", "shadow"]))
        rules.append(entry)
    for user in draw(st.lists(st.sampled_from(USER_RULES), unique_by=lambda r: r["id"])):
        rules.append({**user, "mode": draw(st.sampled_from(["live", "shadow"]))})
    review = draw(st.sampled_from([0.3, 0.5, 0.8]))
    return RuleSet.from_document({"rules": rules, "decision": {"review_threshold": review}})


def decide(
    pipelines: list[Pipeline], records: list[dict[str, Any]], cuts: list[int]
) -> list[list[Decisions]]:
    decoder = Decoder(CardTokenizer(b"test"))
    out: list[list[Decisions]] = [[] for _ in pipelines]
    bounds = [0, *sorted(set(cuts)), len(records)]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        if start == stop:
            continue
        part = records[start:stop]
        batch, dead = decoder.records(part, list(range(start, stop)), [0.0] * len(part))
        assert not dead
        for k, pipeline in enumerate(pipelines):
            result = pipeline.submit(batch, 0.0)
            if result.decisions is not None:
                out[k].append(result.decisions)
    for k, pipeline in enumerate(pipelines):
        result = pipeline.flush(0.0)
        if result.decisions is not None:
            out[k].append(result.decisions)
    return out


def rows(decisions: list[Decisions]) -> list[tuple[Any, ...]]:
    out = []
    for part in decisions:
        ids = part.tx.transaction_id.to_pylist()
        for i, tid in enumerate(ids):
            shadow = part.shadow_row_reasons(i)
            out.append((tid, int(part.tier[i]), float(part.score[i]),
                        [(r["rule"], r["message"]) for r in part.reasons.get(i, [])],
                        [(r["rule"], r["message"]) for r in shadow]))  # fmt: skip
    return out


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    candidate=rule_sets(),
    baseline=rule_sets(),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_an_alternative_decider_equals_a_pipeline_of_its_own(
    records: list[dict[str, Any]], candidate: RuleSet, baseline: RuleSet, cuts: list[int]
) -> None:
    assert shared_detectors(candidate, baseline)  # only scores, modes and switches differ
    shared = Pipeline(candidate)
    shared.add_alternative(baseline)
    (main,) = decide([shared], records, cuts)
    alone_candidate, alone_baseline = decide(
        [Pipeline(candidate), Pipeline(baseline)], records, cuts
    )
    assert rows(main) == rows(alone_candidate)
    assert rows([d.alternatives[0] for d in main]) == rows(alone_baseline)
    assert np.concatenate([d.tier for d in main]).size == len(records)
