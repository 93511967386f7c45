"""IP reference lists: the country of an address, and whether it is an anonymous network.

Two CSV files, each one CIDR network (IPv4 or IPv6) per line with a value:

- countries: ``network,country`` (ISO 3166-1 alpha-2, stored upper-case), as exported from a
  geo-IP vendor;
- anonymous networks: ``network,label`` (``tor``, ``vpn``, ``proxy``, ``hosting``, ...: any
  label, stored lower-case), e.g. a Tor exit list or a VPN/hosting feed.

Lines starting with ``#`` and blank lines are skipped. A header row (a cell ``network``) is
optional; when present, the columns are found by name (``network`` and ``country``/``label``),
so exports with more columns work; without it the first two columns are used. A malformed line
is a configuration error (``ValueError`` naming the file and line), never skipped silently.

Networks may nest (a /16 for one country with a /24 inside it for another): an address gets the
value of the most specific network that contains it; for the same network listed twice, the later
line wins. Lookups are vectorized over the *distinct* addresses of a column: each is parsed once
with :mod:`ipaddress` (an IPv4-mapped IPv6 address counts as its IPv4 address), then all of
them are found at once with numpy ``searchsorted`` over the sorted, non-overlapping ranges. An
invalid or missing address, or one in no listed network, gives null, not an error.

The package ships example lists (``fraudstream/data/ip_countries.csv`` and
``anonymous_networks.csv``) holding documentation ranges only (RFC 5737 and RFC 3849), loaded by
:meth:`IpReference.default`; a real deployment points its configuration at its own files.

>>> import pyarrow as pa
>>> ref = IpReference.default()
>>> ref.countries(pa.array(["192.0.2.10", "2001:db8:4000::1", "not an ip", None])).to_pylist()
['US', 'GB', None, None]
>>> ref.networks(pa.array(["203.0.113.7", "192.0.2.10"])).to_pylist()
['tor', None]
"""

from __future__ import annotations

import csv
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

IP_KEY = np.dtype([("hi", "<u8"), ("lo", "<u8")])  # a 128-bit address as two 64-bit halves
_LOW_64 = (1 << 64) - 1
_CACHE_LIMIT = 1 << 17  # distinct addresses remembered between calls


def _key(value: int) -> tuple[int, int]:
    return value >> 64, value & _LOW_64


@dataclass(frozen=True, slots=True)
class _Ranges:
    """Sorted, non-overlapping address ranges of one IP version, each with a value index."""

    starts: npt.NDArray[Any]
    ends: npt.NDArray[Any]
    values: npt.NDArray[np.int32]

    @classmethod
    def build(cls, networks: Sequence[tuple[int, int, int]]) -> _Ranges:
        """Flattens nested ``(first, last, value)`` networks; the most specific one wins."""
        ordered = sorted(networks, key=lambda n: (n[0], -n[1]))  # stable: later lines on top
        segments: list[tuple[int, int, int]] = []

        def emit(first: int, last: int, value: int) -> None:
            if first > last:
                return
            if segments and segments[-1][2] == value and segments[-1][1] + 1 == first:
                segments[-1] = (segments[-1][0], last, value)
            else:
                segments.append((first, last, value))

        stack: list[tuple[int, int]] = []  # (last address, value) of the open networks
        cursor = 0
        for first, last, value in ordered:
            while stack and stack[-1][0] < first:
                end, top = stack.pop()
                emit(cursor, end, top)
                cursor = max(cursor, end + 1)
            if stack:
                emit(cursor, first - 1, stack[-1][1])
            cursor = first
            stack.append((last, value))
        while stack:
            end, top = stack.pop()
            emit(cursor, end, top)
            cursor = max(cursor, end + 1)
        return cls(
            np.array([_key(s[0]) for s in segments], dtype=IP_KEY),
            np.array([_key(s[1]) for s in segments], dtype=IP_KEY),
            np.array([s[2] for s in segments], dtype=np.int32),
        )

    def find(self, keys: npt.NDArray[Any]) -> npt.NDArray[np.int32]:
        """The value index of each address key, -1 where no range holds it."""
        out = np.full(len(keys), -1, dtype=np.int32)
        if len(keys) == 0 or len(self.values) == 0:
            return out
        at = np.searchsorted(self.starts, keys, side="right") - 1
        inside = (at >= 0) & (np.searchsorted(self.ends, keys, side="left") == at)
        out[inside] = self.values[at[inside]]
        return out


