"""Dense slots for string keys (cards, users, zip codes, merchants, devices).

Detector state lives in numpy arrays indexed by slot, so the per-record loop never touches a
Python dict. Mapping a column of keys to slots runs over the column's distinct values only
(Arrow's dictionary encoding), which keeps the cost per record in C.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

MISSING = -1


class KeySpace:
    """Assigns each distinct key a stable slot, in order of first appearance.

    >>> ks = KeySpace()
    >>> ks.slots(pa.array(["b", "a", "b", None])).tolist()
    [0, 1, 0, -1]
    >>> ks.keys
    ['b', 'a']
    """

    def __init__(self, keys: list[str] | None = None) -> None:
        self.keys: list[str] = list(keys or [])
        self.index: dict[str, int] = {key: slot for slot, key in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def slot(self, key: str) -> int:
        """The slot of one key, assigned if new."""
        found = self.index.get(key)
        if found is None:
            found = self.index[key] = len(self.keys)
            self.keys.append(key)
        return found

    def find(self, key: str) -> int:
        """The slot of a known key, or MISSING."""
        return self.index.get(key, MISSING)

    def slots(self, column: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int32]:
        """Slots for a column of keys; nulls map to MISSING."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if len(column) == 0:
            return np.empty(0, dtype=np.int32)
        encoded: Any = column.dictionary_encode()
        uniques = encoded.dictionary.to_pylist()
        index = self.index
        lookup = np.empty(len(uniques) + 1, dtype=np.int32)
        for position, key in enumerate(uniques):
            found = index.get(key)
            if found is None:
                found = index[key] = len(self.keys)
                self.keys.append(key)
            lookup[position] = found
        lookup[-1] = MISSING
        indices = encoded.indices
        if indices.null_count:
            indices = indices.fill_null(len(uniques))
        slots: npt.NDArray[np.int32] = lookup[indices.to_numpy()]
        return slots
