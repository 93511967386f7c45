"""Benchmark workload: millions of synthetic transactions as one Arrow table, in seconds.

Not a seed's data: the benchmarks need volume with the shape of the seeds' traffic (seed 000's
per-card keyed stream, seed 002's geolocated users, seed 004's hot keys), not a story. Built
column-at-a-time with numpy (no Python loop per record): per-card and per-user attributes are
drawn once, rows index into them, and string columns are taken from small dictionaries (or, for
the unique transaction ids, written straight into an Arrow string buffer).

Shape: ``cards`` cards owned by about ``cards / 1.2`` users (the first ``users`` cards one each,
the rest to random users), skewed card activity (lognormal weights: some hot cards), timestamps
sorted over ``days`` (30) days, lognormal amounts around each card's typical spend with 0.2 %
tiny (< 1.00) and 0.3 % large (500-2,500) ones, positions near each user's home in one of the
demo's 30 cities with 0.1 % far jumps (another city: its country and zipcode too), usual
merchants (85 %), a main device (90 %), home IP (97 %, 1 % anonymous network 203.0.113.0/24).
The country IP scheme is :mod:`fraudstream.simulate.demo`'s.

:func:`write_table` writes Parquet, CSV or JSON lines (the latter built with Arrow string
kernels, not a per-row encoder).
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeAlias

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .demo import ANONYMOUS_IP_PREFIX, CITIES, COUNTRY_IP_BLOCKS

__all__ = ["amounts", "benchmark_table", "fixed_width_strings", "rows_in_time", "write_table"]

DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
_CARDS_PER_USER = 1.2
_MERCHANTS = 50_000

IntArray = npt.NDArray[np.int64]


def fixed_width_strings(prefix: str, numbers: IntArray, digits: int) -> pa.Array:
    """``prefix`` + zero-padded ``numbers`` as an Arrow string array, built in numpy.

    >>> fixed_width_strings("tx-", np.array([1, 42], dtype=np.int64), 4).to_pylist()
    ['tx-0001', 'tx-0042']
    """
    n = len(numbers)
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    width = len(head) + digits
    if n * width >= 2**31:
        raise ValueError("too many strings for one Arrow string array")
    out = np.empty((n, width), dtype=np.uint8)
    out[:, : len(head)] = head
    rest = numbers.astype(np.int64, copy=True)
    for k in range(width - 1, len(head) - 1, -1):
        out[:, k] = (rest % 10).astype(np.uint8) + 48
        rest //= 10
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(out.reshape(-1))]
    )


def _take(dictionary: pa.Array, indices: npt.NDArray[Any]) -> pa.Array:
    return dictionary.take(pa.array(indices))


def benchmark_table(
    n: int = 5_000_000,
    cards: int = 100_000,
    seed: int = 42,
    *,
    start_ms: int = DEFAULT_START_MS,
    days: float = 30.0,
) -> pa.Table:
    """``n`` synthetic transactions over ``cards`` cards, sorted by timestamp.

    Columns (DESIGN.md Transaction contract): transaction_id (unique), card_id, user_id,
    timestamp (int64 ms), amount (float64), lat, lon, zipcode, merchant_id, device_id, ip,
    country, channel. Deterministic for a given seed.

    >>> t = benchmark_table(n=1000, cards=50, seed=1)
    >>> t.num_rows, t.column("transaction_id")[0].as_py()
    (1000, 'bt-000000001')
    """
    if n < 0 or cards < 1:
        raise ValueError(f"need n >= 0 and cards >= 1, got n={n}, cards={cards}")
    rng = np.random.default_rng(seed)

    # Users and their cards.
    users = max(1, min(cards, round(cards / _CARDS_PER_USER)))
    owner = np.concatenate(
        [np.arange(users, dtype=np.int64), rng.integers(0, users, cards - users)]
    )
    n_cities = len(CITIES)
    city_lat = np.array([c.lat for c in CITIES])
    city_lon = np.array([c.lon for c in CITIES])
    city_weight = np.array([2.0 if c.country in {"US", "GB", "DE", "FR"} else 1.0 for c in CITIES])
    home_city = rng.choice(n_cities, size=users, p=city_weight / city_weight.sum())
    home_lat = city_lat[home_city] + rng.normal(0.0, 0.05, users)
    home_lon = city_lon[home_city] + rng.normal(0.0, 0.05, users) / np.cos(
        np.radians(city_lat[home_city])
    )
    zip_values = [z for c in CITIES for z in c.zipcodes]
    zip_start = np.cumsum([0] + [len(c.zipcodes) for c in CITIES])
    zip_count = np.diff(zip_start)
    home_zip = zip_start[home_city] + rng.integers(0, zip_count[home_city])
    typical = np.exp(rng.uniform(np.log(20.0), np.log(150.0), cards))
    activity = rng.lognormal(0.0, 1.0, cards)

    # Rows.
    card, user, timestamp = rows_in_time(rng, n, activity, owner, start_ms, days)
    amount = amounts(rng, typical[card], sigma=0.5, small_share=0.002, large_share=0.003)

    row_city = home_city[user]
    row_zip = home_zip[user]
    lat = home_lat[user] + rng.normal(0.0, 0.02, n)
    lon = home_lon[user] + rng.normal(0.0, 0.02, n)
    far = np.flatnonzero(rng.random(n) < 0.001)
    far_city = rng.integers(0, n_cities, len(far))
    row_city[far] = far_city
    row_zip[far] = zip_start[far_city] + rng.integers(0, zip_count[far_city])
    lat[far] = city_lat[far_city] + rng.normal(0.0, 0.05, len(far))
    lon[far] = city_lon[far_city] + rng.normal(0.0, 0.05, len(far))
    lat = np.clip(lat, -90.0, 90.0).round(6)
    lon = ((lon + 180.0) % 360.0 - 180.0).round(6)

    usual = rng.random(n) < 0.85
    merchant = np.where(
        usual,
        (user * 7919 + rng.integers(0, 8, n)) % _MERCHANTS,
        rng.integers(0, _MERCHANTS, n),
    )
    device = user * 2 + (rng.random(n) < 0.1).astype(np.int64)

    # IPs: two per user in the home country's block, plus 254 anonymous-network hosts.
    countries = sorted(COUNTRY_IP_BLOCKS)
    country_index = {c: k for k, c in enumerate(countries)}
    user_country = np.array([country_index[c.country] for c in CITIES])[home_city]
    blocks = np.array([COUNTRY_IP_BLOCKS[c] for c in countries])
    third = (np.arange(users) // 254) % 128
    fourth = np.arange(users) % 254 + 1
    block_of_user = blocks[user_country].astype(object)
    ip_dictionary = pa.array(
        [f"{b}.{t}.{f}" for b, t, f in zip(block_of_user, third, fourth, strict=True)]
        + [f"{b}.{t + 128}.{f}" for b, t, f in zip(block_of_user, third, fourth, strict=True)]
        + [f"{ANONYMOUS_IP_PREFIX}{h}" for h in range(1, 255)],
        type=pa.string(),
    )
    v = rng.random(n)
    ip_index = np.where(v < 0.97, user, user + users)
    anonymous = v >= 0.99
    ip_index[anonymous] = 2 * users + rng.integers(0, 254, int(anonymous.sum()))

    channel = (rng.random(n) < 0.35).astype(np.int8)
    id_digits = max(9, len(str(n)))
    string_columns: dict[str, Callable[[], pa.Array]] = {
        "transaction_id": lambda: fixed_width_strings("bt-", np.arange(1, n + 1), id_digits),
        "card_id": lambda: _take(
            fixed_width_strings("card-", np.arange(cards), max(7, len(str(cards)))), card
        ),
        "user_id": lambda: _take(
            fixed_width_strings("user-", np.arange(users), max(7, len(str(users)))), user
        ),
        "zipcode": lambda: _take(pa.array(zip_values, type=pa.string()), row_zip),
        "merchant_id": lambda: _take(fixed_width_strings("m-", np.arange(_MERCHANTS), 6), merchant),
        "device_id": lambda: _take(
            fixed_width_strings("dev-", np.arange(2 * users), max(8, len(str(2 * users)))),
            device,
        ),
        "ip": lambda: _take(ip_dictionary, ip_index),
        "country": lambda: _take(pa.array([c.country for c in CITIES], type=pa.string()), row_city),
        "channel": lambda: _take(pa.array(["pos", "online"], type=pa.string()), channel),
    }
    # Arrow's take and numpy's arithmetic release the GIL: build the strings on a few threads.
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        built = {name: pool.submit(make) for name, make in string_columns.items()}
        strings = {name: future.result() for name, future in built.items()}
    columns: dict[str, pa.Array] = {
        "transaction_id": strings["transaction_id"],
        "card_id": strings["card_id"],
        "user_id": strings["user_id"],
        "timestamp": pa.array(timestamp, type=pa.int64()),
        "amount": pa.array(amount, type=pa.float64()),
        "lat": pa.array(lat, type=pa.float64()),
        "lon": pa.array(lon, type=pa.float64()),
        **{name: strings[name] for name in ("zipcode", "merchant_id", "device_id", "ip")},
        "country": strings["country"],
        "channel": strings["channel"],
    }
    return pa.table(columns)


# --------------------------------------------------------------------------- writing

_JSONL_CHUNK_ROWS = 65_536
_Piece: TypeAlias = "str | pa.Array"  # a literal (same on every line) or one text per row


def _needs_escape(text: pa.Array) -> bool:
    """Whether any value of a string array holds a quote, a backslash or a control character."""
    if len(text) == 0:
        return False
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)
    lo, hi = int(offsets[text.offset]), int(offsets[text.offset + len(text)])
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)[lo:hi]
    return bool(((data < 0x20) | (data == 0x22) | (data == 0x5C)).any())


def _json_pieces(column: pa.Array) -> list[_Piece]:
    """The JSON text of each value of ``column`` (``null`` for nulls), as line pieces."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _json_pieces(column.cast(kind.value_type))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = column.cast(pa.string())
        if not _needs_escape(text):
            if column.null_count == 0:
                return ['"', text, '"']
            quoted = pc.binary_join_element_wise('"', text, '"', "")
            return [pc.fill_null(quoted, "null")]
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return [pc.fill_null(column.cast(pa.string()), "null")]
    elif pa.types.is_floating(kind):
        values = column.cast(pa.float64())
        text = values.cast(pa.string())
        numbers = values.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            integral = np.isfinite(numbers) & (numbers == np.floor(numbers))
        if integral.any():  # keep floats floats: "5" -> "5.0" (also "1e+16" stays as is)
            plain = pc.invert(pc.match_substring_regex(text, "[.eE]"))
            fix = pc.and_(pa.array(integral), plain)
            text = pc.if_else(fix, pc.binary_join_element_wise(text, ".0", ""), text)
        if not np.isfinite(numbers).all():  # NaN and infinities are not JSON: null
            text = pc.if_else(pa.array(np.isfinite(numbers)), text, pa.scalar(None, pa.string()))
        return [pc.fill_null(text, "null")]
    elif pa.types.is_timestamp(kind):
        millis = column.cast(pa.timestamp("ms", tz=kind.tz)).cast(pa.int64())
        return [pc.fill_null(millis.cast(pa.string()), "null")]
    # Anything else (escaping needed, lists, structs, ...): one value at a time.
    encoder = msgspec.json.Encoder()
    return [pa.array([encoder.encode(v).decode() for v in column.to_pylist()], type=pa.string())]


