"""Micro-batching: decision requests that arrive together are decided together.

A pipeline step has a fixed cost (decode, keys, detectors, decide) that a batch pays once, so
the first request of a batch opens it and the batch closes :attr:`Batching.max_wait_ms`
later, or at once when it holds :attr:`Batching.max_records` records. Its :class:`Job` s
are handed, in arrival order, to one call of the deciding function, which fills each job's
outcomes. While a step runs, the requests arriving meanwhile gather into the next batch, so
batches grow with the load and a request waits at most ``max_wait_ms`` plus the step before
its own.

The default wait is 0: a batch takes the requests that reached the event loop together, and
the load makes the batches (measured with ``benchmarks/api_latency.py``, docs/web.md: a wait
of 1 ms, which the event loop's millisecond timers stretch to 1-2 ms, cost more latency at
1,000 and 3,000 requests/s than the larger batches saved).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batching", "Job", "MicroBatcher", "Outcome"]


@dataclass(frozen=True, slots=True)
class Batching:
    """How concurrent requests are gathered into one pipeline step.

    ``max_wait_ms``: how long the first request of a batch waits for others (0: only those
    ready on the same turn of the event loop); ``max_records``: a batch this full is decided
    at once.

    >>> Batching()
    Batching(max_wait_ms=0.0, max_records=512)
    >>> Batching(max_wait_ms=-1)
    Traceback (most recent call last):
    ...
    ValueError: the batch wait must be within 0..1000 ms, got -1
    """

    max_wait_ms: float = 0.0
    max_records: int = 512

    def __post_init__(self) -> None:
        if not 0 <= self.max_wait_ms <= 1000:
            raise ValueError(f"the batch wait must be within 0..1000 ms, got {self.max_wait_ms}")
        if self.max_records < 1:
            raise ValueError(f"a batch must take at least 1 record, got {self.max_records}")


@dataclass(slots=True)
class Outcome:
    """What became of one submitted record."""

    status: int
    body: dict[str, Any]


@dataclass(slots=True)
class Job:
    """One request's records (and their raw bodies, for dead letters), and their outcomes."""

    records: list[Any]
    raws: list[bytes | str] | None
    arrival_ms: float
    future: asyncio.Future[list[Outcome]] | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    def settle(self, failure: BaseException | None) -> None:
        """Hands the outcomes (or the failure) to the request, if it still waits."""
        future = self.future
        if future is None or future.done():
            return
        try:
            if failure is None:
                future.set_result(self.outcomes)
            else:
                future.set_exception(failure)
        except RuntimeError:  # its event loop has ended: no one waits for it
            pass


class MicroBatcher:
    """Gathers submitted jobs into batches for ``decide`` (which settles each job).

    >>> decided = []
    >>> def decide(jobs):
    ...     decided.append([job.records for job in jobs])
    ...     for job in jobs:
    ...         job.outcomes = [Outcome(200, {"record": r}) for r in job.records]
    ...         job.settle(None)
    >>> batcher = MicroBatcher(Batching(max_wait_ms=5), decide)
    >>> async def three_requests():
    ...     return await asyncio.gather(*(batcher.submit([n], None) for n in (1, 2, 3)))
    >>> [[o.body for o in outcomes] for outcomes in asyncio.run(three_requests())]
    [[{'record': 1}], [{'record': 2}], [{'record': 3}]]
    >>> decided  # one step for the three
    [[[1], [2], [3]]]
    """

    def __init__(self, batching: Batching, decide: Callable[[list[Job]], None]) -> None:
        self.batching = batching
        self.decide = decide
        self.pending: list[Job] = []
        self.pending_records = 0
        self._closing: asyncio.Handle | None = None
        self._closing_loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, records: list[Any], raws: list[bytes | str] | None) -> list[Outcome]:
        """Adds ``records`` to the open batch (or opens one); their outcomes once decided."""
        loop = asyncio.get_running_loop()
        job = Job(records, raws, time.time() * 1000, loop.create_future())
        self.pending.append(job)
        self.pending_records += len(records)
        if self.pending_records >= self.batching.max_records:
            self.close()
        elif self._closing is None or self._closing_loop is not loop:
            # (a batch left open by an event loop that has ended joins this one's)
            self._closing = loop.call_later(self.batching.max_wait_ms / 1000, self.close)
            self._closing_loop = loop
        assert job.future is not None
        return await job.future

    def close(self) -> None:
        """Decides the open batch now (a loop callback: a failure is its requests' 500s)."""
        if self._closing is not None:
            self._closing.cancel()
            self._closing = None
        jobs, self.pending, self.pending_records = self.pending, [], 0
        if jobs:
            try:
                self.decide(jobs)
            except Exception:
                for job in jobs:  # ``decide`` failed before settling them
                    job.settle(RuntimeError("the batch could not be decided"))
