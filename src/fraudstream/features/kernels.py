"""The numba kernels behind the streaming features: per-key rings of recent transactions.

Each customer and each terminal keeps a ring of its recent transactions (event time, amount,
sequence number, and when the transaction became *known* as a fraud: ``NEVER`` until a fraud
label arrives). A transaction's window features are read from its key's ring, the
transaction itself included, before it is added. Every window is half-open in event time,
``(t - w, t]``: a transaction exactly ``w`` earlier is outside, one at the same millisecond
inside. A fraud counts only when ``known_ms <= t``: a label known after the decision's time
never influences it, whatever order labels and transactions arrive in. A transaction enters
its rings with the fraud time already known for it (``seq_known``, labels that came with or
before it); labels of transactions already in a ring are marked there (:func:`apply_labels`).

Entries older than the key's horizon (the longest window plus its delay plus ``slack``,
measured from the newest time the key has seen) expire; a ring overwrites only expired
entries. When it would have to overwrite a live one, the kernel stops and the caller doubles
the ring width (up to a cap) and calls again from that row, so windows stay exact for any
record at most ``slack`` behind its key's newest one. At the cap a key's windows count at
most its last ``cap`` transactions, this one included (as the velocity detector's ring does).
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
NEVER = np.iinfo(np.int64).max  # "not known as a fraud"
DAY_MS = 86_400_000


@numba.njit(cache=True, nogil=True)
def unroll(
    ring: npt.NDArray[np.generic], count: I64, width: int, fill: float
) -> npt.NDArray[np.generic]:
    """The rings re-laid for ``width`` columns: entry number j of a key at column j % width."""
    keys, old = ring.shape
    out = np.full((keys, width), fill, dtype=ring.dtype)
    for s in range(keys):
        k = count[s]
        for j in range(max(0, k - old), k):
            out[s, j % width] = ring[s, j % old]
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _admit(
    s: int, t: int, horizon_ms: int, cap: int, r_time: I64, count: I64, head: I64, newest: I64
) -> bool:
    """Expires the key's entries older than its horizon; False when the ring must widen.

    ``head[s]`` is the number of the key's oldest live entry: entries before it are older
    than ``newest - horizon`` (the newest time the key has seen), so no record within the
    allowed lateness can need them. At the cap the oldest live entry is dropped instead.
    """
    width = r_time.shape[1]
    mask = width - 1
    k = count[s]
    latest = max(newest[s], t)
    h = head[s]
    while h < k and r_time[s, h & mask] <= latest - horizon_ms:
        h += 1
    if k - h >= width:
        if width < cap:
            head[s] = h
            return False
        h = k - width + 1
    head[s] = h
    newest[s] = latest
    return True


@numba.njit(cache=True, nogil=True, inline="always")
def _window_of(e: int, hi: int, windows_ms: I64) -> int:
    """The shortest window ``(hi - w, hi]`` holding event time ``e`` (windows ascend; the
    caller checked that the longest one holds it)."""
    w = 0
    while e <= hi - windows_ms[w]:
        w += 1
    return w


@numba.njit(cache=True, nogil=True, inline="always")
def _accumulate(counts: F64, values: F64) -> None:
    """Per-window sums (each entry counted in its shortest window) made cumulative in place:
    entry ``w`` then covers window ``w`` and every shorter one."""
    for w in range(1, counts.size):
        counts[w] += counts[w - 1]
        values[w] += values[w - 1]


@numba.njit(cache=True, nogil=True, inline="always")
def _append(
    s: int,
    t: int,
    q: int,
    seq_known: I64,
    r_time: I64,
    r_seq: I64,
    r_known: I64,
    count: I64,
    marked: I64,
) -> int:
    """Adds transaction ``q`` (time ``t``) to key ``s``'s ring, with the fraud time already
    known for it; returns its position in the ring (for columns only one kernel keeps)."""
    k = count[s]
    pos = k & (r_time.shape[1] - 1)
    r_time[s, pos] = t
    r_seq[s, pos] = q
    r_known[s, pos] = seq_known[q] if q >= 0 else NEVER
    if r_known[s, pos] != NEVER:
        marked[s] += 1
    count[s] = k + 1
    return int(pos)


@numba.njit(cache=True, nogil=True)
def customer_kernel(
    start: int,
    key: I32,
    time_ms: I64,
    amount: F64,
    seq: I64,
    seq_known: I64,
    windows_ms: I64,
    horizon_ms: int,
    cap: int,
    r_time: I64,
    r_amount: F64,
    r_seq: I64,
    r_known: I64,
    count: I64,
    head: I64,
    newest: I64,
    marked: I64,
    stats: F64,
    last_ms: I64,
    out: F64,
) -> int:
    """Customer features for rows ``start..``; returns the row it stopped at (n when done).

    ``stats[s] = [n, mean, M2]`` of the key's amounts before this one (Welford).
    Columns: for each window (count, average amount); amount / mean before; z-score before;
    seconds since the key's previous transaction; known frauds in the longest window;
    transactions seen; amount / max amount in the longest window before this one.
    """
    n = key.size
    width = r_time.shape[1]
    mask = width - 1  # widths are powers of two
    windows = windows_ms.size
    longest = windows_ms[windows - 1]
    counts = np.empty(windows)
    totals = np.empty(windows)
    for i in range(start, n):
        s = key[i]
        if s < 0:
            out[i, :] = np.nan
            continue
        t = time_ms[i]
        if not _admit(s, t, horizon_ms, cap, r_time, count, head, newest):
            return i
        k = count[s]
        any_marked = marked[s] > 0  # no fraud ever marked: the known times need no reading
        counts[:] = 0.0
        totals[:] = 0.0
        counts[0] = 1.0  # this transaction
        totals[0] = amount[i]
        known = 0.0
        biggest = 0.0
        oldest = t - longest
        for j in range(head[s], k):
            p = j & mask
            e = r_time[s, p]
            if e > t or e <= oldest:
                continue
            a = r_amount[s, p]
            w = _window_of(e, t, windows_ms)
            counts[w] += 1.0
            totals[w] += a
            if any_marked and r_known[s, p] <= t:
                known += 1.0
            if a > biggest:
                biggest = a
        _accumulate(counts, totals)
        for w in range(windows):
            out[i, 2 * w] = counts[w]
            out[i, 2 * w + 1] = totals[w] / counts[w]
        b = 2 * windows
        m_n, mean, m2 = stats[s, 0], stats[s, 1], stats[s, 2]
        out[i, b] = amount[i] / mean if m_n > 0 and mean > 0 else np.nan
        std = np.sqrt(m2 / m_n) if m_n > 1 else 0.0
        out[i, b + 1] = (amount[i] - mean) / std if std > 0 else np.nan
        out[i, b + 2] = (t - last_ms[s]) / 1000.0 if k > 0 else np.nan
        out[i, b + 3] = known
        out[i, b + 4] = float(k)
        out[i, b + 5] = amount[i] / biggest if biggest > 0 else np.nan
        # add this transaction
        m_n += 1.0
        delta = amount[i] - mean
        mean += delta / m_n
        m2 += delta * (amount[i] - mean)
        stats[s, 0], stats[s, 1], stats[s, 2] = m_n, mean, m2
        last_ms[s] = t
        pos = _append(s, t, seq[i], seq_known, r_time, r_seq, r_known, count, marked)
        r_amount[s, pos] = amount[i]
    return n


@numba.njit(cache=True, nogil=True)
def terminal_kernel(
    start: int,
    key: I32,
    time_ms: I64,
    seq: I64,
    seq_known: I64,
    windows_ms: I64,
    delay_ms: int,
    horizon_ms: int,
    cap: int,
    r_time: I64,
    r_seq: I64,
    r_known: I64,
    count: I64,
    head: I64,
    newest: I64,
    marked: I64,
    out: F64,
) -> int:
    """Terminal features for rows ``start..``; returns the row it stopped at (n when done).

    Columns: for each window w, over the delayed window ``(t - delay - w, t - delay]``, the
    transactions and the share of them known as frauds by ``t`` (the handbook's terminal
    risk); transactions in ``(t - 1 d, t]`` this one included; frauds known by ``t`` in
    ``(t - longest, t]``; the share of the key's live transactions known as frauds by ``t``.
    Then the terminal's fraud episode, from its frauds known by ``t`` with event time in
    ``(t - longest - delay, t]`` (NaN without one): days since the latest and since the
    earliest; the transactions after the latest one old enough to have been charged back
    (event time up to ``t - delay``) that were not, so a terminal still compromised has none
    and one whose compromise ended gains them; the fraud share of the transactions from the
    earliest one to ``t - delay``.
    """
    n = key.size
    width = r_time.shape[1]
    mask = width - 1  # widths are powers of two
    windows = windows_ms.size
    longest = windows_ms[windows - 1]
    counts = np.empty(windows)
    frauds = np.empty(windows)
    for i in range(start, n):
        s = key[i]
        if s < 0:
            out[i, :] = np.nan
            continue
        t = time_ms[i]
        if not _admit(s, t, horizon_ms, cap, r_time, count, head, newest):
            return i
        k = count[s]
        any_marked = marked[s] > 0  # no fraud ever marked: the known times need no reading
        hi = t - delay_ms
        counts[:] = 0.0
        frauds[:] = 0.0
        recent = 1.0
        known = 0.0
        known_all = 0.0
        live = 0.0
        oldest = hi - longest
        first = NEVER  # the episode: earliest and latest known fraud in (oldest, t]
        last = oldest
        for j in range(head[s], k):
            p = j & mask
            e = r_time[s, p]
            fraud = any_marked and r_known[s, p] <= t
            live += 1.0
            if fraud:
                known_all += 1.0
            if e <= t:
                if e > t - DAY_MS:
                    recent += 1.0
                if fraud and e > t - longest:
                    known += 1.0
                if fraud and e > oldest:
                    first = min(first, e)
                    last = max(last, e)
            if oldest < e <= hi:
                w = _window_of(e, hi, windows_ms)
                counts[w] += 1.0
                if fraud:
                    frauds[w] += 1.0
        _accumulate(counts, frauds)
        for w in range(windows):
            out[i, 2 * w] = counts[w]
            out[i, 2 * w + 1] = frauds[w] / counts[w] if counts[w] > 0 else 0.0
        b = 2 * windows
        out[i, b] = recent
        out[i, b + 1] = known
        out[i, b + 2] = known_all / live if live > 0 else 0.0
        if first == NEVER:
            out[i, b + 3 : b + 7] = np.nan
        else:
            cleared = 0.0
            since_first = 0.0
            frauds_since_first = 0.0
            for j in range(head[s], k):  # only keys with a known fraud come here
                p = j & mask
                e = r_time[s, p]
                if first <= e <= hi:
                    since_first += 1.0
                    if r_known[s, p] <= t:
                        frauds_since_first += 1.0
                    elif e > last:
                        cleared += 1.0
            out[i, b + 3] = (t - last) / DAY_MS
            out[i, b + 4] = (t - first) / DAY_MS
            out[i, b + 5] = cleared
            out[i, b + 6] = frauds_since_first / since_first if since_first > 0 else np.nan
        _append(s, t, seq[i], seq_known, r_time, r_seq, r_known, count, marked)
    return n


@numba.njit(cache=True, nogil=True)
def apply_labels(
    label_seq: I64,
    is_fraud: npt.NDArray[np.bool_],
    label_time: I64,
    seq_key: I32,
    r_seq: I64,
    r_known: I64,
    count: I64,
    head: I64,
    marked: I64,
) -> int:
    """Marks labelled transactions in their key's ring; returns how many were found.

    A fraud label sets ``known_ms`` to its time (the earliest, if labelled twice); a
    not-fraud label clears it (an analyst overturning a chargeback).
    """
    width = r_seq.shape[1]
    mask = width - 1
    found = 0
    for i in range(label_seq.size):
        q = label_seq[i]
        if q < 0 or q >= seq_key.size:
            continue
        s = seq_key[q]
        if s < 0 or s >= count.size:
            continue
        for j in range(head[s], count[s]):
            if r_seq[s, j & mask] == q:
                if is_fraud[i]:
                    if label_time[i] < r_known[s, j & mask]:
                        r_known[s, j & mask] = label_time[i]
                        marked[s] += 1  # counts markings, never less than the marked entries
                else:
                    r_known[s, j & mask] = NEVER
                found += 1
                break
    return found


@numba.njit(cache=True, nogil=True)
def mark_known(
    label_seq: I64, is_fraud: npt.NDArray[np.bool_], label_time: I64, seq_known: I64
) -> None:
    """Records, per transaction, when it became known as a fraud (NEVER if cleared)."""
    for i in range(label_seq.size):
        q = label_seq[i]
        if q < 0:
            continue
        if is_fraud[i]:
            if label_time[i] < seq_known[q]:
                seq_known[q] = label_time[i]
        else:
            seq_known[q] = NEVER
