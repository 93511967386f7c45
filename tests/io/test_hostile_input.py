"""Hostile input cannot stop a run (issue 16): no byte sequence crashes decoding.

One seeded corpus mixes 1,500 good transactions with 1,000 lines built to break a decoder:
nesting up to 20,000 deep (msgspec recurses off Python's limit near 1,000; Arrow's reader
crashes the process near 10,000), numbers no float or integer holds, invalid UTF-8, NUL
bytes, byte-order marks, CRLF and lone CR, every type confusion of every field, top-level
non-objects, a 70 KB line and one line of 100 MB (written to a temporary directory only).
Some lines only look hostile and are good: a byte-order mark before a record, CRLF, an
escaped NUL, nesting exactly at the limit, brackets inside strings, 100-digit integers in an
unknown field.

The corpus goes through a file and standard input (``fraudstream run``), a Kafka topic of
the librdkafka mock cluster and the HTTP API (a live uvicorn). Each path must exit cleanly,
decide every good record exactly once with the same decision as every other path, and make
every bad line a dead letter at its position whose reason says what is wrong (the API: a 4xx
naming it, never a 5xx or a dropped connection). A run SIGKILLed at checkpoints and resumed
gets past every hostile line and ends with the uninterrupted run's outputs.
"""

from __future__ import annotations

import json
import random
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from test_kafka_support import ENV, FAST_GROUP, FRAUDSTREAM, QUIET, MockCluster

T0 = 1_767_225_600_000
SEED = 1616
GOOD_RECORDS = 1_500
HOSTILE_LINES = 1_000
HUGE_LINE_BYTES = 100 * 1024 * 1024
KAFKA_LONG_VALUE_BYTES = 900_000  # a Kafka message is bounded by the broker (1 MB by default)
NESTED = r"nested deeper than 64 levels"
TOO_LONG = r"(longer|larger) than 65536 bytes"
NOT_UTF8 = r"invalid UTF-8"
NOT_JSON = r"invalid JSON"
OUT_OF_RANGE = r"out of range"
NOT_OBJECT = r"record: must be a JSON object"
BOM = b"\xef\xbb\xbf"
TEXT_FIELDS = ("transaction_id", "card_id", "user_id", "zipcode", "merchant_id")
TEXT_FIELDS += ("merchant_category", "country", "channel", "device_id", "ip")


@dataclass
class Line:
    """One record of the corpus: its bytes (a file line without its end, a Kafka value, an
    API body) and what must become of it."""

    body: bytes
    good: str | None = None  # the transaction id a good line is decided under
    reason: str | None = None  # a bad line: what its dead letter's reason must match
    ending: bytes = b"\n"
    blank: bool = False  # not a record at all (files only)


