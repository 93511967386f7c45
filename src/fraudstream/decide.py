"""Rules + detectors' findings -> score, tier and the reasons a person reads.

The score of a transaction combines the scores of the rules it fired as independent
evidence (noisy-or: 1 - prod(1 - score)); the tier is ``decline`` at or above the decline
threshold, ``review`` at or above the review threshold, else ``approve``. Thresholds are the
user profile's when it has them (seed 004's per-profile thresholds), else the rule set's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.engine.batch import FEW_ROWS, TxBatch

TIERS = ("approve", "review", "decline")
APPROVE, REVIEW, DECLINE = 0, 1, 2
F64 = npt.NDArray[np.float64]


@dataclass(slots=True)
class Decisions:
    """The decisions for one processed micro-batch, aligned with ``tx`` row by row."""

    tx: TxBatch
    time_ms: npt.NDArray[np.int64]
    score: F64
    tier: npt.NDArray[np.int8]
    fired: dict[str, npt.NDArray[np.bool_]]
    reasons: Reasons
    features: dict[str, Any]
    processed_at_ms: float
    model: tuple[str, str] | None = None  # (name, version) of the model that scored them
    # Rules in shadow mode: what they found, recorded only (never in score or tier).
    shadow_fired: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    shadow_reasons: Reasons | None = None  # None: no shadow rule fired
    rule_version: int = 0  # the rule version that decided them (0: not numbered)
    # A backtest's other rule sets, decided over the same batch (same rows, same order).
    alternatives: list[Decisions] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.score)

    def take(self, rows: npt.NDArray[np.int64]) -> Decisions:
        """The decisions at ``rows`` only."""
        features = {
            k: (v.take(rows) if hasattr(v, "take") and not isinstance(v, np.ndarray) else v[rows])
            for k, v in self.features.items()
        }
        return Decisions(
            self.tx.take(rows), self.time_ms[rows], self.score[rows], self.tier[rows],
            {k: v[rows] for k, v in self.fired.items()}, self.reasons.take(rows), features,
            self.processed_at_ms, self.model,
            {k: v[rows] for k, v in self.shadow_fired.items()},
            self.shadow_reasons.take(rows) if self.shadow_reasons is not None else None,
            self.rule_version, [other.take(rows) for other in self.alternatives],
        )  # fmt: skip

    def alerts(self) -> npt.NDArray[np.int64]:
        """Rows that are not approved."""
        return np.flatnonzero(self.tier != APPROVE)

    def shadow_row_reasons(self, row: int) -> list[dict[str, str]]:
        """The shadow rules that fired on ``row`` (``shadow_reasons``), strongest first."""
        return self.shadow_reasons[row] if self.shadow_reasons is not None else []


def _concat_reasons(parts: list[Reasons]) -> Reasons:
    offsets = [parts[0].offsets]
    for part in parts[1:]:
        offsets.append(part.offsets[1:] + offsets[-1][-1])
    return Reasons(
        np.concatenate(offsets),
        [rule for part in parts for rule in part.rules],
        [message for part in parts for message in part.messages],
    )


def concat_decisions(parts: list[Decisions]) -> Decisions:
    """The decisions of consecutive parts of one batch, as one."""
    first = parts[0]

    def join(columns: list[Any]) -> Any:
        if isinstance(columns[0], pa.Array):
            return pa.concat_arrays(columns)
        return np.concatenate(columns)

    shadow = None
    if any(part.shadow_reasons is not None for part in parts):
        shadow = _concat_reasons(
            [
                part.shadow_reasons
                if part.shadow_reasons is not None
                else Reasons(np.zeros(len(part) + 1, dtype=np.int64), [], [])
                for part in parts
            ]
        )
    shadow_ids = {k for part in parts for k in part.shadow_fired}
    shadow_fired = {
        k: np.concatenate(
            [part.shadow_fired.get(k, np.zeros(len(part), dtype=np.bool_)) for part in parts]
        )
        for k in shadow_ids
    }
    return Decisions(
        TxBatch.concat([part.tx for part in parts]),
        np.concatenate([part.time_ms for part in parts]),
        np.concatenate([part.score for part in parts]),
        np.concatenate([part.tier for part in parts]),
        {k: np.concatenate([part.fired[k] for part in parts]) for k in first.fired},
        _concat_reasons([part.reasons for part in parts]),
        {k: join([part.features[k] for part in parts]) for k in first.features},
        first.processed_at_ms,
        first.model,
        shadow_fired,
        shadow,
        first.rule_version,
        [
            concat_decisions([part.alternatives[k] for part in parts])
            for k in range(len(first.alternatives))
        ],
    )


def combine(
    fired: Mapping[str, npt.NDArray[np.bool_]],
    scores: Mapping[str, float],
    review: F64,
    decline: F64,
    model: F64 | None = None,
) -> tuple[F64, npt.NDArray[np.int8]]:
    """Noisy-or score and tier per row.

    ``model`` is the model's score per row (its weight x its probability): one more piece of
    evidence in the noisy-or, like a rule whose score differs per transaction.

    >>> import numpy as np
    >>> s, t = combine({"a": np.array([True, False, True]), "b": np.array([True, False, False])},
    ...                {"a": 0.5, "b": 0.8}, np.full(3, 0.5), np.full(3, 0.9))
    >>> s.round(2).tolist(), t.tolist()
    ([0.9, 0.0, 0.5], [2, 0, 1])
    """
    n = len(review)
    if n <= FEW_ROWS:  # an authorization's batch: a NumPy call per rule costs more
        kept = [1.0] * n
        for rule, mask in fired.items():
            evidence = 1.0 - scores[rule]
            for row in compress(range(n), mask.tolist()):
                kept[row] *= evidence  # the same products, in the same order, as below
        if model is not None:
            kept = [k * (1.0 - m) for k, m in zip(kept, model.tolist(), strict=True)]
        # np.round(x, 6) is rint(x * 1e6) / 1e6: Python's round of a float is half to even
        rounded = [round((1.0 - k) * 1e6) / 1e6 for k in kept]
        tiers = [
            DECLINE if s >= d else REVIEW if s >= r else APPROVE
            for s, r, d in zip(rounded, review.tolist(), decline.tolist(), strict=True)
        ]
        return np.array(rounded, dtype=np.float64), np.array(tiers, dtype=np.int8)
    keep = np.ones(n, dtype=np.float64)
    for rule, mask in fired.items():
        keep[mask] *= 1.0 - scores[rule]
    if model is not None:
        keep *= 1.0 - model
    score = np.round(1.0 - keep, 6)
    tier = np.zeros(n, dtype=np.int8)
    tier[score >= review] = REVIEW
    tier[score >= decline] = DECLINE
    return score, tier


class Reasons:
    """The reasons of a batch's decisions, by row, kept as flat columns.

    ``reasons[row]`` is the row's list of ``{"rule", "message"}``, strongest rule first (empty
    when nothing fired); iterating gives the rows that have reasons. Nothing per row is built
    until a row is asked for, and :meth:`arrow` hands the whole column to Arrow at once.

    Messages may come lazily (:func:`explain` keeps each rule's texts as given, e.g. a
    pipeline's :class:`~fraudstream.engine.messages.RuleTexts`): they are written when first
    read, and only for the rows of this object; :meth:`take` keeps them unwritten. A run
    writing only its alerts (about 1 % of rows) thus never formats the other rows' messages.

    >>> import numpy as np
    >>> reasons = explain({"a": (np.array([2]), ["small"]), "b": (np.array([2, 5]), ["x", "y"])},
    ...                   {"a": 0.2, "b": 0.9}, 6)
    >>> [r["rule"] for r in reasons[2]], reasons[5], reasons[0], list(reasons)
    (['b', 'a'], [{'rule': 'b', 'message': 'y'}], [], [2, 5])
    >>> reasons.take(np.array([5])).messages
    ['y']
    """

    _rules: list[str] | None  # written on first read
    _messages: list[str] | None

    def __init__(
        self, offsets: npt.NDArray[np.int64], rules: list[str], messages: Sequence[str]
    ) -> None:
        names = list(dict.fromkeys(rules))
        index = {name: k for k, name in enumerate(names)}
        entries = len(rules)
        rule_of = np.array([index[rule] for rule in rules], dtype=np.int64)
        position = np.arange(entries, dtype=np.int64)
        self._fill(offsets, names, rule_of, [messages], np.zeros(entries, np.int64), position)
        self._rules = list(rules)

    @classmethod
    def _of(
        cls,
        offsets: npt.NDArray[np.int64],
        names: list[str],
        rule_of: npt.NDArray[np.int64],
        sources: list[Sequence[str]],
        source_of: npt.NDArray[np.int64],
        position: npt.NDArray[np.int64],
    ) -> Reasons:
        """Entry k: rule ``names[rule_of[k]]``, message ``sources[source_of[k]][position[k]]``."""
        reasons = cls.__new__(cls)
        reasons._fill(offsets, names, rule_of, sources, source_of, position)
        return reasons

    def _fill(
        self,
        offsets: npt.NDArray[np.int64],
        names: list[str],
        rule_of: npt.NDArray[np.int64],
        sources: list[Sequence[str]],
        source_of: npt.NDArray[np.int64],
        position: npt.NDArray[np.int64],
    ) -> None:
        self.offsets = offsets  # row r's reasons are entries [offsets[r], offsets[r + 1])
        self._names = names
        self._rule_of = rule_of
        self._sources = sources
        self._source_of = source_of
        self._position = position
        self._rules = None
        self._messages = None

    @property
    def rules(self) -> list[str]:
        """The rule of every entry, in row order."""
        if self._rules is None:
            names = self._names
            self._rules = [names[k] for k in self._rule_of.tolist()]
        return self._rules

    @property
    def messages(self) -> list[str]:
        """The message of every entry, in row order (written now if they were not)."""
        if self._messages is None:
            written = [""] * len(self._source_of)
            for k, source in enumerate(self._sources):
                entries = np.flatnonzero(self._source_of == k)
                if len(entries):
                    texts = texts_at(source, self._position[entries])
                    for entry, text in zip(entries.tolist(), texts, strict=True):
                        written[entry] = text
            self._messages = written
        return self._messages

    def __getitem__(self, row: int) -> list[dict[str, str]]:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        rules, messages = self.rules, self.messages
        return [{"rule": rules[k], "message": messages[k]} for k in range(start, end)]

    def get(self, row: int, default: Any = None) -> Any:
        """The row's reasons, or ``default`` when it has none."""
        return self[row] if self.offsets[row + 1] > self.offsets[row] else default

    def __contains__(self, row: object) -> bool:
        if not isinstance(row, int | np.integer) or not 0 <= row < len(self.offsets) - 1:
            return False
        return bool(self.offsets[row + 1] > self.offsets[row])

    def __iter__(self) -> Iterator[int]:
        return iter(np.flatnonzero(np.diff(self.offsets)).tolist())

    def __len__(self) -> int:
        return int(np.count_nonzero(np.diff(self.offsets)))

    def items(self) -> Iterator[tuple[int, list[dict[str, str]]]]:
        """(row, reasons) for every row that has reasons."""
        return ((row, self[row]) for row in self)

    def take(self, rows: npt.NDArray[np.int64]) -> Reasons:
        """The reasons of ``rows`` only, renumbered 0.. (messages still unwritten stay so)."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.diff(self.offsets)[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        shift = np.repeat(self.offsets[rows] - offsets[:-1], counts)
        entries = np.arange(int(offsets[-1]), dtype=np.int64) + shift
        taken = Reasons._of(
            offsets, self._names, self._rule_of[entries], self._sources,
            self._source_of[entries], self._position[entries],
        )  # fmt: skip
        if self._messages is not None:
            taken._messages = [self._messages[k] for k in entries.tolist()]
        return taken

    def arrow(self) -> pa.ListArray:
        """The reasons as an Arrow list<struct<rule, message>> column."""
        values = pa.StructArray.from_arrays(
            [pa.array(self.rules, pa.string()), pa.array(self.messages, pa.string())],
            names=["rule", "message"],
        )
        return pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)), values)


_NO_ENTRIES = np.empty(0, dtype=np.int64)
_NO_ENTRIES.flags.writeable = False  # shared by every reasons without entries


def texts_at(texts: Sequence[str], positions: npt.NDArray[np.int64]) -> list[str]:
    """``texts`` at ``positions``: a lazy source writes only those (its ``at``)."""
    at = getattr(texts, "at", None)
    if at is not None:
        written: list[str] = at(positions)
        return written
    return [texts[k] for k in positions.tolist()]


def explain(
    messages: Mapping[str, tuple[npt.NDArray[np.int64], Sequence[str]]],
    scores: Mapping[str, float],
    n: int,
) -> Reasons:
    """Reasons by row from each rule's fired rows and messages, strongest rule first (the
    messages are kept as given: a lazy rule's are written when read)."""
    ranked = sorted(messages, key=lambda r: -scores[r])
    if not ranked:
        return Reasons._of(np.zeros(n + 1, dtype=np.int64), [], _NO_ENTRIES, [], _NO_ENTRIES,
                           _NO_ENTRIES)  # fmt: skip
    rows = np.concatenate([messages[rule][0] for rule in ranked])
    rank = np.concatenate(
        [np.full(len(messages[rule][0]), k, dtype=np.int64) for k, rule in enumerate(ranked)]
    )
    position = np.concatenate(
        [np.arange(len(messages[rule][0]), dtype=np.int64) for rule in ranked]
    )
    order = np.lexsort((rank, rows))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    sources = [messages[rule][1] for rule in ranked]
    ranked_rank = rank[order]  # one source per ranked rule: its rule is its source
    return Reasons._of(offsets, ranked, ranked_rank, sources, ranked_rank, position[order])
