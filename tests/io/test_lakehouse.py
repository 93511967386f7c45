"""The Iceberg lakehouse: checkpoint commits, roll-back on resume, pyiceberg and DuckDB reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.cli.query import ALERT_RATE_BY_RULE_BY_DAY, run_query
from fraudstream.decide import Decisions
from fraudstream.engine.pipeline import Pipeline
from fraudstream.io.decode import Decoder
from fraudstream.io.lakehouse import CHECKPOINT_PROPERTY, RUN_PROPERTY, LakehouseSink, open_table
from fraudstream.schema import CardTokenizer
from fraudstream.simulate.workload import benchmark_table


def decided(n: int, seed: int = 1) -> list[Decisions]:
    """Decisions of ``n`` simulated transactions over four days, a batch per 500."""
    table = benchmark_table(n, cards=40, seed=seed, days=4)
    decoder = Decoder(CardTokenizer(b"test"), "test")
    pipeline = Pipeline()
    out = []
    for i, record_batch in enumerate(table.to_batches(500)):
        batch, dead = decoder.table(record_batch, 1 + 500 * i, 0.0)
        assert not dead
        result = pipeline.submit(batch, now_ms=0.0)
        if result.decisions is not None:
            out.append(result.decisions)
    return out


def ids_of(location: Path) -> list[str]:
    rows = open_table(str(location)).scan(selected_fields=("transaction_id",)).to_arrow()
    return sorted(rows.column("transaction_id").to_pylist())


def test_checkpoint_commits_are_tagged_partitioned_by_day_and_read_back(tmp_path: Path) -> None:
    batches = decided(3000)
    sink = LakehouseSink.open(str(tmp_path), run_id="run1", resume_from=0)
    for d in batches[:3]:
        sink.write_decisions(d)
    assert sink.checkpoint(1) == {"rows": 1500}
    for d in batches[3:]:
        sink.write_decisions(d)
    sink.checkpoint(2)
    sink.checkpoint(3)  # nothing buffered: no empty snapshot
    sink.close()
    table = open_table(str(tmp_path))
    summaries = [s.summary.additional_properties for s in table.snapshots() if s.summary]
    assert [(p[RUN_PROPERTY], p[CHECKPOINT_PROPERTY]) for p in summaries] == [
        ("run1", "1"),
        ("run1", "2"),
    ]
    [partition] = table.spec().fields
    assert (table.schema().find_column_name(partition.source_id), str(partition.transform)) == (
        "event_time",
        "day",
    )
    rows = table.scan().to_arrow()
    expected = sorted(tid for d in batches for tid in d.tx.transaction_id.to_pylist())
    assert sorted(rows.column("transaction_id").to_pylist()) == expected
    assert len(rows.column("event_date").unique()) >= 4
    assert {"decision", "score", "rules", "reasons", "features", "amount"} <= set(rows.column_names)
    # Every data file holds one UTC day of event time, the day its partition value names.
    tasks = list(table.scan().plan_files())
    assert len(tasks) >= 4
    epoch = date(1970, 1, 1)
    for task in tasks:
        day = epoch + timedelta(days=task.file.partition[0])
        read = pq.read_table(task.file.file_path.removeprefix("file://"))
        assert set(read.column("event_date").to_pylist()) == {day}
    # A filter on event_time reads only that day's files.
    first_day = min(rows.column("event_date").to_pylist())
    start = datetime.combine(first_day, time(), UTC)
    one_day = table.scan(row_filter=f"event_time < '{(start + timedelta(days=1)).isoformat()}'")
    assert 0 < len(list(one_day.plan_files())) < len(tasks)


def test_resume_deletes_what_the_run_committed_after_its_checkpoint(tmp_path: Path) -> None:
    batches = decided(2000)
    first = LakehouseSink.open(str(tmp_path), run_id="r", resume_from=0)
    first.write_decisions(batches[0])
    first.checkpoint(1)
    first.write_decisions(batches[1])
    first.checkpoint(2)  # committed, then the process died before checkpoint 2 was renamed
    other = LakehouseSink.open(str(tmp_path), run_id="someone-else", resume_from=0)
    other.write_decisions(batches[2])
    other.checkpoint(7)
    again = LakehouseSink.open(str(tmp_path), run_id="r", resume_from=1)
    expected = sorted(
        batches[0].tx.transaction_id.to_pylist() + batches[2].tx.transaction_id.to_pylist()
    )
    assert ids_of(tmp_path) == expected
    again.write_decisions(batches[1])
    again.checkpoint(2)
    assert len(ids_of(tmp_path)) == len(set(ids_of(tmp_path))) == 1500


def test_without_checkpoints_rows_are_committed_at_close(tmp_path: Path) -> None:
    sink = LakehouseSink.open(str(tmp_path))
    for d in decided(1000):
        sink.write_decisions(d)
    with pytest.raises(ValueError, match="no table"):
        open_table(str(tmp_path))
    sink.close()
    assert len(ids_of(tmp_path)) == 1000


def test_demo_writes_the_table_and_query_answers_the_documented_example(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--directory", str(directory), "--count", "3000", "--no-serve"]
    )
    assert result.exit_code == 0, result.output
    lake = directory / "lakehouse"
    table = open_table(str(lake))  # pyiceberg reads the demo's table back
    rows = table.scan().to_arrow()
    assert rows.num_rows == 3000
    answer = run_query(str(lake), ALERT_RATE_BY_RULE_BY_DAY)
    assert answer.column_names == ["day", "rule", "alerts", "transactions", "alert_rate_pct"]
    assert answer.num_rows > 0
    alerts = pa.compute.sum(answer.column("alerts")).as_py()
    fired = sum(
        len(rules)
        for rules, decision in zip(
            rows.column("rules").to_pylist(), rows.column("decision").to_pylist(), strict=True
        )
        if decision != "approve"
    )
    assert alerts == fired > 0
    cli = CliRunner().invoke(app, ["query", "--lakehouse", str(lake), "--format", "jsonl",
                                   "SELECT count(*) AS n FROM decisions"])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert '{"n": 3000}' in cli.output
    bad = CliRunner().invoke(app, ["query", "--lakehouse", str(lake), "SELECT nope FROM decisions"])
    assert bad.exit_code == 2
