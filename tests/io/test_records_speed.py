"""The column-at-a-time ``decision_dicts`` gives exactly what the per-row one gave.

``decision_dicts`` was rewritten for speed (timestamps formatted by numpy, NaN/inf patched
only where numpy finds them, Arrow strings through numpy, feature dicts zipped per group of
rows lacking the same features, reasons read as flat columns). The per-row original is kept
here as the reference; property tests compare the two on real pipeline decisions with NaN,
inf, nulls, odd column types, reasons and models injected, and the timestamp text is checked
against ``iso_ms`` at every edge of the schema's range (and ``iso_ms`` against an
independent reading back).

Equality is ``repr`` equality: it also tells 1 from 1.0 and True, -0.0 from 0.0, a NaN from
None, numpy scalars from Python ones, and key order.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fraudstream.decide import TIERS, Decisions, explain
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline, concat_decisions
from fraudstream.io import records
from fraudstream.io.records import _iso_ms_many, decision_dicts, iso_ms
from fraudstream.schema import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, CardTokenizer, validate_record
from fraudstream.simulate.workload import benchmark_table

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Past 2**33 s from the epoch a float's seconds are no longer exact to the millisecond (the
# edge of the float iso_ms once had; numpy's shortcut stopped there too).
LIMIT = 2**33 * 1000
EPOCH = datetime(1970, 1, 1)


# --- the reference: decision_dicts as it was, one row at a time -----------------------------


def reference_python_columns(features: dict[str, Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name, column in features.items():
        if isinstance(column, pa.Array):
            out[name] = column.to_pylist()
        else:
            values = column.tolist()
            if column.dtype.kind == "f":
                values = [None if v != v or math.isinf(v) else v for v in values]
            out[name] = values
    return out


def reference_iso_ms(epoch_ms: float) -> str:
    """Whole seconds by ``timedelta``, ISO text by ``isoformat`` (four-digit years)."""
    seconds, milliseconds = divmod(math.floor(epoch_ms), 1000)
    return f"{(EPOCH + timedelta(seconds=seconds)).isoformat()}.{milliseconds:03d}Z"


def reference_decision_dicts(decisions: Decisions) -> list[dict[str, Any]]:
    tx = decisions.tx
    n = len(decisions)
    features = reference_python_columns(decisions.features)
    names = list(features)
    columns = [features[name] for name in names]
    ids = tx.transaction_id.to_pylist()
    cards = tx.card_id.to_pylist()
    users = tx.user_id.to_pylist()
    times = tx.timestamp_ms.tolist()
    scores = decisions.score.tolist()
    tiers = decisions.tier.tolist()
    latency = np.round(np.maximum(decisions.processed_at_ms - tx.arrival_ms, 0.0), 3).tolist()
    processed = reference_iso_ms(decisions.processed_at_ms)
    reasons = decisions.reasons
    probability = features.get("model_probability") if decisions.model else None
    out = []
    for i in range(n):
        out.append(
            {
                "transaction_id": ids[i],
                "card_id": cards[i],
                "user_id": users[i],
                "event_time": reference_iso_ms(times[i]),
                "decision": TIERS[tiers[i]],
                "score": scores[i],
                "reasons": reasons.get(i, []),
                "shadow_reasons": (
                    decisions.shadow_reasons.get(i, [])
                    if decisions.shadow_reasons is not None
                    else []
                ),
                "rule_version": decisions.rule_version,
                "model": None
                if probability is None
                else reference_model(decisions, i, probability[i]),
                "features": {
                    name: column[i]
                    for name, column in zip(names, columns, strict=True)
                    if column[i] is not None
                },
                "processed_at": processed,
                "latency_ms": latency[i],
            }
        )
    return out


def reference_model(decisions: Decisions, row: int, probability: Any) -> dict[str, Any]:
    name, version = decisions.model or ("", "")
    top = [r["message"] for r in decisions.reasons.get(row, []) if r.get("rule") == "model"]
    return {
        "name": name,
        "version": version,
        "probability": probability,
        "top_contributions": top[0].split("top: ", 1)[-1] if top else None,
    }


def assert_as_before(decisions: Decisions) -> list[dict[str, Any]]:
    """``decision_dicts`` equals the reference and, like it, shares no mutable part between
    rows (enriched_dicts pops the geo fields out of each row's features)."""
    new = decision_dicts(decisions)
    assert repr(new) == repr(reference_decision_dicts(decisions))
    parts = [id(row[key]) for row in new for key in ("features", "reasons")]
    parts += [id(reason) for row in new for reason in row["reasons"]]
    assert len(set(parts)) == len(parts)
    return new


# --- real decisions to start from ------------------------------------------------------------


@pytest.fixture(scope="module")
def decided() -> Decisions:
    """Every decision of a small benchmark workload, all standard detectors' features."""
    table = benchmark_table(n=1_500, cards=60, seed=11)
    tokenize = CardTokenizer(b"test")
    rows = [validate_record(record, tokenize) for record in table.to_pylist()]
    batch = TxBatch.from_valid(rows, np.arange(len(rows), dtype=np.int64), np.zeros(len(rows)))
    pipeline = Pipeline()
    now = float(table.column("timestamp")[-1].as_py())
    parts = [
        result.decisions
        for result in (pipeline.submit(batch, now_ms=now), pipeline.flush(now_ms=now))
        if result.decisions is not None
    ]
    decisions = concat_decisions(parts)
    assert len(decisions) == 1_500 and len(decisions.alerts()) > 0
    assert any(isinstance(c, pa.Array) for c in decisions.features.values())
    assert any(isinstance(c, np.ndarray) for c in decisions.features.values())
    return decisions


ODD_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308]
TIME_EDGES = [MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS, -1, 0, 1, -1000, -1001, -LIMIT, LIMIT - 1]


