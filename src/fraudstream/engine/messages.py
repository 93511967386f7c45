"""Reason messages: the sentence a person reads for each rule a transaction fired.

A detector's ``message(rule, values)`` writes one from that row's values: the transaction's
fields (:class:`BaseValues`) and the detector's findings for the batch. Most fired rows are
never shown (a run writing alerts writes about 1 % of rows), so a rule's messages are kept as
:class:`RuleTexts` and written when read, for the rows read (``fraudstream.decide.Reasons``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.detectors import Detector
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pylists import python_list

__all__ = ["BaseValues", "ColumnsAt", "RuleTexts", "describe"]

_BASE_FIELDS = ("zipcode", "merchant_id", "device_id", "ip", "country")


class ColumnsAt(Mapping[str, list[Any]]):
    """Columns at some rows as Python lists, each converted when first read: a detector
    writing a batch of messages reads only the few columns its text shows.

    >>> columns = ColumnsAt({"a": pa.array(["x", "y", "z"]), "b": np.arange(3)}, np.array([2, 0]))
    >>> columns["a"], list(columns), len(columns)
    (['z', 'x'], ['a', 'b'], 2)
    """

    def __init__(self, sources: dict[str, Any], rows: npt.NDArray[np.int64]) -> None:
        self._sources = sources
        self._rows = rows
        self._take: pa.Array | None = None
        self._read: dict[str, list[Any]] = {}

    def __getitem__(self, name: str) -> list[Any]:
        values = self._read.get(name)
        if values is None:
            column = self._sources[name]
            if isinstance(column, pa.Array):
                if self._take is None:
                    self._take = pa.array(self._rows, pa.int64())
                values = python_list(column.take(self._take))
            else:
                values = column[self._rows].tolist()
            self._read[name] = values
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


class BaseValues:
    """The transaction fields messages read, read for the rows asked only."""

    def __init__(self, tx: TxBatch, time_ms: npt.NDArray[np.int64]) -> None:
        self.tx = tx
        self.time_ms = time_ms

    def sources(self) -> dict[str, Any]:
        """The base columns (Arrow or numpy), whole."""
        tx = self.tx
        columns: dict[str, Any] = {
            "transaction_id": tx.transaction_id,
            "amount": tx.amount,
            "time_ms": self.time_ms,
            "event_ms": tx.timestamp_ms,
        }
        for name in _BASE_FIELDS:
            columns[name] = getattr(tx, name)
        return columns

    def at(self, rows: npt.NDArray[np.int64]) -> dict[str, list[Any]]:
        """The base columns at ``rows``."""
        return dict(ColumnsAt(self.sources(), rows))


class RuleTexts(Sequence[str]):
    """A rule's messages for its fired rows, written when read (:meth:`at`: only the rows
    asked). A run that writes only its alerts reads about 1 % of them.

    Everything it reads is the batch's own (transaction columns, the detector's findings,
    the detector instance of the rules in force then), so a message written later is the one
    that would have been written at once.
    """

    def __init__(
        self,
        detector: Detector[Any],
        rule_name: str,
        base: BaseValues,
        own_features: dict[str, Any],
        rows: npt.NDArray[np.int64],
    ) -> None:
        self.detector = detector
        self.rule_name = rule_name
        self.base = base
        self.own_features = own_features
        self.rows = rows
        self._all: list[str] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def at(self, positions: npt.NDArray[np.int64]) -> list[str]:
        """The messages of the fired rows at ``positions`` (indices into ``rows``)."""
        if self._all is not None:
            return [self._all[k] for k in positions.tolist()]
        rows = self.rows[positions]
        return describe(self.detector, self.rule_name, self.base, self.own_features, rows)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if self._all is None:  # read one by one: write them all, once
            self._all = self.at(np.arange(len(self.rows), dtype=np.int64))
        return self._all[index]


def describe(
    detector: Detector[Any],
    rule_name: str,
    base: BaseValues,
    own_features: dict[str, Any],
    rows: npt.NDArray[np.int64],
) -> list[str]:
    """The detector's message for each fired row, from that row's values (vectorized reads)."""
    sources = base.sources()
    sources.update(own_features)
    return detector.messages(rule_name, ColumnsAt(sources, rows))
