"""Wall-clock pacing for simulated sources (seed 003's 100 ms sleep per record, done right).

The generators in :mod:`fraudstream.simulate` produce records as fast as they are pulled; a
live demo wraps them in :func:`paced`. Each record ``k`` (0-based) is released at
``start + k / per_second`` on the monotonic clock, so a slow consumer or a late wake-up does not
accumulate drift: the schedule catches up instead of sliding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def paced(
    records: Iterable[T],
    per_second: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[T]:
    """Yield ``records`` at a steady ``per_second`` rate (first one at once).

    The deadline of record ``k`` is fixed when pacing starts (``start + k / per_second``);
    sleeping only until that deadline keeps the long-run rate exact. ``clock`` and ``sleep``
    are replaceable for tests.

    >>> list(paced(range(3), per_second=1000.0))
    [0, 1, 2]
    """
    if not per_second > 0:
        raise ValueError(f"per_second must be > 0, got {per_second!r}")
    return _paced(records, 1.0 / per_second, clock, sleep)


def _paced(
    records: Iterable[T],
    interval: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Iterator[T]:
    start = clock()
    for k, record in enumerate(records):
        delay = start + k * interval - clock()
        if delay > 0:
            sleep(delay)
        yield record
