"""The model in the loop on the keyed job's stages, without Flink: the embedded decisions.

Property: with ``--model`` and ``--labels`` the keyed job (card key groups, then terminal
features by merchant key group, then user key groups with the customers' features and the
decision) gives the embedded pipeline's decisions, scores, features and ``model`` reasons
for any stream within the out-of-orderness, any split count and interleaving, and fraud
labels known before, between and after their transactions. Plus the timeline's fold against
the embedded label feed, and the feature rings over 80 days of the handbook simulation
(rings that wrap, widen and expire) carried from release to release as values.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_keyed_processing_time import (
    ARRIVAL_T0_MS,
    KEY_GROUPS,
    NO_WATERMARK,
    PROCESSING,
    chunks,
)
from test_keyed_processing_time import comparable as processing_comparable
from test_keyed_processing_time import decode as processing_decode
from test_keyed_processing_time import stream as processing_stream
from test_keyed_stages import decode, embedded, keyed_run, records
from test_model_stages import save_small_model, write_labels

from fraudstream.engine.ids import hash_ids
from fraudstream.engine.keys import KeySpace
from fraudstream.engine.pipeline import Pipeline
from fraudstream.features import StreamingFeatures
from fraudstream.features.kernels import NEVER, mark_known
from fraudstream.features.timeline import LabelTimeline
from fraudstream.flink.feature_rows import FeatureRows
from fraudstream.flink.keyed import CardStage, TerminalStage, UserStage, release_order
from fraudstream.flink.model import ModelSpec
from fraudstream.flink.stages import PipelineParts, shard_of
from fraudstream.flink.transport import pack_result, take_part, unpack_result
from fraudstream.io.labels import LabelFeed, Labels, read_labels
from fraudstream.io.records import decision_dicts
from fraudstream.models.dataset import attach
from fraudstream.profiles import ProfileTable
from fraudstream.reference import IpReference
from fraudstream.rules import RuleSet
from fraudstream.simulate.handbook import HandbookConfig, handbook_labels, handbook_table
from fraudstream.testing import tx_batch

HOUR = 3_600_000


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_model(tmp_path_factory.mktemp("model") / "xgb")


def fraud_labels(stream: list[dict[str, Any]], seed: int, overturned: bool) -> list[Any]:
    """A third of the transactions labelled fraud, known from an hour before to two days
    after; a not-fraud label for some others (changes nothing); with ``overturned`` some
    fraud labels cleared later."""
    rng = random.Random(seed)
    labels = []
    for record in stream:
        tid, time = record["transaction_id"], record["timestamp"]
        draw = rng.random()
        if draw < 0.33:
            when = time + rng.randrange(-HOUR, 48 * HOUR)
            labels.append((tid, True, when))
            if overturned and rng.random() < 0.2:
                labels.append((tid, False, when + rng.randrange(1, 12 * HOUR)))
        elif draw < 0.5:
            labels.append((tid, False, time + rng.randrange(0, 24 * HOUR)))
    return labels


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    splits=st.sampled_from([1, 2, 4]),
    interleaving=st.lists(st.integers(0, 3), max_size=40),
    weight=st.sampled_from([0.4, 1.0]),
    ttl=st.sampled_from([None, 20 * 60_000]),
)
@example(seed=1807, splits=2, interleaving=[], weight=0.4, ttl=20 * 60_000)  # no customer
def test_keyed_stages_with_a_model_and_labels_decide_as_embedded(
    small_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    splits: int,
    interleaving: list[int],
    weight: float,
    ttl: int | None,
) -> None:
    """Any stream, split count and interleaving; a state TTL (customers back after it start
    over, with their users' state) or none."""
    stream = records(seed, 300, cards=12, late=splits == 1)
    labels = write_labels(
        tmp_path_factory.mktemp("labels") / "labels.parquet", fraud_labels(stream, seed, False)
    )
    batch = decode(stream)
    want = embedded(batch, 64, ttl, labels=labels, model=small_model, weight=weight)
    spec = ModelSpec.load(small_model, weight, labels)
    got = keyed_run(batch, 64, splits, [s % splits for s in interleaving], spec, ttl)
    assert got[0] == want[0]  # decisions, scores, every feature, the model's reasons
    assert got[1:] == want[1:]
    # the labels reached the features (a terminal's: a short TTL may keep every customer's
    # history shorter than its frauds' label delay)
    known = [d["features"]["terminal_known_frauds_30d"] for d in got[0].values()]
    assert max(known) > 0


def test_labels_without_a_model_add_the_features_only(tmp_path: Path) -> None:
    stream = records(3, 200, cards=8)
    labels = write_labels(tmp_path / "labels.parquet", fraud_labels(stream, 3, False))
    batch = decode(stream)
    want = embedded(batch, 50, labels=labels)
    got = keyed_run(batch, 50, 2, [0, 1, 1, 0], ModelSpec.load(None, 1.0, labels))
    assert got == want
    assert all("terminal_risk_7d" in d["features"] for d in got[0].values())


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.booleans(), st.integers(0, 50)), max_size=25),
    st.integers(-1, 55),
)
def test_the_timeline_folds_labels_as_the_embedded_feed_marks_them(
    labels: list[tuple[str, bool, int]], until: int
) -> None:
    """Every id's known time with the labels up to ``until`` taken, as ``mark_known`` leaves
    it when a feed hands the same labels out one by one (the embedded order)."""
    table = Labels(
        pa.array([t for t, _, _ in labels], pa.string()),
        np.array([f for _, f, _ in labels], dtype=np.bool_),
        np.array([w for _, _, w in labels], dtype=np.int64),
    )
    ids = list("abcdefg")
    space = KeySpace()
    space.slots(pa.array(ids))
    seq_known = np.full(len(ids), NEVER, dtype=np.int64)
    due = LabelFeed(table).due(until)
    for i in range(len(due)):
        one = due.slice(i, i + 1)
        mark_known(
            space.slots(one.transaction_id).astype(np.int64), one.is_fraud, one.label_time,
            seq_known,
        )  # fmt: skip
    got = LabelTimeline(table).known(hash_ids(pa.array(ids)), until)
    assert got.tolist() == seq_known.tolist()


