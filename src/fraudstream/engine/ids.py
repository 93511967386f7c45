"""Transaction ids already seen: an exact set, probed in sorted order.

A batch's ids are hashed (64 bits), sorted, and checked against sorted runs of the ids
already held by merging, not by probing a hash table at random: on millions of ids that is
the difference between one cache miss per id and a sequential scan. A matching hash is
confirmed by comparing the id's bytes with the stored copy, so the set is exact. New ids go
to a tiny run, merged into a small one when it grows, itself merged into the big one when it
grows: a live stream's one-record batch copies at most the tiny run (a small run of 65,536
ids copied for each would cost a tenth of a millisecond).
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.engine.keys import _key_words, string_buffers

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
TINY_RUN = 1 << 10  # ids kept apart before they are merged into the small run
SMALL_RUN = 1 << 16  # ids kept apart before they are merged into the big run


@numba.njit(cache=True, nogil=True)
def _hashes(offsets: I64, data: U8) -> U64:
    n = offsets.size - 1
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        out[i] = _key_words(data, offsets[i], offsets[i + 1])[0]
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _same(offsets: I64, data: U8, row: int, key_start: I64, arena: U8, seq: int) -> bool:
    begin = offsets[row]
    length = offsets[row + 1] - begin
    stored = key_start[seq]
    if key_start[seq + 1] - stored != length:
        return False
    for j in range(length):
        if arena[stored + j] != data[begin + j]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _check_run(
    hashes: U64,
    rows: I64,
    offsets: I64,
    data: U8,
    run_hashes: U64,
    run_seqs: I64,
    key_start: I64,
    arena: U8,
    seen: Bools,
) -> None:
    """Marks the rows (in hash order) whose id is in the run: a merge, or binary search."""
    n = hashes.size
    m = run_hashes.size
    if m == 0:
        return
    j = 0
    scan = n * 24 >= m  # few ids against a big run: binary search each
    for k in range(n):
        h = hashes[k]
        if scan:
            while j < m and run_hashes[j] < h:
                j += 1
        else:
            j = np.searchsorted(run_hashes, h)
        at = j
        while at < m and run_hashes[at] == h:
            if _same(offsets, data, rows[k], key_start, arena, run_seqs[at]):
                seen[rows[k]] = True
                break
            at += 1


@numba.njit(cache=True, nogil=True)
def _check_runs(
    hashes: U64,
    rows: I64,
    offsets: I64,
    data: U8,
    big_hashes: U64,
    big_seqs: I64,
    small_hashes: U64,
    small_seqs: I64,
    tiny_hashes: U64,
    tiny_seqs: I64,
    key_start: I64,
    arena: U8,
    seen: Bools,
) -> None:
    """:func:`_check_run` over a set's three runs (one call from Python: each costs
    microseconds, a one-record batch's whole probe)."""
    for run_hashes, run_seqs in (
        (big_hashes, big_seqs), (small_hashes, small_seqs), (tiny_hashes, tiny_seqs)
    ):  # fmt: skip
        _check_run(hashes, rows, offsets, data, run_hashes, run_seqs, key_start, arena, seen)


@numba.njit(cache=True, nogil=True)
def _probe_one(
    key: U8, runs: tuple[U64, I64, U64, I64, U64, I64], key_start: I64, arena: U8
) -> tuple[np.uint64, bool]:
    """One id's (UTF-8 bytes) hash, and whether a set's runs (big, small, tiny: hashes and
    sequence numbers each) hold it: :func:`_check_runs` in one call, for an authorization."""
    offsets = np.zeros(2, np.int64)
    offsets[1] = key.size
    hashes = _hashes(offsets, key)
    seen = np.zeros(1, np.bool_)
    _check_runs(hashes, np.zeros(1, np.int64), offsets, key, *runs, key_start, arena, seen)
    return hashes[0], seen[0]


@numba.njit(cache=True, nogil=True)
def _check_batch(hashes: U64, rows: I64, offsets: I64, data: U8, seen: Bools) -> None:
    """Marks rows repeating the id of an earlier row (a smaller row number) of the batch."""
    n = hashes.size
    k = 0
    while k < n:
        end = k + 1
        while end < n and hashes[end] == hashes[k]:
            end += 1
        for x in range(k, end):  # equal hashes: compare ids; the later row is the repeat
            for y in range(x + 1, end):
                a, b = rows[x], rows[y]
                if offsets[a + 1] - offsets[a] != offsets[b + 1] - offsets[b]:
                    continue
                same = True
                for j in range(offsets[a + 1] - offsets[a]):
                    if data[offsets[a] + j] != data[offsets[b] + j]:
                        same = False
                        break
                if same:
                    seen[max(a, b)] = True
        k = end


