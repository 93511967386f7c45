"""Arrow's JSON-lines fast path must give exactly what msgspec's line-by-line path gives."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pytest
from decode_helpers import outcome
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fraudstream.io.decode import COLUMNAR_MIN_ROWS, Decoder, ParsedBlock
from fraudstream.io.json_columns import (
    _FieldsSeen,
    _floats,
    _nulls,
    _valid_utf8,
    parse_block,
    parse_lines,
)
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
    return msgspec.json.encode(record)


ODD_VALUES = [  # JSON has no NaN or Infinity (Arrow reads them); -0 is an int to msgspec
    lambda line: line.replace(b'"amount":', b'"amount":NaN,"was":', 1),
    lambda line: line.replace(b'"lat":', b'"lat":-Infinity,"was_lat":', 1),
    lambda line: line.replace(b'"amount":', b'"amount":-0,"was":', 1),
    lambda line: line.replace(b'"timestamp":', b'"ratio":Infinity,"timestamp":', 1),
]


@st.composite
def block(draw: st.DrawFn, odd: list[bytes] | None = None) -> list[bytes]:
    """Records with a few odd values, and (for files) a few odd lines, at random places."""
    lines: list[bytes] = draw(
        st.lists(line(), min_size=COLUMNAR_MIN_ROWS, max_size=COLUMNAR_MIN_ROWS + 30)
    )
    for _ in range(draw(st.integers(0, 3))):
        k = draw(st.integers(0, len(lines) - 1))
        lines[k] = draw(st.sampled_from(ODD_VALUES))(lines[k])
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2])) if odd else 0):
        k = draw(st.integers(0, len(lines) - 1))
        lines[k] = draw(st.sampled_from(odd)) if draw(st.booleans()) else lines[k] + b"\r"
    return lines


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow],
)
@given(block())
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


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow],
)
@given(block([b"", b"  ", b"\r", b"{", b' {"transaction_id":"x"}', b"[]"]), st.booleans())
def test_a_block_read_from_a_file_equals_its_lines(lines: list[bytes], last_newline: bool) -> None:
    """`Decoder.block` (a file's bytes) gives what `Decoder.lines` gives for the same lines:
    blank lines skipped but counted, carriage returns dropped, positions from the first."""
    data = b"\n".join(lines) + (b"\n" if last_newline else b"")
    kept = [(k + 7, raw.rstrip(b"\r")) for k, raw in enumerate(lines) if raw.strip()]
    event("read by Arrow" if parse_block(data.rstrip(b"\n")) is not None else "declined")
    block = Decoder(TOKENIZER).block(data, 7, 0.0)
    by_lines = Decoder(TOKENIZER).lines(
        [r for _, r in kept], [k for k, _ in kept], [0.0] * len(kept)
    )
    assert outcome(*block) == outcome(*by_lines)
    # read ahead (parsed on a reader thread's Arrow call, without Arrow's threads): the same
    ahead = Decoder(TOKENIZER).block(ParsedBlock.of(data, threads=False), 7, 0.0)
    assert outcome(*ahead) == outcome(*by_lines)


_UTF8_PIECES = [b"a", b"{", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xef\xbf\xbf", b"\xed\x9f\xbf"]
_UTF8_PIECES += [
    b"\xc0\x80",
    b"\xe0\x80\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80",
]
_UTF8_PIECES += [b"\x80", b"\xff", b"\xc3", b"\xa9", b"\x00"]  # overlong, surrogate, too high, cut


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=40), st.lists(st.sampled_from(_UTF8_PIECES), max_size=12).map(b"".join)
    )
)
def test_arrow_refuses_exactly_the_utf8_python_refuses(data: bytes) -> None:
    """The block check runs Arrow's UTF-8 validation (no GIL held); msgspec decodes with
    Python's codec: the two must refuse the same bytes, or a block could be read by Arrow
    that the record path calls invalid."""
    try:
        data.decode("utf-8")
        python_accepts = True
    except UnicodeDecodeError:
        python_accepts = False
    assert _valid_utf8(pa.py_buffer(data)) == python_accepts


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.none() | st.floats(allow_nan=True, allow_infinity=True), max_size=40),
    st.integers(0, 40),
    st.integers(0, 40),
)
def test_nulls_and_floats_read_from_buffers_equal_arrows_conversion(
    values: list[float | None], skip: int, take: int
) -> None:
    """The suspect checks read a column's buffers (Arrow's to_numpy would import pandas);
    whatever the nulls and the slice offset, they see what Arrow's own conversion gives."""
    column = pa.array(values, pa.float64()).slice(skip, take)
    nulls = np.asarray(column.is_null(), dtype=bool)
    assert _nulls(column).tolist() == nulls.tolist()
    expected = column.fill_null(-7.5).to_numpy()
    np.testing.assert_array_equal(_floats(column, -7.5), expected)  # NaN == NaN here
    assert np.signbit(_floats(column, -7.5)).tolist() == np.signbit(expected).tolist()
    assert _nulls(pa.nulls(3)).tolist() == [True] * 3


TYPE_CHANGES = [  # a known field the blocks before may not have held, or not with this type
    b'{"transaction_id":"x","card_id":"c","timestamp":1,"amount":1,"currency":7}',
    b'{"transaction_id":"x","card_id":"c","timestamp":1,"amount":1,"lng":"east"}',
    b'{"transaction_id":"x","card_id":"c","timestamp":1,"amount":1,"merchant_category":null}',
    b'{"transaction_id":"x","card_id":"c","timestamp":1,"amount":1,"account_id":"2024-01-01"}',
]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.lists(line(), min_size=1, max_size=8).flatmap(
            lambda lines: st.lists(st.sampled_from(TYPE_CHANGES), max_size=1).map(
                lambda extra: lines + extra
            )
        ),
        min_size=2,
        max_size=4,
    )
)
def test_a_block_read_with_the_fields_seen_before_equals_one_read_with_all_fields(
    blocks: list[list[bytes]],
) -> None:
    """Arrow reads a block with only the known fields earlier blocks held (a fifth faster);
    a known field they did not hold, with any type or only nulls, must not change the
    table: it equals the one read with the whole schema."""
    for lines in blocks:
        data = b"\n".join(lines) + b"\n"
        hinted = parse_block(data, threads=False)
        hint = _FieldsSeen.hint
        _FieldsSeen.hint = None
        try:
            full = parse_block(data, threads=False)
        finally:
            _FieldsSeen.hint = hint
        assert (hinted is None) == (full is None)
        if hinted is not None and full is not None:
            assert hinted[0].schema == full[0].schema
            assert str(hinted[0].to_pylist()) == str(full[0].to_pylist())
            assert hinted[1].tolist() == full[1].tolist()