class _Table:
    """One reference list: IPv4 and IPv6 ranges and the distinct values they map to."""

    def __init__(self, rows: Iterable[tuple[str, str]], source: str = "<rows>") -> None:
        self.names: list[str] = []
        index: dict[str, int] = {}
        by_version: dict[int, list[tuple[int, int, int]]] = {4: [], 6: []}
        for number, (network, value) in enumerate(rows, start=1):
            try:
                parsed = ipaddress.ip_network(network.strip(), strict=False)
            except ValueError as error:
                raise ValueError(f"{source}: row {number}: bad network {network!r}") from error
            if not value:
                raise ValueError(f"{source}: row {number}: no value for {network}")
            code = index.get(value)
            if code is None:
                code = index[value] = len(self.names)
                self.names.append(value)
            first, last = int(parsed.network_address), int(parsed.broadcast_address)
            by_version[parsed.version].append((first, last, code))
        self.ranges = {version: _Ranges.build(nets) for version, nets in by_version.items()}
        self.values = pa.array([*self.names, None], pa.string())  # last entry: null

    def __len__(self) -> int:
        return sum(len(r.values) for r in self.ranges.values())


def _read_csv(lines: Iterable[str], value_column: str, source: str) -> list[tuple[str, str]]:
    """``(network, value)`` rows of a reference CSV (see the module docstring)."""
    rows: list[tuple[str, str]] = []
    columns: tuple[int, int] | None = None
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        cells = [c.strip() for c in next(csv.reader([text]))]
        if columns is None:
            columns = (0, 1)
            names = [c.lower() for c in cells]
            if "network" in names:
                if value_column not in names:
                    raise ValueError(
                        f"{source}: line {number}: header {text!r} has no {value_column!r} "
                        f"column (expected 'network,{value_column}')"
                    )
                columns = (names.index("network"), names.index(value_column))
                continue
        if len(cells) <= max(columns):
            raise ValueError(
                f"{source}: line {number}: expected network,{value_column}, got {text!r}"
            )
        network, value = cells[columns[0]], cells[columns[1]]
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as error:
            raise ValueError(f"{source}: line {number}: bad network {network!r}") from error
        if not value:
            raise ValueError(f"{source}: line {number}: no {value_column} for {network}")
        rows.append((network, value))
    return rows


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"


def _ipv4_keys(
    distinct: list[str | None],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]] | None:
    """Rows and keys of the plain dotted-quad IPv4 addresses, parsed with Arrow in bulk.

    The pattern accepts exactly what :func:`ipaddress.ip_address` accepts for dotted quads
    (no leading zeros, octets <= 255); anything else goes the one-by-one way.
    """
    import pyarrow.compute as pc

    column = pa.array(distinct, pa.string())
    matches = pc.match_substring_regex(column, _DOTTED_QUAD).fill_null(False)
    rows = np.flatnonzero(matches.to_numpy(zero_copy_only=False))
    if len(rows) == 0:
        return None
    quads = pc.split_pattern(column.take(pa.array(rows)), ".")
    octets = pc.cast(pc.list_flatten(quads), pa.int64()).to_numpy().reshape(-1, 4)
    value = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
    keys = np.zeros(len(rows), dtype=IP_KEY)
    keys["lo"] = value.astype(np.uint64)
    return rows, keys


def _parse(ip: str | None) -> tuple[int, int] | None:
    """``(version, integer)`` of an address, or None when it is not one."""
    if ip is None:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version, int(address)


