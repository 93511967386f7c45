"""Outputs that take part in checkpoints: cut back to their commit marker on resume."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudstream.io.files import JsonLinesSink, open_sink
from fraudstream.io.parquet_parts import ParquetParts


def test_json_lines_resume_truncates_what_came_after_the_checkpoint(tmp_path: Path) -> None:
    target = str(tmp_path / "alerts.jsonl")
    sink = JsonLinesSink(target)
    sink.write_dicts([{"transaction_id": "a"}, {"transaction_id": "b"}])
    marker = sink.checkpoint()
    sink.write_dicts([{"transaction_id": "c"}])  # after the checkpoint, then a crash
    sink.flush()
    sink.handle.close()  # the process died here
    resumed = JsonLinesSink(target, resume=marker)
    assert resumed.checkpoint() == marker  # nothing written yet: the marker's size
    resumed.write_dicts([{"transaction_id": "c2"}])
    resumed.close()
    lines = Path(target).read_text().splitlines()
    assert lines == ['{"transaction_id":"a"}', '{"transaction_id":"b"}', '{"transaction_id":"c2"}']
    with pytest.raises(ValueError, match="changed since"):
        JsonLinesSink(target, resume={"bytes": 10**9})
    fresh = JsonLinesSink(target, resume={})  # resuming with no checkpoint yet: from nothing
    fresh.close()
    assert Path(target).read_text() == ""


def test_parquet_parts_drop_parts_after_the_checkpoint(tmp_path: Path) -> None:
    target = str(tmp_path / "decisions.parquet")
    sink = open_sink(target, checkpointed=True)
    assert isinstance(sink, ParquetParts)
    sink.write_table(pa.table({"transaction_id": ["a", "b"], "score": [0.1, 0.2]}))
    marker = sink.checkpoint()
    assert marker == {"parts": 1}
    assert sink.checkpoint() == {"parts": 1}  # nothing new: no empty part
    sink.write_table(pa.table({"transaction_id": ["c"], "score": [0.3]}))
    sink.checkpoint()  # part 2 finished, but its checkpoint never became durable
    sink.write_table(pa.table({"transaction_id": ["d"], "score": [0.4]}))  # in progress
    assert sink.current is not None and sink.current.writer is not None
    sink.current.writer.close()  # the process died here (the part was never finished)
    resumed = ParquetParts(target, resume=marker)
    resumed.write_table(pa.table({"transaction_id": ["c"], "score": [0.3]}))
    resumed.close()
    table = pq.read_table(target)
    assert sorted(table.column("transaction_id").to_pylist()) == ["a", "b", "c"]
    assert sorted(p.name for p in Path(target).iterdir() if p.suffix == ".parquet") == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