def dumps(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


class Corpus:
    """The seeded mix of good and hostile lines, in file order."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.now = T0
        self.count = 0
        self.huge_index = -1
        self.lines = self._build()

    # --- records ----------------------------------------------------------------------------

    def record(self, **fields: Any) -> dict[str, Any]:
        """A valid transaction (a fresh id, the next time), with ``fields`` replacing its own."""
        rng = self.rng
        self.count += 1
        self.now += rng.choice((0, 1, 500, 2_000, 30_000, 90_000))
        record: dict[str, Any] = {
            "transaction_id": f"tx-{self.count:05d}",
            "card_id": f"card-{rng.randrange(40)}",
            "timestamp": self.now,
            "amount": rng.choice((0.5, 12.5, 99.99, 640.0, rng.randrange(1, 3000))),
        }
        if rng.random() < 0.6:
            record["lat"], record["lon"] = rng.choice(
                ((48.85, 2.35), (40.71, -74.0), (-33.9, 151.2))
            )
        if rng.random() < 0.5:
            record["merchant_id"] = f"m-{rng.randrange(30)}"
        if rng.random() < 0.3:
            record["user_id"] = f"user-{rng.randrange(15)}"
        for name, value in fields.items():
            if value is _ABSENT:
                record.pop(name, None)
            else:
                record[name] = value
        return record

    def good(self, body: bytes | None = None, record: dict[str, Any] | None = None) -> Line:
        record = record or self.record()
        return Line(dumps(record) if body is None else body, good=record["transaction_id"])

    def spliced(self, field: str, raw: bytes) -> bytes:
        """A valid record whose ``field`` is the JSON text ``raw`` (last, whatever it is)."""
        record = self.record(**{field: _ABSENT})
        return dumps(record)[:-1] + b',"' + field.encode() + b'":' + raw + b"}"

    # --- the hostile families ---------------------------------------------------------------

    def hostile(self) -> Iterator[Line]:
        """Every kind of hostile line once; called again for more of the same kinds."""
        bad = Line
        for depth in (64, 65, 100, 999, 1_000, 5_000, 20_000):  # a record nests depth + 1
            yield bad(self.spliced("meta", b"[" * depth + b"]" * depth), reason=NESTED)
        for depth in (64, 300, 1_000, 10_000):
            yield bad(self.spliced("meta", b'{"a":' * depth + b"1" + b"}" * depth), reason=NESTED)
        for depth in (65, 1_000, 20_000):
            yield bad(b"[" * depth + b"]" * depth, reason=NESTED)
        yield bad(b"[" * 3_000, reason=NESTED)  # deep and never closed
        yield bad(self.spliced("amount", b"[" * 1_000 + b"]" * 1_000), reason=NESTED)
        for raw in (b"1e400", b"-1e400", b"9" * 5_000):
            yield bad(self.spliced("amount", raw), reason=OUT_OF_RANGE)
        yield bad(self.spliced("score_hint", b"1e999"), reason=OUT_OF_RANGE)
        yield bad(self.spliced("amount", b"9" * 400), reason=r"^amount: ")
        yield bad(self.spliced("timestamp", b"1" * 100), reason=r"^timestamp: ")
        yield bad(self.spliced("lat", b"1" * 100), reason=r"^lat: ")
        for raw in (b'"\xff"', b'"\xc0\xaf"', b'"\xed\xa0\x80"', b'"ab\xe2\x82"', b'"\x80"'):
            yield bad(self.spliced("merchant_id", raw), reason=NOT_UTF8)
        yield bad(b'{"\xfe\xff":1,"transaction_id":"x"}', reason=NOT_UTF8)
        yield bad(b"\xc3\x28", reason=f"{NOT_UTF8}|{NOT_JSON}")
        yield bad(self.spliced("merchant_id", b'"a\x00b"'), reason=NOT_JSON)
        yield bad(b"\x00\x00\x00", reason=NOT_JSON)
        yield bad(dumps(self.record()) + b"\x00", reason=NOT_JSON)
        yield bad(BOM + BOM + dumps(self.record()), reason=NOT_JSON)
        yield bad(dumps(self.record()) + BOM, reason=NOT_JSON)
        yield bad(BOM, reason=NOT_JSON)
        yield bad(dumps(self.record()) + b"\r" + dumps(self.record()), reason=NOT_JSON)
        yield bad(self.spliced("merchant_id", b'"a\tb"'), reason=NOT_JSON)
        yield bad(dumps(self.record())[:-1], reason=NOT_JSON)
        for raw in (b"[]", b"[1,2]", b'"text"', b"1", b"1.5", b"null", b"true", b"false"):
            yield bad(raw, reason=NOT_OBJECT)
        yield bad(b"[" + dumps(self.record()) + b"]", reason=NOT_OBJECT)
        yield bad(dumps(self.record(note="n" * 70_000)), reason=TOO_LONG)
        yield from self.type_confusions()

    def type_confusions(self) -> Iterator[Line]:
        """Each field given a value of a type it does not take (or null where required)."""
        containers: tuple[Any, ...] = ([], [1], {}, {"a": 1})
        for name in TEXT_FIELDS:
            for value in (*containers, True, False, 1.5):
                yield Line(dumps(self.record(**{name: value})), reason=f"^{name}: ")
        for name in ("transaction_id", "card_id", "timestamp", "amount"):
            yield Line(dumps(self.record(**{name: None})), reason=f"^{name}: ")
        for value in (*containers, True, 978, 1.5, "usd", "EURO"):
            yield Line(dumps(self.record(currency=value)), reason="^currency: ")
        for value in (*containers, True, False, "soon", 1.5):
            yield Line(dumps(self.record(timestamp=value)), reason="^timestamp: ")
        for value in (*containers, True, "abc", -1):
            yield Line(dumps(self.record(amount=value)), reason="^amount: ")
        for value in (*containers, True, "north"):
            yield Line(dumps(self.record(lat=value, lon=1.0)), reason="^lat: ")
            yield Line(dumps(self.record(lat=1.0, lon=value)), reason="^lon: ")
        yield Line(b"{}", reason="^transaction_id: ")

    def disguised_good(self) -> Iterator[Line]:
        """Lines that look hostile and are good."""
        yield self.good(BOM + dumps(record := self.record()), record)
        line = self.good()
        line.ending = b"\r\n"
        yield line
        yield self.good(record=self.record(note="a\u0000b"))  # an escaped NUL: valid JSON
        record = self.record()
        meta = b"[" * 63 + b"]" * 63  # the record nests exactly 64 deep
        yield self.good(dumps(record)[:-1] + b',"meta":' + meta + b"}", record)
        record = self.record()
        objects = b'{"a":' * 63 + b"1" + b"}" * 63
        yield self.good(dumps(record)[:-1] + b',"meta":' + objects + b"}", record)
        yield self.good(record=self.record(note="[{" * 2_000 + "}]" * 2_000))  # in a string
        record = self.record()
        yield self.good(dumps(record)[:-1] + b',"big":' + b"7" * 100 + b"}", record)
        record = self.record(amount=_ABSENT)
        yield self.good(dumps(record)[:-1] + b',"amount":1e-400}', record)  # 0.0
        yield self.good(record=self.record(amount="12.50", zipcode=75001, user_id=None))
        yield self.good(record=self.record(merchant_category="Zürich \U0001f600", channel=None))

    def _build(self) -> list[Line]:
        slots = ["good"] * GOOD_RECORDS + ["hostile"] * (HOSTILE_LINES - 1) + ["huge"]
        slots += ["disguised"] * 40 + ["blank"] * 3
        self.rng.shuffle(slots)
        hostile: Iterator[Line] = iter(())
        disguised: Iterator[Line] = iter(())
        lines = [self.good()]  # a good line first: the file starts with a record
        for slot in slots:
            if slot == "good":
                lines.append(self.good())
            elif slot == "hostile":
                line = next(hostile, None)
                if line is None:
                    hostile = self.hostile()
                    line = next(hostile)
                lines.append(line)
            elif slot == "disguised":
                line = next(disguised, None)
                if line is None:
                    disguised = self.disguised_good()
                    line = next(disguised)
                lines.append(line)
            elif slot == "huge":
                lines.append(Line(b"", reason=TOO_LONG))  # filled in by write_file
                self.huge_index = len(lines) - 1
            else:
                lines.append(Line(self.rng.choice((b"", b"   ", b"\t\r")), blank=True))
        return lines

    # --- the three forms it takes -----------------------------------------------------------

    def huge_line(self, size: int) -> bytes:
        """A record of ``size`` bytes (one string field)."""
        head = b'{"transaction_id":"huge","card_id":"c","timestamp":1,"amount":1,"note":"'
        return head + b"x" * (size - len(head) - 2) + b'"}'

    def write_file(self, path: Path) -> Path:
        """The corpus as a JSON-lines file, the huge line 100 MB long (written in pieces)."""
        with path.open("wb") as out:
            for index, line in enumerate(self.lines):
                if index == self.huge_index:
                    head = self.huge_line(1024)[:-2]
                    out.write(head)
                    chunk = b"x" * (1 << 20)
                    for _ in range(HUGE_LINE_BYTES >> 20):
                        out.write(chunk)
                    out.write(b'"}\n')
                else:
                    out.write(line.body + line.ending)
        return path

    def records(self, huge_bytes: int) -> list[Line]:
        """The records (no blank lines) with the huge one ``huge_bytes`` long."""
        out = []
        for index, line in enumerate(self.lines):
            if index == self.huge_index:
                out.append(Line(self.huge_line(huge_bytes), reason=TOO_LONG))
            elif not line.blank:
                out.append(line)
        return out

    def positions(self) -> dict[int, Line]:
        """File line number -> line (blank lines are not records: never dead letters)."""
        return {k: line for k, line in enumerate(self.lines, 1) if not line.blank}


class _Absent:
    """A field left out of a record."""


_ABSENT = _Absent()


# --- checking one path's outputs --------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def check_outcome(
    lines: dict[int, Line], decisions: list[dict[str, Any]], dead: list[dict[str, Any]]
) -> dict[str, tuple[str, float]]:
    """Every good line decided once, every bad one a dead letter at its position with a
    reason that says why; returns each decision as (tier, score) by transaction id."""
    counts = Counter(d["transaction_id"] for d in decisions)
    good = {line.good for line in lines.values() if line.good is not None}
    assert not [t for t, n in counts.items() if n > 1], "a record decided twice"
    assert set(counts) == good, (
        f"missing {sorted(good - set(counts))[:5]}, unexpected {sorted(set(counts) - good)[:5]}"
    )
    letters = {d["position"]: d for d in dead}
    assert len(letters) == len(dead), "two dead letters at one position"
    bad = {position for position, line in lines.items() if line.good is None}
    assert set(letters) == bad, (
        f"bad lines without a dead letter: {sorted(bad - set(letters))[:5]}; "
        f"dead letters of good lines: {sorted(set(letters) - bad)[:5]}"
    )
    wrong = [
        (position, lines[position].reason, letters[position]["reason"][:120])
        for position in sorted(bad)
        if not re.search(str(lines[position].reason), letters[position]["reason"], re.IGNORECASE)
    ]
    assert not wrong, f"{len(wrong)} dead letters with another reason, e.g. {wrong[:5]}"
    assert all(isinstance(d["raw"], str) for d in dead)
    assert all(len(d["raw"]) < 10_000 for d in dead), "a huge line kept whole"
    return {d["transaction_id"]: (d["decision"], d["score"]) for d in decisions}


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    built = Corpus()
    assert sum(line.good is None and not line.blank for line in built.lines) == HOSTILE_LINES
    assert sum(line.good is not None for line in built.lines) >= GOOD_RECORDS
    return built


@pytest.fixture(scope="module")
def corpus_file(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus.write_file(tmp_path_factory.mktemp("hostile") / "hostile.jsonl")


def run_cli(
    directory: Path, *args: str, stdin: Path | None = None
) -> subprocess.CompletedProcess[str]:
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        FRAUDSTREAM, "run", *args,
        "--decisions", str(directory / "decisions.jsonl"),
        "--dead-letters", str(directory / "dead.jsonl"),
        "--summary-json", str(directory / "summary.json"),
        "--quiet",
    ]  # fmt: skip
    with (stdin or Path("/dev/null")).open("rb") as source:
        done = subprocess.run(
            command, stdin=source, capture_output=True, text=True, env=ENV, timeout=600
        )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def file_decisions(
    corpus: Corpus, corpus_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, float]]:
    """The file run's decisions: what every other path must decide too."""
    directory = tmp_path_factory.mktemp("file-run")
    run_cli(directory, "--input", str(corpus_file))
    decided = check_outcome(
        corpus.positions(),
        read_jsonl(directory / "decisions.jsonl"),
        read_jsonl(directory / "dead.jsonl"),
    )
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["dead_letters"] == HOSTILE_LINES and summary["decided"] == len(decided)
    return decided


# --- the paths --------------------------------------------------------------------------------


def test_a_file_decides_every_good_record_once_and_dead_letters_every_hostile_line(
    file_decisions: dict[str, tuple[str, float]],
) -> None:
    assert len(file_decisions) >= GOOD_RECORDS


def test_standard_input_gives_the_file_run_outcome(
    corpus: Corpus, corpus_file: Path, file_decisions: dict[str, Any], tmp_path: Path
) -> None:
    run_cli(tmp_path, "--input", "-", stdin=corpus_file)
    decided = check_outcome(
        corpus.positions(),
        read_jsonl(tmp_path / "decisions.jsonl"),
        read_jsonl(tmp_path / "dead.jsonl"),
    )
    assert decided == file_decisions


def test_kafka_gives_the_file_run_outcome(
    corpus: Corpus, file_decisions: dict[str, Any], kafka_cluster: MockCluster, tmp_path: Path
) -> None:
    lines = corpus.records(KAFKA_LONG_VALUE_BYTES)
    producer = Producer({"bootstrap.servers": kafka_cluster.bootstrap, "logger": QUIET})
    for line in lines:  # one partition: offsets are the records' order
        producer.produce("hostile", line.body, b"key", partition=0)
        producer.poll(0)
    assert producer.flush(60) == 0
    run_cli(
        tmp_path,
        "--input", kafka_cluster.uri("hostile", FAST_GROUP),
        "--group-id", "hostile", "--stop-at-end", "--idle-timeout-ms", "600000",
    )  # fmt: skip
    dead = read_jsonl(tmp_path / "dead.jsonl")
    assert {d["source"] for d in dead} == {"hostile[0]"}
    by_offset = dict(enumerate(lines))
    decided = check_outcome(by_offset, read_jsonl(tmp_path / "decisions.jsonl"), dead)
    assert decided == file_decisions


@dataclass
class Server:
    url: str
    app: Any


@pytest.fixture
def server() -> Iterator[Server]:
    """The real app on uvicorn (a thread of this process) on a free port."""
    import uvicorn

    from fraudstream.assembly import TimeMode, build_pipeline
    from fraudstream.schema import CardTokenizer
    from fraudstream.web.app import create_app

    pipeline = build_pipeline(None, None, TimeMode.event, 0, 300_000, 1_000, None, None)
    app = create_app(pipeline, "hostile-token", CardTokenizer.from_environment())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    uvicorn_server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield Server(f"http://127.0.0.1:{port}", app)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)


