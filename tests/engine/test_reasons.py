"""Reasons whose messages are written when read give what written-at-once messages give.

``explain`` keeps each rule's texts as given; a pipeline gives lazy ones
(``engine.pipeline.RuleTexts``), written only for the rows read. Whatever rows are taken and
in whatever order things are read, the reasons must equal those of plain lists.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.decide import explain
from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline
from fraudstream.schema import ValidTx


class Lazy:
    """A rule's texts written on demand, counting what was written."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.written = 0

    def __len__(self) -> int:
        return len(self.texts)

    def at(self, positions: np.ndarray) -> list[str]:
        self.written += len(positions)
        return [self.texts[k] for k in positions.tolist()]

    def __getitem__(self, index: int) -> str:
        self.written += 1
        return self.texts[index]


N = 12
fired_rules = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.sets(st.integers(0, N - 1), min_size=1),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(
    fired=fired_rules,
    scores=st.fixed_dictionaries({r: st.floats(0, 1) for r in "abcd"}),
    taken=st.lists(st.integers(0, N - 1), max_size=N),
    read_all_first=st.booleans(),
)
def test_lazy_messages_equal_written_ones(
    fired: dict[str, set[int]], scores: dict[str, float], taken: list[int], read_all_first: bool
) -> None:
    eager, lazy, sources = {}, {}, {}
    for rule, rows in fired.items():
        ordered = np.array(sorted(rows), dtype=np.int64)
        texts = [f"{rule} at row {row}" for row in ordered.tolist()]
        eager[rule] = (ordered, texts)
        sources[rule] = Lazy(texts)
        lazy[rule] = (ordered, sources[rule])
    expected, reasons = explain(eager, scores, N), explain(lazy, scores, N)
    assert sum(source.written for source in sources.values()) == 0  # nothing written yet
    if read_all_first:
        assert reasons.messages == expected.messages
    rows = np.array(taken, dtype=np.int64)
    part, expected_part = reasons.take(rows), expected.take(rows)
    assert [part[k] for k in range(len(rows))] == [expected_part[k] for k in range(len(rows))]
    assert part.rules == expected_part.rules
    assert list(part) == list(expected_part)
    assert part.arrow().equals(expected_part.arrow())
    if not read_all_first:  # only the taken rows' messages were written
        assert sum(source.written for source in sources.values()) == len(expected_part.messages)
    assert [reasons[k] for k in range(N)] == [expected[k] for k in range(N)]


def test_a_pipeline_writes_only_the_messages_read() -> None:
    """The alerts of a batch read their messages; the other rows' are never written."""
    rows = [
        ValidTx(f"t{i}", "card", "user", 60_000 * i, amount, "USD", 52.5, 13.4 + 0.01 * i,
                "10115", f"m{i}", None, None, "pos", f"d{i}", "192.0.2.1", None)
        for i, amount in enumerate([0.5, 900.0] + [20.0] * 10)
    ]  # fmt: skip
    pipeline = Pipeline()
    batch = TxBatch.from_valid(rows, np.arange(len(rows)), np.zeros(len(rows)))
    decisions = pipeline.submit(batch, now_ms=0.0).decisions
    pipeline.flush(now_ms=0.0)
    assert decisions is not None and len(decisions.reasons) > len(decisions.alerts()) > 0
    alerts = decisions.take(decisions.alerts())
    assert alerts.reasons._messages is None
    written = {k: alerts.reasons[k] for k in range(len(alerts))}  # what an alerts sink reads
    assert all(written.values())
    sources = [s for s in decisions.reasons._sources if hasattr(s, "_all")]
    assert sources and all(source._all is None for source in sources)  # none written whole
    assert decisions.reasons[int(decisions.alerts()[0])] == written[0]