def _poke_numpy(draw: st.DrawFn, column: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    column = column.copy()
    n = len(column)
    if n and column.dtype.kind == "f":
        for row in draw(st.lists(st.integers(0, n - 1), max_size=n)):
            column[row] = draw(st.sampled_from(ODD_FLOATS))
        if draw(st.booleans()):
            column[:] = math.nan  # a feature no row has
    return column


def _poke_arrow(draw: st.DrawFn, column: pa.Array) -> pa.Array:
    n = len(column)
    if not n:
        return column
    nulls = np.zeros(n, dtype=np.bool_)
    nulls[draw(st.lists(st.integers(0, n - 1), max_size=n))] = True
    if draw(st.booleans()):
        nulls[:] = draw(st.booleans())
    values = column.to_pylist()
    return pa.array(
        [None if gone else v for v, gone in zip(values, nulls, strict=True)], column.type
    )


def _objects(values: list[Any]) -> np.ndarray[Any, Any]:
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def _extra_columns(draw: st.DrawFn, n: int, every: bool = False) -> dict[str, Any]:
    """Feature columns of the types the detectors do not make today but a new one could."""
    maybe_int = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
    maybe_float = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
    makers = {
        "x_int64": lambda: pa.array(draw(st.lists(maybe_int, min_size=n, max_size=n)), pa.int64()),
        "x_uint8": lambda: pa.array(
            draw(st.lists(st.one_of(st.none(), st.integers(0, 255)), min_size=n, max_size=n)),
            pa.uint8(),
        ),
        "x_float64": lambda: pa.array(
            draw(st.lists(maybe_float, min_size=n, max_size=n)), pa.float64()
        ),
        "x_float32": lambda: pa.array(
            draw(
                st.lists(
                    st.one_of(st.none(), st.just(0.1), st.just(math.nan)), min_size=n, max_size=n
                )
            ),
            pa.float32(),
        ),
        "x_bool": lambda: pa.array(
            draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n)), pa.bool_()
        ),
        "x_large_string": lambda: pa.array(
            draw(st.lists(st.one_of(st.none(), st.text(max_size=4)), min_size=n, max_size=n)),
            pa.large_string(),
        ),
        "x_float16": lambda: pa.array(  # to_pylist gives numpy halves here, not floats
            np.array(
                draw(st.lists(st.sampled_from([0.1, math.nan]), min_size=n, max_size=n)), np.float16
            ),
            mask=np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), np.bool_),
        ),
        "x_null": lambda: pa.nulls(n),
        "x_dictionary": lambda: pa.DictionaryArray.from_arrays(  # valid index, null value
            pa.array(
                draw(st.lists(st.one_of(st.none(), st.integers(0, 2)), min_size=n, max_size=n)),
                pa.int32(),
            ),
            pa.array(["a", None, "c"]),
        ),
        "x_list": lambda: pa.array(
            draw(
                st.lists(
                    st.one_of(st.none(), st.lists(st.integers(0, 9), max_size=2)),
                    min_size=n,
                    max_size=n,
                )
            ),
            pa.list_(pa.int64()),
        ),
        "x_timestamp": lambda: pa.array(
            draw(st.lists(st.one_of(st.none(), st.integers(0, 2**40)), min_size=n, max_size=n)),
            pa.timestamp("ms", "UTC"),
        ),
        "x_np_int32": lambda: np.array(
            draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)), np.int32
        ),
        "x_np_uint64": lambda: np.full(n, 2**64 - 1, dtype=np.uint64),
        "x_np_bool": lambda: np.array(
            draw(st.lists(st.booleans(), min_size=n, max_size=n)), np.bool_
        ),
        "x_np_float32": lambda: np.array(
            draw(st.lists(st.sampled_from(ODD_FLOATS[:4] + [0.1]), min_size=n, max_size=n)),
            np.float32,
        ),
        "x_np_datetime": lambda: np.array(
            draw(st.lists(st.sampled_from(["NaT", "2024-01-02"]), min_size=n, max_size=n)),
            "datetime64[ms]",
        ),
        "x_np_object": lambda: _objects(
            [None if draw(st.booleans()) else {"k": k} for k in range(n)]
        ),
    }
    if every:
        chosen = draw(st.permutations(sorted(makers)))
    else:
        chosen = draw(st.lists(st.sampled_from(sorted(makers)), unique=True, max_size=5))
    return {name: makers[name]() for name in chosen}


