"""State TTL kernels against their definitions, and the parts a batch is cut into.

``returning`` runs in one pass in batch order; the reference below states what it must give:
rows grouped by key (a stable sort keeps batch order within a key) and each row compared with
its key's previous one. ``StateExpiry.cuts`` cuts a batch only where a key comes back inside
the current part; a pipeline deciding those parts decides exactly as one cut at every row a
key comes back at (the definition it replaced, thousands of parts a batch with a short TTL).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.expiry import NEVER, StateExpiry, returning
from fraudstream.engine.pipeline import Pipeline
from fraudstream.io.records import decision_dicts
from fraudstream.schema import CardTokenizer, validate_record

TTL_MS = 1_000
T0 = 1_700_000_000_000


def reference_returning(
    seen: np.ndarray, slots: np.ndarray, time_ms: np.ndarray, ttl_ms: int
) -> np.ndarray:
    order = np.argsort(slots, kind="stable")
    s, t = slots[order], time_ms[order]
    first = np.ones(len(s), dtype=bool)
    first[1:] = s[1:] != s[:-1]
    last = np.ones(len(s), dtype=bool)
    last[:-1] = first[1:]
    previous = seen[s[first]]
    stale = s[first][(previous != NEVER) & (t[first] - previous > ttl_ms)]
    seen[s[last]] = t[last]
    return stale


def reference_cuts(slots: dict[str, np.ndarray], time_ms: np.ndarray, ttl_ms: int) -> np.ndarray:
    """Greedy parts: a row opens a new part when its card or user is back in this part after
    more than the TTL."""
    cuts: list[int] = []
    last: dict[tuple[str, int], int] = {}  # the current part's keys: their last time
    for i, time in enumerate(time_ms.tolist()):
        keys = [(name, int(column[i])) for name, column in slots.items()]
        if any(key in last and time - last[key] > ttl_ms for key in keys):
            cuts.append(i)
            last = {}
        last.update(dict.fromkeys(keys, time))
    return np.array(cuts, dtype=np.int64)


def every_comeback(slots: dict[str, np.ndarray], time_ms: np.ndarray, ttl_ms: int) -> np.ndarray:
    """The cuts this replaced: every row whose key's previous row of the batch is more than
    the TTL earlier."""
    found = []
    for column in slots.values():
        order = np.argsort(column, kind="stable")
        s, t = column[order], time_ms[order]
        inner = np.flatnonzero((s[1:] == s[:-1]) & (t[1:] - t[:-1] > ttl_ms))
        found.append(order[inner + 1])
    return np.unique(np.concatenate(found)).astype(np.int64)


batches = st.integers(0, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 12), min_size=n, max_size=n),
        st.lists(st.integers(0, 12), min_size=n, max_size=n),
        st.lists(st.integers(0, 4_000), min_size=n, max_size=n),
        st.lists(
            st.one_of(st.just(int(NEVER)), st.integers(-2_000, 4_000)), min_size=16, max_size=16
        ),
        st.sampled_from([1, 7, 1_009]),
    )
)


@settings(max_examples=300, deadline=None)
@given(batch=batches)
def test_returning_and_cuts_agree_with_their_definition(batch: tuple[Any, ...]) -> None:
    # ``spread`` > 1 puts the batch's keys far apart in a large key space, where the kernels
    # number them within the batch instead of using the slots (a small batch over a million
    # cards allocates nothing the size of the key space).
    cards, users, times, few_seen, spread = batch
    card = np.array(cards, dtype=np.int32) * spread
    user = np.array(users, dtype=np.int32) * spread
    time_ms = np.array(times, dtype=np.int64)
    slots = {"card": card, "user": user}
    seen = np.full(16 * spread, NEVER, dtype=np.int64)
    seen[np.arange(16) * spread] = few_seen

    expiry = StateExpiry(TTL_MS)
    assert expiry.cuts(slots, time_ms).tolist() == reference_cuts(slots, time_ms, TTL_MS).tolist()

    for column in (card, user):
        ours, theirs = seen.copy(), seen.copy()
        stale = returning(ours, column, time_ms, TTL_MS)
        expected = reference_returning(theirs, column, time_ms, TTL_MS)
        assert stale.dtype == column.dtype
        assert stale.tolist() == expected.tolist()
        assert ours.tolist() == theirs.tolist()


@st.composite
def ttl_streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[int]]:
    """Records over a few cards and users whose gaps straddle the TTL, and batch sizes."""
    n = draw(st.integers(2, 80))
    clock = T0
    records = []
    for i in range(n):
        clock += draw(st.sampled_from([0, 1_000, 20_000, 50_000, 70_000, 200_000]))
        card = draw(st.integers(0, 5))
        records.append(
            {
                "transaction_id": f"t{i}",
                "card_id": f"c{card}",
                "user_id": f"u{draw(st.integers(0, 3))}",
                "merchant_id": f"m{draw(st.integers(0, 2))}",
                "timestamp": clock,
                "amount": draw(st.sampled_from([0.5, 5.0, 40.0, 700.0])),
                "lat": 52.5,
                "lon": 13.4 + card,
            }
        )
    sizes = draw(st.lists(st.integers(1, 40), min_size=1, max_size=6))
    return records, sizes


def decide_all(records: list[dict[str, Any]], sizes: list[int]) -> list[Any]:
    tokenize = CardTokenizer(b"test")
    pipeline = Pipeline(state_ttl_ms=TTL_PIPELINE_MS)
    out: list[Any] = []
    start, k = 0, 0
    while start < len(records):
        size = sizes[k % len(sizes)]
        rows = [validate_record(r, tokenize) for r in records[start : start + size]]
        positions = np.arange(start, start + len(rows), dtype=np.int64)
        batch = TxBatch.from_valid(rows, positions, np.zeros(len(rows)))
        steps = [pipeline.submit(batch, now_ms=0.0)]
        start, k = start + size, k + 1
        if start >= len(records):
            steps.append(pipeline.flush(now_ms=0.0))
        for step in steps:
            if step.decisions is not None:
                out.extend(decision_dicts(step.decisions))
    assert pipeline.expiry is not None
    return [*out, pipeline.expiry.expired_keys]


TTL_PIPELINE_MS = 60_000


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=ttl_streams())
def test_few_parts_decide_as_parts_cut_at_every_comeback(
    stream: tuple[list[dict[str, Any]], list[int]],
) -> None:
    """Decisions, reasons, features and the expired-keys count are those of the pipeline
    that cut a batch at every row a card or user came back at after the TTL."""
    records, sizes = stream
    few = decide_all(records, sizes)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StateExpiry, "cuts", _every_comeback_cuts)
        many = decide_all(records, sizes)
    assert repr(few) == repr(many)


def _every_comeback_cuts(
    self: StateExpiry, slots: dict[str, np.ndarray], time_ms: np.ndarray
) -> np.ndarray:
    return every_comeback(slots, time_ms, self.ttl_ms)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=ttl_streams())
def test_one_record_a_step_decides_as_any_batches(
    stream: tuple[list[dict[str, Any]], list[int]],
) -> None:
    """An authorization's one-record step expires keys on its own path: its decisions are
    those of the same records in the drawn batches. (Not the expired-keys count: compaction
    runs between steps, and a key it dropped comes back new, not expired.)"""
    records, sizes = stream
    assert repr(decide_all(records, [1])[:-1]) == repr(decide_all(records, sizes)[:-1])
