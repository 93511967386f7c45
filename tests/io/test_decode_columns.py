"""Unusual but well-formed Arrow columns: ``Decoder.table`` never raises and agrees with
``Decoder.records`` on the equivalent decoded records (the authority, ``validate_record``).

Equivalent records are what ``to_pylist`` gives, except where the module doc of
:mod:`fraudstream.io.decode` says how a column type is read: timestamp instants as epoch ms
(floored), decimals as ``float(value)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from decode_helpers import outcome as shared_outcome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fraudstream.io.decode as decode
from fraudstream.engine.batch import TxBatch
from fraudstream.io.decode import DeadLetter, Decoder
from fraudstream.schema import CardTokenizer, mask_card_numbers

TOKENIZER = CardTokenizer(b"test")
T0 = 1_700_000_000_000
PAN = "4111111111111111"


def outcome(batch: TxBatch, dead: list[DeadLetter]) -> tuple[list[Any], list[Any]]:
    """Accepted records and dead letters (position, reason), by position."""
    return shared_outcome(batch, dead, raw=False)


def rows_with(table: pa.Table, name: str, values: list[Any]) -> list[dict[str, Any]]:
    """``table``'s rows with ``name`` read as ``values`` (a column Python may not hold)."""
    rows = table.drop_columns([name]).to_pylist()
    return [{**row, name: value} for row, value in zip(rows, values, strict=True)]


def by_table(table: pa.Table | pa.RecordBatch, first: int = 1) -> tuple[list[Any], list[Any]]:
    return outcome(*Decoder(TOKENIZER).table(table, first, 0.0))


def by_records(rows: list[dict[str, Any]], first: int = 1) -> tuple[list[Any], list[Any]]:
    n = len(rows)
    return outcome(*Decoder(TOKENIZER).records(rows, list(range(first, first + n)), [0.0] * n))


def agree(table: pa.Table, rows: list[dict[str, Any]] | None = None) -> tuple[list[Any], ...]:
    """Both paths on ``table`` (and the same rows read back from Parquet, where it can)."""
    expected = by_records(table.to_pylist() if rows is None else rows)
    assert by_table(table) == expected
    assert by_table(table, first=41) == by_records(
        table.to_pylist() if rows is None else rows, first=41
    )
    for batch in table.to_batches(max_chunksize=2):  # RecordBatch input, slices
        assert len(by_table(batch)[0]) <= len(expected[0])
    return expected


@contextmanager
def careful_rows() -> Iterator[list[int]]:
    """Counts the rows ``validate_record`` is asked about (the fast path asks none)."""
    calls: list[int] = []
    original = decode.validate_record

    def counting(record: Any, tokenize: CardTokenizer) -> Any:
        calls.append(1)
        return original(record, tokenize)

    decode.validate_record = counting  # type: ignore[assignment]
    try:
        yield calls
    finally:
        decode.validate_record = original


def base(n: int = 3, **columns: Any) -> pa.Table:
    data: dict[str, Any] = {
        "transaction_id": [f"t{k}" for k in range(n)],
        "card_id": ["c"] * n,
        "timestamp": pa.array([T0 + k for k in range(n)], pa.int64()),
        "amount": [1.0 + k for k in range(n)],
    }
    data.update(columns)
    return pa.table({k: v for k, v in data.items() if v is not None})


# --- string-like columns ------------------------------------------------------------------------


def test_dictionary_encoded_string_columns_stay_fast_and_agree() -> None:
    table = base(
        4,
        card_id=pa.array(["c", PAN, "c", PAN]).dictionary_encode(),
        user_id=pa.array(["u", None, "u", "x"]).dictionary_encode(),
        currency=pa.array(["USD", "EUR", None, "usd"]).dictionary_encode(),
        merchant_id=pa.array(["m", "m", "", None]).dictionary_encode(),
    )
    accepted, dead = agree(table)
    assert [p for p, _ in dead] == [4]  # "" merchant is fine (None); "usd" is not
    assert accepted[1][1]["card_id"].startswith("tok_")
    clean = table.slice(0, 2)
    with careful_rows() as calls:
        Decoder(TOKENIZER).table(clean, 0, 0.0)
    assert calls == []


