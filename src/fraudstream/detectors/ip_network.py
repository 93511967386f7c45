"""ip_country_mismatch and anonymous_network: what the IP reference lists say about an address.

Seed 002 (the demo's list: "IPs in a reference list"). Both rules read codes the pipeline
computes with :class:`fraudstream.reference.IpReference` (the country list and the anonymous
network list) before the detectors run, so they share that reference data and keep no state:

- ``ip_country_mismatch`` (key: user): fires when the IP's country (``tx.ip_country``) and the
  country the transaction is expected in (``tx.expected_country``: the transaction's own
  ``country`` field, else the user profile's ``home_country``) are both known and differ.
  An IP in no listed network, an invalid or missing IP, or no expected country never fires.
- ``anonymous_network`` (key: card): fires when the IP is in a listed anonymous network
  (``tx.anonymous_network``, the code of the network's label: tor, vpn, proxy, hosting, ...),
  restricted to the threshold ``labels`` when that is not empty.

Codes are -1 when missing and are decoded with ``tx.decode["country"]`` and
``tx.decode["network"]``. Features (names, never the internal codes): ``ip_country``,
``expected_country`` and ``network`` (null where the code is missing or unknown).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from fraudstream.detectors.base import I32, Detector, DetectorInput, Findings
from fraudstream.engine.batch import FEW_ROWS
from fraudstream.engine.state import StateTable


@lru_cache(maxsize=1024)
def _one_name(name: str | None) -> pa.Array:
    """A one-row string column (Arrow arrays are immutable: one per name serves every
    one-record batch; there are a few hundred countries and network labels)."""
    return pa.array([name], pa.string())


def _names(codes: I32, names: Sequence[str] | None) -> pa.Array:
    """The decoded name of each code; null for -1 or a code the table lacks."""
    if not names:
        return pa.nulls(len(codes), pa.string())
    count = len(names)
    if len(codes) == 1:  # an authorization's batch
        code = int(codes[0])
        return _one_name(names[code] if 0 <= code < count else None)
    if len(codes) <= FEW_ROWS:  # (cheaper than building a table)
        return pa.array([names[c] if 0 <= c < count else None for c in codes.tolist()], pa.string())
    table = pa.array([*names, None], pa.string())
    known = (codes >= 0) & (codes < len(names))
    return table.take(pa.array(np.where(known, codes, len(names)).astype(np.int32)))


def _listed(names: Sequence[str] | pa.Array | None) -> Sequence[str] | None:
    """Decoded names as a list (an Arrow array of them is converted)."""
    return names.to_pylist() if isinstance(names, pa.Array) else names


def _value(values: Mapping[str, Any], name: str) -> Any:
    """A value as plain Python (Arrow scalars included); None when absent."""
    value = values.get(name)
    return value.as_py() if isinstance(value, pa.Scalar) else value


def _country(values: Mapping[str, Any], name: str) -> str:
    """A country's name for a message, else its code."""
    shown = _value(values, name)
    return str(shown) if shown is not None else "an unknown country"


@dataclass(frozen=True, slots=True)
class IpCountryMismatchThresholds:
    """No thresholds: a known IP country either matches the expected one or it does not."""

    def check(self) -> None:
        """Nothing to check."""


class IpCountryMismatch(Detector[IpCountryMismatchThresholds]):
    """The IP's country differs from the transaction's (or the user's home) country.

    >>> from fraudstream.testing import detector_input
    >>> d = IpCountryMismatch()
    >>> tx = detector_input(time_ms=[0, 1, 2, 3], amount=[5.0] * 4,
    ...                     ip_country=[0, 1, -1, 1], expected_country=[0, 0, 0, -1])
    >>> tx.decode = {"country": ["US", "GB"]}
    >>> out = d.process(d.new_state(), tx)
    >>> out.fired["ip_country_mismatch"].tolist()
    [False, True, False, False]
    >>> d.message("ip_country_mismatch", {k: v[1] for k, v in out.features.items()})
    'IP in GB, expected US (the transaction or home country)'
    """

    name = "ip_country_mismatch"
    rules = ("ip_country_mismatch",)
    key = "user"
    seed = "002 Confluent Cloud Flink demo (IP reference lists)"
    thresholds_type = IpCountryMismatchThresholds
    state_fields = {}
    rule_thresholds = {"ip_country_mismatch": ()}

    def process(self, state: StateTable, tx: DetectorInput) -> Findings:
        """Compares the two country codes of each transaction (no state)."""
        ip, expected = tx.ip_country, tx.expected_country
        fired = (ip != -1) & (expected != -1) & (ip != expected)
        countries = _listed(tx.decode.get("country"))
        return Findings(
            {"ip_country_mismatch": fired},
            {
                "ip_country": _names(ip, countries),
                "expected_country": _names(expected, countries),
            },
        )

    def message(self, rule: str, values: Mapping[str, Any]) -> str:
        """E.g. "IP 81.2.69.160 in GB, expected US (the transaction or home country)"."""
        ip = _country(values, "ip_country")
        expected = _country(values, "expected_country")
        return (
            f"IP{_address(values)} in {ip}, expected {expected} (the transaction or home country)"
        )