def _jsonl_bytes(batch: pa.RecordBatch) -> memoryview:
    if batch.num_columns == 0:
        return memoryview(b"{}\n" * batch.num_rows)
    pieces: list[_Piece] = []
    for k, name in enumerate(batch.schema.names):
        pieces.append(("{" if k == 0 else ",") + json.dumps(name) + ":")
        pieces.extend(_json_pieces(batch.column(k)))
    pieces.append("}\n")
    merged: list[_Piece] = []
    for piece in pieces:  # adjacent literals become one
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] = str(merged[-1]) + piece
        else:
            merged.append(piece)
    lines = pc.binary_join_element_wise(*merged, "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    lo, hi = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    return memoryview(lines.buffers()[2])[lo:hi]


def _write_jsonl(table: pa.Table, path: Path) -> None:
    """JSON lines, chunk by chunk on a few threads (Arrow kernels release the GIL), in order."""
    workers = max(1, min(4, os.cpu_count() or 1))
    batches = iter(table.to_batches(max_chunksize=_JSONL_CHUNK_ROWS))
    with path.open("wb") as handle, ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[memoryview]] = deque()
        for batch in batches:
            if batch.num_rows:
                pending.append(pool.submit(_jsonl_bytes, batch))
            while len(pending) > 2 * workers:
                handle.write(pending.popleft().result())
        while pending:
            handle.write(pending.popleft().result())


