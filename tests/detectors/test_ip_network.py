"""ip_country_mismatch, anonymous_network, and the IP reference lists they read."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.detectors.ip_network import (
    AnonymousNetwork,
    AnonymousNetworkThresholds,
    IpCountryMismatch,
    reference_step,
)
from fraudstream.reference import IpReference
from fraudstream.testing import detector_input

T0 = 1_700_000_000_000
COUNTRIES = ["US", "GB", "DE"]
NETWORKS = ["tor", "vpn", "hosting"]


def tx_with(
    ip_country: list[int] | None = None,
    expected_country: list[int] | None = None,
    anonymous_network: list[int] | None = None,
    decode: dict[str, list[str]] | None = None,
) -> Any:
    n = len(next(c for c in (ip_country, expected_country, anonymous_network) if c is not None))
    tx = detector_input(
        time_ms=[T0 + k for k in range(n)],
        amount=[5.0] * n,
        ip_country=ip_country,
        expected_country=expected_country,
        anonymous_network=anonymous_network,
    )
    tx.decode = decode if decode is not None else {"country": COUNTRIES, "network": NETWORKS}
    return tx


# ip_country_mismatch ---------------------------------------------------------------------


def test_mismatch_fires_only_when_both_known_and_different() -> None:
    d = IpCountryMismatch()
    tx = tx_with(ip_country=[0, 1, -1, 1, -1, 2], expected_country=[0, 0, 0, -1, -1, 1])
    out = d.process(d.new_state(), tx)
    assert out.fired["ip_country_mismatch"].tolist() == [False, True, False, False, False, True]
    assert "ip_country_code" not in out.features  # internal codes are not output
    assert out.features["ip_country"].to_pylist() == ["US", "GB", None, "GB", None, "DE"]
    assert out.features["expected_country"].to_pylist() == ["US", "US", "US", None, None, "GB"]


def test_mismatch_is_stateless_and_keyed_by_user() -> None:
    d = IpCountryMismatch()
    assert d.key == "user"
    assert d.state_fields == {}
    state = d.new_state()
    first = d.process(state, tx_with(ip_country=[1], expected_country=[0]))
    again = d.process(state, tx_with(ip_country=[1], expected_country=[0]))
    assert first.fired["ip_country_mismatch"].tolist() == [True]
    assert again.fired["ip_country_mismatch"].tolist() == [True]


def test_mismatch_message_uses_names() -> None:
    d = IpCountryMismatch()
    out = d.process(d.new_state(), tx_with(ip_country=[1], expected_country=[0]))
    values = {k: v[0] for k, v in out.features.items()}
    assert d.message("ip_country_mismatch", values) == (
        "IP in GB, expected US (the transaction or home country)"
    )
    assert d.message("ip_country_mismatch", {**values, "ip": "81.2.69.160"}) == (
        "IP 81.2.69.160 in GB, expected US (the transaction or home country)"
    )
    out = d.process(d.new_state(), tx_with(ip_country=[1], expected_country=[7], decode={}))
    values = {k: v[0] for k, v in out.features.items()}
    assert out.fired["ip_country_mismatch"].tolist() == [True]
    assert d.message("ip_country_mismatch", values) == (
        "IP in an unknown country, expected an unknown country (the transaction or home country)"
    )


def test_mismatch_empty_batch() -> None:
    d = IpCountryMismatch()
    tx = detector_input(time_ms=[], amount=[])
    assert d.process(d.new_state(), tx).fired["ip_country_mismatch"].tolist() == []


# anonymous_network -----------------------------------------------------------------------


def test_anonymous_network_fires_for_any_listed_network() -> None:
    d = AnonymousNetwork()
    out = d.process(d.new_state(), tx_with(anonymous_network=[-1, 0, 1, 2]))
    assert out.fired["anonymous_network"].tolist() == [False, True, True, True]
    assert out.features["network"].to_pylist() == [None, "tor", "vpn", "hosting"]


def test_anonymous_network_labels_restrict_what_fires() -> None:
    d = AnonymousNetwork(labels=["TOR ", "vpn"])
    assert d.thresholds.labels == ("tor", "vpn")
    out = d.process(d.new_state(), tx_with(anonymous_network=[-1, 0, 1, 2]))
    assert out.fired["anonymous_network"].tolist() == [False, True, True, False]
    # Without a decode table the labels cannot be told apart: nothing fires.
    out = d.process(d.new_state(), tx_with(anonymous_network=[0, 1], decode={}))
    assert out.fired["anonymous_network"].tolist() == [False, False]


def test_anonymous_network_thresholds() -> None:
    with pytest.raises(ValueError, match="anonymous_network"):
        AnonymousNetworkThresholds(labels="tor")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="anonymous_network"):
        AnonymousNetwork(labels=["tor", " "])
    assert AnonymousNetworkThresholds(labels=("Vpn",)).labels == ("vpn",)


def test_anonymous_network_message() -> None:
    d = AnonymousNetwork()
    out = d.process(d.new_state(), tx_with(anonymous_network=[0]))
    values = {k: v[0] for k, v in out.features.items()}
    assert d.message("anonymous_network", values) == "IP in a listed tor network"
    assert d.message("anonymous_network", {"network": None}) == ("IP in a listed anonymous network")
    assert d.message("anonymous_network", {**values, "ip": "185.220.101.4"}) == (
        "IP 185.220.101.4 in a listed tor network"
    )


codes = st.integers(-1, 3)  # 3: a code the decode table lacks


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(codes, codes, codes), max_size=40),
    st.lists(st.sampled_from(NETWORKS), max_size=3),
)
def test_detectors_match_reference(rows: list[tuple[int, int, int]], labels: list[str]) -> None:
    if not rows:
        return
    ip, expected, network = (list(column) for column in zip(*rows, strict=True))
    tx = tx_with(ip_country=ip, expected_country=expected, anonymous_network=network)
    t = AnonymousNetworkThresholds(labels=tuple(labels))
    mismatch = IpCountryMismatch().process(IpCountryMismatch().new_state(), tx)
    anonymous = AnonymousNetwork(t).process(AnonymousNetwork(t).new_state(), tx)

    def name(code: int, names: list[str]) -> str | None:
        # Unknown codes get a distinct stand-in name: they are still known, just not decoded.
        return None if code == -1 else (names[code] if code < len(names) else f"#{code}")

    for i, (a, b, c) in enumerate(rows):
        _, fired = reference_step(
            None, name(a, COUNTRIES), name(b, COUNTRIES), name(c, NETWORKS), t
        )
        assert bool(mismatch.fired["ip_country_mismatch"][i]) is fired["ip_country_mismatch"]
        assert bool(anonymous.fired["anonymous_network"][i]) is fired["anonymous_network"]


# IpReference -----------------------------------------------------------------------------


def test_default_lists() -> None:
    ref = IpReference.default()
    ips = pa.array(
        [
            "192.0.2.0",
            "192.0.2.63",
            "192.0.2.64",
            "198.51.100.200",
            "2001:db8::1",
            "2001:db8:c000::5",
            "203.0.113.9",
            "8.8.8.8",
            "garbage",
            "",
            None,
            "::ffff:192.0.2.130",
            "2001:db8:ffff::1",
        ]
    )
    assert ref.countries(ips).to_pylist() == [
        "US", "US", "GB", "JP", "US", "FR", None, None, None, None, None, "DE", "FR",
    ]  # fmt: skip
    assert ref.networks(ips).to_pylist() == [None] * 6 + ["tor"] + [None] * 5 + ["vpn"]
    assert sorted(ref.country_names) == ["DE", "ES", "FR", "GB", "IT", "JP", "NL", "US"]
    assert ref.network_labels == ["tor", "vpn"]


def test_lookup_returns_both_columns_and_handles_odd_inputs() -> None:
    ref = IpReference.default()
    countries, networks = ref.lookup(pa.chunked_array([["192.0.2.1"], ["203.0.113.1", None]]))
    assert countries.to_pylist() == ["US", None, None]
    assert networks.to_pylist() == [None, "tor", None]
    assert ref.countries(pa.array([], pa.string())).to_pylist() == []
    assert ref.countries(pa.nulls(2)).to_pylist() == [None, None]
    assert ref.countries(pa.array(["192.0.2.1"], pa.large_string())).to_pylist() == ["US"]
    # Repeated calls use the cache and give the same answer.
    assert ref.country("192.0.2.1") == ref.country("192.0.2.1") == "US"
    assert ref.network("203.0.113.255") == "tor"
    assert ref.network("203.0.114.0") is None


def test_most_specific_network_wins_in_any_order() -> None:
    rows = [("10.0.0.0/8", "US"), ("10.1.0.0/16", "CA"), ("10.1.2.0/24", "MX")]
    for ordered in (rows, rows[::-1]):
        ref = IpReference(ordered)
        ips = ["9.255.255.255", "10.0.0.0", "10.0.255.255", "10.1.0.0", "10.1.1.255",
               "10.1.2.0", "10.1.2.255", "10.1.3.0", "10.1.255.255", "10.2.0.0",
               "10.255.255.255", "11.0.0.0"]  # fmt: skip
        assert ref.countries(pa.array(ips)).to_pylist() == [
            None, "US", "US", "CA", "CA", "MX", "MX", "CA", "CA", "US", "US", None,
        ]  # fmt: skip


def test_same_network_twice_the_later_line_wins() -> None:
    ref = IpReference([("10.0.0.0/24", "US"), ("10.0.0.0/24", "CA")])
    assert ref.country("10.0.0.1") == "CA"


def test_ipv4_and_ipv6_tables_are_apart() -> None:
    ref = IpReference([("0.0.0.0/0", "AA"), ("::/0", "BB"), ("2001:db8::/64", "CC")])
    assert ref.country("1.2.3.4") == "AA"
    assert ref.country("::1") == "BB"
    assert ref.country("2001:db8::ffff") == "CC"
    assert ref.country("2001:db8:0:1::") == "BB"
    assert ref.country("::ffff:1.2.3.4") == "AA"  # IPv4-mapped counts as IPv4
    assert ref.country("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == "BB"
    assert ref.country("255.255.255.255") == "AA"


def test_csv_files(tmp_path: Path) -> None:
    countries = tmp_path / "countries.csv"
    countries.write_text(
        "# exported from a vendor\n\nnetwork,geoname,country\n"
        "192.0.2.0/25,1,us\n2001:db8::/32,2,gb\n",
        encoding="utf-8",
    )
    networks = tmp_path / "networks.csv"
    networks.write_text("203.0.113.0/24,TOR\n198.51.100.7/32,vpn\n", encoding="utf-8")
    ref = IpReference.from_csv(countries, networks)
    ips = pa.array(["192.0.2.1", "192.0.2.200", "2001:db8::9", "203.0.113.5", "198.51.100.7"])
    assert ref.countries(ips).to_pylist() == ["US", None, "GB", None, None]
    assert ref.networks(ips).to_pylist() == [None, None, None, "tor", "vpn"]
    assert IpReference.from_csv(countries).networks(ips).to_pylist() == [None] * 5


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("network,country\n10.0.0.0/8,US\nnot-a-net,US\n", r"bad.csv: line 3: bad network"),
        ("network,label\n10.0.0.0/8,tor\n", r"bad.csv: line 1: header .* no 'country'"),
        ("10.0.0.0/8\n", r"bad.csv: line 1: expected network,country"),
        ("10.0.0.0/8,\n", r"bad.csv: line 1: no country"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        IpReference.from_csv(path)


def test_bad_rows_are_rejected() -> None:
    with pytest.raises(ValueError, match="row 2: bad network"):
        IpReference([("10.0.0.0/8", "US"), ("10.0.0.0/99", "US")])


def brute_force(rows: list[tuple[str, str]], ip: str) -> str | None:
    """The most specific listed network holding ``ip``; the later line among equals."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    best: tuple[int, str] | None = None
    for network, value in rows:
        net = ipaddress.ip_network(network, strict=False)
        if net.version == address.version and address in net:
            if best is None or net.prefixlen >= best[0]:
                best = (net.prefixlen, value.upper())
    return best[1] if best else None


