"""geo_velocity: impossible travel between a user's consecutive transactions.

Seed 002 (Confluent Cloud Flink demo). Per user, each transaction with coordinates is paired
with the user's previous one (in processing order, which is event-time order); distance is the
haversine distance with R = 6371 km and speed_kmh = distance_km / (elapsed ms / 3,600,000).
It fires when speed_kmh > the user's max_speed_kmh (from the profile, else the configured
default). A user's first transaction has no pair and does not fire. Zero elapsed time with a
nonzero distance is an infinite speed; zero distance is speed 0. A transaction without
coordinates is not paired and does not become the previous one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.detectors.base import (
    F64,
    I32,
    I64,
    NONE_MS,
    Bools,
    Detector,
    DetectorInput,
    Findings,
    filled,
    fmt_seconds,
)
from fraudstream.engine.keys import string_buffers
from fraudstream.engine.state import StateTable
from fraudstream.schema import MAX_ID_LENGTH

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True, slots=True)
class GeoVelocityThresholds:
    """``default_max_speed_kmh`` applies to users without a profile (900: an airliner)."""

    default_max_speed_kmh: float = 900.0

    def check(self) -> None:
        """Rejects a negative speed."""
        if not self.default_max_speed_kmh >= 0:
            raise ValueError("geo_velocity: default_max_speed_kmh must be >= 0")


@numba.njit(cache=True, nogil=True, fastmath=False)
def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km, R = 6371 km."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, a)))


@numba.njit(cache=True, nogil=True)
def _kernel(
    user: I32,
    time_ms: I64,
    lat: F64,
    lon: F64,
    profile_max_speed: F64,
    default_max_speed: float,
    last_ms: I64,
    last_lat: F64,
    last_lon: F64,
    last_id: npt.NDArray[np.uint8],
    last_id_length: I32,
    id_offsets: I64,
    id_data: npt.NDArray[np.uint8],
    fired: Bools,
    paired: npt.NDArray[np.uint8],
    prev_id_offsets: npt.NDArray[np.int32],
    prev_id_data: npt.NDArray[np.uint8],
    prev_ms: I64,
    values: npt.NDArray[np.float64],
) -> None:
    # The previous transaction id is copied from fixed-width state into an Arrow string
    # buffer (prev_id_*), so no Python string is made per record; ``paired`` is the validity
    # bitmap of the pair's columns. ``values`` rows: previous lat, previous lon, distance,
    # speed, the max speed shown (where there is a pair or a profile's).
    written = 0
    for i in range(user.size):
        prev_id_offsets[i] = written
        max_speed = profile_max_speed[i]
        if not math.isnan(max_speed):
            values[4, i] = max_speed
        else:
            max_speed = default_max_speed
        if math.isnan(lat[i]):
            continue
        s = user[i]
        if last_ms[s] != NONE_MS:
            length = last_id_length[s]
            prev_id_data[written : written + length] = last_id[s, :length]
            written += length
            paired[i >> 3] |= np.uint8(1 << (i & 7))
            prev_ms[i] = last_ms[s]
            values[0, i] = last_lat[s]
            values[1, i] = last_lon[s]
            d = haversine_km(last_lat[s], last_lon[s], lat[i], lon[i])
            elapsed = abs(time_ms[i] - last_ms[s])
            if elapsed == 0:
                v = math.inf if d > 0 else 0.0
            else:
                v = d / (elapsed / 3_600_000.0)
            values[2, i] = d
            values[3, i] = v
            values[4, i] = max_speed
            fired[i] = v > max_speed
        last_ms[s] = time_ms[i]
        last_lat[s] = lat[i]
        last_lon[s] = lon[i]
        begin = id_offsets[i]
        length = id_offsets[i + 1] - begin
        last_id[s, :length] = id_data[begin : begin + length]
        last_id_length[s] = length
    prev_id_offsets[user.size] = written


class GeoVelocity(Detector[GeoVelocityThresholds]):
    """Seed 002's impossible-travel check against the user's max speed.

    >>> from fraudstream.testing import detector_input
    >>> d = GeoVelocity()
    >>> tx = detector_input(user=[0, 0], time_ms=[0, 3_600_000], amount=[5.0, 5.0],
    ...                     lat=[52.52, 48.8566], lon=[13.405, 2.3522], max_speed_kmh=[10, 10])
    >>> out = d.process(d.new_state(), tx)
    >>> out.fired["geo_velocity"].tolist(), round(out.features["speed_kmh"][1])
    ([False, True], 877)
    """

    name = "geo_velocity"
    rules = ("geo_velocity",)
    key = "user"
    seed = "002 Confluent Cloud Flink demo"
    thresholds_type = GeoVelocityThresholds
    state_fields = {
        "last_ms": (np.int64, NONE_MS),
        "last_lat": (np.float64, np.nan),
        "last_lon": (np.float64, np.nan),
        "last_transaction_id": ((np.uint8, MAX_ID_LENGTH), 0),
        "last_transaction_id_length": (np.int32, 0),
    }
    rule_thresholds = {"geo_velocity": ("default_max_speed_kmh",)}

    def process(self, state: StateTable, tx: DetectorInput) -> Findings:
        """Pairs each located transaction with the user's previous one."""
        n = len(tx)
        # Few allocations: a one-record batch (an authorization) pays per NumPy/Arrow call.
        fired = np.zeros(n, dtype=np.bool_)
        paired = np.zeros((n + 7) // 8, dtype=np.uint8)
        prev_ms = filled(n, NONE_MS, np.int64)
        values = filled((5, n), np.nan, np.float64)
        id_offsets, id_data, _ = string_buffers(tx.transaction_id)
        prev_id_offsets = np.zeros(n + 1, dtype=np.int32)
        prev_id_data = np.empty(max(1, n * MAX_ID_LENGTH), dtype=np.uint8)
        _kernel(
            tx.user, tx.time_ms, tx.lat, tx.lon,
            tx.max_speed_kmh, self.thresholds.default_max_speed_kmh,
            state["last_ms"], state["last_lat"], state["last_lon"],
            state["last_transaction_id"], state["last_transaction_id_length"],
            id_offsets, id_data,
            fired, paired, prev_id_offsets, prev_id_data, prev_ms, values,
        )  # fmt: skip
        validity = pa.py_buffer(paired)
        previous_id = pa.Array.from_buffers(
            pa.string(), n, [validity, pa.py_buffer(prev_id_offsets), pa.py_buffer(prev_id_data)]
        )
        previous_ts = pa.Array.from_buffers(  # epoch ms, null: none (pa.array costs ~10 us)
            pa.int64(), n, [validity, pa.py_buffer(prev_ms)]
        )
        return Findings(
            {"geo_velocity": fired},
            {
                "previous_transaction_id": previous_id,
                "previous_timestamp": previous_ts,
                "previous_lat": values[0],
                "previous_lon": values[1],
                "distance_km": values[2],
                "speed_kmh": values[3],
                "max_speed_kmh": values[4],
                "first_name": tx.first_name,
                "last_name": tx.last_name,
            },
        )

    def message(self, rule: str, values: Mapping[str, Any]) -> str:
        """E.g. "speed 1,204 km/h > max 100 km/h since tx-17 at 10:02:11 (412.3 km)"."""
        at = datetime.fromtimestamp(values["previous_timestamp"] / 1000, tz=UTC)
        speed = values["speed_kmh"]
        shown = "infinite" if math.isinf(speed) else f"{speed:,.0f} km/h"
        return (
            f"speed {shown} > max {values['max_speed_kmh']:,.0f} km/h since "
            f"{values['previous_transaction_id']} at {at:%H:%M:%S} "
            f"({values['distance_km']:,.1f} km in {_elapsed(values)})"
        )

    def messages(self, rule: str, columns: Mapping[str, list[Any]]) -> list[str]:
        """:meth:`message` for many rows in one pass (no dict per row)."""
        out = []
        for speed, limit, previous_id, previous_ms, distance, time_ms in zip(
            columns["speed_kmh"], columns["max_speed_kmh"], columns["previous_transaction_id"],
            columns["previous_timestamp"], columns["distance_km"], columns["time_ms"],
            strict=True,
        ):  # fmt: skip
            at = datetime.fromtimestamp(previous_ms / 1000, tz=UTC)
            shown = "infinite" if math.isinf(speed) else f"{speed:,.0f} km/h"
            elapsed = fmt_seconds(abs(time_ms - previous_ms) / 1000)
            out.append(
                f"speed {shown} > max {limit:,.0f} km/h since {previous_id} at {at:%H:%M:%S} "
                f"({distance:,.1f} km in {elapsed})"
            )
        return out


def _elapsed(values: Mapping[str, Any]) -> str:
    seconds = abs(values["time_ms"] - values["previous_timestamp"]) / 1000
    return fmt_seconds(seconds)


def reference_step(
    state: dict[str, Any] | None,
    time_ms: int,
    lat: float,
    lon: float,
    max_speed_kmh: float,
) -> tuple[dict[str, Any] | None, bool, float]:
    """One transaction, plainly: returns (state, fired, speed_kmh or NaN)."""
    if math.isnan(lat):
        return state, False, math.nan
    fired, speed = False, math.nan
    if state is not None:
        d = haversine_km(state["lat"], state["lon"], lat, lon)
        elapsed = abs(time_ms - state["time_ms"])
        speed = (math.inf if d > 0 else 0.0) if elapsed == 0 else d / (elapsed / 3_600_000)
        fired = speed > max_speed_kmh
    return {"time_ms": time_ms, "lat": lat, "lon": lon}, fired, speed
