"""Keyed state as plain data: one numpy array per state field, indexed by key slot.

A detector declares its fields (name -> dtype and the value a fresh key starts with); the
table grows by doubling as keys appear. Everything is numbers in arrays (or, for the few
text fields, an object array), so a checkpoint is just the arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

FieldSpec = tuple[Any, Any]  # (numpy dtype, initial value) or ((dtype, width), initial value)


class StateTable:
    """The state fields of one detector for every key of its key space.

    >>> t = StateTable({"last_ms": (np.int64, -1), "ring": ((np.int64, 3), 0)})
    >>> t.ensure(5)
    >>> t["last_ms"][:5].tolist(), t["ring"].shape[1]
    ([-1, -1, -1, -1, -1], 3)
    """

    def __init__(self, spec: Mapping[str, FieldSpec], capacity: int = 1024) -> None:
        self.spec = dict(spec)
        self.capacity = 0
        self.arrays: dict[str, np.ndarray[Any, Any]] = {}
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        for name, (dtype, initial) in self.spec.items():
            width: tuple[int, ...] = ()
            if isinstance(dtype, tuple):
                dtype, columns = dtype
                width = (columns,)
            fresh = np.full((capacity, *width), initial, dtype=dtype)
            old = self.arrays.get(name)
            if old is not None:
                fresh[: len(old)] = old
            self.arrays[name] = fresh
        self.capacity = capacity

    def ensure(self, keys: int) -> None:
        """Makes room for ``keys`` slots."""
        if keys > self.capacity:
            capacity = max(self.capacity, 1024)
            while capacity < keys:
                capacity *= 2
            self._allocate(capacity)

    def __getitem__(self, name: str) -> np.ndarray[Any, Any]:
        return self.arrays[name]

    def reset(self, slots: np.ndarray[Any, Any]) -> None:
        """Returns the given slots to a fresh key's values."""
        for name, (_, initial) in self.spec.items():
            self.arrays[name][slots] = initial

    def snapshot(self, used: int) -> dict[str, np.ndarray[Any, Any]]:
        """A copy of the first ``used`` slots of every field."""
        return {name: array[:used].copy() for name, array in self.arrays.items()}

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        """Loads a snapshot taken by :meth:`snapshot`; slots past it get fresh values."""
        used = max((len(a) for a in arrays.values()), default=0)
        self.ensure(used)
        for name, (_, initial) in self.spec.items():
            self.arrays[name][used:] = initial
        for name, array in arrays.items():
            self.arrays[name][: len(array)] = array

    def retain(self, slots: np.ndarray[Any, Any], used: int) -> None:
        """Keeps only the rows at ``slots`` (of the first ``used``), moved to 0.. in order."""
        for name, (_, initial) in self.spec.items():
            array = self.arrays[name]
            kept = array[slots].copy()
            array[: len(kept)] = kept
            array[len(kept) : max(used, len(kept))] = initial