@numba.njit(cache=True, nogil=True)
def _merge(a_h: U64, a_s: I64, b_h: U64, b_s: I64) -> tuple[U64, I64]:
    n, m = a_h.size, b_h.size
    out_h = np.empty(n + m, dtype=np.uint64)
    out_s = np.empty(n + m, dtype=np.int64)
    i = j = k = 0
    while i < n and j < m:
        if a_h[i] <= b_h[j]:
            out_h[k] = a_h[i]
            out_s[k] = a_s[i]
            i += 1
        else:
            out_h[k] = b_h[j]
            out_s[k] = b_s[j]
            j += 1
        k += 1
    while i < n:
        out_h[k] = a_h[i]
        out_s[k] = a_s[i]
        i += 1
        k += 1
    while j < m:
        out_h[k] = b_h[j]
        out_s[k] = b_s[j]
        j += 1
        k += 1
    return out_h, out_s


def hash_ids(column: pa.Array) -> U64:
    """A 64-bit hash of each id's bytes (the hash the set probes with; nulls hash as empty).

    >>> bool(hash_ids(pa.array(["t1", "t2", "t1"]))[2] == hash_ids(pa.array(["t1"]))[0])
    True
    """
    offsets, data, _ = string_buffers(column)
    return _hashes(offsets, data)


