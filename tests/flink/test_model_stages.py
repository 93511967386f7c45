"""The model in the loop, the Flink job's stages without Flink: exactly the embedded pipeline.

Property: the job's stages with a model (streaming features in the sequencer, scoring in the
join) give the embedded pipeline's decisions, scores, reasons with the model's top
contributions and the ``model`` field, for any stream cut into any micro-batches, any number
of shards, labels or none, a state TTL or none, every stage's state pickled and restored
between batches. Plus the cases a random stream rarely hits: labels that meet the parts a
state TTL cuts, user key-space compaction, and the sequencer's compact snapshot over 80 days
of the handbook simulation (rings that wrap, widen and expire).
"""

from __future__ import annotations

import json
import pickle
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_stages import START, comparable, cuts, detect, streams

from fraudstream.engine.pipeline import TimeConfig
from fraudstream.flink.model import ModelSpec
from fraudstream.flink.stages import PipelineParts, Sequencer, assemble
from fraudstream.io.decode import Decoder
from fraudstream.io.records import decision_dicts
from fraudstream.models.dataset import attach
from fraudstream.models.train import train_model
from fraudstream.profiles import ProfileTable
from fraudstream.reference import IpReference
from fraudstream.rules import RuleSet
from fraudstream.schema import CardTokenizer
from fraudstream.simulate.handbook import HandbookConfig, handbook_labels, handbook_table

SMALL = {"n_estimators": 20, "max_depth": 4}
SYNTHETIC = [
    "amount", "customer_tx_1d", "customer_amount_ratio", "customer_seconds_since_previous",
    "terminal_tx_1d", "speed_kmh", "transactions_in_window", "hour",
]  # fmt: skip


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XGBoost artifact on streaming and detector features (synthetic training rows)."""
    return save_small_model(tmp_path_factory.mktemp("model") / "xgb")


def save_small_model(target: Path) -> Path:
    """Trains and saves the small synthetic model at ``target``."""
    rng = np.random.default_rng(7)
    x = np.column_stack(
        [
            rng.choice([0.5, 1.5, 20.0, 80.0, 700.0, 4_000.0], 2_000),
            rng.integers(0, 6, 2_000),
            rng.exponential(1.5, 2_000),
            rng.exponential(600.0, 2_000),
            rng.integers(0, 8, 2_000),
            rng.exponential(300.0, 2_000),
            rng.integers(0, 6, 2_000),
            rng.integers(0, 24, 2_000),
        ]
    ).astype(np.float64)
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values: a first transaction, no pair
    y = (x[:, 0] > 500) | (np.nan_to_num(x[:, 2]) > 3) | (np.nan_to_num(x[:, 5]) > 900)
    artifact = train_model("xgboost", x, y, SYNTHETIC, name="flink-small", params=SMALL)
    return artifact.save(target)


def embedded(parts: PipelineParts, batches: list[list[bytes]], **attached: Any) -> list[Any]:
    """`fraudstream run --model/--labels` over the micro-batches (attach, submit / flush)."""
    pipeline = parts.pipeline()
    attach(pipeline, **attached)
    decoder = Decoder(CardTokenizer(b"test"), "input")
    decisions: list[dict[str, Any]] = []
    position = 0
    for lines in [*batches, []]:
        positions = list(range(position + 1, position + len(lines) + 1))
        position += len(lines)
        batch, _ = decoder.lines(lines, positions, [0.0] * len(lines))
        result = pipeline.submit(batch, 0.0) if lines else pipeline.flush(0.0)
        if result.decisions is not None:
            decisions += decision_dicts(result.decisions)
    return decided(decisions)


def sharded(parts: PipelineParts, batches: list[list[bytes]], shards: int) -> list[Any]:
    """The job's stages, each one's state pickled and restored after every batch."""
    sequencer = Sequencer(parts, shards)
    stages: dict[tuple[str, int], bytes] = {}
    decisions: list[dict[str, Any]] = []
    for step in [*batches, None]:
        released = sequencer.lines(step, 0.0) if step is not None else sequencer.flush()
        snapshot = pickle.loads(pickle.dumps(sequencer.snapshot()))
        sequencer = Sequencer(parts, shards)
        sequencer.restore(snapshot)
        results = detect(parts, released, stages)
        if results:  # a fresh join every batch (scoring keeps no state), without the labels
            full = replace(parts, model=parts.model.lean())
            decisions += decision_dicts(
                assemble(results, pickle.loads(pickle.dumps(full)).decider(), 0.0)
            )
    return decided(decisions)


def decided(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decisions by transaction id, wall-clock fields left out."""
    return comparable((decisions, [], []))[0]  # type: ignore[no-any-return]


