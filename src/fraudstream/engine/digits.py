"""Digit-like bytes per value of an Arrow string column: the card-number prefilter's count.

A value can hold a card number only if it has 12 digits; a digit of another script is
non-ASCII in UTF-8, so counting ASCII digits and non-ASCII bytes gives an upper bound in one
compiled pass over the column's bytes (:mod:`fraudstream.io.card_columns` scrubs only the
values that reach 12). It lives in the core so that :func:`fraudstream.engine.pipeline.warm_up`
compiles it with the detector kernels.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pyarrow as pa

from fraudstream.cardnumbers import MIN_DIGITS

__all__ = ["digit_like_counts"]


@numba.njit(cache=True, nogil=True)
def _count_digit_like(offsets: np.ndarray[Any, Any], data: np.ndarray[Any, Any]) -> Any:
    counts = np.zeros(offsets.size - 1, np.int32)
    for i in range(offsets.size - 1):
        end = offsets[i + 1]
        if end - offsets[i] < MIN_DIGITS:
            continue  # too short to hold a card number: its count does not matter
        count = 0
        for j in range(offsets[i], end):
            byte = data[j]
            if byte >= 0x80 or (byte >= 48 and byte < 58):
                count += 1
        counts[i] = count
    return counts


def digit_like_counts(column: pa.Array) -> np.ndarray[Any, Any]:
    """Per value of a string column: how many of its bytes are ASCII digits or non-ASCII
    (any digit of another script is non-ASCII in UTF-8): at least its count of digits.
    Values shorter than a card number count 0 (one pass, compiled).

    >>> digit_like_counts(pa.array(["4111-1111-1111-1111", "12", None, "a1é2b3c4d5e6f7"]))
    array([16,  0,  0,  9], dtype=int32)
    """
    offset_type = np.int64 if pa.types.is_large_string(column.type) else np.int32
    _validity, offsets_buffer, data_buffer = column.buffers()[:3]
    offsets = np.frombuffer(offsets_buffer, offset_type)[
        column.offset : column.offset + len(column) + 1
    ]
    if data_buffer is None or len(offsets) < 2:
        return np.zeros(len(column), np.int32)
    data = np.frombuffer(data_buffer, np.uint8)
    counts: np.ndarray[Any, Any] = _count_digit_like(offsets, data)
    return counts
