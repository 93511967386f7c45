"""The standard detector library: one module per fraud pattern, registered by rule id."""

from __future__ import annotations

from typing import Any

from fraudstream.detectors.base import Detector, DetectorInput, Findings
from fraudstream.detectors.card_history import CardHistory
from fraudstream.detectors.card_testing import CardTesting
from fraudstream.detectors.geo_velocity import GeoVelocity
from fraudstream.detectors.ip_network import AnonymousNetwork, IpCountryMismatch
from fraudstream.detectors.new_device import NewDevice
from fraudstream.detectors.small_then_large import SmallThenLarge
from fraudstream.detectors.spend_deviation import SpendDeviation
from fraudstream.detectors.unusual_hour import UnusualHour
from fraudstream.detectors.velocity import Velocity

FAMILIES: tuple[type[Detector[Any]], ...] = (
    SmallThenLarge,
    GeoVelocity,
    CardHistory,
    Velocity,
    CardTesting,
    SpendDeviation,
    UnusualHour,
    NewDevice,
    IpCountryMismatch,
    AnonymousNetwork,
)
RULE_FAMILY: dict[str, type[Detector[Any]]] = {
    rule: family for family in FAMILIES for rule in family.rules
}
STANDARD_RULES: tuple[str, ...] = tuple(RULE_FAMILY)

__all__ = [
    "FAMILIES",
    "RULE_FAMILY",
    "STANDARD_RULES",
    "AnonymousNetwork",
    "CardHistory",
    "CardTesting",
    "Detector",
    "DetectorInput",
    "Findings",
    "GeoVelocity",
    "IpCountryMismatch",
    "NewDevice",
    "SmallThenLarge",
    "SpendDeviation",
    "UnusualHour",
    "Velocity",
]