def test_feature_rings_carried_as_values_over_80_days_of_the_handbook(tmp_path: Path) -> None:
    """The handbook simulation in releases of a few keys each (keys' values moving between
    slots), with its labels: every customer and terminal feature equals the embedded
    features', while rings wrap, widen and expire (horizons of 31 and 38 days)."""
    table = handbook_table(HandbookConfig(customers=30, terminals=60, days=80, seed=5))
    pq.write_table(handbook_labels(table), tmp_path / "labels.parquet")
    labels = read_labels(tmp_path / "labels.parquet")
    ids = table.column("transaction_id").combine_chunks()
    users = table.column("user_id").combine_chunks()
    merchants = table.column("merchant_id").combine_chunks()
    times = table.column("timestamp").to_numpy().astype(np.int64)
    amounts = table.column("amount").to_numpy().astype(np.float64)
    reference = StreamingFeatures(None, LabelFeed(labels))
    customers, terminals = KeySpace(), KeySpace()
    rows = {"customer": FeatureRows("customer", LabelTimeline(labels)),
            "terminal": FeatureRows("terminal", LabelTimeline(labels))}  # fmt: skip
    values: dict[str, dict[str, bytes]] = {"customer": {}, "terminal": {}}
    rng = np.random.default_rng(5)
    start = 0
    while start < len(times):
        stop = min(len(times), start + int(rng.integers(1, 400)))
        cut = np.arange(start, stop)
        want = reference.compute(
            ids.take(pa.array(cut)), customers.slots(users.take(pa.array(cut))),
            terminals.slots(merchants.take(pa.array(cut))), times[cut], amounts[cut],
        )  # fmt: skip
        tx = tx_batch(
            ids=ids.take(pa.array(cut)).to_pylist(), times=times[cut].tolist(),
            users=users.take(pa.array(cut)).to_pylist(),
            merchants=merchants.take(pa.array(cut)).to_pylist(), amounts=amounts[cut].tolist(),
        )  # fmt: skip
        for kind, column in (("customer", tx.user_id), ("terminal", tx.merchant_id)):
            own = KeySpace()
            slots = own.slots(column)
            keys = list(own.keys)
            order = rng.permutation(len(keys))  # the keys in other slots every release
            renumber = np.empty(len(keys), dtype=np.int32)
            renumber[order] = np.arange(len(keys), dtype=np.int32)
            keys = [keys[i] for i in order]
            loaded = [values[kind].get(key) for key in keys]
            got, new = rows[kind].compute(loaded, renumber[slots], tx, tx.timestamp_ms)
            values[kind].update(zip(keys, new, strict=True))
            for name, column_values in got.items():
                np.testing.assert_array_equal(column_values, want[name], err_msg=name)
        start = stop
    assert len(values["customer"]) == len(set(users.to_pylist()))
    assert len(values["terminal"]) == len(set(merchants.to_pylist()))
    assert reference.customers.width >= 64 and reference.customers.head.sum() > 1_000
    assert reference.labels_applied > 0


