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

A ring overwrites its oldest entry only when that entry is older than the key's horizon (the
longest window plus its delay plus ``slack``); otherwise the kernel stops and the caller
doubles the ring width (up to a cap) and calls again from that row, so windows stay exact.
At the cap a key's windows count at most its last ``cap`` transactions (as the velocity
detector's ring does).
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

# Output columns of the kernel, in order (the names the catalog gives them).
CUSTOMER_COLUMNS = 12  # 3 x (count, avg), ratio, z, since previous, known frauds, tx, max ratio
TERMINAL_COLUMNS = 9  # 3 x (count, risk), count 1 d now, known frauds 30 d, share known


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
    longest = windows_ms[windows_ms.size - 1]
    for i in range(start, n):
        s = key[i]
        if s < 0:
            out[i, :] = np.nan
            continue
        t = time_ms[i]
        k = count[s]
        pos = k % width
        if k >= width and r_time[s, pos] > t - horizon_ms and width < cap:
            return i
        for w in range(windows_ms.size):
            lo = t - windows_ms[w]
            c = 1.0
            total = amount[i]
            for j in range(min(k, width)):
                e = r_time[s, j]
                if lo < e <= t:
                    c += 1.0
                    total += r_amount[s, j]
            out[i, 2 * w] = c
            out[i, 2 * w + 1] = total / c
        known = 0.0
        biggest = 0.0
        lo = t - longest
        for j in range(min(k, width)):
            e = r_time[s, j]
            if lo < e <= t:
                if r_known[s, j] <= t:
                    known += 1.0
                if r_amount[s, j] > biggest:
                    biggest = r_amount[s, j]
        b = 2 * windows_ms.size
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
        r_time[s, pos] = t
        r_amount[s, pos] = amount[i]
        r_seq[s, pos] = seq[i]
        r_known[s, pos] = seq_known[seq[i]] if seq[i] >= 0 else NEVER
        count[s] = k + 1
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
    out: F64,
) -> int:
    """Terminal features for rows ``start..``; returns the row it stopped at (n when done).

    Columns: for each window w, over the delayed window ``(t - delay - w, t - delay]``, the
    transactions and the share of them known as frauds by ``t`` (the handbook's terminal
    risk); transactions in ``(t - 1 d, t]`` this one included; frauds known by ``t`` in
    ``(t - longest, t]``; the share of the key's transactions known as frauds by ``t``.
    """
    n = key.size
    width = r_time.shape[1]
    longest = windows_ms[windows_ms.size - 1]
    for i in range(start, n):
        s = key[i]
        if s < 0:
            out[i, :] = np.nan
            continue
        t = time_ms[i]
        k = count[s]
        pos = k % width
        if k >= width and r_time[s, pos] > t - horizon_ms and width < cap:
            return i
        valid = min(k, width)
        hi = t - delay_ms
        for w in range(windows_ms.size):
            lo = hi - windows_ms[w]
            c = 0.0
            frauds = 0.0
            for j in range(valid):
                e = r_time[s, j]
                if lo < e <= hi:
                    c += 1.0
                    if r_known[s, j] <= t:
                        frauds += 1.0
            out[i, 2 * w] = c
            out[i, 2 * w + 1] = frauds / c if c > 0 else 0.0
        b = 2 * windows_ms.size
        recent = 1.0
        known = 0.0
        known_all = 0.0
        for j in range(valid):
            e = r_time[s, j]
            if t - DAY_MS < e <= t:
                recent += 1.0
            if r_known[s, j] <= t:
                known_all += 1.0
                if t - longest < e <= t:
                    known += 1.0
        out[i, b] = recent
        out[i, b + 1] = known
        out[i, b + 2] = known_all / valid if valid > 0 else 0.0
        r_time[s, pos] = t
        r_seq[s, pos] = seq[i]
        r_known[s, pos] = seq_known[seq[i]] if seq[i] >= 0 else NEVER
        count[s] = k + 1
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
) -> int:
    """Marks labelled transactions in their key's ring; returns how many were found.

    A fraud label sets ``known_ms`` to its time (the earliest, if labelled twice); a
    not-fraud label clears it (an analyst overturning a chargeback).
    """
    width = r_seq.shape[1]
    found = 0
    for i in range(label_seq.size):
        q = label_seq[i]
        if q < 0 or q >= seq_key.size:
            continue
        s = seq_key[q]
        if s < 0:
            continue
        for j in range(min(count[s], width)):
            if r_seq[s, j] == q:
                if is_fraud[i]:
                    if label_time[i] < r_known[s, j]:
                        r_known[s, j] = label_time[i]
                else:
                    r_known[s, j] = NEVER
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