def test_the_api_answers_every_hostile_body_with_a_4xx_and_a_dead_letter(
    corpus: Corpus, file_decisions: dict[str, Any], server: Server
) -> None:
    headers = {"Authorization": "Bearer hostile-token", "Content-Type": "application/json"}
    lines = corpus.records(HUGE_LINE_BYTES)
    decisions = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
        for index, line in enumerate(lines, 1):
            response = client.post("/v1/transactions", content=line.body)
            if line.good is not None:
                assert response.status_code == 200, (index, response.text[:300])
                decisions.append(response.json())
                continue
            expected = 413 if line.reason == TOO_LONG else 422
            assert response.status_code == expected, (index, line.body[:80], response.text[:300])
            detail = response.json()["detail"][0]
            assert re.search(str(line.reason), detail["message"], re.IGNORECASE), (
                line.reason,
                detail,
            )
        dead = client.get("/v1/dead-letters", params={"limit": 10_000}).json()
    assert {d["source"] for d in dead} == {"api"}  # a request's position is its number
    decided = check_outcome(dict(enumerate(lines, 1)), decisions, dead)
    assert decided == file_decisions


def test_a_batch_holding_hostile_bodies_or_items_is_answered_item_by_item(
    corpus: Corpus, server: Server
) -> None:
    headers = {"Authorization": "Bearer hostile-token", "Content-Type": "application/json"}
    lines = corpus.records(70_000)
    records = [line for line in lines if line.good and line.body.startswith(b"{")][:20]
    confused = [line for line in lines if line.reason and line.reason[0] == "^"]
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
        for body, why in (
            (b"[" * 20_000 + b"]" * 20_000, NESTED),
            (b'[{"transaction_id":"\xff"}]', NOT_UTF8),
            (b"[1e400]", OUT_OF_RANGE),
            (b"[" + BOM + b"{}]", NOT_JSON),
            (b"\x00", NOT_JSON),
        ):
            response = client.post("/v1/transactions/batch", content=body)
            assert response.status_code == 422
            assert re.search(why, response.json()["detail"][0]["message"], re.IGNORECASE)
        items = b",".join(line.body for line in records + confused[:40])
        response = client.post("/v1/transactions/batch", content=b"[" + items + b"]")
        assert response.status_code == 200
        results = response.json()
        big = client.post("/v1/transactions/batch", content=b"[" + b" " * HUGE_LINE_BYTES + b"]")
        assert big.status_code == 413
    assert [r["status"] for r in results[: len(records)]] == [200] * len(records)
    for result, line in zip(results[len(records) :], confused[:40], strict=True):
        assert result["status"] == 422
        assert re.search(str(line.reason), result["detail"][0]["message"], re.IGNORECASE)


