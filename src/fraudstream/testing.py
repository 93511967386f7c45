"""Helpers for tests and notebooks: build detector inputs and run records without I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from fraudstream.detectors.base import DetectorInput


def detector_input(
    *,
    time_ms: Sequence[int],
    amount: Sequence[float],
    card: Sequence[int] | None = None,
    user: Sequence[int] | None = None,
    lat: Sequence[float] | None = None,
    lon: Sequence[float] | None = None,
    zipcode: Sequence[int] | None = None,
    merchant: Sequence[int] | None = None,
    device: Sequence[int] | None = None,
    ip_country: Sequence[int] | None = None,
    expected_country: Sequence[int] | None = None,
    anonymous_network: Sequence[int] | None = None,
    max_speed_kmh: Sequence[float] | None = None,
    transaction_id: Sequence[str] | None = None,
) -> DetectorInput:
    """A :class:`DetectorInput` from plain lists; omitted columns are missing values.

    Codes (card, user, zipcode, merchant, device, countries, networks) are small integers;
    -1 means missing. ``hour`` is derived from ``time_ms`` (UTC).
    """
    n = len(time_ms)

    def codes(values: Sequence[int] | None, default: int = -1) -> np.ndarray[Any, Any]:
        if values is None:
            return np.full(n, default, dtype=np.int32)
        return np.asarray(values, dtype=np.int32)

    def floats(values: Sequence[float] | None, default: float = np.nan) -> np.ndarray[Any, Any]:
        if values is None:
            return np.full(n, default, dtype=np.float64)
        return np.asarray(values, dtype=np.float64)

    times = np.asarray(time_ms, dtype=np.int64)
    ids = transaction_id if transaction_id is not None else [f"t{i}" for i in range(n)]
    return DetectorInput(
        time_ms=times,
        event_ms=times.copy(),
        amount=floats(amount),
        lat=floats(lat),
        lon=floats(lon),
        card=codes(card, 0),
        user=codes(user if user is not None else card, 0),
        zipcode=codes(zipcode),
        merchant=codes(merchant),
        device=codes(device),
        hour=((times // 3_600_000) % 24).astype(np.int8),
        ip_country=codes(ip_country),
        expected_country=codes(expected_country),
        anonymous_network=codes(anonymous_network),
        max_speed_kmh=floats(max_speed_kmh, 900.0),
        transaction_id=pa.array(list(ids), pa.string()),
        first_name=pa.nulls(n, pa.string()),
        last_name=pa.nulls(n, pa.string()),
    )


def tx_batch(
    *,
    ids: Sequence[str],
    times: Sequence[int],
    cards: Sequence[str] | None = None,
    users: Sequence[str] | None = None,
    amounts: Sequence[float] | None = None,
    merchants: Sequence[str | None] | None = None,
) -> Any:
    """A :class:`~fraudstream.engine.batch.TxBatch` of minimal records (positions 1..n).

    >>> batch = tx_batch(ids=["a", "b"], times=[5, 1])
    >>> batch.transaction_id.to_pylist(), batch.position.tolist()
    (['a', 'b'], [1, 2])
    """
    from fraudstream.engine.batch import TxBatch
    from fraudstream.schema import ValidTx

    n = len(ids)
    cards = cards if cards is not None else ["card"] * n
    users = users if users is not None else cards
    amounts = amounts if amounts is not None else [1.0] * n
    merchants = merchants if merchants is not None else [None] * n
    rows = [
        ValidTx(ids[i], cards[i], users[i], int(times[i]), float(amounts[i]), "USD",
                np.nan, np.nan, None, merchants[i], None, None, None, None, None, None)
        for i in range(n)
    ]  # fmt: skip
    return TxBatch.from_valid(rows, np.arange(1, n + 1, dtype=np.int64), np.zeros(n))