def write_labels(path: Path, labels: list[tuple[str, bool, int]]) -> Path:
    """A label file (transaction_id, is_fraud, label_time)."""
    ids, fraud, times = zip(*labels, strict=True) if labels else ((), (), ())
    table = pa.table(
        {
            "transaction_id": pa.array(ids, pa.string()),
            "is_fraud": pa.array(fraud, pa.bool_()),
            "label_time": pa.array(times, pa.int64()),
        }
    )
    pq.write_table(table, path)
    return path


def parts_with(
    ttl: int | None, spec: ModelSpec | None, profiles: ProfileTable | None = None
) -> PipelineParts:
    """The test's pipeline definition: default rules, 1 min disorder, 2 min lateness."""
    return PipelineParts(
        RuleSet.default(), profiles or ProfileTable(), TimeConfig("event", 60_000, 120_000, 1_000),
        IpReference.default(), ttl, spec,
    )  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(
    streams(),
    st.lists(st.integers(1, 25), max_size=6),
    st.integers(1, 9),
    st.sampled_from([0.3, 1.0]),
    st.booleans(),
    st.randoms(use_true_random=False),
    st.sampled_from([None, 90_000]),
)
def test_stages_with_a_model_decide_like_the_embedded_pipeline(
    small_model: Path,
    lines: list[bytes],
    sizes: list[int],
    shards: int,
    weight: float,
    with_labels: bool,
    rng: Any,
    ttl: int | None,
) -> None:
    """Any stream, cut, shard count; labels (frauds, some overturned) or none; a state TTL
    (users back after it start over, the embedded key spaces get compacted) or none."""
    labels = None
    with tempfile.TemporaryDirectory() as tmp:
        if with_labels:
            known = []
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if rng.random() < 0.4:  # a fraud, known some time around its transaction
                    when = record["timestamp"] + rng.randrange(-60_000, 1_800_000)
                    known.append((record["transaction_id"], True, when))
                    if rng.random() < 0.3:  # overturned by an analyst later
                        known.append((record["transaction_id"], False, when + 600_000))
            labels = write_labels(Path(tmp) / "labels.parquet", known)
        parts = parts_with(ttl, ModelSpec.load(small_model, weight, labels))
        batches = cuts(lines, sizes)
        expected = embedded(parts, batches, labels=labels, model=small_model, weight=weight)
        assert sharded(parts, batches, shards) == expected
    for decision in expected:
        assert decision["model"]["name"] == "flink-small"
        assert decision["model"]["probability"] == decision["features"]["model_probability"]


def record(tx: str, card: str, user: str, merchant: str, seconds: int) -> bytes:
    """One transaction line, ``seconds`` after the test's start."""
    return json.dumps(
        {"transaction_id": tx, "card_id": card, "user_id": user, "merchant_id": merchant,
         "timestamp": START + seconds * 1000, "amount": 20.0},
    ).encode()  # fmt: skip


def test_labels_meet_the_micro_batch_parts_a_state_ttl_cuts(
    small_model: Path, tmp_path: Path
) -> None:
    """With a state TTL the embedded pipeline decides a released batch in parts, cut where
    a key comes back after more than the TTL, and takes the labels due by each part's end:
    the sequencer cuts the same parts. Here f0 is labelled fraud at 60 s and cleared at
    790 s; x1 (120 s) is decided before the cut at x2 (card cB back after 11 min), so f0
    counts as a known fraud for x1 only if the parts are cut as the embedded pipeline cuts."""
    lines = [
        record("f0", "cA", "u", "m1", 0),
        record("x1", "cB", "u", "m2", 120),
        record("x2", "cB", "u", "m2", 780),
        record("x3", "cC", "u", "m1", 800),
        record("x4", "cC", "u", "m1", 2_000),  # moves the watermark past x3: one release
    ]
    labels = write_labels(
        tmp_path / "labels.parquet", [("f0", True, START + 60_000), ("f0", False, START + 790_000)]
    )
    parts = parts_with(600_000, ModelSpec.load(small_model, 1.0, labels))
    expected = embedded(parts, [lines], labels=labels, model=small_model)
    assert sharded(parts, [lines], 2) == expected
    known = {d["transaction_id"]: d["features"]["customer_known_frauds_30d"] for d in expected}
    assert known == {"f0": 0.0, "x1": 1.0, "x2": 0.0, "x3": 0.0, "x4": 0.0}


