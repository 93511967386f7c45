"""Production-shaped benchmark workload: every field filled, production's cardinalities.

The classic workload (:mod:`.workload`) has the seeds' shape: 118 zip codes, few merchants per
user, no currency. Real card traffic has many more distinct values in its text fields, and
that is where a columnar engine spends its keying time, so this table has them: by default
100,000 cards each owned by its own user, 60,000 zip codes, 300,000 devices, 20,000 merchants
(each with a merchant category code), 62,000 IP addresses, a currency per country, 3 % small
amounts (< 1.00) and 5 % large ones (500-2,500), and 2 % of transactions far from home (in
another of the demo's 30 cities, with one of its zip codes). Every cardinality is a parameter.

Built column-at-a-time with numpy and Arrow ``take`` (no Python loop per row): the distinct
values are made once (at most a few hundred thousand small strings), rows index into them, and
the unique transaction ids (ULID-shaped, 26 bytes) are written straight into an Arrow string
buffer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .demo import ANONYMOUS_IP_PREFIX, CITIES, COUNTRY_IP_BLOCKS
from .workload import DEFAULT_START_MS, amounts, fixed_width_strings, rows_in_time

__all__ = ["ProductionShape", "production_table", "walkthrough_csv"]

_CURRENCY_OF_COUNTRY = {
    "US": "USD", "CA": "CAD", "MX": "MXN", "BR": "BRL", "AR": "ARS", "GB": "GBP", "IE": "EUR",
    "FR": "EUR", "DE": "EUR", "ES": "EUR", "IT": "EUR", "NL": "EUR", "CH": "CHF", "SE": "SEK",
    "PL": "PLN", "TR": "TRY", "EG": "EGP", "NG": "NGN", "KE": "KES", "ZA": "ZAR", "IN": "INR",
    "TH": "THB", "SG": "SGD", "JP": "JPY", "KR": "KRW", "AU": "AUD", "NZ": "NZD",
}  # fmt: skip
# Merchant category codes (ISO 18245) a card portfolio sees most.
_CATEGORIES = (
    "5411", "5812", "5541", "5311", "5912", "5999", "4111", "4121", "5814", "5732", "5651",
    "7011", "4511", "5942", "5200", "7832", "5691", "5300", "4814", "5045",
)  # fmt: skip
_CHANNELS = ("pos", "online", "contactless", "atm")


class ProductionShape:
    """The cardinalities of a production-shaped table (the defaults: issue 18's file)."""

    def __init__(
        self,
        rows: int = 5_000_000,
        cards: int = 100_000,
        users: int = 100_000,
        zipcodes: int = 60_000,
        devices: int = 300_000,
        merchants: int = 20_000,
        ips: int = 62_000,
    ) -> None:
        counts = {
            "cards": cards, "users": users, "zipcodes": zipcodes, "devices": devices,
            "merchants": merchants, "ips": ips,
        }  # fmt: skip
        for name, count in counts.items():
            if count < 1:
                raise ValueError(f"{name}: need at least 1, got {count}")
        if rows < 0:
            raise ValueError(f"rows: need at least 0, got {rows}")
        self.rows, self.cards, self.users = rows, cards, min(users, cards)
        self.zipcodes, self.devices, self.merchants, self.ips = zipcodes, devices, merchants, ips

    def name(self, seed: int) -> str:
        """A file name stem that tells two shapes apart.

        >>> ProductionShape(rows=10).name(1)
        'prod_10r_100000c_100000u_60000z_300000d_20000m_62000i_s1'
        """
        return (
            f"prod_{self.rows}r_{self.cards}c_{self.users}u_{self.zipcodes}z_{self.devices}d_"
            f"{self.merchants}m_{self.ips}i_s{seed}"
        )


def _ulid_strings(rng: np.random.Generator, timestamp_ms: npt.NDArray[np.int64]) -> pa.Array:
    """ULID-shaped ids (26 Crockford base-32 characters: 48 bits of time, 80 random), as
    payment systems issue sortable ids, written as one Arrow buffer."""
    n = len(timestamp_ms)
    width = 26
    if n * width >= 2**31:
        raise ValueError("too many ids for one Arrow string array")
    alphabet = np.frombuffer(b"0123456789ABCDEFGHJKMNPQRSTVWXYZ", dtype=np.uint8)
    out = np.empty((n, width), dtype=np.uint8)
    rest = timestamp_ms.astype(np.uint64, copy=True)
    for k in range(9, -1, -1):
        out[:, k] = alphabet[(rest & np.uint64(31)).astype(np.intp)]
        rest >>= np.uint64(5)
    out[:, 10:] = alphabet[rng.integers(0, 32, size=(n, width - 10))]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(out.reshape(-1))]
    )


