"""A block parsed in the child process is the block parsed in line, whatever happens to it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_json_columns import block

from fraudstream.io.decode import Decoder, ParsedBlock
from fraudstream.io.parse_process import ParseProcess
from fraudstream.schema import CardTokenizer

ODD_LINES = [b"", b"  ", b"\r", b"{", b' {"transaction_id":"x"}', b"[]", b'{"amount":"5"}']


@pytest.fixture(scope="module")
def process() -> Iterator[ParseProcess]:
    child = ParseProcess()
    yield child
    child.close()


def same(ours: ParsedBlock, theirs: ParsedBlock) -> None:
    assert ours.data == theirs.data
    assert ours.lines == theirs.lines
    assert (ours.columns is None) == (theirs.columns is None)
    if ours.columns is not None and theirs.columns is not None:
        assert ours.columns[0].schema == theirs.columns[0].schema
        # NaN is read as NaN (never equal to itself): compare the values' text
        assert str(ours.columns[0].to_pylist()) == str(theirs.columns[0].to_pylist())
        assert ours.columns[0].column_names == theirs.columns[0].column_names
        for column, other in zip(ours.columns[0].columns, theirs.columns[0].columns, strict=True):
            assert [len(c) for c in column.chunks] == [len(c) for c in other.chunks]
        assert ours.columns[1].tolist() == theirs.columns[1].tolist()


def written(tmp: str, before: bytes, data: bytes, after: bytes) -> tuple[str, int, int]:
    path = os.path.join(tmp, "tx.jsonl")
    Path(path).write_bytes(before + data + after)
    return path, len(before), len(before) + len(data)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow],
)
@given(
    lines=block(ODD_LINES),
    last_newline=st.booleans(),
    before=st.sampled_from([b"", b'{"x":1}\n']),
)
def test_the_child_parses_what_parsed_block_of_gives(
    process: ParseProcess, lines: list[bytes], last_newline: bool, before: bytes
) -> None:
    data = b"\n".join(lines) + (b"\n" if last_newline else b"")
    with tempfile.TemporaryDirectory() as tmp:
        path, start, end = written(tmp, before, data, b'{"after":true}\n')
        same(process.parse(path, start, end), ParsedBlock.of(data, threads=False))
    assert process.broken is None
    assert os.listdir(str(process._directory)) == []  # each table file is gone once mapped


def test_short_and_empty_ranges(process: ParseProcess, tmp_path: Path) -> None:
    path, start, end = written(str(tmp_path), b"abc\n", b'{"a":1}\n', b"")
    same(process.parse(path, start, end), ParsedBlock.of(b'{"a":1}\n', threads=False))
    same(process.parse(path, 0, 0), ParsedBlock.of(b"", threads=False))
    assert process.broken is None


def simulated(tmp_path: Path) -> tuple[str, int, int, bytes]:
    line = b'{"transaction_id":"t%d","card_id":"c1","timestamp":%d,"amount":5.5}'
    data = b"\n".join(line % (k, 1_700_000_000_000 + k) for k in range(300)) + b"\n"
    path, start, end = written(str(tmp_path), b"", data, b"")
    return path, start, end, data


def test_a_child_that_cannot_start_means_parsing_in_line(tmp_path: Path) -> None:
    path, start, end, data = simulated(tmp_path)
    child = ParseProcess(python=str(tmp_path / "no-such-python"))
    assert child.broken is not None and "cannot start" in child.broken
    same(child.parse(path, start, end), ParsedBlock.of(data, threads=False))
    child.close()


def test_a_child_that_dies_means_parsing_in_line_from_then_on(tmp_path: Path) -> None:
    path, start, end, data = simulated(tmp_path)
    child = ParseProcess()
    expected = ParsedBlock.of(data, threads=False)
    same(child.parse(path, start, end), expected)
    assert expected.columns is not None and child.broken is None
    assert child._child is not None
    child._child.kill()
    child._child.wait()
    same(child.parse(path, start, end), expected)
    assert child.broken is not None
    same(child.parse(path, start, end), expected)
    child.close()


def test_an_error_in_the_child_means_parsing_in_line(tmp_path: Path) -> None:
    _, start, end, data = simulated(tmp_path)
    child = ParseProcess()
    gone = str(tmp_path / "gone.jsonl")  # the child cannot read it: it answers an error
    with pytest.raises(FileNotFoundError):
        child.parse(gone, start, end)  # and the caller cannot either: the same error
    assert child.broken is not None and "FileNotFoundError" in child.broken
    child.close()


def test_close_ends_the_child_and_removes_its_directory(tmp_path: Path) -> None:
    path, start, end, _ = simulated(tmp_path)
    child = ParseProcess()
    child.parse(path, start, end)
    running, directory = child._child, child._directory
    assert running is not None and directory is not None and os.path.isdir(directory)
    child.close()
    assert running.returncode == 0
    assert not os.path.exists(directory)
    assert child.broken == "closed"


def decoded(block: ParsedBlock | bytes) -> tuple[list[str], list[dict[str, object]]]:
    batch, dead = Decoder(CardTokenizer(b"test")).block(block, 1, 0.0)
    return batch.transaction_id.tolist(), [letter.to_dict() for letter in dead]


def test_rows_arrow_reads_but_the_decoder_refuses_keep_their_lines(
    process: ParseProcess, tmp_path: Path
) -> None:
    """The parent leaves a clean block's bytes in the file; a row the decoder then refuses
    (a negative amount, no card) still becomes a dead letter holding its very line."""
    line = b'{"transaction_id":"t%d","card_id":"c1","timestamp":%d,"amount":%s}'
    rows = [line % (k, 1_700_000_000_000 + k, b"5.5") for k in range(300)]
    rows[17] = line % (17, 1_700_000_000_017, b"-3")
    rows[230] = b'{"transaction_id":"t230","timestamp":1700000000230,"amount":1}'
    data = b"\n".join(rows) + b"\n"
    path, start, end = written(str(tmp_path), b'{"x":1}\n', data, b'{"after":true}\n')
    parsed = process.parse(path, start, end)
    assert callable(parsed.raw)  # nothing suspect: the bytes stayed in the file
    ids, dead = decoded(parsed)
    assert (ids, dead) == decoded(data)
    assert [letter["position"] for letter in dead] == [18, 231]
    assert '"t17"' in str(dead[0]["raw"]) and '"t230"' in str(dead[1]["raw"])


def test_a_block_after_a_longer_one_sees_none_of_its_bytes(
    process: ParseProcess, tmp_path: Path
) -> None:
    """The child reads every block into one buffer: what a longer block left behind it must
    not count (a last line without its line end, then the old bytes)."""
    line = b'{"transaction_id":"t%d","card_id":"c1","timestamp":%d,"amount":5.5}'
    longer = b"\n".join(line % (k, 1_700_000_000_000 + k) for k in range(500)) + b"\n"
    shorter = b"\n".join(line % (k, 1_800_000_000_000 + k) for k in range(200))  # no last \n
    long_path, start, end = written(str(tmp_path), b"", longer, b"")
    same(process.parse(long_path, start, end), ParsedBlock.of(longer, threads=False))
    short_path = str(tmp_path / "short.jsonl")
    Path(short_path).write_bytes(shorter)
    same(process.parse(short_path, 0, len(shorter)), ParsedBlock.of(shorter, threads=False))
    assert process.broken is None
