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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.cardnumbers import MIN_DIGITS
from fraudstream.engine.digits import digit_like_counts

__all__ = ["candidate_rows", "scrub_column"]

# A superset of what cardnumbers finds: 12 digits (any script), single spaces or dashes between.
_CANDIDATE = r"\p{Nd}(?:[ -]?\p{Nd}){11}"


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
    maybe = digit_like_counts(column) >= MIN_DIGITS
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
            rows |= digit_like_counts(array) >= MIN_DIGITS
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