def test_dictionary_encoded_numbers_agree() -> None:
    table = base(3, amount=pa.array([1.5, -2.0, 3.0]).dictionary_encode())
    _, dead = agree(table)
    assert [(p, r.split(":")[0]) for p, r in dead] == [(2, "amount")]


@pytest.mark.parametrize("kind", [pa.large_string(), pa.string_view()], ids=str)
def test_large_and_view_string_columns_agree(kind: pa.DataType) -> None:
    table = base(
        4,
        transaction_id=pa.array(["a", "b", "", "d"], kind),
        card_id=pa.array(["c", PAN, "c", "é" * 65], kind),
        user_id=pa.array([None, "u", "u", "u"], kind),
        channel=pa.array(["pos", "online", "x" * 257, None], kind),
    )
    accepted, dead = agree(table)
    assert [p for p, _ in accepted] == [1, 2]
    assert [p for p, _ in dead] == [3, 4]


def test_binary_id_columns_are_dead_letters_like_bytes() -> None:
    table = base(2, card_id=pa.array([b"c", None], pa.binary()), account_id=[None, 7])
    accepted, dead = agree(table)
    assert [p for p, _ in accepted] == [2]
    assert dead == [(1, "card_id: must be a string, got bytes")]


# --- numbers --------------------------------------------------------------------------------------


def test_bool_amount_column_agrees() -> None:
    _, dead = agree(base(2, amount=pa.array([True, None])))
    assert [r for _, r in dead] == [
        "amount: must be a number, got bool",
        "amount: required field is missing",
    ]


@pytest.mark.parametrize("kind", [pa.float16(), pa.float32()], ids=str)
def test_narrow_float_columns_agree(kind: pa.DataType) -> None:
    def narrow(values: list[float]) -> pa.Array:
        # through numpy: older pyarrow builds half floats only from numpy values
        return pa.array(np.array(values, kind.to_pandas_dtype()), kind)

    table = base(3, amount=narrow([1.5, -1.0, 0.1]), lat=narrow([1.25, 2.5, 91.0]))
    table = table.append_column("lon", narrow([3.0, 4.0, 5.0]))
    wide = pa.schema([f.with_type(pa.float64()) if f.type == kind else f for f in table.schema])
    accepted, dead = agree(table, table.cast(wide).to_pylist())
    assert [p for p, _ in accepted] == [1]


@pytest.mark.parametrize("kind", [pa.int64(), pa.uint64()], ids=str)
def test_integer_amounts_beyond_float_precision_agree(kind: pa.DataType) -> None:
    big = [2**53 + 1, 2**62 + 1, 2**63 - 1, 5]
    if kind == pa.uint64():
        big[2] = 2**64 - 1
    accepted, dead = agree(base(4, amount=pa.array(big, kind)))
    assert len(accepted) == 4 and dead == []
    assert [record["amount"] for _, record in accepted] == [float(v) for v in big]


def test_huge_integer_coordinates_agree() -> None:
    table = base(
        3,
        lat=pa.array([2**62, 10, None], pa.int64()),
        lon=pa.array([1, 2**63 - 1, None], pa.int64()),
    )
    accepted, dead = agree(table)
    assert [p for p, _ in accepted] == [3]
    assert [r.split(":")[0] for _, r in dead] == ["lat", "lon"]


@pytest.mark.parametrize(
    "kind", [pa.decimal128(12, 2), pa.decimal128(38, 30), pa.decimal256(60, 5)], ids=str
)
def test_decimal_amounts_read_as_floats(kind: pa.DataType) -> None:
    values = [Decimal("12.50"), Decimal("-0.01"), None, Decimal("0.10"), Decimal("7")]
    table = base(5, amount=pa.array(values, kind))
    rows = [
        dict(r, amount=None if r["amount"] is None else float(r["amount"]))
        for r in table.to_pylist()
    ]
    accepted, dead = agree(table, rows)
    assert [record["amount"] for _, record in accepted] == [12.5, 0.1, 7.0]
    assert [r.split(":")[0] for _, r in dead] == ["amount", "amount"]
    assert '"amount":"-0.01' in next(d.raw for d in Decoder(TOKENIZER).table(table, 1, 0)[1])
    clean = table.filter(pa.array([True, False, False, True, True]))
    with careful_rows() as calls:
        Decoder(TOKENIZER).table(clean, 0, 0.0)
    assert calls == []