def streaming(decisions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The customer and terminal features of each decision (a state TTL changes no other)."""
    prefixes = ("customer_", "terminal_")
    return {
        d["transaction_id"]: {k: v for k, v in d["features"].items() if k.startswith(prefixes)}
        for d in decisions
    }


def compaction_case(small_model: Path) -> tuple[list[list[bytes]], ModelSpec]:
    """u1 goes idle and its slot is reclaimed (TTL 10 min) while u2 and u3 keep buying."""
    lines = [record(f"a{i}", "c1", "u1", "m1", i) for i in range(3)]
    lines += [record(f"b{i}", f"c{i % 2}", f"u{2 + i % 2}", "m1", 120 * (i + 1)) for i in range(60)]
    return cuts(lines, [5] * 20), ModelSpec.load(small_model)


def test_a_state_ttl_changes_no_streaming_feature_on_flink(small_model: Path) -> None:
    """No customer comes back after the TTL here, so the features of a TTL run are those of
    a run without TTL: the embedded pipeline compacts its user key space, the sequencer never
    compacts its own, and neither changes a feature."""
    batches, spec = compaction_case(small_model)
    without = embedded(parts_with(None, spec), batches, model=small_model)
    assert streaming(sharded(parts_with(600_000, spec), batches, 3)) == streaming(without)


def test_embedded_customer_features_survive_state_compaction(small_model: Path) -> None:
    """The same for the embedded pipeline, which compacts its user key space here: the
    customers' feature rings move with their slots."""
    batches, spec = compaction_case(small_model)
    without = embedded(parts_with(None, spec), batches, model=small_model)
    ttl = embedded(parts_with(600_000, spec), batches, model=small_model)
    assert streaming(ttl) == streaming(without)


def test_sequencer_features_continue_exactly_across_compact_snapshots(tmp_path: Path) -> None:
    """80 days of the handbook simulation with its labels, cut into micro-batches: the
    sequencer pickled and restored after every batch (its snapshot keeps only the live ring
    entries) computes every feature as one that never stopped, while rings wrap, widen and
    expire (the horizon is 31 days for customers, 38 for terminals)."""
    table = handbook_table(HandbookConfig(customers=40, terminals=100, days=80, seed=2))
    labels = tmp_path / "labels.parquet"
    pq.write_table(handbook_labels(table), labels)
    encode = msgspec.json.Encoder().encode
    lines = [encode(row) for row in table.drop(["is_fraud", "fraud_scenario"]).to_pylist()]
    parts = parts_with(None, ModelSpec.load(None, labels=labels))

    def features(restored: bool) -> tuple[list[Any], int, Sequencer]:
        sequencer, out, largest = Sequencer(parts, 4), [], 0
        for step in [*cuts(lines, [997] * 3), None]:
            found = sequencer.lines(step, 0.0) if step is not None else sequencer.flush()
            for part in found.card_parts.values():
                assert part.features is not None
                out.append((part.seq, part.features))
            if restored:
                blob = pickle.dumps(sequencer.snapshot())
                largest = max(largest, len(blob))
                sequencer = Sequencer(parts, 4)
                sequencer.restore(pickle.loads(blob))
        return out, largest, sequencer

    plain, _, whole = features(False)
    again, largest, _ = features(True)
    assert len(again) == len(plain)
    for (seq, columns), (seq_again, columns_again) in zip(plain, again, strict=True):
        assert np.array_equal(seq, seq_again) and columns.keys() == columns_again.keys()
        for name, column in columns.items():
            assert np.array_equal(column, columns_again[name], equal_nan=True), name
    rings = whole.features.features
    assert rings.customers.width >= 64 and rings.customers.head.sum() > 1_000  # wrapped, expired
    assert rings.labels_applied > 0
    dense = sum(a.nbytes for r in (rings.customers, rings.terminals) for a in r.arrays.values())
    assert largest < dense / 4
