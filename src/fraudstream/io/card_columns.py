"""Card numbers in Arrow columns (the decoder's fast path), as :mod:`fraudstream.cardnumbers`
finds them in text.

A vectorised count of digit-like bytes per value picks the few values that could hold a card
number (12 digits at least); Arrow's regex engine narrows them down, and only those are
looked at in Python, once per distinct value. A column of ids without 12 digits in any value
costs one pass over its bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.cardnumbers import MIN_DIGITS

__all__ = ["candidate_rows", "scrub_column"]

# A superset of what cardnumbers finds: 12 digits (any script), single spaces or dashes between.
_CANDIDATE = r"\p{Nd}(?:[ -]?\p{Nd}){11}"


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


def _digit_like_counts(column: pa.Array) -> np.ndarray[Any, Any]:
    """Per value of a string column: how many of its bytes are ASCII digits or non-ASCII
    (any digit of another script is non-ASCII in UTF-8): at least its count of digits.
    Values shorter than a card number count 0 (one pass, compiled).

    >>> _digit_like_counts(pa.array(["4111-1111-1111-1111", "12", None, "a1é2b3c4d5e6f7"]))
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


def scrub_column(column: pa.Array, replace: Callable[[str], str]) -> pa.Array:
    """A string column with ``replace`` applied to each value that could hold a card number
    (once per distinct value); the column itself when none could.

    >>> from fraudstream.cardnumbers import CardTokenizer
    >>> t = CardTokenizer(b"k")
    >>> scrub_column(pa.array(["a", None, "4111-1111-1111-1111"]), t.scrub).to_pylist() == [
    ...     "a", None, t("4111111111111111")]
    True
    """
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise TypeError(f"scrub_column needs a string column, got {column.type}")
    if len(column) == 0:
        return column
    maybe = _digit_like_counts(column) >= MIN_DIGITS
    if not maybe.any():
        return column
    rows = pa.array(maybe)
    looks = pc.match_substring_regex(column.filter(rows), _CANDIDATE)
    chosen = np.flatnonzero(maybe)[looks.fill_null(False).to_numpy(zero_copy_only=False)]
    if len(chosen) == 0:
        return column
    mask = np.zeros(len(column), dtype=bool)
    mask[chosen] = True
    encoded: Any = column.take(pa.array(chosen, pa.int64())).dictionary_encode()
    replaced = [replace(value) for value in encoded.dictionary.to_pylist()]
    values = pc.take(pa.array(replaced, column.type), encoded.indices)
    return pc.replace_with_mask(column, pa.array(mask), values)


def candidate_rows(table: pa.Table) -> np.ndarray[Any, Any]:
    """Rows of a table (extra fields) that could hold a card number somewhere: a string with
    12 digit-like bytes, an integer of 12 digits or more, or any nested or other value."""
    rows = np.zeros(table.num_rows, dtype=bool)
    for column in table.columns:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        kind = array.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            rows |= _digit_like_counts(array) >= MIN_DIGITS
        elif pa.types.is_integer(kind):
            values = pc.abs(pc.cast(array, pa.float64())).fill_null(0.0).to_numpy()
            rows |= values >= 10.0 ** (MIN_DIGITS - 1)
        elif not (
            pa.types.is_floating(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_null(kind)
            or pa.types.is_temporal(kind)
            or pa.types.is_decimal(kind)
        ):
            rows |= pc.is_valid(array).to_numpy(zero_copy_only=False)
    return rows