def test_decimal_coordinates_read_as_floats_exactly() -> None:
    rng = np.random.default_rng(5)
    digits = rng.integers(-90 * 10**9, 90 * 10**9, 200)
    lat = [Decimal(int(v)).scaleb(-9) for v in digits]
    table = base(
        200, lat=pa.array(lat, pa.decimal128(11, 9)), lng=pa.array(lat, pa.decimal128(11, 9))
    )
    rows = [dict(r, lat=float(r["lat"]), lng=float(r["lng"])) for r in table.to_pylist()]
    accepted, dead = agree(table, rows)
    assert len(accepted) == 200 and dead == []


# --- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tz", ["UTC", "+05:30", None], ids=["utc", "offset", "naive"])
@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_timestamp_columns_are_epoch_ms_floored(unit: str, tz: str | None) -> None:
    per_ms = {"s": 0, "ms": 1, "us": 1_000, "ns": 1_000_000}[unit]
    if unit == "s":
        raw = [T0 // 1000, -1, None, 12]
        ms = [T0 // 1000 * 1000, -1000, None, 12_000]
    else:
        raw = [T0 * per_ms + per_ms - 1, -1, None, -per_ms - 1]
        ms = [T0, -1, None, -2]  # floored, also before 1970
    table = base(4, timestamp=pa.array(raw, pa.timestamp(unit, tz)), amount=[1.0, 2.0, 3.0, -4.0])
    rows = rows_with(table, "timestamp", ms)
    accepted, dead = agree(table, rows)
    assert [(p, record["timestamp"]) for p, record in accepted] == [(1, ms[0]), (2, ms[1])]
    assert [(p, r.split(":")[0]) for p, r in dead] == [(3, "timestamp"), (4, "amount")]
    with careful_rows() as calls:
        Decoder(TOKENIZER).table(table.slice(0, 2), 0, 0.0)
    assert calls == []


def test_timestamp_seconds_far_out_of_range_are_dead_letters_with_the_exact_value() -> None:
    seconds = [2**62, -(2**63), 253_402_300_800, T0 // 1000]
    table = base(4, timestamp=pa.array(seconds, pa.timestamp("s", "UTC")))
    rows = rows_with(table, "timestamp", [s * 1000 for s in seconds])
    accepted, dead = agree(table, rows)
    assert [p for p, _ in accepted] == [4]
    reasons = [f"timestamp: out of range, got {s * 1000}" for s in seconds[:3]]
    assert [r for _, r in dead] == [mask_card_numbers(r) for r in reasons]
    letters = Decoder(TOKENIZER).table(table, 1, 0.0)[1]  # as given: no datetime for these
    assert all('"timestamp":"' in d.raw for d in letters)


def test_timestamp_column_dead_letters_show_the_instant_as_given() -> None:
    moment = pa.array([T0, T0 + 1], pa.timestamp("ms", "UTC"))
    _, dead = Decoder(TOKENIZER).table(base(2, timestamp=moment, amount=[-1.0, 1.0]), 1, 0.0)
    assert len(dead) == 1 and '"2023-11-14T22:13:20' in dead[0].raw


def test_uint64_timestamps_beyond_int64_are_dead_letters() -> None:
    last = 253_402_300_799_999
    values = [2**63 + 5, 2**64 - 1, T0, last, last + 1]
    accepted, dead = agree(base(5, timestamp=pa.array(values, pa.uint64())))
    assert [p for p, _ in accepted] == [3, 4]
    out = (*values[:2], last + 1)
    reasons = [f"timestamp: out of range, got {v}" for v in out]
    assert [r for _, r in dead] == [mask_card_numbers(r) for r in reasons]


@pytest.mark.parametrize(
    "column",
    [
        pa.array([1, None, 3], pa.date32()),
        pa.array([1, None, 3], pa.time64("us")),
        pa.array([1, None, 3], pa.duration("ms")),
        pa.array([1.0, None, 3.5]),
        pa.array(["2024-01-01T00:00:00Z", None, "1700000000000"]),
    ],
    ids=["date32", "time64", "duration", "float", "text"],
)
def test_other_timestamp_column_types_agree(column: pa.Array) -> None:
    agree(base(3, timestamp=column))


# --- null-typed, nested, odd tables ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["transaction_id", "card_id", "user_id", "timestamp", "amount", "currency", "ip"]
)
def test_null_typed_columns_agree(name: str) -> None:
    table = base(3)
    table = (
        table.set_column(table.schema.get_field_index(name), name, pa.nulls(3))
        if name in table.column_names
        else table.append_column(name, pa.nulls(3))
    )
    agree(table)


def test_null_typed_coordinates_are_absent() -> None:
    accepted, dead = agree(base(2, lat=pa.nulls(2), lon=pa.nulls(2), lng=[1.0, None]))
    assert [p for p, _ in accepted] == [2] and [r for _, r in dead] == [
        "lat/lon: give both coordinates or neither"
    ]


def test_nested_columns_agree() -> None:
    point = pa.array([{"x": 1, "y": [1, 2]}, None, {"x": 3, "y": []}])
    table = base(3, extra_point=point, tags=pa.array([["a"], None, []]), merchant_id=[None] * 3)
    accepted, dead = agree(table)
    assert len(accepted) == 3 and accepted[0][1]["extra_point"] == {"x": 1, "y": [1, 2]}
    table = base(3, merchant_id=point, amount=pa.array([{"v": 1.0}, None, {"v": 2.0}]))
    accepted, dead = agree(table)
    assert accepted == [] and [r.split(":")[0] for _, r in dead] == ["amount"] * 3
    accepted, dead = agree(base(3, merchant_id=point))
    assert [p for p, _ in accepted] == [2] and [r for _, r in dead] == [
        "merchant_id: must be a string, got dict"
    ] * 2


def test_map_and_fixed_size_binary_extras_agree() -> None:
    table = base(
        2,
        attrs=pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64())),
        blob=pa.array([b"ab", b"cd"], pa.binary(2)),
    )
    accepted, _ = agree(table)
    assert len(accepted) == 2


