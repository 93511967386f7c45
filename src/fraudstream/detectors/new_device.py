"""new_device: a card used from a device it has not used recently.

Seed 002 (the demo's list: "device fingerprinting"). Per card the most recently used distinct
devices (``tx.device`` codes, least recently used evicted first; ``DEVICE_WIDTH`` = 16 kept) and
a count of its transactions that had a device. A transaction fires when it has a device, the card
already has ``count >= min_history`` such transactions, and the device is not among the card's
``remember`` (at most 16) most recent devices. Then the device becomes the most recent one,
fired or not. A transaction without a device (code -1) neither fires nor changes the state.

Feature: ``known_devices``, how many devices the card remembered before this transaction (at
most ``remember``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from fraudstream.detectors.base import (
    I32,
    I64,
    Bools,
    Detector,
    DetectorInput,
    Findings,
)
from fraudstream.engine.state import StateTable

DEVICE_WIDTH = 16  # distinct devices kept per card


@dataclass(frozen=True, slots=True)
class NewDeviceThresholds:
    """History in transactions with a device; ``remember`` in devices (at most 16)."""

    min_history: int = 3
    remember: int = 8

    def check(self) -> None:
        """Rejects thresholds that cannot mean anything or exceed the kept devices."""
        if not self.min_history >= 0:
            raise ValueError(f"new_device: min_history must be >= 0, got {self.min_history}")
        if not 1 <= self.remember <= DEVICE_WIDTH:
            raise ValueError(
                f"new_device: remember must be between 1 and {DEVICE_WIDTH} "
                f"(the devices kept per card), got {self.remember}"
            )


@numba.njit(cache=True, nogil=True)
def _kernel(
    card: I32,
    device: I32,
    devices: I32,
    count: I64,
    min_history: int,
    remember: int,
    fired: Bools,
    known_out: I32,
) -> None:
    kept = devices.shape[1]
    for i in range(card.size):
        s = card[i]
        d = device[i]
        known = 0
        found = False
        for k in range(remember):
            v = devices[s, k]
            if v == -1:
                break
            known += 1
            if v == d:
                found = True
        known_out[i] = known
        if d == -1:
            continue
        fired[i] = count[s] >= min_history and not found
        # Move d to the front (most recent); a new one takes the last slot's place.
        j = kept - 1
        for k in range(kept):
            if devices[s, k] == d or devices[s, k] == -1:
                j = k
                break
        for k in range(j, 0, -1):
            devices[s, k] = devices[s, k - 1]
        devices[s, 0] = d
        count[s] += 1


class NewDevice(Detector[NewDeviceThresholds]):
    """A device not among the card's 8 most recent, once it has >= 3 transactions with one.

    >>> from fraudstream.testing import detector_input
    >>> d = NewDevice()
    >>> tx = detector_input(card=[0] * 6, amount=[5.0] * 6, time_ms=[0, 1, 2, 3, 4, 5],
    ...                     device=[4, 4, -1, 4, 4, 9])
    >>> out = d.process(d.new_state(), tx)
    >>> out.fired["new_device"].tolist()
    [False, False, False, False, False, True]
    >>> out.features["known_devices"].tolist()
    [0, 1, 1, 1, 1, 1]
    """

    name = "new_device"
    rules = ("new_device",)
    key = "card"
    seed = "002 Confluent Cloud Flink demo (device fingerprinting)"
    thresholds_type = NewDeviceThresholds
    state_fields = {
        "devices": ((np.int32, DEVICE_WIDTH), -1),
        "count": (np.int64, 0),
    }
    coded_fields = {"devices": "device"}
    rule_thresholds = {"new_device": ("min_history", "remember")}

    def process(self, state: StateTable, tx: DetectorInput) -> Findings:
        """Checks each device against its card's recent ones, then makes it the most recent."""
        n = len(tx)
        fired = np.zeros(n, dtype=np.bool_)
        known_out = np.zeros(n, dtype=np.int32)
        t = self.thresholds
        _kernel(
            tx.card, tx.device, state["devices"], state["count"],
            t.min_history, t.remember, fired, known_out,
        )  # fmt: skip
        return Findings({"new_device": fired}, {"known_devices": known_out})

    def message(self, rule: str, values: Mapping[str, Any]) -> str:
        """E.g. "device dev-7f3a not among the card's 3 known devices (history >= 3 with a
        device)"."""
        t = self.thresholds
        device = values.get("device_id")
        shown = f"device {device}" if device else "a device"
        return (
            f"{shown} not among the card's {int(values['known_devices'])} known devices "
            f"(the last {t.remember} remembered, history >= {t.min_history} with a device)"
        )

    def messages(self, rule: str, columns: Mapping[str, list[Any]]) -> list[str]:
        """:meth:`message` for many rows, written in one pass (it fires often)."""
        t = self.thresholds
        tail = f" known devices (the last {t.remember} remembered, history >= {t.min_history} "
        tail += "with a device)"
        devices = columns.get("device_id") or [None] * len(columns["known_devices"])
        return [
            f"{f'device {device}' if device else 'a device'} not among the card's {int(known)}"
            + tail
            for device, known in zip(devices, columns["known_devices"], strict=True)
        ]


def reference_step(
    state: dict[str, Any] | None, device: int, t: NewDeviceThresholds
) -> tuple[dict[str, Any] | None, bool]:
    """One transaction, written plainly: the oracle the kernel is tested against.

    The state holds the card's ``devices``, most recent first (at most 16), and the ``count``
    of its transactions with a device.
    """
    if device == -1:
        return state, False
    devices: list[int] = list(state["devices"]) if state is not None else []
    count: int = state["count"] if state is not None else 0
    fired = count >= t.min_history and device not in devices[: t.remember]
    devices = [device, *(d for d in devices if d != device)][:DEVICE_WIDTH]
    return {"devices": devices, "count": count + 1}, fired