@st.composite
def nets_and_ips(draw: st.DrawFn) -> tuple[list[tuple[str, str]], list[str]]:
    v6 = draw(st.booleans())
    base = int(ipaddress.ip_address("2001:db8::" if v6 else "10.0.0.0"))
    bits = 128 if v6 else 32
    space = 12  # addresses vary in the last 12 bits

    def address(offset: int) -> str:
        return str(ipaddress.ip_address(base + offset))

    rows = []
    for _ in range(draw(st.integers(0, 12))):
        prefix = draw(st.integers(bits - space, bits))
        at = draw(st.integers(0, (1 << space) - 1))
        rows.append((f"{address(at)}/{prefix}", draw(st.sampled_from(["us", "ca", "mx", "de"]))))
    ips = [address(o) for o in draw(st.lists(st.integers(0, (1 << space) - 1), max_size=30))]
    ips += draw(st.lists(st.sampled_from(["x", "10.0.0.256", "::g", "1.2.3.4"]), max_size=2))
    return rows, ips


@settings(max_examples=200, deadline=None)
@given(nets_and_ips())
def test_lookup_equals_brute_force(case: tuple[list[tuple[str, str]], list[str]]) -> None:
    rows, ips = case
    ref = IpReference(rows)
    got = ref.countries(pa.array(ips, pa.string())).to_pylist()
    assert got == [brute_force(rows, ip) for ip in ips]
    # Looking up again (now from the cache) gives the same answer.
    assert ref.countries(pa.array(ips, pa.string())).to_pylist() == got


def test_codes_feed_the_detectors() -> None:
    # The pipeline's path in miniature: reference names -> codes -> detectors.
    ref = IpReference.default()
    names, networks = ref.lookup(pa.array(["192.0.2.70", "192.0.2.1", "203.0.113.3"]))
    country_list = ["US", "GB"]
    ip_codes = [country_list.index(c) if c else -1 for c in names.to_pylist()]
    tx = tx_with(
        ip_country=ip_codes,
        expected_country=[0, 0, 0],
        anonymous_network=[-1 if n is None else 0 for n in networks.to_pylist()],
        decode={"country": country_list, "network": ["tor"]},
    )
    mismatch = IpCountryMismatch().process(IpCountryMismatch().new_state(), tx)
    anonymous = AnonymousNetwork().process(AnonymousNetwork().new_state(), tx)
    assert np.array_equal(mismatch.fired["ip_country_mismatch"], [True, False, False])
    assert np.array_equal(anonymous.fired["anonymous_network"], [False, False, True])
