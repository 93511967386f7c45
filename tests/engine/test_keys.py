"""Key slots: each distinct key its own slot, in order of first appearance, whatever the batches.

The lookup hashes a column's keys first and then probes (several cache misses in flight); a
column of a few keys (an authorization's) looks each key up alone. Slots must be exactly those
of a plain dict filled in row order on both paths, through table growth, long keys (past the
24 bytes kept in the table), nulls and lookups that do not insert.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.engine.keys import ONE_BY_ONE, KeySpace

keys = st.one_of(
    st.none(),
    st.text(max_size=6),
    st.text(min_size=20, max_size=40),  # around and past the 24 bytes held in the table
    st.integers(0, 5000).map(lambda k: f"key-{k:06d}"),
)


few_or_many = st.one_of(st.lists(keys, max_size=ONE_BY_ONE), st.lists(keys, max_size=400))


@settings(max_examples=200, deadline=None)
@given(st.lists(few_or_many, max_size=12), few_or_many, st.integers(0, 3))
def test_slots_are_first_appearance_order(
    batches: list[list[str | None]], probe: list[str | None], sliced_from: int
) -> None:
    space = KeySpace(expected_keys=16)  # small: growth and rehashing happen
    seen: dict[str, int] = {}
    for batch in batches:
        expected = [-1 if k is None else seen.setdefault(k, len(seen)) for k in batch]
        # a slice of a longer column, as an authorization's text columns are
        column = pa.array(["x"] * sliced_from + batch, pa.string()).slice(sliced_from)
        assert space.slots(column).tolist() == expected
        assert space.keys == list(seen)  # decoded as keys come, not only at the end
        for slot in {-1, min(len(seen) - 1, 0), len(seen) - 1}:  # one slot's text is kept
            expected_text = list(seen)[slot] if slot >= 0 else None
            assert space.texts(np.array([slot], np.int32)).to_pylist() == [expected_text]
    found = space.slots(pa.array(probe, pa.string()), insert=False).tolist()
    assert found == [-1 if k is None else seen.get(k, -1) for k in probe]
    assert space.keys == list(seen)
    assert space.key_array().to_pylist() == list(seen)
    assert len(space) == len(seen)


def test_slots_survive_growth_with_long_keys() -> None:
    space = KeySpace()
    names = [f"{'device-' * (k % 5)}{k:08d}" for k in range(30_000)]  # 8 to 43 bytes
    for part in (names[:100], names[:20_000], names[15_000:]):
        # new keys come in ascending order, so key k's slot is k
        assert space.slots(pa.array(part, pa.string())).tolist() == [int(k[-8:]) for k in part]
    assert space.key_array(29_999).to_pylist() == [names[-1]]
