"""Labels as a stream: chargebacks and analyst verdicts that arrive after the decision.

A label is ``(transaction_id, is_fraud, label_time)``: the transaction it is about, the
verdict, and when it became known (epoch ms or ISO-8601 with an offset). Labels are read
from a file (Parquet, CSV or JSON lines) next to the transactions (``--labels``) or pushed
while running (the web app records an analyst's review as one). :class:`LabelFeed` hands
them to the pipeline in ``label_time`` order, and only those known at a decision's time:
features that use known frauds (terminal risk) therefore never see the future.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from fraudstream.cardnumbers import CardTokenizer
from fraudstream.config import ConfigError
from fraudstream.io.card_columns import scrub_column
from fraudstream.schema import InvalidRecord, parse_timestamp

__all__ = ["LABEL_FIELDS", "LabelFeed", "Labels", "read_labels"]

LABEL_FIELDS = ("transaction_id", "is_fraud", "label_time")


class Labels:
    """A batch of labels as columns, sorted by ``label_time``."""

    def __init__(
        self,
        transaction_id: pa.Array,
        is_fraud: npt.NDArray[np.bool_],
        label_time: npt.NDArray[np.int64],
    ) -> None:
        order = np.argsort(label_time, kind="stable")
        self.transaction_id = transaction_id.take(pa.array(order))
        self.is_fraud = np.ascontiguousarray(is_fraud[order], dtype=np.bool_)
        self.label_time = np.ascontiguousarray(label_time[order], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.label_time)

    @classmethod
    def empty(cls) -> Labels:
        """No labels."""
        return cls(pa.array([], pa.string()), np.empty(0, np.bool_), np.empty(0, np.int64))

    def slice(self, start: int, stop: int) -> Labels:
        """Labels ``start:stop`` (already sorted)."""
        out = Labels.__new__(Labels)
        out.transaction_id = self.transaction_id.slice(start, stop - start)
        out.is_fraud = self.is_fraud[start:stop]
        out.label_time = self.label_time[start:stop]
        return out

    def table(self) -> pa.Table:
        """The labels as an Arrow table with the contract's columns."""
        return pa.table(
            {
                "transaction_id": self.transaction_id,
                "is_fraud": pa.array(self.is_fraud),
                "label_time": pa.array(self.label_time, pa.int64()),
            }
        )


def _times(column: pa.ChunkedArray, where: str) -> npt.NDArray[np.int64]:
    kind = column.type
    if pa.types.is_integer(kind):
        return np.asarray(column.to_numpy(), dtype=np.int64)
    if pa.types.is_timestamp(kind):
        millis = column.cast(pa.timestamp("ms", tz=kind.tz)).cast(pa.int64())
        return np.asarray(millis.to_numpy(), dtype=np.int64)
    values = column.to_pylist()
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        try:
            out[i] = parse_timestamp(value)
        except InvalidRecord as exc:
            raise ConfigError(
                f"{where} row {i + 1}: label_time: {exc}".replace(": timestamp", "")
            ) from None
    return out


def labels_from_table(table: pa.Table, where: str = "labels") -> Labels:
    """Checks a table of labels (the three fields; extra columns ignored)."""
    missing = [name for name in LABEL_FIELDS if name not in table.column_names]
    if missing:
        raise ConfigError(
            f"{where}: missing column(s) {', '.join(missing)} (need {', '.join(LABEL_FIELDS)})"
        )
    ids = table.column("transaction_id").cast(pa.string())
    fraud = table.column("is_fraud")
    for name, column in (
        ("transaction_id", ids),
        ("is_fraud", fraud),
        ("label_time", table.column("label_time")),
    ):
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise ConfigError(f"{where} row {row + 1}: {name} is missing")
    if not pa.types.is_boolean(fraud.type):
        if not pa.types.is_integer(fraud.type):
            raise ConfigError(f"{where}: is_fraud must be true/false or 0/1, got {fraud.type}")
        values = fraud.to_numpy()
        bad = np.flatnonzero((values != 0) & (values != 1))
        if len(bad):
            raise ConfigError(
                f"{where} row {bad[0] + 1}: is_fraud must be 0 or 1, got {values[bad[0]]}"
            )
        fraud = pc.not_equal(fraud, 0)
    times = _times(table.column("label_time"), where)
    # the ids as the decisions hold them: card numbers in them tokenized (README "Security")
    scrubbed = scrub_column(ids.combine_chunks(), CardTokenizer.from_environment().scrub)
    return Labels(scrubbed, fraud.to_numpy(zero_copy_only=False).astype(np.bool_), times)


def read_labels(path: str | Path) -> Labels:
    """Labels from a Parquet, CSV or JSON-lines file (by suffix); errors name file and row."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--labels {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pq.read_table(path)
        elif suffix == ".csv":
            table = pacsv.read_csv(path)
        elif suffix in (".jsonl", ".json", ".ndjson"):
            table = pajson.read_json(path)
        else:
            raise ConfigError(f"--labels {path}: use .parquet, .csv or .jsonl")
    except (pa.ArrowInvalid, OSError) as exc:
        raise ConfigError(f"--labels {path}: {str(exc).splitlines()[0]}") from None
    return labels_from_table(table, str(path))


class LabelFeed:
    """Labels waiting to become known, handed out in ``label_time`` order.

    >>> feed = LabelFeed(Labels(pa.array(["a", "b"]), np.array([True, False]), np.array([50, 10])))
    >>> due = feed.due(20)
    >>> due.transaction_id.to_pylist(), len(feed)
    (['b'], 1)
    >>> feed.push(Labels(pa.array(["c"]), np.array([True]), np.array([30])))
    >>> feed.due(100).transaction_id.to_pylist()
    ['c', 'a']
    """

    def __init__(self, labels: Labels | None = None, live: bool = False) -> None:
        self._labels = labels or Labels.empty()
        self._next = 0
        self.delivered = 0
        # A live feed takes labels while running (push), about any past transaction; a
        # file's labels are all known upfront, so only the transactions they name matter.
        self.live = live

    def fraud_ids(self) -> pa.Array:
        """Every transaction id a fraud label of this feed names (so far)."""
        return self._labels.transaction_id.filter(pa.array(self._labels.is_fraud))

    @property
    def position(self) -> int:
        """How many labels have been handed out (kept in checkpoints)."""
        return self._next

    @position.setter
    def position(self, value: int) -> None:
        self._next = max(0, min(int(value), len(self._labels)))

    def __len__(self) -> int:
        """Labels not yet due."""
        return len(self._labels) - self._next

    def push(self, labels: Labels) -> None:
        """Adds labels that arrived while running (e.g. an analyst's review).

        Only a ``live`` feed's pushes reach transactions decided before them.
        """
        rest = self._labels.slice(self._next, len(self._labels))
        self._labels = Labels(
            pa.concat_arrays([rest.transaction_id, labels.transaction_id.cast(pa.string())]),
            np.concatenate([rest.is_fraud, labels.is_fraud]),
            np.concatenate([rest.label_time, labels.label_time]),
        )
        self._next = 0

    def due(self, until_ms: int) -> Labels:
        """The labels with ``label_time <= until_ms`` not handed out before."""
        stop = int(np.searchsorted(self._labels.label_time, until_ms, side="right"))
        if stop <= self._next:
            return Labels.empty()
        out = self._labels.slice(self._next, stop)
        self._next = stop
        self.delivered += len(out)
        return out
