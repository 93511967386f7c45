"""JSON lines decoded as columns (big batches) must equal the record-by-record path exactly."""

from __future__ import annotations

from typing import Any

import msgspec
from decode_helpers import outcome
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.io.decode import COLUMNAR_MIN_ROWS, Decoder
from fraudstream.schema import CardTokenizer

TOKENIZER = CardTokenizer(b"jsonl-columnar-test")


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "4111111111111111", "2019-01-01T00:00:00Z", "12.5", "-1", "USD"]),
    st.lists(st.integers(), max_size=2),
)
good_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12
)


@st.composite
def record(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([[], "text", 5, None]))
    out: dict[str, Any] = {
        "transaction_id": draw(good_text),
        draw(st.sampled_from(["card_id", "account_id", "card_number"])): draw(
            st.one_of(good_text, st.sampled_from(["4111111111111111", "3"]))
        ),
        "timestamp": draw(st.integers(0, 2_000_000_000_000)),
        "amount": draw(st.floats(0, 10_000, allow_nan=False)),
    }
    if draw(st.booleans()):
        out["lat"] = draw(st.floats(-90, 90))
        out[draw(st.sampled_from(["lon", "lng"]))] = draw(st.floats(-180, 180))
    for name in ("zipcode", "merchant_id", "device_id", "ip", "country", "user_id", "currency"):
        if draw(st.integers(0, 3)) == 0:
            out[name] = draw(st.one_of(good_text, st.sampled_from(["USD", "EUR", ""])))
    if draw(st.integers(0, 4)) == 0:  # a wrong value somewhere
        out[draw(st.sampled_from([*out, "amount", "timestamp", "lat", "extra"]))] = draw(anything)
    if draw(st.integers(0, 5)) == 0:
        out["scenario"] = draw(good_text)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(record(), min_size=COLUMNAR_MIN_ROWS, max_size=COLUMNAR_MIN_ROWS + 40))
def test_columnar_json_lines_equal_the_record_path(records: list[Any]) -> None:
    lines = [msgspec.json.encode(r) for r in records]
    n = len(lines)
    positions = list(range(1, n + 1))
    columnar = Decoder(TOKENIZER).lines(lines, positions, [0.0] * n)
    one_by_one = Decoder(TOKENIZER).records(records, positions, [0.0] * n, lines)
    assert outcome(*columnar) == outcome(*one_by_one)
