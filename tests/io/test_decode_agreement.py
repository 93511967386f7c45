"""The columnar (Parquet) decoder and the record-by-record decoder agree, and so do formats.

``Decoder.table`` checks whole Arrow batches at once and re-checks only suspect rows the
careful way; ``Decoder.records`` checks every row with ``validate_record``. On the same rows
they must accept the same transactions with the same normalised values and reject the rest
with the same reasons at the same positions. End to end, a CSV or Parquet file of the same
records as a JSON-lines file gives the same decisions.
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from decode_helpers import outcome
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline
from fraudstream.io.decode import Decoder
from fraudstream.io.files import FileSource
from fraudstream.run import Outputs, Runner
from fraudstream.schema import CardTokenizer
from fraudstream.simulate.demo import demo_records

TOKENIZER = CardTokenizer(b"test")
T0 = 1_700_000_000_000
TEXT_FIELDS = (
    "zipcode",
    "merchant_id",
    "merchant_category",
    "country",
    "channel",
    "device_id",
    "ip",
)
PANS = ("4111111111111111", "5500005555555559", "378282246310005", "6011000990139424")

# --- comparing outcomes ---------------------------------------------------------------------


def by_records(rows: list[dict[str, Any]], first: int = 1) -> tuple[list[Any], list[Any]]:
    decoder = Decoder(TOKENIZER)
    n = len(rows)
    return outcome(*decoder.records(rows, list(range(first, first + n)), [0.0] * n))


def by_table(table: pa.Table, first: int = 1) -> tuple[list[Any], list[Any]]:
    return outcome(*Decoder(TOKENIZER).table(table, first, 0.0))


def by_parquet_file(path: Path, batch_rows: int) -> tuple[list[Any], list[Any]]:
    decoder = Decoder(TOKENIZER)
    batches, dead = [], []
    for item in FileSource(path, "parquet", batch_rows=batch_rows).batches(decoder):
        assert item is not None
        batches.append(item[0])
        dead.extend(item[1])
    return outcome(TxBatch.concat(batches), dead)


# --- random tables ---------------------------------------------------------------------------

ids = st.text(alphabet="abcxyz0123456789-_", min_size=1, max_size=8)
long_id = st.sampled_from(["t" * 128, "t" * 129, "é" * 64, "é" * 65, "7" * 129])
pan = st.sampled_from(PANS)
near_pan = st.sampled_from(["41111111111", "41111111111111111111", "4111 1111 1111 1111"])
odd_pan = st.sampled_from(["4111111111111111\n", "４１１１１１１１１１１１１１１１"])
card_text = st.one_of(ids, ids, pan, near_pan, odd_pan, long_id, st.just(""), st.none())
timestamps = st.one_of(
    st.integers(T0 - 10**9, T0 + 10**9),
    st.sampled_from([0, -1, -62_135_596_800_000, 253_402_300_799_999]),
    st.sampled_from([-62_135_596_800_001, 253_402_300_800_000, -(2**62), 2**62]),
    st.none(),
)
iso_timestamps = st.one_of(
    st.sampled_from(
        [
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.123+02:00",
            "2024-01-01T00:00:00",
            "yesterday",
            "1700000000000",
            "",
            " 1700000000000 ",
            "-5",
        ]
    ),
    st.none(),
)
amount_floats = st.one_of(
    st.floats(0, 1e6, allow_nan=False),
    st.sampled_from([0.0, -0.0, -0.01, -5.0, math.nan, math.inf, -math.inf, 1e308]),
    st.none(),
)
amount_ints = st.one_of(st.integers(-5, 10**6), st.sampled_from([2**62, -(2**62)]), st.none())
amount_strings = st.one_of(
    st.sampled_from(["5", "5.25", "0", "NaN", "inf", "-1", "abc", "", " 7 ", "1e400"]),
    st.none(),
)
lat_values = st.one_of(
    st.floats(-90, 90, allow_nan=False),
    st.sampled_from([90.0, -90.0, 90.5, -1000.0, math.nan, math.inf]),
    st.none(),
)
lon_values = st.one_of(
    st.floats(-180, 180, allow_nan=False),
    st.sampled_from([180.0, -180.0, 180.01, 1e9, math.nan, -math.inf]),
    st.none(),
)
text_values = st.one_of(
    st.text(alphabet="abcé 0123456789-", min_size=1, max_size=10),
    st.sampled_from(["", "x" * 256, "x" * 257, "é" * 200, "é" * 257]),
    st.none(),
)
currencies = st.one_of(st.sampled_from(["USD", "EUR", "usd", "EURO", "", "U1D", "GB"]), st.none())


@st.composite
def tables(draw: st.DrawFn, string_amount: bool = False) -> pa.Table:
    n = draw(st.integers(1, 12))

    def column(values: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(values, min_size=n, max_size=n))

    data: dict[str, pa.Array] = {}
    if draw(st.booleans()):
        data["transaction_id"] = pa.array(column(st.one_of(ids, long_id, st.just(""))), pa.string())
    else:
        data["transaction_id"] = pa.array(column(st.integers(0, 10**6)), pa.int64())
    if draw(st.booleans()):  # tolerate an occasional null id
        values = data["transaction_id"].to_pylist()
        values[draw(st.integers(0, n - 1))] = None
        data["transaction_id"] = pa.array(values, data["transaction_id"].type)

    cards = draw(st.sampled_from(["card_id", "card_id_int", "aliases", "all"]))
    if cards in ("card_id", "all"):
        data["card_id"] = pa.array(column(card_text), pa.string())
    if cards == "card_id_int":
        data["card_id"] = pa.array(
            column(st.one_of(st.integers(0, 99), st.sampled_from([int(p) for p in PANS]))),
            pa.int64(),
        )
    if cards in ("aliases", "all"):
        if draw(st.booleans()):
            data["account_id"] = pa.array(column(st.one_of(st.integers(0, 9), st.none())))
        if draw(st.booleans()) or "account_id" not in data:
            data["card_number"] = pa.array(column(card_text), pa.string())
    if draw(st.booleans()):
        data["user_id"] = pa.array(column(card_text), pa.string())

    time_kind = draw(st.sampled_from(["int", "int", "int", "iso", "float"]))
    if time_kind == "int":
        data["timestamp"] = pa.array(column(timestamps), pa.int64())
    elif time_kind == "iso":
        data["timestamp"] = pa.array(column(iso_timestamps), pa.string())
    else:
        data["timestamp"] = pa.array(column(st.one_of(st.floats(0, 1e12), st.none())))

    amount_kind = "string" if string_amount else draw(st.sampled_from(["float", "float", "int"]))
    if amount_kind == "float":
        data["amount"] = pa.array(column(amount_floats), pa.float64())
    elif amount_kind == "int":
        data["amount"] = pa.array(column(amount_ints), pa.int64())
    else:
        data["amount"] = pa.array(column(amount_strings), pa.string())

    if draw(st.booleans()):
        data["currency"] = pa.array(column(currencies), pa.string())
    coords = draw(st.sampled_from(["none", "lat_lon", "lat_lng", "lat_lon_lng", "lat", "lon"]))
    if "lat" in coords:
        data["lat"] = pa.array(column(lat_values), pa.float64())
    if coords in ("lat_lon", "lat_lon_lng", "lon"):
        data["lon"] = pa.array(column(lon_values), pa.float64())
    if coords in ("lat_lng", "lat_lon_lng"):
        data["lng"] = pa.array(column(lon_values), pa.float64())
    if draw(st.booleans()):
        data["lat"] = pa.array(column(st.one_of(st.integers(-100, 100), st.none())), pa.int32())
        data["lon"] = pa.array(column(st.one_of(st.integers(-200, 200), st.none())), pa.int32())
        data.pop("lng", None)
    for name in draw(st.lists(st.sampled_from(TEXT_FIELDS), unique=True, max_size=4)):
        data[name] = pa.array(column(text_values), pa.string())
    if draw(st.booleans()):
        data["zipcode"] = pa.array(column(st.one_of(st.integers(0, 99_999), st.none())))
    if draw(st.booleans()):
        data["note"] = pa.array(column(st.one_of(ids, st.none())), pa.string())
        data["visits"] = pa.array(column(st.one_of(st.integers(0, 5), st.none())), pa.int64())
    names = list(data)
    order = draw(st.permutations(names))
    return pa.table({name: data[name] for name in order})


def check_agreement(table: pa.Table) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "t.parquet"
        pq.write_table(table, path)
        read = pq.read_table(path)
        rows = read.to_pylist()
        expected = by_records(rows)
        assert by_table(read) == expected
        assert by_table(read, first=41) == by_records(rows, first=41)
        assert by_parquet_file(path, batch_rows=5) == expected


SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
    database=None,
)


@SETTINGS
@given(tables())
@example(
    pa.table(
        {
            "transaction_id": ["a", "b", "c", "d"],
            "card_id": ["c1", PANS[0], None, "c2"],
            "card_number": [None, None, PANS[1], None],
            "timestamp": pa.array([T0, T0 + 1, T0 + 2, None], pa.int64()),
            "amount": [1.0, math.nan, -1.0, 2.0],
            "lat": [1.0, None, 95.0, 2.0],
            "lng": [2.0, 3.0, 4.0, None],
        }
    )
)
def test_parquet_columnar_decoding_agrees_with_records(table: pa.Table) -> None:
    check_agreement(table)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(tables(string_amount=True))
def test_string_amount_column_takes_the_careful_path_and_agrees(table: pa.Table) -> None:
    check_agreement(table)


def test_string_amount_column_example() -> None:
    table = pa.table(
        {
            "transaction_id": ["a", "b", "c", "d", "e"],
            "card_id": ["c", "c", PANS[0], "c", "c"],
            "timestamp": pa.array([T0] * 5, pa.int64()),
            "amount": ["5.5", "NaN", "7", "-1", None],
        }
    )
    check_agreement(table)
    accepted, dead = by_table(table)
    assert [record["transaction_id"] for _, record in accepted] == ["a", "c"]
    assert accepted[1][1]["card_id"].startswith("tok_")
    assert [(p, reason.split(":")[0]) for p, reason, _ in dead] == [
        (2, "amount"),
        (4, "amount"),
        (5, "amount"),
    ]


# --- known divergences, one by one -----------------------------------------------------------


@pytest.mark.parametrize(
    "card",
    ["4111111111111111\n", "４１１１１１１１１１１１１１１１"],
    ids=["pan-newline", "pan-fullwidth-digits"],
)
def test_card_number_like_ids_tokenized_the_same_by_both_paths(card: str) -> None:
    table = pa.table(
        {
            "transaction_id": ["a", "b"],
            "card_id": [card, "plain"],
            "user_id": [card, None],
            "timestamp": pa.array([T0, T0], pa.int64()),
            "amount": [1.0, 2.0],
        }
    )
    assert by_table(table) == by_records(table.to_pylist())


def test_parquet_timestamp_column_decoded_the_same_by_both_paths() -> None:
    """A Parquet file with a real timestamp column: a row that is bad for another reason
    must be rejected for that reason, and clean rows accepted the same way by both paths."""
    moment = pa.array([T0, T0 + 1_000, T0 + 2_000], pa.timestamp("ms", "UTC"))
    table = pa.table(
        {
            "transaction_id": ["a", "b", "c"],
            "card_id": ["c", "c", "c"],
            "timestamp": moment,
            "amount": [1.0, -1.0, 2.0],
        }
    )
    accepted, dead = by_table(table)
    assert [(p, reason.split(":")[0]) for p, reason, _ in dead] == [(2, "amount")]
    assert (accepted, dead) == by_records(table.to_pylist())


@pytest.mark.parametrize(
    "column",
    [
        pa.array([T0 * 1000 + 500, T0 * 1000], pa.timestamp("us", "UTC")),
        pa.array([2**63 + 5, T0], pa.uint64()),
    ],
    ids=["timestamp-us-sub-ms", "uint64-beyond-int64"],
)
def test_unusual_timestamp_columns_give_dead_letters_not_errors(column: pa.Array) -> None:
    table = pa.table(
        {
            "transaction_id": ["a", "b"],
            "card_id": ["c", "c"],
            "timestamp": column,
            "amount": [1.0, 2.0],
        }
    )
    accepted, dead = by_table(table)  # must not raise
    assert len(accepted) + len(dead) == 2
    assert all(reason.strip() for _, reason, _ in dead)


# --- CSV and Parquet files end to end ----------------------------------------------------------


def e2e_records(typed: bool = False) -> list[dict[str, Any]]:
    """Demo traffic (rules fire) with card numbers, aliases and some bad rows; with
    ``typed`` every column keeps one type (Parquet), else ISO times and text numbers too."""
    records = demo_records(count=900, users=12, seed=3)
    out: list[dict[str, Any]] = []
    for k, record in enumerate(records):
        record = dict(record)
        record.pop("is_fraud", None)
        if record["card_id"].endswith("-a") and record["user_id"] in ("user_2", "user_6"):
            record["card_id"] = PANS[0] if record["user_id"] == "user_2" else PANS[1]
        if k % 7 == 0 and not typed:
            record["timestamp"] = str(record["timestamp"]) if k % 2 else _iso(record["timestamp"])
        if k % 11 == 0 and "lon" in record:
            record["lng"] = record.pop("lon")
        if k % 13 == 0:
            record["merchant_category"] = 'food, "drinks"\nand more'
        out.append(record)
    bad_values: list[tuple[str, Any]] = [
        ("amount", -5.0 if typed else "-5"),
        ("amount", -0.5 if typed else "abc"),
        ("timestamp", -(2**62) if typed else "2026-01-01T00:00:00"),
        ("lat", 95.0 if typed else "95"),
        ("currency", "usd"),
        ("transaction_id", ""),
    ]
    for k, (name, value) in enumerate(bad_values):
        bad = dict(out[50 + 100 * k])
        bad["transaction_id"] = f"bad-{k}"
        bad[name] = value
        out.insert(60 + 100 * k, bad)
    out.insert(300, dict(out[299]))  # a duplicate
    return out


def _iso(ms: int) -> str:
    from fraudstream.io.records import iso_ms

    return iso_ms(ms)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_csv(path: Path, records: list[dict[str, Any]], encoding: str = "utf-8") -> None:
    names: list[str] = []
    for record in records:
        names += [k for k in record if k not in names]
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for record in records:
            writer.writerow({k: "" if v is None else v for k, v in record.items()})


def write_parquet(path: Path, records: list[dict[str, Any]]) -> None:
    names: list[str] = []
    for record in records:
        names += [k for k in record if k not in names]
    columns: dict[str, list[Any]] = {name: [r.get(name) for r in records] for name in names}
    arrays = {}
    for name, values in columns.items():
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {int, float} and float in kinds:
            arrays[name] = pa.array([None if v is None else float(v) for v in values])
        elif kinds <= {int}:
            arrays[name] = pa.array(values, pa.int64())
        else:
            arrays[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    pq.write_table(pa.table(arrays), path)


def decide(path: Path, fmt: str, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    out = tmp / f"decisions-{path.name}.jsonl"
    runner = Runner(Pipeline(), Outputs(decisions=str(out)), TOKENIZER)
    summary = runner.run(FileSource(path, fmt))
    decisions = []
    for line in out.read_text().splitlines():
        decision = json.loads(line)
        decision.pop("processed_at")
        decision.pop("latency_ms")
        decisions.append(decision)
    counts = summary.as_dict()
    counts.pop("seconds")
    counts.pop("cpu_seconds")
    counts.pop("throughput_tx_s")
    return decisions, counts


@pytest.fixture(scope="module")
def jsonl_decisions(tmp_path_factory: Any) -> tuple[list[Any], dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("e2e")
    path = tmp / "records.jsonl"
    write_jsonl(path, e2e_records())
    decisions, counts = decide(path, "jsonl", tmp)
    assert counts["decided"] > 800 and counts["dead_letters"] == 7 and counts["duplicates"] == 1
    assert counts["alerts_by_rule"], "the demo records should fire some rules"
    return decisions, counts, tmp


def test_csv_file_gives_the_same_decisions_as_jsonl(jsonl_decisions: Any) -> None:
    decisions, counts, tmp = jsonl_decisions
    path = tmp / "records.csv"
    write_csv(path, e2e_records())
    assert decide(path, "csv", tmp) == (decisions, counts)


def test_csv_with_byte_order_mark_gives_the_same_decisions(jsonl_decisions: Any) -> None:
    """Spreadsheets save CSV as UTF-8 with a byte-order mark; the header must still match."""
    decisions, counts, tmp = jsonl_decisions
    path = tmp / "records-bom.csv"
    write_csv(path, e2e_records(), encoding="utf-8-sig")
    assert decide(path, "csv", tmp) == (decisions, counts)


def test_parquet_file_gives_the_same_decisions_as_jsonl(jsonl_decisions: Any) -> None:
    """Typed columns, so the columnar fast path decides most rows."""
    tmp = jsonl_decisions[2]
    records = e2e_records(typed=True)
    jsonl = tmp / "typed.jsonl"
    write_jsonl(jsonl, records)
    path = tmp / "typed.parquet"
    write_parquet(path, records)
    assert pq.read_schema(path).field("timestamp").type == pa.int64()
    assert decide(path, "parquet", tmp) == decide(jsonl, "jsonl", tmp)
