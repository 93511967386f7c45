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
import pyarrow as pa

from fraudstream.config import ConfigError, load_rows
from fraudstream.engine.batch import FEW_ROWS
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
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            out[name] = math.nan  # absent (NaN too: a normalised profile, a Parquet null)
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
    """Profiles by user slot; unknown users have NaN numbers and no names.

    ``countries`` is the code space of country names (shared with the pipeline, so a home
    country and a transaction's country compare as integers); ``profile_index`` points each
    user slot at its row in ``first_names`` / ``last_names`` (-1: no profile).
    """

    def __init__(self, users: KeySpace | None = None, countries: KeySpace | None = None) -> None:
        self.users = users if users is not None else KeySpace()
        self.countries = countries if countries is not None else KeySpace()
        self.table = StateTable(
            {
                "max_speed_kmh": (np.float64, np.nan),
                "home_lat": (np.float64, np.nan),
                "home_lon": (np.float64, np.nan),
                "review_threshold": (np.float64, np.nan),
                "decline_threshold": (np.float64, np.nan),
                "home_country_code": (np.int32, -1),
                "profile_index": (np.int32, -1),
            }
        )
        self.profiles: dict[str, dict[str, Any]] = {}
        self.first_names: list[str | None] = []
        self.last_names: list[str | None] = []
        self._edits = 0  # upserts so far: the Arrow copy of the names below is of one count
        self._name_columns: tuple[Any, ...] = ()

    def upsert(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Creates or replaces one profile; returns it normalised."""
        profile = normalise_profile(raw)
        slot = self.users.slot(profile["user_id"])
        self.table.ensure(len(self.users))
        for name in _NUMBERS:
            self.table[name][slot] = profile[name]
        home = profile["home_country"]
        self.table["home_country_code"][slot] = self.countries.slot(home) if home else -1
        index = int(self.table["profile_index"][slot])
        if index < 0:
            index = len(self.first_names)
            self.first_names.append(None)
            self.last_names.append(None)
            self.table["profile_index"][slot] = index
        self.first_names[index] = profile["first_name"]
        self.last_names[index] = profile["last_name"]
        self._edits += 1
        self.profiles[profile["user_id"]] = profile
        return profile

    def names(self, user_slots: np.ndarray[Any, Any]) -> tuple[pa.Array, pa.Array]:
        """First and last names for a column of user slots (null without a profile)."""
        self.table.ensure(len(self.users))
        index = self.table["profile_index"][user_slots]
        if not self.first_names or not (index >= 0).any():
            nulls = pa.nulls(len(user_slots), pa.string())
            return nulls, nulls
        if len(index) <= FEW_ROWS:  # an authorization's batch: its own names only
            rows = index.tolist()
            firsts, lasts = self.first_names, self.last_names
            return (
                pa.array([firsts[i] if i >= 0 else None for i in rows], pa.string()),
                pa.array([lasts[i] if i >= 0 else None for i in rows], pa.string()),
            )
        indices = pa.array(index, mask=index < 0)
        first, last = self._names_as_arrow()
        return first.take(indices), last.take(indices)

    def _names_as_arrow(self) -> tuple[pa.Array, pa.Array]:
        """Every first and last name as Arrow columns, made again only after a change (not
        per batch: that cost as much as the profiles held)."""
        made = self._name_columns
        if made and made[0] is self.first_names and made[1] is self.last_names:
            if made[2] == self._edits:
                return made[3], made[4]
        first = pa.array(self.first_names, pa.string())
        last = pa.array(self.last_names, pa.string())
        self._name_columns = (self.first_names, self.last_names, self._edits, first, last)
        return first, last

    def load(self, path: Path) -> int:
        """Upserts every profile of a YAML/JSON/CSV/Parquet file; returns how many."""
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
