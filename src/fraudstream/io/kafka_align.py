"""Event-time alignment of Kafka partitions: merge them as one stream, each partition in order.

Partitions are fetched side by side, so during a backlog one partition's records can be hours
ahead of another's; fed as they come, the laggard's records fall behind the watermark and are
late. Like Kafka Streams, the source instead releases a record only once every partition that
may still send something has reached its time: records are buffered per partition and
released up to the smallest event-time frontier among them, merged by time. A partition's
own order is never changed (the merge key is its running maximum timestamp), so a card's
records are decided in offset order, exactly as from a file.

A partition that has reported its end does not hold the others back; a quiet source, or a
buffer over ``max_buffered`` records, releases everything (the clock's lateness then applies
as usual). Records still buffered are not part of the source position: a checkpoint names,
per partition, the first offset not yet released, so nothing buffered is lost by a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fraudstream.engine.batch import TxBatch
from fraudstream.io.decode import DeadLetter

__all__ = ["PartitionAligner"]

I64 = npt.NDArray[np.int64]


@dataclass
class _Chunk:
    """Decoded records of one partition not released yet (offsets increasing)."""

    batch: TxBatch
    keys: I64  # running maximum event time within the partition (non-decreasing)
    dead: list[DeadLetter]
    first_offset: int
    next_offset: int


@dataclass
class _Partition:
    chunks: list[_Chunk] = field(default_factory=list)
    frontier: int = np.iinfo(np.int64).min  # the largest event time seen


class PartitionAligner:
    """Per-partition buffers released in event-time order (see the module docstring)."""

    def __init__(self, max_buffered: int = 200_000) -> None:
        self.max_buffered = max_buffered
        self.partitions: dict[int, _Partition] = {}
        self.buffered = 0

    def add(
        self, partition: int, batch: TxBatch, dead: list[DeadLetter], offsets: list[int]
    ) -> None:
        """A partition's next decoded messages (``offsets``: every message's offset, in order)."""
        state = self.partitions.setdefault(partition, _Partition())
        if len(batch):
            keys = np.maximum.accumulate(np.maximum(batch.timestamp_ms, state.frontier))
            state.frontier = int(keys[-1])
        else:
            keys = np.empty(0, np.int64)
        state.chunks.append(_Chunk(batch, keys, list(dead), offsets[0], offsets[-1] + 1))
        self.buffered += len(batch)

    def first_unreleased(self, partition: int) -> int | None:
        """The offset a checkpoint must resume this partition from (None: nothing buffered)."""
        state = self.partitions.get(partition)
        if state is None or not state.chunks:
            return None
        return state.chunks[0].first_offset

    def holding(self) -> int:
        """Chunks (decoded messages, valid or not) waiting to be released."""
        return sum(len(s.chunks) for s in self.partitions.values())

    def drop(self, partition: int) -> None:
        """Forgets a partition's buffer (revoked: its new owner reads those records)."""
        state = self.partitions.pop(partition, None)
        if state is not None:
            self.buffered -= sum(len(c.batch) for c in state.chunks)

    def release(
        self, active: set[int], force: bool = False
    ) -> tuple[TxBatch, list[DeadLetter]] | None:
        """Records every partition in ``active`` (may still send) has caught up with, merged.

        ``force`` (or a buffer over ``max_buffered``) releases everything buffered.
        """
        holding = {p: s for p, s in self.partitions.items() if s.chunks}
        if not holding:
            return None
        bound: int | None = None  # None: release everything
        if not force and self.buffered <= self.max_buffered:
            if any(p not in holding for p in active):
                return None  # a partition that may send older records has sent nothing yet
            waiting = [s.frontier for p, s in holding.items() if p in active]
            if waiting:
                bound = min(waiting)
        batches: list[TxBatch] = []
        keys: list[I64] = []
        dead: list[DeadLetter] = []
        for state in holding.values():
            self._take(state, bound, batches, keys, dead)
        merged = TxBatch.concat(batches)
        if len(batches) > 1:
            merged = merged.take(np.argsort(np.concatenate(keys), kind="stable"))
        self.buffered -= len(merged)
        if len(merged) == 0 and not dead:
            return None
        dead.sort(key=lambda d: (d.source, d.position))
        return merged, dead

    @staticmethod
    def _take(
        state: _Partition,
        bound: int | None,
        batches: list[TxBatch],
        keys: list[I64],
        dead: list[DeadLetter],
    ) -> None:
        while state.chunks:
            chunk = state.chunks[0]
            cut = (
                len(chunk.keys)
                if bound is None
                else int(np.searchsorted(chunk.keys, bound, "right"))
            )
            if cut == len(chunk.keys):  # the whole chunk goes
                batches.append(chunk.batch)
                keys.append(chunk.keys)
                dead.extend(chunk.dead)
                state.chunks.pop(0)
                continue
            if cut:
                batches.append(chunk.batch.take(np.arange(cut)))
                keys.append(chunk.keys[:cut])
            rest = chunk.batch.take(np.arange(cut, len(chunk.keys)))
            first_kept = int(rest.position[0])
            dead.extend(d for d in chunk.dead if d.position < first_kept)
            chunk.dead = [d for d in chunk.dead if d.position >= first_kept]
            chunk.batch, chunk.keys = rest, chunk.keys[cut:]
            chunk.first_offset = first_kept
            return
