"""User profiles (seed 002's ``users-config``, extended with per-profile risk thresholds).

Profiles live in arrays indexed by the same user slots as the per-user detector state, so a
batch gathers each transaction's max speed, thresholds and names without a Python loop. An
upsert takes effect for the next transaction, like a compacted topic.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.config import ConfigError, load_rows
from fraudstream.engine.keys import KeySpace
from fraudstream.engine.state import StateTable

PROFILE_FIELDS = (
    "user_id",
    "first_name",
    "last_name",
    "max_speed_kmh",
    "home_lat",
    "home_lon",
    "home_country",
    "review_threshold",
    "decline_threshold",
)
_NUMBERS = ("max_speed_kmh", "home_lat", "home_lon", "review_threshold", "decline_threshold")
_TEXTS = ("first_name", "last_name", "home_country")


def normalise_profile(raw: dict[str, Any], where: str = "profile") -> dict[str, Any]:
    """A profile with numbers as floats (NaN when absent); raises ConfigError naming the field.

    >>> normalise_profile({"user_id": "user_1", "max_speed_kmh": "10"})["max_speed_kmh"]
    10.0
    """
    user_id = raw.get("user_id")
    if user_id is None or str(user_id) == "":
        raise ConfigError(f"{where}: user_id is missing")
    out: dict[str, Any] = {"user_id": str(user_id)}
    for name in _NUMBERS:
        value = raw.get(name)
        if value is None or value == "":
            out[name] = math.nan
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where} {user_id}: {name} must be a number, got {value!r}"
            ) from None
        if not math.isfinite(number) or number < -180:
            raise ConfigError(f"{where} {user_id}: {name} must be a finite number, got {value!r}")
        out[name] = number
    for name in ("review_threshold", "decline_threshold"):
        if not math.isnan(out[name]) and not 0 <= out[name] <= 1:
            raise ConfigError(f"{where} {user_id}: {name} must be within [0, 1]")
    if not math.isnan(out["max_speed_kmh"]) and out["max_speed_kmh"] < 0:
        raise ConfigError(f"{where} {user_id}: max_speed_kmh must be >= 0")
    for name in _TEXTS:
        value = raw.get(name)
        out[name] = None if value is None or value == "" else str(value)
    return out


class ProfileTable:
    """Profiles by user slot; unknown users have NaN numbers and no names."""

    def __init__(self, users: KeySpace) -> None:
        self.users = users
        self.table = StateTable(
            {
                "max_speed_kmh": (np.float64, np.nan),
                "home_lat": (np.float64, np.nan),
                "home_lon": (np.float64, np.nan),
                "review_threshold": (np.float64, np.nan),
                "decline_threshold": (np.float64, np.nan),
                "home_country": (np.object_, None),
                "first_name": (np.object_, None),
                "last_name": (np.object_, None),
            }
        )
        self.profiles: dict[str, dict[str, Any]] = {}

    def upsert(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Creates or replaces one profile; returns it normalised."""
        profile = normalise_profile(raw)
        slot = self.users.slot(profile["user_id"])
        self.table.ensure(len(self.users))
        for name in PROFILE_FIELDS[1:]:
            self.table[name][slot] = profile[name]
        self.profiles[profile["user_id"]] = profile
        return profile

    def load(self, path: Path) -> int:
        """Upserts every profile of a YAML/JSON/CSV file; returns how many."""
        rows = load_rows(path, "profiles")
        for position, row in enumerate(rows, 1):
            try:
                self.upsert(row)
            except ConfigError as exc:
                raise ConfigError(f"{path}: entry {position}: {exc}") from None
        return len(rows)

    def get(self, user_id: str) -> dict[str, Any] | None:
        """One profile by user id."""
        return self.profiles.get(user_id)
