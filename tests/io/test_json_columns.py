"""Arrow's JSON-lines fast path must give exactly what msgspec's line-by-line path gives."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from decode_helpers import outcome
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fraudstream.io.decode import COLUMNAR_MIN_ROWS, Decoder
from fraudstream.io.json_columns import parse_lines
from fraudstream.schema import CardTokenizer
from fraudstream.simulate import demo_records

TOKENIZER = CardTokenizer(b"json-columns-test")
text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=10)


@st.composite
def line(draw: st.DrawFn) -> bytes:
    """A record that keeps each field's JSON type (so Arrow can read the block), with the
    values where Arrow and msgspec could part: -0, huge amounts, NaN, extras of every kind."""
    record: dict[str, Any] = {
        "transaction_id": draw(st.one_of(text, st.just("t"))),
        "card_id": draw(st.one_of(text, st.sampled_from(["4111111111111111", "c1"]))),
        "timestamp": draw(st.integers(-(2**40), 2**42)),
        "amount": draw(
            st.one_of(
                st.floats(-1, 1e6, allow_nan=False),
                st.integers(-1, 2**60),
                st.sampled_from([0, 2**53, 1e300]),
            )
        ),
    }
    if draw(st.booleans()):
        record["lat"] = draw(st.floats(-100, 100, allow_nan=False))
        record[draw(st.sampled_from(["lon", "lng"]))] = draw(st.integers(-200, 200))
    for name in ("zipcode", "user_id", "currency", "country", "device_id"):
        if draw(st.integers(0, 3)) == 0:
            record[name] = draw(st.one_of(text, st.none(), st.sampled_from(["USD", "eur"])))
    if draw(st.booleans()):
        record["scenario"] = draw(text)
    if draw(st.integers(0, 3)) == 0:
        record["is_fraud"] = draw(st.one_of(st.booleans(), st.none()))
    if draw(st.integers(0, 5)) == 0:
        record["score"] = draw(st.one_of(st.floats(allow_nan=False), st.integers(0, 9)))
    if draw(st.integers(0, 8)) == 0:
        record["meta"] = draw(st.one_of(st.none(), st.just({"a": 1})))
    encoded = msgspec.json.encode(record)
    special = draw(st.integers(0, 40))
    if special == 0:  # JSON does not have NaN; Arrow reads it
        return encoded.replace(b'"amount":', b'"amount":NaN,"was":', 1)
    if special == 1:
        return encoded.replace(b'"timestamp":', b'"lat":-Infinity,"timestamp":', 1)
    if special == 2:  # -0 as an integer: msgspec 0, Arrow -0.0
        return encoded.replace(b'"amount":', b'"amount":-0,"was":', 1)
    return encoded


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow],
)
@given(st.lists(line(), min_size=COLUMNAR_MIN_ROWS, max_size=COLUMNAR_MIN_ROWS + 30))
def test_arrow_columns_equal_the_line_by_line_path(lines: list[bytes]) -> None:
    n = len(lines)
    positions = list(range(1, n + 1))
    event("read by Arrow" if parse_lines(lines) is not None else "declined")
    fast = Decoder(TOKENIZER).lines(lines, positions, [0.0] * n)
    one_by_one = Decoder(TOKENIZER)._one_by_one(lines, positions, [0.0] * n)
    assert outcome(*fast) == outcome(*one_by_one)


@pytest.mark.parametrize(
    "odd",
    [
        b'\xef\xbb\xbf{"transaction_id":"x","card_id":"c","timestamp":1,"amount":1}',
        b'{"transaction_id":"x","card_id":"c","timestamp":1,"amount":1} {"transaction_id":"y"}',
        b'{"transaction_id":"x","card_id":"c","timestamp":1,"amount":1,"amount":2}',
        b'{"transaction_id":"x","card_id":"c","timestamp":1,"amount":"1"}',
        b'{"transaction_id":"x","card_id":"c","timestamp":1.5,"amount":1}',
        b'{"transaction_id":"x\xff","card_id":"c","timestamp":1,"amount":1}',
        b"   ",
        b'{"transaction_id":"x",\n"card_id":"c","timestamp":1,"amount":1}',
        b"[1, 2]",
    ],
)
@pytest.mark.parametrize("where", [0, 40, 99])
def test_lines_arrow_cannot_read_as_msgspec_does_send_the_block_one_by_one(
    odd: bytes, where: int
) -> None:
    lines = [
        json.dumps(
            {"transaction_id": f"t{i}", "card_id": "c", "timestamp": i, "amount": 1.5}
        ).encode()
        for i in range(100)
    ]
    lines[where] = odd
    assert parse_lines(lines) is None
    positions = list(range(1, 101))
    fast = Decoder(TOKENIZER).lines(lines, positions, [0.0] * 100)
    assert outcome(*fast) == outcome(*Decoder(TOKENIZER)._one_by_one(lines, positions, [0.0] * 100))


def test_simulated_blocks_take_the_arrow_path_whole() -> None:
    """The demo's records (with its extra fields) are read by Arrow with no row in doubt."""
    records = demo_records(2_000, seed=3)
    lines = [msgspec.json.encode(r) for r in records]
    parsed = parse_lines(lines)
    assert parsed is not None
    table, suspect = parsed
    assert table.num_rows == 2_000 and not suspect.any()
    batch, dead = Decoder(TOKENIZER).lines(lines, list(range(1, 2_001)), [0.0] * 2_000)
    assert len(batch) == 2_000 and dead == []
    assert batch.record(0)["scenario"] == records[0]["scenario"]