class IdSet:
    """A set of ids (transaction ids) that says which of a column were already in it.

    >>> ids = IdSet()
    >>> ids.admit(pa.array(["a", "b", "a"])).tolist(), ids.admit(pa.array(["b", "c"])).tolist()
    ([False, False, True], [True, False])
    """

    def __init__(self, expected_ids: int = 1024) -> None:
        empty_h = np.empty(0, dtype=np.uint64)
        empty_s = np.empty(0, dtype=np.int64)
        self._big: tuple[U64, I64] = (empty_h, empty_s)
        self._small: tuple[U64, I64] = (empty_h, empty_s)
        self._tiny: tuple[U64, I64] = (empty_h, empty_s)
        self._start = np.zeros(max(1024, int(expected_ids)) + 1, dtype=np.int64)
        self._arena = np.empty(16 * max(1024, int(expected_ids)), dtype=np.uint8)
        self._count = 0
        self._in_older: Bools | None = None

    def __len__(self) -> int:
        return self._count

    def snapshot(self) -> dict[str, npt.NDArray[np.generic]]:
        """The set as arrays: sorted runs (hash, sequence) and the ids' bytes (views)."""
        count = self._count
        return {
            "big_hashes": self._big[0],
            "big_seqs": self._big[1],
            "small_hashes": self._small[0],
            "small_seqs": self._small[1],
            "tiny_hashes": self._tiny[0],
            "tiny_seqs": self._tiny[1],
            "offsets": self._start[: count + 1],
            "bytes": self._arena[: int(self._start[count])],
        }

    def restore(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        """Loads a :meth:`snapshot` (in place)."""
        offsets = np.asarray(arrays["offsets"], dtype=np.int64)
        data = np.asarray(arrays["bytes"], dtype=np.uint8)
        count = len(offsets) - 1
        self._count = count
        self._start = np.zeros(max(1025, 2 * (count + 1)), dtype=np.int64)
        self._start[: count + 1] = offsets
        self._arena = np.empty(max(16 * 1024, 2 * len(data)), dtype=np.uint8)
        self._arena[: len(data)] = data
        self._big = (
            np.array(arrays["big_hashes"], dtype=np.uint64),
            np.array(arrays["big_seqs"], dtype=np.int64),
        )
        self._small = (
            np.array(arrays["small_hashes"], dtype=np.uint64),
            np.array(arrays["small_seqs"], dtype=np.int64),
        )
        self._tiny = (  # (absent from snapshots written before the tiny run)
            np.array(arrays.get("tiny_hashes", ()), dtype=np.uint64),
            np.array(arrays.get("tiny_seqs", ()), dtype=np.int64),
        )
        self._in_older = None

    def _probe(
        self, column: pa.Array, older: IdSet | None = None
    ) -> tuple[I64, U8, U64, I64, Bools]:
        offsets, data, _ = string_buffers(column)
        hashes = _hashes(offsets, data)
        if len(hashes) == 1:  # (an authorization's batch: no sort to make)
            rows, sorted_hashes = np.zeros(1, dtype=np.int64), hashes
        else:  # equal hashes in any order: _check_batch does not mind
            rows = np.argsort(hashes)
            sorted_hashes = hashes[rows]
        seen = np.zeros(len(column), dtype=np.bool_)
        if self._count:
            _check_runs(
                sorted_hashes, rows, offsets, data, *self._big, *self._small, *self._tiny,
                self._start, self._arena, seen,
            )  # fmt: skip
        if older is not None and older._count:
            found = np.zeros(len(column), dtype=np.bool_)
            _check_runs(
                sorted_hashes, rows, offsets, data, *older._big, *older._small, *older._tiny,
                older._start, older._arena, found,
            )  # fmt: skip
            self._in_older = found
        return offsets, data, sorted_hashes, rows, seen

    def contains(self, column: pa.Array) -> Bools:
        """True where the id is present (nothing is added)."""
        if self._count == 0:
            return np.zeros(len(column), dtype=np.bool_)
        return self._probe(column)[4]

    def admit(self, column: pa.Array, older: IdSet | None = None) -> Bools:
        """Adds a non-null string column; True where the id was already present.

        ``older`` (an earlier generation) is checked too, in the same pass, but not added to.
        """
        self._in_older = None
        if len(column) == 1 and column.type == pa.string() and column.null_count == 0:
            return self._admit_one(column.to_pylist()[0], older)
        offsets, data, sorted_hashes, rows, seen = self._probe(column, older)
        if len(column) > 1:  # (one id cannot repeat within its batch)
            _check_batch(sorted_hashes, rows, offsets, data, seen)
        # An id seen only in the older generation is added here too: seen again, kept longer.
        in_older = self._in_older
        new = ~seen[rows]  # in hash order
        new_rows = rows[new]
        if in_older is not None:
            seen = seen | in_older
        if len(new_rows) == 0:
            return seen
        seqs = self._store(offsets, data, new_rows)
        self._add_to_runs(sorted_hashes[new], seqs)
        return seen

    def _admit_one(self, transaction_id: str, older: IdSet | None) -> Bools:
        """:meth:`admit` of one id (an authorization's batch: a dozen NumPy calls fewer)."""
        key = np.frombuffer(transaction_id.encode(), np.uint8)
        key_hash, seen = _probe_one(key, self._runs(), self._start, self._arena)
        in_older = False
        if older is not None and older._count:
            in_older = bool(_probe_one(key, older._runs(), older._start, older._arena)[1])
        if not seen:
            seq = self._store(np.array([0, key.size], np.int64), key, np.zeros(1, np.int64))
            self._add_to_runs(np.array([key_hash], np.uint64), seq)
        return np.array([seen or in_older], np.bool_)

    def _runs(self) -> tuple[U64, I64, U64, I64, U64, I64]:
        return (*self._big, *self._small, *self._tiny)

    def _add_to_runs(self, new_h: U64, seqs: I64) -> None:
        """Files new ids (their hashes in order, and sequence numbers) in the tiny run, and
        the tiny run in the small one, the small in the big one, as each fills."""
        tiny_h, tiny_s = self._tiny
        if len(tiny_h) + len(new_h) <= TINY_RUN:
            self._tiny = _merge(tiny_h, tiny_s, new_h, seqs)
            return
        joined_h, joined_s = _merge(tiny_h, tiny_s, new_h, seqs)
        self._tiny = (np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64))
        small_h, small_s = self._small
        if len(small_h) + len(joined_h) <= SMALL_RUN:
            self._small = _merge(small_h, small_s, joined_h, joined_s)
        else:  # the small run and the new ids join the big run
            joined_h, joined_s = _merge(small_h, small_s, joined_h, joined_s)
            self._big = _merge(self._big[0], self._big[1], joined_h, joined_s)
            self._small = (np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64))

    def _store(self, offsets: I64, data: U8, rows_by_hash: I64) -> I64:
        """Copies the ids of the rows (given in hash order) to the arena, in row order (a
        sequential read); returns each one's sequence number, in the order given."""
        first = self._count
        count = len(rows_by_hash)
        needed_keys = first + count + 1
        if needed_keys > len(self._start):
            grown = np.zeros(max(needed_keys, 2 * len(self._start)), dtype=np.int64)
            grown[: len(self._start)] = self._start
            self._start = grown
        base = int(self._start[first])
        needed_bytes = base + int(offsets[-1] - offsets[0])  # every row's: an upper bound
        if needed_bytes > len(self._arena):
            grown_arena = np.empty(max(needed_bytes, 2 * len(self._arena)), dtype=np.uint8)
            grown_arena[:base] = self._arena[:base]
            self._arena = grown_arena
        seqs = _append_ids(offsets, data, rows_by_hash, self._start, self._arena, first)
        self._count += count
        return seqs


@numba.njit(cache=True, nogil=True)
def _append_ids(
    offsets: I64, data: U8, rows_by_hash: I64, key_start: I64, arena: U8, first: int
) -> I64:
    """Appends the rows' ids after id ``first - 1``, in row order; their sequence numbers in
    the order of ``rows_by_hash``."""
    in_row_order = np.sort(rows_by_hash)
    rank = np.empty(offsets.size - 1, dtype=np.int64)
    at = key_start[first]
    for k in range(in_row_order.size):
        row = in_row_order[k]
        begin = offsets[row]
        end = offsets[row + 1]
        arena[at : at + end - begin] = data[begin:end]
        at += end - begin
        key_start[first + 1 + k] = at
        rank[row] = k
    seqs = np.empty(rows_by_hash.size, dtype=np.int64)
    for k in range(rows_by_hash.size):
        seqs[k] = first + rank[rows_by_hash[k]]
    return seqs
