"""When each transaction was known as a fraud, as of any time: a label file folded per id.

The embedded pipeline marks labels as they become due (:class:`~fraudstream.io.labels.
LabelFeed`): before each micro-batch, the labels with ``label_time`` up to its latest decision
time, in label-time order. A fraud label sets the transaction's known time to the earliest
fraud label's time; a not-fraud label clears it (an analyst overturning a chargeback). What
a feature reads is therefore a pure function of the transaction and the time ``until`` the
labels were taken: the fold of its labels up to ``until``. :class:`LabelTimeline` keeps that
fold for every transaction a fraud label names, by the 64-bit hash of its id, so a keyed
stage that holds any customer's or terminal's ring entries (the keyed Flink job) marks them
exactly as the embedded pipeline would, with no sequence numbers shared between stages.

>>> import pyarrow as pa
>>> labels = Labels(pa.array(["a", "b", "a", "c"]), np.array([True, False, False, True]),
...                 np.array([100, 150, 300, 400]))
>>> timeline = LabelTimeline(labels)
>>> hashes = hash_ids(pa.array(["a", "b", "c", "zz"]))
>>> timeline.known(hashes, 200).tolist() == [100, NEVER, NEVER, NEVER]
True
>>> timeline.known(hashes, 500).tolist() == [NEVER, NEVER, 400, NEVER]  # "a" overturned
True
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.engine.ids import hash_ids
from fraudstream.features.kernels import NEVER
from fraudstream.io.labels import Labels

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

__all__ = ["LabelTimeline", "fraud_named"]


def fraud_named(labels: Labels) -> Labels:
    """The labels of the transactions some fraud label names (the only ones that can mark a
    known fraud: a not-fraud label of a transaction never labelled fraud changes nothing).

    >>> named = fraud_named(Labels(pa.array(["a", "b", "a"]), np.array([True, False, False]),
    ...                            np.array([1, 2, 3])))
    >>> named.transaction_id.to_pylist(), named.is_fraud.tolist()
    (['a', 'a'], [True, False])
    """
    frauds = labels.transaction_id.filter(pa.array(labels.is_fraud))
    if len(frauds) == len(labels):
        return labels
    keep = np.isin(hash_ids(labels.transaction_id), hash_ids(frauds))
    return Labels(
        labels.transaction_id.filter(pa.array(keep)),
        labels.is_fraud[keep],
        labels.label_time[keep],
    )


class LabelTimeline:
    """Each fraud-named transaction's labels in label-time order, folded (module docstring)."""

    def __init__(self, labels: Labels | None = None) -> None:
        named = fraud_named(labels) if labels is not None else Labels.empty()
        hashes = hash_ids(named.transaction_id) if len(named) else np.empty(0, np.uint64)
        order = np.argsort(hashes, kind="stable")  # per id, still in label-time order
        ordered = hashes[order]
        first = np.ones(len(ordered), dtype=np.bool_)
        first[1:] = ordered[1:] != ordered[:-1]
        self.hashes: U64 = ordered[first]
        self.starts: I64 = np.append(np.flatnonzero(first), len(ordered)).astype(np.int64)
        self.times: I64 = named.label_time[order]
        self.folded: I64 = _fold(self.starts, self.times, named.is_fraud[order])

    def __len__(self) -> int:
        """Transactions some fraud label names."""
        return len(self.hashes)

    def known(self, id_hashes: U64, until_ms: int) -> I64:
        """When each transaction (by id hash) was known as a fraud, with the labels up to
        ``until_ms`` taken (``NEVER``: not, or no longer)."""
        out = np.full(len(id_hashes), NEVER, dtype=np.int64)
        if len(self.hashes) and len(id_hashes):
            _known_by(id_hashes, until_ms, self.hashes, self.starts, self.times, self.folded, out)
        return out


@numba.njit(cache=True, nogil=True)
def _fold(starts: I64, times: I64, is_fraud: npt.NDArray[np.bool_]) -> I64:
    # The known time after each label of an id, as the embedded mark_known leaves it.
    out = np.empty(times.size, dtype=np.int64)
    for q in range(starts.size - 1):
        known = NEVER
        for i in range(starts[q], starts[q + 1]):
            if is_fraud[i]:
                known = min(known, times[i])
            else:
                known = NEVER
            out[i] = known
    return out


@numba.njit(cache=True, nogil=True)
def _known_by(
    id_hashes: U64, until_ms: int, hashes: U64, starts: I64, times: I64, folded: I64, out: I64
) -> None:
    for i in range(id_hashes.size):
        q = np.searchsorted(hashes, id_hashes[i])
        if q >= hashes.size or hashes[q] != id_hashes[i]:
            continue
        # the last label of the id with label_time <= until_ms
        at = np.searchsorted(times[starts[q] : starts[q + 1]], until_ms, side="right")
        if at > 0:
            out[i] = folded[starts[q] + at - 1]