@st.composite
def decisions_variants(draw: st.DrawFn, base: Decisions, odd_types: bool = False) -> Decisions:
    """Some of ``base``'s rows, oddly valued features and timestamps, other reasons/models."""
    rows = np.array(draw(st.lists(st.integers(0, len(base) - 1), max_size=40)), dtype=np.int64)
    decisions = base.take(rows)
    n = len(rows)
    features: dict[str, Any] = {}
    for name, column in decisions.features.items():
        if draw(st.booleans()):
            column = (
                _poke_arrow(draw, column)
                if isinstance(column, pa.Array)
                else _poke_numpy(draw, column)
            )
        features[name] = column
    if odd_types or draw(st.booleans()):
        items = list(features.items())
        spot = draw(st.integers(0, len(items)))
        extras = _extra_columns(draw, n, every=odd_types)
        features = dict(items[:spot] + list(extras.items()) + items[spot:])
    tx = decisions.tx
    if n and draw(st.booleans()):
        times = st.one_of(
            st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS),
            st.sampled_from(TIME_EDGES),
            st.integers(-LIMIT - 2_000, -LIMIT + 2_000),
            st.integers(LIMIT - 2_000, LIMIT + 2_000),
        )
        stamps = np.array(draw(st.lists(times, min_size=n, max_size=n)), dtype=np.int64)
        tx = dataclasses.replace(tx, timestamp_ms=stamps)
    if n and draw(st.booleans()):
        tx = dataclasses.replace(tx, user_id=_poke_arrow(draw, tx.user_id))
    reasons: Any = decisions.reasons
    rule_rows = st.lists(st.integers(0, max(n - 1, 0)), unique=True, max_size=n)
    if n and draw(st.booleans()):
        fired = {
            rule: np.array(sorted(draw(rule_rows)), dtype=np.int64)
            for rule in ("velocity", "model", "geo_velocity")
        }
        messages = {
            rule: (where, [f"{rule} {k} top: amount +0.{k}" for k in range(len(where))])
            for rule, where in fired.items()
        }
        reasons = explain(messages, {"velocity": 0.4, "model": 0.7, "geo_velocity": 0.9}, n)
    if draw(st.booleans()):
        reasons = {row: reasons[row] for row in reasons}  # a plain dict: read with .get
    model = None
    if draw(st.booleans()):
        model = ("fraud-xgb", "3")
        if n and draw(st.booleans()):
            features["model_probability"] = _poke_numpy(
                draw, np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
            )
    processed = draw(st.one_of(st.just(base.processed_at_ms), st.floats(0, 4e12)))
    return dataclasses.replace(
        decisions, tx=tx, features=features, reasons=reasons, model=model, processed_at_ms=processed
    )