class IpReference:
    """Country and anonymous-network lists for IP addresses (see the module docstring).

    ``countries`` and ``networks`` are ``(network, value)`` rows, e.g. ``("192.0.2.0/24",
    "US")`` and ``("203.0.113.0/24", "tor")``.

    >>> ref = IpReference([("10.0.0.0/8", "us"), ("10.1.0.0/16", "ca")], [])
    >>> ref.country("10.1.2.3"), ref.country("10.2.0.1"), ref.country("::ffff:10.1.0.9")
    ('CA', 'US', 'CA')
    """

    def __init__(
        self,
        countries: Iterable[tuple[str, str]] = (),
        networks: Iterable[tuple[str, str]] = (),
        *,
        source: str = "<rows>",
    ) -> None:
        self._countries = _Table(((n, v.strip().upper()) for n, v in countries), source)
        self._networks = _Table(((n, v.strip().lower()) for n, v in networks), source)
        self._cache: dict[str, tuple[int, int]] = {}

    @classmethod
    def from_csv(
        cls,
        countries: str | os.PathLike[str] | None = None,
        networks: str | os.PathLike[str] | None = None,
    ) -> IpReference:
        """Loads the two CSV files (either may be omitted: an empty list)."""
        country_rows: list[tuple[str, str]] = []
        network_rows: list[tuple[str, str]] = []
        if countries is not None:
            with open(countries, encoding="utf-8", newline="") as f:
                country_rows = _read_csv(f, "country", os.fspath(countries))
        if networks is not None:
            with open(networks, encoding="utf-8", newline="") as f:
                network_rows = _read_csv(f, "label", os.fspath(networks))
        return cls(country_rows, network_rows)

    @classmethod
    def default(cls) -> IpReference:
        """The example lists shipped in the package (documentation ranges only)."""
        data = resources.files("fraudstream") / "data"
        country_text = (data / "ip_countries.csv").read_text(encoding="utf-8")
        network_text = (data / "anonymous_networks.csv").read_text(encoding="utf-8")
        return cls(
            _read_csv(country_text.splitlines(), "country", "ip_countries.csv"),
            _read_csv(network_text.splitlines(), "label", "anonymous_networks.csv"),
        )

    @property
    def country_names(self) -> list[str]:
        """The distinct countries listed, in order of first appearance."""
        return list(self._countries.names)

    @property
    def network_labels(self) -> list[str]:
        """The distinct anonymous-network labels listed, in order of first appearance."""
        return list(self._networks.names)

    def lookup(self, ips: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
        """``(countries, networks)`` for a column of addresses: strings, null when unknown."""
        if isinstance(ips, pa.ChunkedArray):
            ips = ips.combine_chunks()
        if len(ips) == 0 or ips.null_count == len(ips):
            nulls = pa.nulls(len(ips), pa.string())
            return nulls, nulls
        encoded: Any = ips.dictionary_encode()
        country_codes, network_codes = self._codes(encoded.dictionary.to_pylist())
        indices = encoded.indices
        return (
            self._expand(self._countries, country_codes, indices),
            self._expand(self._networks, network_codes, indices),
        )

    def countries(self, ips: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The ISO country of each address (string), null when unknown or invalid."""
        return self.lookup(ips)[0]

    def networks(self, ips: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The anonymous-network label of each address (string), null when not listed."""
        return self.lookup(ips)[1]

    def country(self, ip: str | None) -> str | None:
        """The country of one address."""
        value: str | None = self.countries(pa.array([ip], pa.string()))[0].as_py()
        return value

    def network(self, ip: str | None) -> str | None:
        """The anonymous-network label of one address."""
        value: str | None = self.networks(pa.array([ip], pa.string()))[0].as_py()
        return value

    def _codes(
        self, distinct: list[str | None]
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Value indices (-1: none) of each distinct address, for both lists."""
        countries = np.full(len(distinct), -1, dtype=np.int32)
        networks = np.full(len(distinct), -1, dtype=np.int32)
        dotted = _ipv4_keys(distinct)
        if dotted is not None:  # plain dotted quads: parsed in bulk, no cache needed
            rows, keys = dotted
            countries[rows] = self._countries.ranges[4].find(keys)
            networks[rows] = self._networks.ranges[4].find(keys)
            rest = np.ones(len(distinct), dtype=bool)
            rest[rows] = False
            if not rest.any():
                return countries, networks
            others = np.flatnonzero(rest)
            sub_countries, sub_networks = self._codes_one_by_one([distinct[i] for i in others])
            countries[others] = sub_countries
            networks[others] = sub_networks
            return countries, networks
        return self._codes_one_by_one(distinct)

    def _codes_one_by_one(
        self, distinct: list[str | None]
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        countries = np.full(len(distinct), -1, dtype=np.int32)
        networks = np.full(len(distinct), -1, dtype=np.int32)
        cache = self._cache
        todo: dict[int, tuple[list[int], list[tuple[int, int]]]] = {4: ([], []), 6: ([], [])}
        for position, ip in enumerate(distinct):
            hit = cache.get(ip) if ip is not None else None
            if hit is not None:
                countries[position], networks[position] = hit
                continue
            parsed = _parse(ip)
            if parsed is not None:
                rows, keys = todo[parsed[0]]
                rows.append(position)
                keys.append(_key(parsed[1]))
        for version, (rows, keys) in todo.items():
            if not rows:
                continue
            at = np.array(rows, dtype=np.int64)
            key_array = np.array(keys, dtype=IP_KEY)
            countries[at] = self._countries.ranges[version].find(key_array)
            networks[at] = self._networks.ranges[version].find(key_array)
        if len(cache) + len(distinct) > _CACHE_LIMIT:
            cache.clear()
        for position, ip in enumerate(distinct):
            if ip is not None:
                cache[ip] = (int(countries[position]), int(networks[position]))
        return countries, networks

    @staticmethod
    def _expand(table: _Table, codes: npt.NDArray[np.int32], indices: pa.Array) -> pa.Array:
        """Per-record values from per-distinct value indices; null indices stay null."""
        null_value = len(table.names)
        per_distinct = np.where(codes < 0, null_value, codes)
        positions = indices.fill_null(len(codes)) if indices.null_count else indices
        lookup = np.append(per_distinct, null_value).astype(np.int32)
        return table.values.take(pa.array(lookup[positions.to_numpy()]))
