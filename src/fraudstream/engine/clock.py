"""Event time: watermarks with bounded out-of-orderness, allowed lateness and idleness.

The watermark is the largest event time seen minus the out-of-orderness; a record waits in a
buffer until the watermark reaches its timestamp, and released records are processed in
(timestamp, transaction_id) order. A record that arrives behind the watermark but within the
allowed lateness is processed at once; one behind by more is *late*: it goes to the late
output and is never decided.

Everything is computed as if records were handled one at a time in arrival order, so the
decisions do not depend on how the input is cut into micro-batches: replaying a file and
streaming the same records live give the same result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fraudstream.engine.batch import TxBatch

NO_WATERMARK = np.iinfo(np.int64).min // 4


@dataclass(slots=True)
class Released:
    """What one step of the clock lets through: in processing order, and the late records."""

    ready: TxBatch
    late: TxBatch
    # the watermark each late record arrived behind (its own, not the batch's: the figure
    # does not depend on where the input is cut)
    late_watermark: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.empty(0, dtype=np.int64)
    )


class EventClock:
    """Watermarks and the buffer of records waiting for them.

    >>> import numpy as np
    >>> clock = EventClock(out_of_orderness_ms=10, allowed_lateness_ms=5)
    >>> def batch(ts):
    ...     from fraudstream.schema import ValidTx
    ...     rows = [ValidTx(f"t{t}", "c", "c", t, 1.0, "USD", np.nan, np.nan,
    ...                     *[None] * 7, None) for t in ts]
    ...     return TxBatch.from_valid(rows, np.arange(len(ts)), np.zeros(len(ts)))
    >>> out = clock.admit(batch([100, 95, 111]))
    >>> out.ready.timestamp_ms.tolist(), clock.watermark
    ([95, 100], 101)
    >>> out = clock.admit(batch([80, 99]))
    >>> out.late.timestamp_ms.tolist(), out.ready.timestamp_ms.tolist()
    ([80], [99])
    """

    def __init__(
        self, out_of_orderness_ms: int = 0, allowed_lateness_ms: int = 0, idle_timeout_ms: int = 0
    ) -> None:
        if out_of_orderness_ms < 0 or allowed_lateness_ms < 0 or idle_timeout_ms < 0:
            raise ValueError("out-of-orderness, lateness and idle timeout must be >= 0")
        self.out_of_orderness_ms = out_of_orderness_ms
        self.allowed_lateness_ms = allowed_lateness_ms
        # Idleness is noticed by the source (it yields IDLE); the runner then calls flush().
        self.idle_timeout_ms = idle_timeout_ms
        self.watermark = int(NO_WATERMARK)
        self.pending = TxBatch.empty()

    def admit(self, batch: TxBatch) -> Released:
        """Takes records in arrival order; returns those the watermark releases, and the late."""
        ts = batch.timestamp_ms
        n = len(ts)
        if n == 0:
            return Released(TxBatch.empty(), TxBatch.empty())
        if n == 1 and len(self.pending) == 0:  # an authorization request: the same, in Python
            time_ms, before = int(ts[0]), self.watermark
            after = max(time_ms - self.out_of_orderness_ms, before)
            if time_ms <= after and time_ms >= before - self.allowed_lateness_ms:
                self.watermark = after  # released at once, and not late
                return Released(batch, TxBatch.empty())
        wm_before, wm_after = watermarks(ts, self.watermark, self.out_of_orderness_ms)
        late = ts < wm_before - self.allowed_lateness_ms  # never before the first watermark
        self.watermark = int(wm_after[-1])
        # Release step of each record: the first arrival at which the watermark reaches it.
        release = np.searchsorted(wm_after, ts, side="left")
        release = np.maximum(release, np.arange(n))
        keep = ~late
        if len(self.pending) == 0 and not late.any() and (release == np.arange(n)).all():
            # In-order input (the common case): each record is released as it arrives.
            ties = np.flatnonzero(ts[1:] == ts[:-1])
            if (ts[1:] >= ts[:-1]).all():
                order = processing_order(release, batch) if len(ties) else None
                if order is not None and (order == np.arange(n)).all():
                    order = None  # tied records already in transaction_id order
                ready = batch if order is None else batch.take(order)
                return Released(ready, TxBatch.empty())
        candidates = TxBatch.concat([self.pending, batch.take(np.flatnonzero(keep))])
        pending_release = np.searchsorted(wm_after, self.pending.timestamp_ms, side="left")
        steps = np.concatenate([pending_release, release[keep]])
        out = steps < n
        self.pending = candidates.take(np.flatnonzero(~out))
        ready = candidates.take(np.flatnonzero(out))
        order = processing_order(steps[out], ready)
        late_rows = np.flatnonzero(late)
        return Released(ready.take(order), batch.take(late_rows), wm_before[late_rows])

    def snapshot(self) -> tuple[int, TxBatch]:
        """(watermark, records still waiting for it): the clock's whole state."""
        return self.watermark, self.pending

    def restore(self, watermark: int, pending: TxBatch) -> None:
        """Loads a :meth:`snapshot`."""
        self.watermark = int(watermark)
        self.pending = pending

    def flush(self) -> TxBatch:
        """End of input (or an idle source): the watermark jumps and releases everything."""
        ready = self.pending
        self.pending = TxBatch.empty()
        if len(ready):
            self.watermark = max(self.watermark, int(ready.timestamp_ms.max()))
        steps = np.zeros(len(ready), dtype=np.int64)
        return ready.take(processing_order(steps, ready))


def watermarks(
    times: npt.NDArray[np.int64], start: int, out_of_orderness_ms: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The watermark just before and just after each record, in arrival order, from the
    watermark ``start`` (the largest time seen minus the out-of-orderness, never lower).

    >>> before, after = watermarks(np.array([100, 95, 111]), NO_WATERMARK, 10)
    >>> before[1:].tolist(), after.tolist()
    ([90, 90], [90, 90, 101])
    """
    after = np.maximum(np.maximum.accumulate(times) - out_of_orderness_ms, start)
    before = np.empty(len(times), dtype=np.int64)
    if len(times):
        before[0] = start
        before[1:] = after[:-1]
    return before, after.astype(np.int64)


def processing_order(steps: npt.NDArray[np.int64], batch: TxBatch) -> npt.NDArray[np.int64]:
    """Indices ordering records by (release step, timestamp, transaction_id)."""
    ts = batch.timestamp_ms
    order: npt.NDArray[np.int64] = np.lexsort((ts, steps))
    if len(order) < 2:
        return order
    s, t = steps[order], ts[order]
    ties = np.flatnonzero((s[1:] == s[:-1]) & (t[1:] == t[:-1]))
    if len(ties) == 0:
        return order
    # Equal (step, timestamp): order by transaction id so arrival order cannot matter.
    ids = batch.transaction_id
    start = 0
    result = order.copy()
    tie_set = set(ties.tolist())
    while start < len(order):
        end = start
        while end in tie_set:
            end += 1
        if end > start:
            group = order[start : end + 1]
            group_ids = [ids[int(i)].as_py() for i in group]
            result[start : end + 1] = group[np.argsort(np.array(group_ids), kind="stable")]
        start = end + 1
    return result