def test_real_decisions_are_unchanged(decided: Decisions) -> None:
    assert_as_before(decided)
    assert_as_before(decided.take(decided.alerts()))


def test_no_rows_no_features_and_no_feature_present(decided: Decisions) -> None:
    some = decided.take(np.arange(0, 1_500, 97))
    nothing = {
        name: pa.nulls(len(some), column.type)
        if isinstance(column, pa.Array)
        else np.full(len(some), math.nan)
        for name, column in some.features.items()
    }
    for variant in (
        decided.take(np.array([], dtype=np.int64)),
        dataclasses.replace(some, features={}),
        dataclasses.replace(some, features=nothing),
    ):
        new = assert_as_before(variant)
    assert len(new) == len(some) and all(row["features"] == {} for row in new)


@SETTINGS
@given(data=st.data())
def test_same_dicts_as_the_per_row_reference(decided: Decisions, data: st.DataObject) -> None:
    variant = data.draw(decisions_variants(decided))
    assert_as_before(variant)
    columns = records._python_columns(variant.features)
    assert repr(columns) == repr(reference_python_columns(variant.features))


@SETTINGS
@given(data=st.data())
def test_odd_feature_types_as_the_reference(decided: Decisions, data: st.DataObject) -> None:
    # Every column type at once: Arrow dictionaries with a null value behind a valid index,
    # null, list, timestamp, large string, float32, bool and nullable ints; numpy NaT,
    # objects, uint64, float32 and bools (the rows lacking a feature are read off each type).
    variant = data.draw(decisions_variants(decided, odd_types=True))
    assert_as_before(variant)
    columns = records._python_columns(variant.features)
    assert repr(columns) == repr(reference_python_columns(variant.features))


# --- timestamps ------------------------------------------------------------------------------


def _edges() -> list[int]:
    """Every millisecond near the schema's ends, the epoch, numpy's shortcut limits, year 1000
    (shorter years below it) and a leap day, two seconds either side."""
    centres = [
        MIN_TIMESTAMP_MS,
        MAX_TIMESTAMP_MS,
        0,
        -LIMIT,
        LIMIT,
        -30_610_224_000_000,  # 1000-01-01
        951_782_400_000,  # 2000-02-29
        -2_208_988_800_000,  # 1900-01-01
    ]
    near = {c + d for c in centres for d in range(-2_000, 2_001)}
    return sorted(t for t in near if MIN_TIMESTAMP_MS <= t <= MAX_TIMESTAMP_MS)


def test_timestamps_match_iso_ms_at_every_edge() -> None:
    stamps = _edges()
    expected = [iso_ms(t) for t in stamps]
    assert _iso_ms_many(np.array(stamps, dtype=np.int64)) == expected
    unsigned = [t for t in stamps if t >= 0]
    assert _iso_ms_many(np.array(unsigned, dtype=np.uint64)) == [iso_ms(t) for t in unsigned]
    assert _iso_ms_many(np.array(stamps, dtype=np.float64)) == [iso_ms(float(t)) for t in stamps]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS), max_size=50))
@example([MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS, -1, -999, -1000, -1001, LIMIT - 1, 1 - LIMIT])
def test_timestamps_match_iso_ms_anywhere(stamps: list[int]) -> None:
    assert _iso_ms_many(np.array(stamps, dtype=np.int64)) == [iso_ms(t) for t in stamps]


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(
    st.one_of(
        st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS),
        st.floats(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS, allow_nan=False),
    )
)
@example(MIN_TIMESTAMP_MS)
@example(MAX_TIMESTAMP_MS)
@example(-30_610_224_000_001)  # 0999-12-31T23:59:59.999
@example(LIMIT + 1)
@example(1546301160999.9996)
def test_iso_ms_is_exact_over_the_schemas_range(stamp: float) -> None:
    """Every millisecond of years 1-9999 reads back as itself (a float: its floor), with a
    four-digit year; ``iso_ms`` divided by 1000 as a float once, a millisecond off past
    2**33 s and a short year before 1000."""
    text = iso_ms(stamp)
    assert text == reference_iso_ms(stamp)
    assert len(text) == 24 and text.endswith("Z")
    back = datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    assert (back - EPOCH.replace(tzinfo=UTC)) // timedelta(milliseconds=1) == math.floor(stamp)
