"""State TTL kernels against their definition (sort by key, compare neighbours).

``returning`` and ``StateExpiry.cuts`` run in one pass in batch order; the reference below
states what they must give: rows grouped by key (a stable sort keeps batch order within a
key) and each row compared with its key's previous one.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.engine.expiry import NEVER, StateExpiry, returning

TTL_MS = 1_000


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
    )
)


@settings(max_examples=300, deadline=None)
@given(batch=batches)
def test_returning_and_cuts_agree_with_their_definition(batch: tuple[list[int], ...]) -> None:
    cards, users, times, seen = batch
    card = np.array(cards, dtype=np.int32)
    user = np.array(users, dtype=np.int32)
    time_ms = np.array(times, dtype=np.int64)
    slots = {"card": card, "user": user}

    expiry = StateExpiry(TTL_MS)
    assert expiry.cuts(slots, time_ms).tolist() == reference_cuts(slots, time_ms, TTL_MS).tolist()

    for column in (card, user):
        ours, theirs = np.array(seen, dtype=np.int64), np.array(seen, dtype=np.int64)
        stale = returning(ours, column, time_ms, TTL_MS)
        expected = reference_returning(theirs, column, time_ms, TTL_MS)
        assert stale.dtype == column.dtype
        assert stale.tolist() == expected.tolist()
        assert ours.tolist() == theirs.tolist()