def _take(dictionary: pa.Array, indices: npt.NDArray[np.int64]) -> pa.Array:
    return dictionary.take(pa.array(indices))


def production_table(
    shape: ProductionShape | None = None, seed: int = 42, *, days: float = 30.0
) -> pa.Table:
    """Transactions of the given shape, sorted by timestamp; deterministic for a seed.

    Columns: the whole DESIGN.md Transaction contract (transaction_id, card_id, user_id,
    timestamp, amount, currency, lat, lon, zipcode, merchant_id, merchant_category, country,
    channel, device_id, ip), none of them null.

    >>> t = production_table(ProductionShape(rows=1000, cards=50, users=50), seed=1)
    >>> t.num_rows, t.column("currency").null_count, len(t.column_names)
    (1000, 0, 15)
    """
    shape = shape or ProductionShape()
    n, cards, users = shape.rows, shape.cards, shape.users
    rng = np.random.default_rng(seed)
    n_cities = len(CITIES)

    # Cities own their zip codes (zip z is in city z mod 30) and one IP block per country.
    city_lat = np.array([c.lat for c in CITIES])
    city_lon = np.array([c.lon for c in CITIES])
    city_weight = np.array([2.0 if c.country in {"US", "GB", "DE", "FR"} else 1.0 for c in CITIES])
    zips_per_city = np.bincount(np.arange(shape.zipcodes) % n_cities, minlength=n_cities)

    def zip_in(city: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        count = np.maximum(zips_per_city[city], 1)
        pick = rng.integers(0, 1 << 40, len(city)) % count
        zips: npt.NDArray[np.int64] = np.minimum(pick * n_cities + city, shape.zipcodes - 1)
        return zips

    # Users: a home city, zip code, position, a few devices and a (shared) home IP.
    home_city = rng.choice(n_cities, size=users, p=city_weight / city_weight.sum())
    home_zip = zip_in(home_city)
    home_lat = city_lat[home_city] + rng.normal(0.0, 0.05, users)
    home_lon = city_lon[home_city] + rng.normal(0.0, 0.05, users) / np.cos(
        np.radians(city_lat[home_city])
    )
    home_ip = rng.integers(0, shape.ips, users)
    owner = np.arange(cards, dtype=np.int64) % users
    typical = np.exp(rng.uniform(np.log(15.0), np.log(150.0), cards))
    activity = rng.lognormal(0.0, 1.0, cards)

    # Rows: skewed card activity over ``days``, sorted by time.
    card, user, timestamp = rows_in_time(rng, n, activity, owner, DEFAULT_START_MS, days)
    amount = amounts(rng, typical[card], sigma=0.6, small_share=0.03, large_share=0.05)

    row_city = home_city[user]
    row_zip = home_zip[user]
    lat = home_lat[user] + rng.normal(0.0, 0.02, n)
    lon = home_lon[user] + rng.normal(0.0, 0.02, n)
    far = np.flatnonzero(rng.random(n) < 0.02)
    far_city = (row_city[far] + rng.integers(1, n_cities, len(far))) % n_cities
    row_city[far] = far_city
    row_zip[far] = zip_in(far_city)
    lat[far] = city_lat[far_city] + rng.normal(0.0, 0.05, len(far))
    lon[far] = city_lon[far_city] + rng.normal(0.0, 0.05, len(far))
    lat = np.clip(lat, -90.0, 90.0).round(6)
    lon = ((lon + 180.0) % 360.0 - 180.0).round(6)

    # Merchants: mostly the user's few usual ones; devices: mostly the user's main one.
    usual = rng.random(n) < 0.7
    merchant = np.where(
        usual,
        (user * 7919 + rng.integers(0, 12, n)) % shape.merchants,
        rng.integers(0, shape.merchants, n),
    )
    per_user = max(1, shape.devices // users)
    device_pick = np.where(rng.random(n) < 0.8, 0, rng.integers(0, per_user, n))
    device = (user * per_user + device_pick) % shape.devices
    v = rng.random(n)
    ip = np.where(v < 0.9, home_ip[user], rng.integers(0, shape.ips, n))

    # The distinct values.
    countries = sorted(COUNTRY_IP_BLOCKS)
    city_country = np.array([countries.index(c.country) for c in CITIES])
    ip_country = rng.integers(0, len(countries), shape.ips)
    anonymous = rng.random(shape.ips) < 0.005
    ip_text = pa.array(
        [
            f"{ANONYMOUS_IP_PREFIX}{1 + k % 254}"
            if anonymous[k]
            else f"{COUNTRY_IP_BLOCKS[countries[ip_country[k]]]}.{(k >> 8) & 255}.{k & 255}"
            for k in range(shape.ips)
        ],
        pa.string(),
    )
    zip_text = fixed_width_strings("", np.arange(shape.zipcodes) * 7 + 10_000, 6)
    category = rng.integers(0, len(_CATEGORIES), shape.merchants)
    channel = np.minimum(rng.geometric(0.55, n) - 1, len(_CHANNELS) - 1)
    country_text = pa.array(countries, pa.string())
    currency_text = pa.array([_CURRENCY_OF_COUNTRY.get(c, "USD") for c in countries], pa.string())
    row_country = city_country[row_city]
    return pa.table(
        {
            "transaction_id": _ulid_strings(rng, timestamp),
            "card_id": _take(fixed_width_strings("card-", np.arange(cards), 8), card),
            "user_id": _take(fixed_width_strings("user-", np.arange(users), 8), user),
            "timestamp": pa.array(timestamp, pa.int64()),
            "amount": pa.array(amount, pa.float64()),
            "currency": _take(currency_text, row_country),
            "lat": pa.array(lat, pa.float64()),
            "lon": pa.array(lon, pa.float64()),
            "zipcode": _take(zip_text, row_zip),
            "merchant_id": _take(
                fixed_width_strings("mer-", np.arange(shape.merchants), 7), merchant
            ),
            "merchant_category": _take(pa.array(_CATEGORIES, pa.string()), category[merchant]),
            "country": _take(country_text, row_country),
            "channel": _take(pa.array(_CHANNELS, pa.string()), channel),
            "device_id": _take(fixed_width_strings("dev-", np.arange(shape.devices), 10), device),
            "ip": _take(ip_text, ip),
        }
    )


def walkthrough_csv(table: pa.Table, path: str | Path) -> Path:
    """``account,timestamp_ms,amount`` lines, no header (the Flink walkthrough job's input):
    the account is the number in ``card_id`` (``card-00000042`` -> 42), amounts as written.

    >>> import tempfile
    >>> t = production_table(ProductionShape(rows=2, cards=5, users=5), seed=1)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     lines = walkthrough_csv(t, Path(d) / "tx.csv").read_text().splitlines()
    >>> len(lines), lines[0].count(",")
    (2, 2)
    """
    import pyarrow.csv as pcsv

    path = Path(path)
    account = pc.cast(pc.utf8_slice_codeunits(table.column("card_id"), 5), pa.int64())
    columns = {"account": account, "timestamp_ms": table.column("timestamp")}
    columns["amount"] = table.column("amount")
    options = pcsv.WriteOptions(include_header=False)
    pcsv.write_csv(pa.table(columns), path, write_options=options)
    return path
