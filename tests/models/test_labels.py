"""The label stream: files in three formats, clear errors, arrival in label-time order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudstream.config import ConfigError
from fraudstream.io.labels import LabelFeed, Labels, read_labels


def test_csv_jsonl_and_parquet_agree(tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "transaction_id,is_fraud,label_time\n"
        "t2,1,2018-08-01T00:00:00Z\n"
        "t1,0,2018-07-31T12:00:00+00:00\n"
    )
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text(
        '{"transaction_id": "t2", "is_fraud": true, "label_time": 1533081600000}\n'
        '{"transaction_id": "t1", "is_fraud": false, "label_time": 1533038400000}\n'
    )
    parquet = tmp_path / "labels.parquet"
    pq.write_table(
        pa.table(
            {
                "transaction_id": ["t1", "t2"],
                "is_fraud": [False, True],
                "label_time": pa.array([1533038400000, 1533081600000]).cast(
                    pa.timestamp("ms", "UTC")
                ),
            }
        ),
        parquet,
    )
    for path in (csv, jsonl, parquet):
        labels = read_labels(path)
        assert labels.transaction_id.to_pylist() == ["t1", "t2"], path  # sorted by label time
        assert labels.is_fraud.tolist() == [False, True]
        assert labels.label_time.tolist() == [1533038400000, 1533081600000]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("transaction_id,is_fraud\nt1,1\n", "missing column(s) label_time"),
        ("transaction_id,is_fraud,label_time\nt1,3,0\n", "row 1: is_fraud must be 0 or 1"),
        ("transaction_id,is_fraud,label_time\nt1,1,yesterday\n", "row 1: label_time"),
        ("transaction_id,is_fraud,label_time\nt1,1,\n", "row 1: label_time is missing"),
    ],
)
def test_bad_label_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_labels(path)
    assert message in str(caught.value)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        read_labels(tmp_path / "nope.csv")
    other = tmp_path / "labels.txt"
    other.write_text("x")
    with pytest.raises(ConfigError, match="use .parquet, .csv or .jsonl"):
        read_labels(other)


def test_feed_hands_out_labels_once_in_time_order() -> None:
    feed = LabelFeed(
        Labels(pa.array(["a", "b", "c"]), np.array([True, False, True]), np.array([30, 10, 20]))
    )
    assert feed.due(5).transaction_id.to_pylist() == []
    assert feed.due(20).transaction_id.to_pylist() == ["b", "c"]
    feed.push(Labels(pa.array(["review-1"]), np.array([True]), np.array([25])))  # an analyst
    assert feed.due(100).transaction_id.to_pylist() == ["review-1", "a"]
    assert feed.due(1_000).transaction_id.to_pylist() == [] and feed.delivered == 4