def write_table(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` to ``path`` by suffix: ``.parquet``, ``.csv``, ``.jsonl``/``.ndjson``.

    JSON lines hold one object per row with the columns as keys, ints as ints, floats as floats
    (non-finite ones as null) and nulls as null.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif suffix == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    elif suffix in (".jsonl", ".ndjson"):
        _write_jsonl(table, path)
    else:
        raise ValueError(f"unsupported table file type {path.suffix!r}: use .parquet, .jsonl, .csv")
    return path


def rows_in_time(
    rng: np.random.Generator,
    n: int,
    activity: npt.NDArray[np.float64],
    owner: npt.NDArray[np.int64],
    start_ms: int,
    days: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``n`` rows spread over cards by ``activity`` and sorted times over ``days``:
    (card, its user by ``owner``, timestamp ms)."""
    per_card = rng.multinomial(n, activity / activity.sum())
    card = rng.permutation(np.repeat(np.arange(len(activity), dtype=np.int64), per_card))
    span = int(days * 86_400_000)
    timestamp = start_ms + np.sort(rng.integers(0, max(1, span), n))
    return card, owner[card], timestamp


def amounts(
    rng: np.random.Generator,
    typical: npt.NDArray[np.float64],
    sigma: float,
    small_share: float,
    large_share: float,
) -> npt.NDArray[np.float64]:
    """Each row's amount around its card's ``typical`` one, with small (< 1) and large
    (500-2,500) tails of the given shares, in cents."""
    n = len(typical)
    amount = typical * rng.lognormal(0.0, sigma, n)
    u = rng.random(n)
    small, large = u < small_share, (u >= small_share) & (u < small_share + large_share)
    amount[small] = rng.uniform(0.05, 0.99, int(small.sum()))
    amount[large] = rng.uniform(500.0, 2500.0, int(large.sum()))
    return amount.round(2)
