"""Per-transaction model scores out of a run: ``fraudstream score``'s table.

:class:`ScoreCollector` is a decisions sink: for every decided batch it keeps the
transaction id, the model's probability (the ``score``, before any weighting with the rules)
and, optionally, the ``top`` features that pushed it most, as ``name = value (+contribution)``
text like the alerts' ``model`` reason. Written as Parquet (or CSV by suffix), in decision
order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fraudstream.decide import Decisions
from fraudstream.models.artifact import ModelArtifact

__all__ = ["ScoreCollector", "top_contributions"]


def top_contributions(names: list[str], x: Any, contributions: Any, top: int) -> list[str]:
    """Each row's ``top`` strongest positive pushes as ``name = value (+contribution)``.

    >>> import numpy as np
    >>> top_contributions(["a", "b"], np.array([[1.0, 2.0]]), np.array([[0.1, 0.5]]), 1)
    ['b = 2 (+0.500)']
    """
    texts = []
    for k in range(len(x)):
        order = np.argsort(-contributions[k])[:top]
        texts.append(
            ", ".join(f"{names[j]} = {x[k, j]:.4g} ({contributions[k, j]:+.3f})" for j in order)
        )
    return texts


class ScoreCollector:
    """Collects ``transaction_id, score[, top_contributions]`` of every decision."""

    def __init__(self, model: ModelArtifact, top: int = 3) -> None:
        self.model = model
        self.top = top
        self.batches: list[pa.RecordBatch] = []

    def __call__(self, decisions: Decisions) -> None:
        n = len(decisions)
        if n == 0:
            return
        score = np.asarray(decisions.features["model_probability"], dtype=np.float64)
        columns: dict[str, Any] = {
            "transaction_id": decisions.tx.transaction_id,
            "score": pa.array(score, pa.float64()),
        }
        if self.top > 0:
            names = self.model.features
            x = np.empty((n, len(names)), dtype=np.float64)
            for j, name in enumerate(names):
                column = decisions.features.get(name)
                if column is None:
                    x[:, j] = np.nan
                elif isinstance(column, np.ndarray):
                    x[:, j] = column
                else:
                    x[:, j] = column.to_numpy(zero_copy_only=False)
            texts = top_contributions(names, x, self.model.contributions(x), self.top)
            columns["top_contributions"] = pa.array(texts, pa.string())
        self.batches.append(pa.RecordBatch.from_pydict(columns))

    def table(self) -> pa.Table:
        """Everything collected, in decision order."""
        if not self.batches:
            fields = [("transaction_id", pa.string()), ("score", pa.float64())]
            if self.top > 0:
                fields.append(("top_contributions", pa.string()))
            return pa.schema(fields).empty_table()
        return pa.Table.from_batches(self.batches)

    def write(self, path: str | Path) -> int:
        """Writes the scores (CSV if the name ends in .csv, Parquet otherwise); the rows."""
        table = self.table()
        if str(path).lower().endswith(".csv"):
            pacsv.write_csv(table, path)
        else:
            pq.write_table(table, path, compression="zstd")
        return int(table.num_rows)