def test_a_column_name_twice_takes_the_careful_path() -> None:
    table = base(2, note=["x", "y"])
    table = table.append_column("amount", pa.array([-1.0, 2.0]))
    accepted, dead = agree(table)  # the last "amount" wins, as in to_pylist
    assert [p for p, _ in accepted] == [2] and [p for p, _ in dead] == [1]


def test_rows_without_columns_are_dead_letters() -> None:
    table = pa.table({"x": [1, 2]}).drop_columns(["x"])
    accepted, dead = agree(table)
    assert (
        accepted == [] and [r for _, r in dead] == ["transaction_id: required field is missing"] * 2
    )


def test_chunked_columns_agree() -> None:
    parts = [base(2, card_id=[PAN, "c"]), base(2, amount=[-1.0, 3.0])]
    table = pa.concat_tables(parts)
    assert table.column("amount").num_chunks == 2
    agree(table)


def test_values_python_cannot_hold_do_not_raise() -> None:
    ns = pa.array([T0 * 1_000_000 + 1, T0 * 1_000_000], pa.timestamp("ns", "UTC"))
    far = pa.array([2**62, 0], pa.date64())
    accepted, dead = by_table(base(2, seen_at=ns))
    assert len(accepted) == 2 and accepted[0][1]["seen_at"].startswith("2023-11-14 22:13:20")
    accepted, dead = by_table(base(2, merchant_id=far))
    assert accepted == [] and dead[0] == (1, "merchant_id: must be a string, got Unconvertible")
    assert dead[1] == (2, "merchant_id: must be a string, got date")
    accepted, dead = by_table(base(2, timestamp=pa.array([2**62, 0], pa.timestamp("s")), bad=far))
    assert [p for p, _ in accepted] == [2] and dead[0][1].startswith("timestamp: out of range")


# --- card numbers ---------------------------------------------------------------------------------

ODD_CARDS = [
    PAN,
    PAN + "\n",
    PAN + "\n\n",
    "\n" + PAN,
    "４１１１１１１１１１１１１１１１",  # full-width
    "٤١١١١١١١١١١١١١١١",  # Arabic-Indic
    "41111111１１１１１１１１",  # mixed
    "4" * 19,
    "4" * 20,
    "4" * 11,
    "4" * 12,
    "4111 1111 1111 1111",
    "é" * 16,
    "²" * 16,  # digits, but not decimal digits
]


