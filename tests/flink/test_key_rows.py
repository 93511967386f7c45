"""One key's state as one value: written and read back in any slot order, the numbers and
the texts behind every coded field come back the same (any UTF-8, empty, missing)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.engine.pipeline import Pipeline
from fraudstream.flink.key_rows import KeyRows

texts = st.one_of(st.none(), st.text(max_size=12))


def coded_texts(pipeline: Pipeline, rows: KeyRows, k: int) -> list[list[object]]:
    """Each slot's texts behind its coded fields, field by field."""
    out: list[list[object]] = [[] for _ in range(k)]
    for table, field, space, width in rows.coded:
        names = pipeline.codes[space].keys
        codes = rows.tables[table][field][:k].reshape(k, max(width, 1))
        for slot in range(k):
            out[slot].extend(names[c] if c >= 0 else None for c in codes[slot].tolist())
    return out


@settings(max_examples=40, deadline=None)
@given(data=st.data(), k=st.integers(1, 12))
def test_values_round_trip_in_any_slot_order(data: st.DataObject, k: int) -> None:
    writer = Pipeline()
    rows = KeyRows(writer, "card")
    rows.load([None] * k)
    for table, field, space, width in rows.coded:
        chosen = data.draw(st.lists(texts, min_size=k * max(width, 1), max_size=k * max(width, 1)))
        codes = writer.codes[space].slots(pa.array(chosen, pa.string()))
        rows.tables[table][field][:k] = codes.reshape(k, width) if width else codes
    card_history = writer.states["card_history"]
    card_history["last_ms"][:k] = np.arange(k) * 1_000
    expected = coded_texts(writer, rows, k)
    values = rows.dump(k, last_ms=np.arange(k, dtype=np.int64))

    order = data.draw(st.permutations(range(k)))
    reader = Pipeline()  # another TaskManager: its own key spaces, other codes
    again = KeyRows(reader, "card")
    again.load([values[i] for i in order])
    assert coded_texts(reader, again, k) == [expected[i] for i in order]
    assert reader.states["card_history"]["last_ms"][:k].tolist() == [i * 1_000 for i in order]
    assert again.last_ms.tolist() == list(order)
    assert rows.coded  # the card's detectors do keep text (zip codes, devices, merchants)
