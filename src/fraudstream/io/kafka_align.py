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
as usual). "At its end" is only true of the moment it was seen: records another partition
sends afterwards may have been written after that moment, together with older records of the
first one it has not read yet. A source that can tell the order of what it saw (a Kinesis
shard answering "nothing" before or after another shard's records came) stamps each
message batch and each end it saw, and such an end then releases only the records read
before it; records read later wait, up to the partition's frontier, until it is asked
again. Records still buffered are not part of the source position: a checkpoint names,
per partition, the first offset not yet released, so nothing buffered is lost by a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fraudstream.engine.batch import TxBatch
from fraudstream.io.decode import DeadLetter

__all__ = ["PartitionAligner"]

I64 = npt.NDArray[np.int64]
NO_TIME = int(np.iinfo(np.int64).min)  # the frontier of a partition that sent nothing yet


@dataclass
class _Chunk:
    """Decoded records of one partition not released yet (offsets increasing)."""

    batch: TxBatch
    keys: I64  # running maximum event time within the partition (non-decreasing)
    dead: list[DeadLetter]
    first_offset: int
    next_offset: int
    stamp: int = 0  # when it was read (the source's counter; see ``release``)


@dataclass
class _Partition:
    chunks: list[_Chunk] = field(default_factory=list)
    frontier: int = NO_TIME  # the largest event time seen


class PartitionAligner:
    """Per-partition buffers released in event-time order (see the module docstring)."""

    def __init__(self, max_buffered: int = 200_000) -> None:
        self.max_buffered = max_buffered
        self.partitions: dict[int, _Partition] = {}
        self.buffered = 0

    def add(
        self,
        partition: int,
        batch: TxBatch,
        dead: list[DeadLetter],
        offsets: list[int],
        stamp: int = 0,
    ) -> None:
        """A partition's next decoded messages (``offsets``: every message's offset, in order;
        ``stamp``: when they were read, a counter increasing with every read of the source)."""
        state = self.partitions.setdefault(partition, _Partition())
        if len(batch):
            keys = np.maximum.accumulate(np.maximum(batch.timestamp_ms, state.frontier))
            state.frontier = int(keys[-1])
        else:
            keys = np.empty(0, np.int64)
        state.chunks.append(_Chunk(batch, keys, list(dead), offsets[0], offsets[-1] + 1, stamp))
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
        self,
        active: set[int],
        force: bool = False,
        ended_at: Mapping[int, int] | None = None,
    ) -> tuple[TxBatch, list[DeadLetter]] | None:
        """Records every partition in ``active`` (may still send) has caught up with, merged.

        ``ended_at`` stamps partitions not in ``active`` with when they were last seen at their
        end: a chunk of another partition read after that (a larger stamp) is released only up
        to that partition's frontier, as if it were active (without ``ended_at``, a partition
        not in ``active`` holds nothing back). ``force`` (or a buffer over ``max_buffered``)
        releases everything buffered.
        """
        holding = {p: s for p, s in self.partitions.items() if s.chunks}
        if not holding:
            return None
        bound: int | None = None  # None: release everything
        ends: list[tuple[int, int, int]] = []  # (partition, seen at its end at, its frontier)
        if not force and self.buffered <= self.max_buffered:
            if any(p not in holding for p in active):
                return None  # a partition that may send older records has sent nothing yet
            waiting = [s.frontier for p, s in holding.items() if p in active]
            if waiting:
                bound = min(waiting)
            for p, stamp in (ended_at or {}).items():
                state = self.partitions.get(p)
                ends.append((p, stamp, NO_TIME if state is None else state.frontier))
        batches: list[TxBatch] = []
        keys: list[I64] = []
        dead: list[DeadLetter] = []
        for partition, state in holding.items():
            others = [(stamp, frontier) for p, stamp, frontier in ends if p != partition]
            self._take(state, bound, others, batches, keys, dead)
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
        ends: list[tuple[int, int]],
        batches: list[TxBatch],
        keys: list[I64],
        dead: list[DeadLetter],
    ) -> None:
        """Moves the partition's records up to ``bound`` out (and, of a chunk read after
        another partition was seen at its end, up to that one's frontier; ``ends``: (when it
        was seen at its end, its frontier))."""
        while state.chunks:
            chunk = state.chunks[0]
            limit = bound
            for stamp, frontier in ends:
                if chunk.stamp > stamp:  # read after: may be ahead of what is still to come
                    limit = frontier if limit is None else min(limit, frontier)
            cut = (
                len(chunk.keys)
                if limit is None
                else int(np.searchsorted(chunk.keys, limit, "right"))
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