# --- SIGKILL and --resume ---------------------------------------------------------------------


def _newest_checkpoint(directory: Path) -> int:
    """The newest complete checkpoint's number (the last three are kept), 0 if none."""
    names = (p.parent.name for p in directory.glob("chk-*/manifest.json"))
    return max((int(name[4:]) for name in names if re.fullmatch(r"chk-\d+", name)), default=0)


def _run_until_a_checkpoint_then_kill(
    command: list[str], checkpoints: Path, log: Path, rng: random.Random
) -> bool:
    """Runs ``command`` and SIGKILLs it a moment after it completes a new checkpoint;
    False if it ended by itself first (it must have succeeded)."""
    before = _newest_checkpoint(checkpoints)
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 300
            while process.poll() is None and _newest_checkpoint(checkpoints) <= before:
                assert time.monotonic() < deadline, "no checkpoint for 5 minutes"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.15))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return True
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, log.read_text()[-3000:]
    return False


def test_resume_after_sigkill_gets_past_every_hostile_line(
    corpus: Corpus, corpus_file: Path, tmp_path: Path
) -> None:
    options = ["--input", str(corpus_file), "--batch-rows", "100"]
    reference = tmp_path / "reference"
    run_cli(reference, *options)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    checkpoints = crashed / "checkpoints"
    command = [
        FRAUDSTREAM, "run", *options,
        "--decisions", str(crashed / "decisions.jsonl"),
        "--dead-letters", str(crashed / "dead.jsonl"),
        "--summary-json", str(crashed / "summary.json"),
        "--checkpoint-dir", str(checkpoints),
        "--checkpoint-every-records", "250", "--checkpoint-interval-s", "3600", "--quiet",
    ]  # fmt: skip
    rng = random.Random(SEED)
    kills = 0
    for attempt in range(4):
        resume = ["--resume"] if attempt else []
        if not _run_until_a_checkpoint_then_kill(
            command + resume, checkpoints, tmp_path / "log", rng
        ):
            break
        kills += 1
    else:  # killed every time: the last run resumes past every hostile line to the end
        done = subprocess.run(command + ["--resume"], env=ENV, capture_output=True, text=True)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert kills >= 3
    for name, fields in (("decisions.jsonl", ("transaction_id", "decision", "score")),
                         ("dead.jsonl", ("position", "reason", "raw"))):  # fmt: skip
        want = sorted(tuple(r[f] for f in fields) for r in read_jsonl(reference / name))
        got = sorted(tuple(r[f] for f in fields) for r in read_jsonl(crashed / name))
        assert got == want, name
    check_outcome(
        corpus.positions(),
        read_jsonl(crashed / "decisions.jsonl"),
        read_jsonl(crashed / "dead.jsonl"),
    )