@dataclass(frozen=True, slots=True)
class AnonymousNetworkThresholds:
    """``labels``: the network labels that fire (lower-case); empty means every listed one."""

    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A rules file gives a list; keep an immutable, normalized tuple.
        if isinstance(self.labels, str):
            raise ValueError("anonymous_network: labels must be a list of labels, not a string")
        object.__setattr__(self, "labels", tuple(str(x).strip().lower() for x in self.labels))

    def check(self) -> None:
        """Rejects empty labels."""
        if any(not label for label in self.labels):
            raise ValueError("anonymous_network: labels must not be empty strings")


class AnonymousNetwork(Detector[AnonymousNetworkThresholds]):
    """The IP is in a listed anonymous network (Tor exit, VPN, proxy, hosting).

    >>> from fraudstream.testing import detector_input
    >>> d = AnonymousNetwork()
    >>> tx = detector_input(time_ms=[0, 1, 2], amount=[5.0] * 3, anonymous_network=[-1, 0, 1])
    >>> tx.decode = {"network": ["tor", "hosting"]}
    >>> d.process(d.new_state(), tx).fired["anonymous_network"].tolist()
    [False, True, True]
    >>> AnonymousNetwork(labels=["tor"]).process(d.new_state(), tx).fired[
    ...     "anonymous_network"].tolist()
    [False, True, False]
    """

    name = "anonymous_network"
    rules = ("anonymous_network",)
    key = "card"
    seed = "002 Confluent Cloud Flink demo (IP reference lists)"
    thresholds_type = AnonymousNetworkThresholds
    state_fields = {}
    rule_thresholds = {"anonymous_network": ("labels",)}

    def process(self, state: StateTable, tx: DetectorInput) -> Findings:
        """Flags each transaction whose IP is in a listed network (no state)."""
        codes = tx.anonymous_network
        labels = _listed(tx.decode.get("network")) or []
        fired = codes != -1
        if self.thresholds.labels:
            wanted = set(self.thresholds.labels)
            allowed = np.array([label.lower() in wanted for label in labels] + [False])
            known = (codes >= 0) & (codes < len(labels))
            fired = allowed[np.where(known, codes, len(labels))]
        return Findings(
            {"anonymous_network": fired},
            {"network": _names(codes, labels)},
        )

    def message(self, rule: str, values: Mapping[str, Any]) -> str:
        """E.g. "IP 185.220.101.4 in a listed tor network"."""
        label = _value(values, "network")
        if label is None:
            return f"IP{_address(values)} in a listed anonymous network"
        return f"IP{_address(values)} in a listed {label} network"


def reference_step(
    state: dict[str, Any] | None,
    ip_country: str | None,
    expected_country: str | None,
    network_label: str | None,
    t: AnonymousNetworkThresholds,
) -> tuple[dict[str, Any] | None, dict[str, bool]]:
    """One transaction, written plainly with names instead of codes (None: missing).

    Returns no state (both rules are stateless) and whether each rule fired.
    """
    mismatch = ip_country is not None and expected_country is not None
    mismatch = mismatch and ip_country != expected_country
    anonymous = network_label is not None and (not t.labels or network_label in t.labels)
    return None, {"ip_country_mismatch": mismatch, "anonymous_network": anonymous}


def _address(values: Mapping[str, Any]) -> str:
    """`` 185.220.101.4``: the transaction's IP after a space, or nothing when it has none."""
    ip = values.get("ip")
    return f" {ip}" if ip else ""
