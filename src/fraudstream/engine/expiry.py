"""State time-to-live per card and per user, so memory stays bounded on an endless stream.

Semantics (deterministic, whatever the micro-batches or restarts): a key's state *expires*
when its next record comes more than ``ttl_ms`` after its previous one (in the pipeline's
clock: event time, or arrival time in processing-time mode). That record finds the key fresh,
as if it had never been seen. Nothing depends on when a sweep happens to run.

A user's state includes the model's streaming customer features (rings, running amount, last
time), which expire and move with the user's slot like detector state.

Reclaiming memory is separate: from time to time the key spaces are compacted, dropping keys
whose last record is so old that any record still admissible would find them expired anyway
(older than the latest time minus out-of-orderness, allowed lateness and the TTL). Compaction
renumbers slots but changes no decision. Users with a profile are never dropped (profiles are
configuration, not state).

Counted: ``expired_keys`` (keys found expired on arrival) and ``reclaimed_keys`` (slots freed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from fraudstream.engine.pipeline import Pipeline

NEVER = np.iinfo(np.int64).min // 4
_NO_CUTS = np.empty(0, np.int64)
_NO_CUTS.flags.writeable = False
I64 = npt.NDArray[np.int64]
__all__ = ["NEVER", "StateExpiry", "returning"]


def returning(seen: I64, slots: npt.NDArray[Any], time_ms: I64, ttl_ms: int) -> npt.NDArray[Any]:
    """The keys of a batch (cut so that none comes back inside it) whose first record here
    follows their previous one by more than ``ttl_ms``, ascending; ``seen`` (each key's last
    time, by slot) then gets this batch's last times (its last record's, in batch order)."""
    stale: npt.NDArray[Any] = _returning(seen, slots, time_ms, ttl_ms).astype(slots.dtype)
    return stale


@numba.njit(cache=True, nogil=True)
def _batch_keys(slots: npt.NDArray[Any], size: int) -> tuple[I64, int]:
    """Each row's key numbered densely within the batch (0..count-1), and the count; the
    slots themselves when the key space (``size`` slots) is small next to the batch.

    Per-key scratch arrays are then as long as the batch, not the key space: a one-record
    batch over a million cards would otherwise allocate and fill megabytes.
    """
    n = len(slots)
    if size <= 8 * n:
        return slots.astype(np.int64), size
    order = np.argsort(slots)
    dense = np.empty(n, dtype=np.int64)
    count = 0
    for k in range(n):
        if k > 0 and slots[order[k]] != slots[order[k - 1]]:
            count += 1
        dense[order[k]] = count
    return dense, count + 1 if n else 0


@numba.njit(cache=True, nogil=True)
def _returning(seen: I64, slots: npt.NDArray[Any], time_ms: I64, ttl_ms: int) -> I64:
    # One pass in batch order, no sort: a slot's first row compares with its previous time,
    # and every row overwrites it, so the last row's time is what stays.
    keys, count = _batch_keys(slots, len(seen))
    first = np.ones(count, dtype=np.bool_)
    stale = np.empty(len(slots), dtype=np.int64)
    found = 0
    for i in range(len(slots)):
        slot = slots[i]
        if first[keys[i]]:
            first[keys[i]] = False
            previous = seen[slot]
            if previous != NEVER and time_ms[i] - previous > ttl_ms:
                stale[found] = slot
                found += 1
        seen[slot] = time_ms[i]
    return np.sort(stale[:found])


@numba.njit(cache=True, nogil=True)
def _part_starts(
    cards: npt.NDArray[Any], users: npt.NDArray[Any], time_ms: I64, ttl_ms: int
) -> npt.NDArray[np.bool_]:
    # Greedy parts in batch order: a row starts a new part when its card or its user came
    # before *in the current part*, more than the TTL earlier. A key whose previous record is
    # in an earlier part needs no cut: StateExpiry.expire resets it when its part starts.
    starts = np.zeros(len(time_ms), dtype=np.bool_)
    size = 1
    for i in range(len(time_ms)):
        size = max(size, cards[i] + 1, users[i] + 1)
    card_keys, card_count = _batch_keys(cards, size)
    user_keys, user_count = _batch_keys(users, size)
    card_part = np.full(card_count, -1, dtype=np.int64)
    user_part = np.full(user_count, -1, dtype=np.int64)
    card_last = np.empty(card_count, dtype=np.int64)
    user_last = np.empty(user_count, dtype=np.int64)
    part = 0
    for i in range(len(time_ms)):
        card, user, time = card_keys[i], user_keys[i], time_ms[i]
        back = card_part[card] == part and time - card_last[card] > ttl_ms
        back = back or (user_part[user] == part and time - user_last[user] > ttl_ms)
        if back:
            part += 1
            starts[i] = True
        card_part[card] = part
        card_last[card] = time
        user_part[user] = part
        user_last[user] = time
    return starts


class StateExpiry:
    """Last-seen times per card and user slot, expiry on arrival, and compaction."""

    def __init__(self, ttl_ms: int, reclaim_fraction: float = 0.1) -> None:
        if ttl_ms <= 0:
            raise ValueError(f"state TTL must be > 0 ms, got {ttl_ms}")
        self.ttl_ms = int(ttl_ms)
        self.reclaim_fraction = reclaim_fraction
        self.seen: dict[str, I64] = {
            "card": np.empty(0, np.int64),
            "user": np.empty(0, np.int64),
        }
        self.latest_ms = int(NEVER)
        self.last_reclaim_ms = int(NEVER)
        self.expired_keys = 0
        self.reclaimed_keys = 0

    def _grow(self, key: str, size: int) -> I64:
        seen = self.seen[key]
        if len(seen) < size:
            grown = np.full(max(size, 2 * len(seen), 1024), NEVER, dtype=np.int64)
            grown[: len(seen)] = seen
            self.seen[key] = seen = grown
        return seen

    def cuts(self, slots: dict[str, npt.NDArray[np.int32]], time_ms: I64) -> I64:
        """Rows (> 0, ascending) where the batch is cut into parts decided one after the
        other, so that no card or user comes back inside a part after more than the TTL (it
        expires in between): a row is a cut when its key's previous row is in the current
        part and more than the TTL earlier. A key whose previous row is in an earlier part
        is reset as its part starts (:meth:`expire`), so the parts are few: cutting at every
        row a key comes back at made thousands a batch when the TTL is shorter than the
        cards' usual gaps."""
        if len(time_ms) <= 1:  # (an authorization's: nothing to cut)
            return _NO_CUTS
        rows: I64 = np.flatnonzero(
            _part_starts(slots["card"], slots["user"], time_ms, self.ttl_ms)
        ).astype(np.int64)
        return rows

    def expire(
        self, pipeline: Pipeline, slots: dict[str, npt.NDArray[np.int32]], time_ms: I64
    ) -> None:
        """Resets the keys of a batch (cut by :meth:`cuts`) that come back after more
        than the TTL, then records each key's last time."""
        one = len(time_ms) == 1  # an authorization's: plain Python, no compiled call
        if len(time_ms):
            self.latest_ms = max(self.latest_ms, int(time_ms[0] if one else time_ms.max()))
        for key, column in slots.items():
            keys = pipeline.cards if key == "card" else pipeline.users
            seen = self._grow(key, len(keys))
            if one:
                slot, time = int(column[0]), int(time_ms[0])
                previous = int(seen[slot])
                seen[slot] = time
                if previous == NEVER or time - previous <= self.ttl_ms:
                    continue
                stale = column
            else:
                stale = returning(seen, column, time_ms, self.ttl_ms)
            if len(stale):
                self.expired_keys += len(stale)
                for table in pipeline.tables_keyed_by(key):
                    table.reset(stale)
                features = pipeline.customer_features()
                if key == "user" and features is not None:
                    features.forget_customers(stale)

    def reclaim(self, pipeline: Pipeline, force: bool = False) -> int:
        """Compacts key spaces when enough keys are long expired; returns slots freed."""
        if self.latest_ms == NEVER:
            return 0
        time = pipeline.time
        cutoff = self.latest_ms - time.out_of_orderness_ms - time.allowed_lateness_ms - self.ttl_ms
        self.last_reclaim_ms = self.latest_ms
        freed = 0
        for key in ("card", "user"):
            keys = pipeline.cards if key == "card" else pipeline.users
            used = len(keys)
            seen = self._grow(key, used)[:used]
            keep_mask = seen >= cutoff
            if key == "user":
                profile = pipeline.profiles.table
                profile.ensure(used)
                keep_mask |= profile["profile_index"][:used] >= 0
                keep_mask |= seen == NEVER  # a profile's user with no record yet
            dropped = used - int(keep_mask.sum())
            if dropped == 0 or (not force and dropped < self.reclaim_fraction * used):
                continue
            keep = np.flatnonzero(keep_mask)
            keys.retain(keep)
            for table in pipeline.tables_keyed_by(key):
                table.retain(keep, used)
            if key == "user":
                pipeline.profiles.table.retain(keep, used)
                features = pipeline.customer_features()
                if features is not None:  # customers are users: their rings move too
                    features.retain_customers(keep, used)
            fresh = np.full(len(self.seen[key]), NEVER, dtype=np.int64)
            fresh[: len(keep)] = seen[keep]
            self.seen[key] = fresh
            freed += dropped
        self.reclaimed_keys += freed
        return freed

    def due(self) -> bool:
        """Whether a compaction check is due (every eighth of the TTL, at most hourly)."""
        interval = min(self.ttl_ms // 8, 3_600_000) or 1
        return self.latest_ms - self.last_reclaim_ms >= interval

    def snapshot(self) -> tuple[dict[str, Any], dict[str, I64]]:
        """(JSON counters, arrays) for a checkpoint."""
        meta = {
            "ttl_ms": self.ttl_ms,
            "latest_ms": self.latest_ms,
            "last_reclaim_ms": self.last_reclaim_ms,
            "expired_keys": self.expired_keys,
            "reclaimed_keys": self.reclaimed_keys,
        }
        return meta, {f"seen_{k}": v for k, v in self.seen.items()}

    def restore(self, meta: dict[str, Any], arrays: dict[str, I64]) -> None:
        """Loads a :meth:`snapshot`."""
        self.latest_ms = int(meta["latest_ms"])
        self.last_reclaim_ms = int(meta["last_reclaim_ms"])
        self.expired_keys = int(meta["expired_keys"])
        self.reclaimed_keys = int(meta["reclaimed_keys"])
        for key in self.seen:
            if f"seen_{key}" in arrays:
                self.seen[key] = np.array(arrays[f"seen_{key}"], dtype=np.int64)