def processing_keyed(batch: Any, size: int, spec: ModelSpec) -> dict[str, Any]:
    """The keyed job in processing time with a model (as test_keyed_processing_time's
    ``keyed``, plus the terminal operator): the arrival watermark passes one chunk at a time,
    so each key group of each operator gets the chunk's parts together."""
    parts = PipelineParts(
        RuleSet.default(), ProfileTable(), PROCESSING, IpReference.default(), None, spec.keyed()
    )
    cards, terminals, users, customers = ({} for _ in range(4))
    card_stage, terminal_stage, user_stage = (
        CardStage(parts), TerminalStage(parts), UserStage(parts)
    )  # fmt: skip

    def fetch(values: dict[str, bytes]) -> Any:
        return lambda keys: [values.get(k) for k in keys]

    def cut(results: list[Any], column: Any) -> dict[int, list[Any]]:
        out: dict[int, list[Any]] = {}
        for result in results:
            groups = shard_of(column(result.tx), KEY_GROUPS)
            for g in np.unique(groups).tolist():
                rows = np.flatnonzero(groups == g)
                out.setdefault(g, []).append(unpack_result(take_part(pack_result(result), rows)))
        return out

    decided = []
    for part in chunks(batch, size):
        answers = []
        to_card = shard_of(part.card_id, KEY_GROUPS)
        for g in np.unique(to_card).tolist():
            tx = part.take(np.flatnonzero(to_card == g))
            tx = tx.take(release_order(tx, processing=True))
            values = cards.setdefault(g, {})
            result, _, new = card_stage.process(tx, fetch(values), NO_WATERMARK, ARRIVAL_T0_MS)
            values.update(new)
            answers.append(result)
        featured = []
        for g, results in cut(answers, lambda tx: tx.merchant_id).items():
            values = terminals.setdefault(g, {})
            results, new = terminal_stage.process(results, fetch(values))
            values.update(new)
            featured.extend(results)
        for g, results in cut(featured, lambda tx: tx.user_id).items():
            values, features = users.setdefault(g, {}), customers.setdefault(g, {})
            decisions, new, new_features = user_stage.process(
                results, fetch(values), NO_WATERMARK, ARRIVAL_T0_MS, fetch(features)
            )
            values.update(new)
            features.update(new_features)
            decided.extend(decision_dicts(decisions))
    return processing_comparable(decided)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), size=st.sampled_from([1, 13, 64, 500]))
def test_keyed_stages_with_a_model_in_processing_time_decide_as_embedded(
    small_model: Path, tmp_path_factory: pytest.TempPathFactory, seed: int, size: int
) -> None:
    """Processing time: arrival order and arrival times, the features' windows and the
    labels' times read on the arrival clock, as `run --time processing --model --labels`."""
    records = processing_stream(seed, 200)
    arrivals = [ARRIVAL_T0_MS + 700 * k for k in range(len(records))]
    known = [
        (r["transaction_id"], True, arrival + 3_000)
        for r, arrival in zip(records, arrivals, strict=True)
        if r["amount"] > 500
    ]
    labels = write_labels(tmp_path_factory.mktemp("labels") / "labels.parquet", known)
    batch = processing_decode(records, step_ms=700)
    pipeline = Pipeline(RuleSet.default(), ProfileTable(), PROCESSING, IpReference.default())
    attach(pipeline, labels=labels, model=small_model)
    steps = [pipeline.submit(part, ARRIVAL_T0_MS) for part in chunks(batch, size)]
    want = processing_comparable(
        [d for step in [*steps, pipeline.flush(ARRIVAL_T0_MS)] if step.decisions is not None
         for d in decision_dicts(step.decisions)]
    )  # fmt: skip
    got = processing_keyed(batch, size, ModelSpec.load(small_model, 1.0, labels))
    assert got == want
    assert max(d["features"]["customer_known_frauds_30d"] for d in got.values()) > 0