@pytest.mark.parametrize("column", ["card_id", "user_id", "account_id"])
def test_card_number_like_ids_are_tokenized_as_the_tokenizer_says(column: str) -> None:
    field = "user_id" if column == "user_id" else "card_id"
    for cards in [ODD_CARDS, *([card, "c-1"] for card in ODD_CARDS)]:  # together, one by one
        n = len(cards)
        card_id = None if column == "account_id" else ["c"] * n
        accepted, dead = agree(base(n, **{"card_id": card_id, column: cards}))
        assert dead == [] and len(accepted) == n
        assert [record[field] for _, record in accepted] == [TOKENIZER(c) for c in cards]


def test_integer_card_ids_are_tokenized() -> None:
    table = base(
        3, card_id=pa.array([int(PAN), 7, None], pa.uint64()), card_number=[None, None, PAN]
    )
    accepted, _ = agree(table)
    assert [record["card_id"] for _, record in accepted] == [TOKENIZER(PAN), "7", TOKENIZER(PAN)]


# --- through a Parquet file -----------------------------------------------------------------------


def test_typed_parquet_file_round_trip_agrees(tmp_path: Path) -> None:
    n = 50
    cents = np.random.default_rng(3).integers(1, 100_000, n)
    start = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
    table = pa.table(
        {
            "transaction_id": pa.array([f"t{k}" for k in range(n)]).dictionary_encode(),
            "card_id": pa.array(
                [PAN if k % 3 else f"c{k % 7}" for k in range(n)], pa.large_string()
            ),
            "timestamp": pa.array([start + k * 1_234 for k in range(n)], pa.timestamp("us", "UTC")),
            "amount": pa.array(
                [
                    Decimal(int(v) * (-1 if k % 10 == 0 else 1)).scaleb(-2)
                    for k, v in enumerate(cents)
                ],
                pa.decimal128(10, 2),
            ),
            "currency": pa.array(["USD", "EUR"] * (n // 2)).dictionary_encode(),
            "note": pa.nulls(n),
        }
    )
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    read = pq.read_table(path)
    ms = [int(v) // 1000 for v in table.column("timestamp").cast(pa.int64()).to_pylist()]
    rows = [
        dict(r, timestamp=m, amount=float(r["amount"]))
        for r, m in zip(read.to_pylist(), ms, strict=True)
    ]
    accepted, dead = agree(read, rows)
    assert len(accepted) == 45 and [r.split(":")[0] for _, r in dead] == ["amount"] * 5


# --- random tables of retyped columns ----------------------------------------------------------

STRING_KINDS = ("string", "large_string", "string_view", "dictionary")
ids = st.one_of(st.text(alphabet="abc019-", min_size=0, max_size=6), st.none())
cards = st.one_of(ids, st.sampled_from(ODD_CARDS), st.sampled_from(["5500005555555559", "é" * 65]))
TS_UNITS = {
    "s": (1_000, 1),
    "ms": (1, 1),
    "us": (1, 1_000),
    "ns": (1, 1_000_000),
}  # ms = v * a // b


def strings(values: list[Any], kind: str) -> pa.Array:
    if kind == "dictionary":
        return pa.array(values, pa.string()).dictionary_encode()
    return pa.array(values, getattr(pa, kind)())


@st.composite
def retyped(draw: st.DrawFn) -> tuple[pa.Table, list[dict[str, Any]]]:
    """A table with known fields in many Arrow types, and the records it stands for."""
    n = draw(st.integers(1, 8))

    def values(strategy: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(strategy, min_size=n, max_size=n))

    columns: dict[str, pa.Array] = {}
    rows: list[dict[str, Any]] = [{} for _ in range(n)]

    def put(name: str, column: pa.Array, python: list[Any]) -> None:
        columns[name] = column
        for row, value in zip(rows, python, strict=True):
            row[name] = value

    for name, strategy in (("transaction_id", ids), ("card_id", cards), ("user_id", cards)):
        if name == "user_id" and draw(st.booleans()):
            continue
        texts = values(strategy)
        if all(v is None for v in texts) and draw(st.booleans()):
            put(name, pa.nulls(n), texts)
        else:
            put(name, strings(texts, draw(st.sampled_from(STRING_KINDS))), texts)

    ts_kind = draw(st.sampled_from(["int64", "uint64", "timestamp", "decimal", "null"]))
    if ts_kind == "null":
        put("timestamp", pa.nulls(n), [None] * n)
    elif ts_kind == "timestamp":
        unit = draw(st.sampled_from(list(TS_UNITS)))
        times, per = TS_UNITS[unit]
        near = st.tuples(st.integers(-(2**42), 2**42), st.integers(0, per - 1))
        raw = values(
            st.one_of(
                near.map(lambda v: v[0] // 1000 if unit == "s" else v[0] * per + v[1]),
                st.integers(-(2**63), 2**63 - 1),
                st.none(),
            )
        )
        tz = draw(st.sampled_from([None, "UTC", "-03:00"]))
        ms = [None if v is None else v * times // per for v in raw]
        put("timestamp", pa.array(raw, pa.timestamp(unit, tz)), ms)
    elif ts_kind == "decimal":
        raw = values(st.one_of(st.integers(-(10**18), 10**18), st.none()))
        column = pa.array([None if v is None else Decimal(v) for v in raw], pa.decimal128(20, 0))
        put("timestamp", column, [None if v is None else float(v) for v in raw])
    else:
        low = 0 if ts_kind == "uint64" else -(2**63)
        edge = st.sampled_from([0, T0, 253_402_300_799_999, 253_402_300_800_000, 2**63 - 1])
        raw = values(st.one_of(st.integers(low, 2**63 - 1), edge, st.none()))
        if ts_kind == "uint64":
            raw = [v if v is None or draw(st.booleans()) else v + 2**63 for v in raw]
        put("timestamp", pa.array(raw, getattr(pa, ts_kind)()), raw)

    amount_kind = draw(st.sampled_from(["decimal", "float", "int", "dictionary", "bool", "null"]))
    if amount_kind == "null":
        put("amount", pa.nulls(n), [None] * n)
    elif amount_kind == "bool":
        flags = values(st.one_of(st.booleans(), st.none()))
        put("amount", pa.array(flags, pa.bool_()), flags)
    elif amount_kind == "decimal":
        cents = values(st.one_of(st.integers(-(10**12), 10**14), st.none()))
        decimals = [None if c is None else Decimal(c).scaleb(-4) for c in cents]
        as_floats = [None if d is None else float(d) for d in decimals]
        put("amount", pa.array(decimals, pa.decimal128(18, 4)), as_floats)
    elif amount_kind == "int":
        whole = values(st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-3, 9), st.none()))
        put("amount", pa.array(whole, pa.int64()), whole)
    else:
        reals = values(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()))
        column = pa.array(reals, pa.float64())
        put("amount", column.dictionary_encode() if amount_kind == "dictionary" else column, reals)

    if draw(st.booleans()):
        codes = values(st.one_of(st.sampled_from(["USD", "usd", "EURO", "", "E R"]), st.none()))
        put("currency", strings(codes, draw(st.sampled_from(STRING_KINDS))), codes)
    if draw(st.booleans()):
        spots = values(st.one_of(st.integers(-100, 100), st.none()))
        decimals = [None if v is None else Decimal(v).scaleb(-1) for v in spots]
        as_floats = [None if d is None else float(d) for d in decimals]
        put("lat", pa.array(decimals, pa.decimal128(5, 1)), as_floats)
        put("lng", pa.array(decimals, pa.decimal128(5, 1)), as_floats)
    if draw(st.booleans()):
        notes = values(st.one_of(st.fixed_dictionaries({"k": st.integers(0, 3)}), st.none()))
        put("note", pa.array(notes), notes)
    order = draw(st.permutations(list(columns)))
    table = pa.table({name: columns[name] for name in order})
    return table, [{name: row[name] for name in order} for row in rows]


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(retyped())
def test_retyped_columns_agree_with_records(case: tuple[pa.Table, list[dict[str, Any]]]) -> None:
    table, rows = case
    assert by_table(table) == by_records(rows)
    assert by_table(table, first=41) == by_records(rows, first=41)
