"""Dense slots for string keys (cards, users, zip codes, merchants, devices, ids).

Detector state lives in numpy arrays indexed by slot, so the per-record loop never touches a
Python dict. The map from key to slot is an open-addressing hash table compiled with numba
that reads Arrow string buffers directly: a column of keys maps to slots without creating a
Python string per record. Keys are compared byte for byte, so two keys never share a slot.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.engine.batch import FEW_ROWS

MISSING = -1
# Up to this many keys, :meth:`KeySpace.slots` looks each up alone (measured: a column's
# lookup costs ~5.5 us whatever its length, one key alone ~3).
ONE_BY_ONE = 4
# One-key text columns kept by :meth:`KeySpace.texts` (building one costs ~4 us, a lookup
# ~0.1): enough for the zip codes and countries a live stream meets again and again.
ONE_TEXTS_KEPT = 4096
_FNV_PRIME = np.uint64(0x100000001B3)
_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)
_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(h: np.uint64) -> np.uint64:
    # FNV-1a's low bits are weak for keys that differ only in their last digits; the
    # murmur3 finaliser spreads them before the hash is masked into a bucket.
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@numba.njit(cache=True, nogil=True, inline="always")
def _key_words(data: U8, begin: int, end: int) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    """(hash, first 8 bytes, next 8, next 8) of a key: words, not a byte-at-a-time chain."""
    length = end - begin
    k0 = np.uint64(0)
    k1 = np.uint64(0)
    k2 = np.uint64(0)
    for j in range(begin, begin + min(length, 8)):
        k0 |= np.uint64(data[j]) << np.uint64(8 * (j - begin))
    for j in range(begin + 8, begin + min(length, 16)):
        k1 |= np.uint64(data[j]) << np.uint64(8 * (j - begin - 8))
    for j in range(begin + 16, begin + min(length, 24)):
        k2 |= np.uint64(data[j]) << np.uint64(8 * (j - begin - 16))
    h = (k0 * _P1) ^ (k1 * _P2) ^ (k2 * _P3) ^ np.uint64(length)
    for j in range(begin + 24, end):  # the tail of a long key
        h = (h ^ np.uint64(data[j])) * _FNV_PRIME
    return _mix(h), k0, k1, k2


@numba.njit(cache=True, nogil=True)
def _hash_keys(offsets: I64, data: U8) -> npt.NDArray[np.uint64]:
    """(hash, first 8 bytes, next 8, next 8) of every key, a row each (see :func:`_lookup`)."""
    n = offsets.size - 1
    words = np.empty((n, 4), dtype=np.uint64)
    for i in range(n):
        h, k0, k1, k2 = _key_words(data, offsets[i], offsets[i + 1])
        words[i, 0] = h
        words[i, 1] = k0
        words[i, 2] = k1
        words[i, 3] = k2
    return words


@numba.njit(cache=True, nogil=True)
def _lookup(
    offsets: I64,
    data: U8,
    words: npt.NDArray[np.uint64],
    nulls: npt.NDArray[np.bool_],
    start: int,
    insert: bool,
    table: npt.NDArray[np.uint64],
    key_hash: npt.NDArray[np.uint64],
    key_start: I64,
    arena: U8,
    state: I64,
    out: npt.NDArray[np.int32],
) -> int:
    """Maps rows ``start..`` to slots; returns the row it stopped at (== n when done).

    A table entry is 4 words: [slot | length << 32 | fingerprint << 48, then the first 24 key
    bytes], so a key of up to 24 bytes is found with one memory access;
    longer keys compare their tail in the arena. ``state`` = [keys used, arena bytes used].
    It stops early when the table, the key arrays or the arena must grow; the caller grows
    them and calls again from that row. The keys' words come hashed (``words``, from
    :func:`_hash_keys`): a loop that only probes keeps several cache misses in flight, about
    2.5 x faster on tables of 100,000s of keys than hashing and probing row by row.
    """
    n = offsets.size - 1
    mask = table.shape[0] - 1
    for i in range(start, n):
        if nulls[i]:
            out[i] = -1
            continue
        begin = offsets[i]
        end = offsets[i + 1]
        length = end - begin
        h, k0, k1, k2 = words[i, 0], words[i, 1], words[i, 2], words[i, 3]
        tag = (h >> np.uint64(48)) << np.uint64(48)
        bucket = np.int64(h & np.uint64(mask))
        while True:
            meta = table[bucket, 0]
            if meta == _EMPTY:
                if not insert:
                    out[i] = -1
                    break
                used = state[0]
                if (used + 1) * 2 > table.shape[0] or used + 1 >= key_hash.size:
                    return i
                if state[1] + length > arena.size:
                    return i
                key_hash[used] = h
                key_start[used] = state[1]
                arena[state[1] : state[1] + length] = data[begin:end]
                state[1] += length
                key_start[used + 1] = state[1]
                table[bucket, 0] = tag | (np.uint64(length) << np.uint64(32)) | np.uint64(used)
                table[bucket, 1] = k0
                table[bucket, 2] = k1
                table[bucket, 3] = k2
                state[0] = used + 1
                out[i] = used
                break
            if (
                (meta >> np.uint64(32)) == ((tag >> np.uint64(32)) | np.uint64(length))
                and table[bucket, 1] == k0
                and table[bucket, 2] == k1
                and table[bucket, 3] == k2
            ):
                slot = np.int64(meta & np.uint64(0xFFFFFFFF))
                same = True
                if length > 24:
                    k = key_start[slot]
                    for j in range(24, length):
                        if arena[k + j] != data[begin + j]:
                            same = False
                            break
                if same:
                    out[i] = slot
                    break
            bucket = (bucket + 1) & mask
    return n


@numba.njit(cache=True, nogil=True)
def _lookup_one(
    key: U8,
    insert: bool,
    table: npt.NDArray[np.uint64],
    key_hash: npt.NDArray[np.uint64],
    key_start: I64,
    arena: U8,
    state: I64,
) -> int:
    """:func:`_lookup` of one key's UTF-8 bytes, in one call: its slot, or -1 (absent,
    ``insert`` off) or -2 (the tables must grow first)."""
    offsets = np.zeros(2, np.int64)
    offsets[1] = key.size
    out = np.empty(1, np.int32)
    nulls = np.zeros(1, np.bool_)
    words = _hash_keys(offsets, key)
    stopped = _lookup(
        offsets, key, words, nulls, 0, insert, table, key_hash, key_start, arena, state, out
    )
    return -2 if stopped == 0 else out[0]


@numba.njit(cache=True, nogil=True)
def _rehash(
    old: npt.NDArray[np.uint64], key_hash: npt.NDArray[np.uint64], size: int
) -> npt.NDArray[np.uint64]:
    table = np.full((size, 4), _EMPTY, dtype=np.uint64)
    mask = size - 1
    for b in range(old.shape[0]):
        meta = old[b, 0]
        if meta == _EMPTY:
            continue
        slot = np.int64(meta & np.uint64(0xFFFFFFFF))
        bucket = np.int64(key_hash[slot] & np.uint64(mask))
        while table[bucket, 0] != _EMPTY:
            bucket = (bucket + 1) & mask
        table[bucket, 0] = meta
        table[bucket, 1] = old[b, 1]
        table[bucket, 2] = old[b, 2]
        table[bucket, 3] = old[b, 3]
    return table


def string_buffers(column: pa.Array) -> tuple[I64, U8, npt.NDArray[np.bool_]]:
    """Offsets (int64, from 0), bytes and null mask of an Arrow string column."""
    if column.type != pa.string():
        column = column.cast(pa.string())
    n = len(column)
    if n == 1:  # an authorization's: from the Python text (a third of the cost)
        (text,) = column.to_pylist()
        if text is not None:
            data = np.frombuffer(bytearray(text.encode()), np.uint8)  # (writable, as below)
            return np.array([0, data.size], np.int64), data, np.zeros(1, np.bool_)
    buffers = column.buffers()
    raw_offsets = np.frombuffer(buffers[1], dtype=np.int32, count=column.offset + n + 1)
    offsets = raw_offsets[column.offset :].astype(np.int64)
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8)
        if buffers[2] is not None
        else np.empty(0, np.uint8)
    )
    missing = column.null_count
    if missing == 0:
        nulls = np.zeros(n, dtype=np.bool_)
    elif missing == n:
        nulls = np.ones(n, dtype=np.bool_)
    else:  # from the validity bitmap (is_null().to_numpy() costs a few us more a call)
        bits = np.frombuffer(buffers[0], dtype=np.uint8)
        valid = np.unpackbits(bits, count=column.offset + n, bitorder="little")[column.offset :]
        nulls = valid == 0
    return offsets, data, nulls


class KeySpace:
    """Assigns each distinct key a stable slot, in order of first appearance.

    >>> ks = KeySpace()
    >>> ks.slots(pa.array(["b", "a", "b", None])).tolist()
    [0, 1, 0, -1]
    >>> ks.keys, ks.find("a"), ks.find("zz")
    (['b', 'a'], 1, -1)
    """

    def __init__(self, keys: list[str] | None = None, expected_keys: int = 2048) -> None:
        self._clear(expected_keys)
        if keys:
            self.slots(pa.array(keys, pa.string()))

    def _clear(self, expected_keys: int) -> None:
        slots = 1 << max(11, int(expected_keys).bit_length())
        self._table = np.full((2 * slots, 4), _EMPTY, dtype=np.uint64)
        self._hash = np.zeros(slots, dtype=np.uint64)
        self._start = np.zeros(slots, dtype=np.int64)
        self._arena = np.zeros(16 * slots, dtype=np.uint8)
        self._state = np.zeros(2, dtype=np.int64)
        self._decoded: list[str] = []
        self._one_texts: dict[int, pa.Array] = {}  # one key's text column, by slot

    def __len__(self) -> int:
        return int(self._state[0])

    @property
    def keys(self) -> list[str]:
        """Every key, by slot."""
        used = len(self)
        known = len(self._decoded)
        if known < used:
            # Only the new keys' bytes: a copy of the whole arena per new key made decoding
            # a batch's new zip code cost as much as every zip code seen.
            starts = self._start[known : used + 1].tolist()
            first = starts[0]
            arena = self._arena[first : starts[-1]].tobytes()
            self._decoded.extend(
                arena[a - first : b - first].decode("utf-8", "replace")
                for a, b in zip(starts, starts[1:], strict=False)
            )
        return self._decoded

    def key_array(self, start: int = 0) -> pa.Array:
        """The keys from slot ``start`` on, in slot order, as an Arrow string array (straight
        from the arena: no Python string per key).

        >>> ks = KeySpace(["b", "a", "c"])
        >>> ks.key_array().to_pylist(), ks.key_array(2).to_pylist()
        (['b', 'a', 'c'], ['c'])
        """
        used = len(self)
        start = min(max(start, 0), used)
        offsets = self._start[start : used + 1]
        first, last = int(offsets[0]), int(offsets[-1])
        data = pa.py_buffer(self._arena[first:last].copy())
        relative = offsets - first
        if last - first < 2**31:
            positions = pa.py_buffer(relative.astype(np.int32))
            return pa.Array.from_buffers(pa.string(), used - start, [None, positions, data])
        wide = pa.Array.from_buffers(
            pa.large_string(), used - start, [None, pa.py_buffer(relative.copy()), data]
        )
        return wide

    def texts(self, slots: npt.NDArray[np.int32]) -> pa.Array:
        """The keys at ``slots`` (null at -1) as an Arrow string array.

        >>> KeySpace(["b", "a"]).texts(np.array([1, -1, 0], np.int32)).to_pylist()
        ['a', None, 'b']
        """
        if len(slots) == 1:  # an authorization's
            return self._one_text(int(slots[0]))
        if len(slots) <= FEW_ROWS:
            return self._decoded_texts(slots.tolist())
        every = self.key_array()
        return every.take(pa.array(slots, pa.int32(), mask=slots < 0)).cast(pa.string())

    def _one_text(self, slot: int) -> pa.Array:
        """:meth:`texts` of one slot, kept for the next time (Arrow arrays are immutable)."""
        column = self._one_texts.get(slot)
        if column is None:
            if len(self._one_texts) >= ONE_TEXTS_KEPT:
                self._one_texts.clear()
            column = self._one_texts[slot] = self._decoded_texts([slot])
        return column

    def _decoded_texts(self, slots: list[int]) -> pa.Array:
        keys = self.keys  # each key decoded once, then kept
        return pa.array([keys[s] if s >= 0 else None for s in slots], pa.string())

    def snapshot(self) -> dict[str, npt.NDArray[np.generic]]:
        """The keys in slot order, as offsets and bytes (the hash table is rebuilt on restore).

        Arrays are views of live state: write them before the next batch changes them.
        """
        used = len(self)
        return {"offsets": self._start[: used + 1], "bytes": self._arena[: int(self._state[1])]}

    def restore(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        """Replaces every key with a snapshot's, in place (shared key spaces stay shared).

        Keys are inserted in slot order, so each gets the slot it had.
        """
        offsets = np.ascontiguousarray(arrays["offsets"], dtype=np.int64)
        data = np.ascontiguousarray(arrays["bytes"], dtype=np.uint8)
        used = max(len(offsets) - 1, 0)
        self._clear(max(used, 2048))
        if used:
            column = pa.Array.from_buffers(
                pa.large_string(), used, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
            )
            self.slots(column.cast(pa.string()) if len(data) < 2**31 else column)

    def retain(self, slots: npt.NDArray[np.int64]) -> None:
        """Keeps only the keys at ``slots`` (ascending), renumbered 0.. in that order."""
        # The kept keys straight from the arena (no Python string per key: compacting a
        # key space of millions would otherwise decode every one of them).
        used = len(self)
        offsets = np.ascontiguousarray(self._start[: used + 1], dtype=np.int64)
        data = np.ascontiguousarray(self._arena[: int(self._state[1])])
        arena = pa.Array.from_buffers(
            pa.large_string(), used, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )
        keys = arena.take(pa.array(slots, pa.int64()))
        if len(data) < 2**31:
            keys = keys.cast(pa.string())
        self._clear(max(len(slots), 2048))
        if len(slots):
            self.slots(keys)

    def slot(self, key: str) -> int:
        """The slot of one key, assigned if new."""
        return int(self.slots(pa.array([key], pa.string()))[0])

    def find(self, key: str) -> int:
        """The slot of a known key, or MISSING."""
        return int(self.slots(pa.array([key], pa.string()), insert=False)[0])

    def slots(
        self, column: pa.Array | pa.ChunkedArray, insert: bool = True
    ) -> npt.NDArray[np.int32]:
        """Slots for a column of keys (assigned if new, unless ``insert`` is off); nulls -> -1."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        n = len(column)
        if 0 < n <= ONE_BY_ONE and column.type == pa.string():
            # An authorization's batch: each key straight from its Python text (the column's
            # buffers, hashes and a lookup's dozen arguments cost several times more).
            return np.array([self._slot(key, insert) for key in column.to_pylist()], np.int32)
        out = np.empty(n, dtype=np.int32)
        if n == 0:
            return out
        offsets, data, nulls = string_buffers(column)
        words = _hash_keys(offsets, data)
        row = 0
        while True:
            row = _lookup(
                offsets, data, words, nulls, row, insert, self._table, self._hash, self._start,
                self._arena, self._state, out,
            )  # fmt: skip
            if row >= n:
                return out
            self._grow(int(offsets[row + 1] - offsets[row]))

    def _slot(self, key: str | None, insert: bool) -> int:
        """:meth:`slots` of one key (None -> MISSING)."""
        if key is None:
            return MISSING
        data = np.frombuffer(key.encode(), np.uint8)
        while True:
            slot = _lookup_one(
                data, insert, self._table, self._hash, self._start, self._arena, self._state
            )
            if slot != -2:
                return int(slot)
            self._grow(data.size)

    def _grow(self, key_bytes: int) -> None:
        used = len(self)
        if (used + 1) * 2 > self._table.shape[0]:
            self._table = _rehash(self._table, self._hash, self._table.shape[0] * 2)
        if used + 1 >= self._hash.size:
            size = self._hash.size * 2
            self._hash = np.concatenate([self._hash, np.zeros(size - self._hash.size, np.uint64)])
            self._start = np.concatenate([self._start, np.zeros(size - self._start.size, np.int64)])
        needed = int(self._state[1]) + key_bytes
        if needed > self._arena.size:
            size = self._arena.size
            while size < needed:
                size *= 2
            grown = np.zeros(size, dtype=np.uint8)
            grown[: self._arena.size] = self._arena
            self._arena = grown
