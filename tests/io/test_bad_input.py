"""The issue's acceptance test: bad input gets a clear error and loses nothing (DESIGN.md).

One JSON-lines file mixes >= 1,000 good transactions (card numbers as card ids, ISO
timestamps, the aliases account_id / card_number / lng, unknown extra fields) with >= 1,000
malformed lines of every kind at random, and ``fraudstream run`` (a subprocess, from a file and
from standard input) must decide every good record exactly once, put every bad one in the
dead letters with a reason naming the field and its line number, count everything, and never
write a full card number anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from fraudstream.io.decode import Decoder
from fraudstream.schema import CardTokenizer

FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))
TOKEN_KEY = "test"
T0 = 1_700_000_000_000
SEED = 20240611
TEXT_FIELDS = (
    "zipcode",
    "merchant_id",
    "merchant_category",
    "country",
    "channel",
    "device_id",
    "ip",
)


def env() -> dict[str, str]:
    out = dict(os.environ)
    out.update(FRAUDSTREAM_TOKEN_KEY=TOKEN_KEY, OMP_NUM_THREADS="1")
    return out


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    """A Luhn-valid card number of ``length`` digits starting with ``prefix``."""
    digits = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return digits + str((10 - total % 10) % 10)


def token(card: str) -> str:
    """What DESIGN.md's keyed hash must turn a card number into (key 'test')."""
    digest = hmac.new(TOKEN_KEY.encode(), card.encode(), hashlib.sha256).hexdigest()
    return "tok_" + digest[:24]


def normalised_card(value: Any) -> str:
    text = str(value)
    return token(text) if re.fullmatch(r"\d{12,19}", text) else text


def iso(ms: int, offset_minutes: int = 0) -> str:
    zone = UTC if offset_minutes == 0 else timezone(timedelta(minutes=offset_minutes))
    moment = datetime.fromtimestamp(ms / 1000, tz=zone)
    text = moment.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if offset_minutes == 0 else text


def iso_utc(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# --- the input file ------------------------------------------------------------------------


@dataclass
class Line:
    """One line of the input file and what must become of it."""

    data: bytes
    kind: str  # good | bad | duplicate | blank
    transaction_id: str | None = None
    fields: tuple[str, ...] = ()  # a bad line's reason must name one of these (() = any)
    expect: dict[str, Any] = field(default_factory=dict)  # a good line's decision fields


@dataclass
class Corpus:
    lines: list[Line]
    pans: list[str]

    def data(self) -> bytes:
        return b"".join(line.data for line in self.lines)

    def positions(self, *kinds: str) -> dict[int, Line]:
        return {i: line for i, line in enumerate(self.lines, 1) if line.kind in kinds}


def dumps(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


class Builder:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pans = [luhn_complete("4", 16, rng) for _ in range(6)]
        self.pans += [luhn_complete("5", 16, rng) for _ in range(4)]
        self.pans += [luhn_complete("3", 15, rng), luhn_complete("6", 19, rng)]
        self.pans += [luhn_complete("4", 13, rng)]
        self.cards = [f"card-{k:03d}" for k in range(40)]
        self.now = T0
        self.good_ids: list[str] = []
        self.good_records: dict[str, dict[str, Any]] = {}
        self.bad_count = 0

    def tick(self) -> int:
        self.now += self.rng.choice((0, 1, 250, 1_000, 15_000, 60_000, 180_000))
        return self.now

    # good -------------------------------------------------------------------------------

    def good(self, index: int) -> Line:
        rng = self.rng
        ms = self.tick()
        tid = f"g-{index:05d}"
        record: dict[str, Any] = {"transaction_id": tid}
        roll = rng.random()
        if roll < 0.55:
            record["card_id"] = card = rng.choice(self.cards)
        elif roll < 0.70:
            record["card_id"] = card = rng.choice(self.pans)
        elif roll < 0.78:
            record["card_id"] = int(rng.choice(self.pans))
            card = str(record["card_id"])
        elif roll < 0.88:
            record["account_id"] = rng.randrange(1, 30)
            card = str(record["account_id"])
        else:
            record["card_number"] = card = rng.choice(self.pans)
        user = None
        if rng.random() < 0.5:
            user = rng.choice((f"user_{rng.randrange(60)}", rng.choice(self.pans)))
            record["user_id"] = user
        style = rng.random()
        if style < 0.45:
            record["timestamp"] = ms
        elif style < 0.65:
            record["timestamp"] = iso(ms)
        elif style < 0.80:
            record["timestamp"] = iso(ms, rng.choice((330, -300, 60, -720, 840)))
        else:
            record["timestamp"] = str(ms)
        record["amount"] = rng.choice(
            (0, 0.5, 1, 12.34, round(rng.uniform(0, 2_000), 2), rng.randrange(1, 5000))
        )
        if rng.random() < 0.3:
            record["currency"] = rng.choice(("USD", "EUR", "GBP", "JPY"))
        coords = rng.random()
        lat, lon = round(rng.uniform(-90, 90), 4), round(rng.uniform(-180, 180), 4)
        if coords < 0.35:
            record["lat"], record["lon"] = lat, lon
        elif coords < 0.50:
            record["lat"], record["lng"] = lat, lon
        elif coords < 0.55:
            record["lat"], record["lon"] = rng.choice(((90, 180), (-90, -180), (0, 0)))
        for name in TEXT_FIELDS:
            if rng.random() < 0.3:
                record[name] = rng.choice((f"{name}-{rng.randrange(20)}", "x" * 256, "Zürich"))
        if rng.random() < 0.25:
            record["note"] = rng.choice(("hello", "", None, "ünïcödé"))
            record["meta"] = {"source": "test", "tags": [1, 2, 3], "ok": True}
        keys = list(record)
        rng.shuffle(keys)
        record = {k: record[k] for k in keys}
        ending = b"\r\n" if rng.random() < 0.1 else b"\n"
        expect_card = normalised_card(card)
        expect = {
            "card_id": expect_card,
            "user_id": normalised_card(user) if user is not None else expect_card,
            "event_time": iso_utc(ms),
        }
        self.good_ids.append(tid)
        self.good_records[tid] = record
        return Line(dumps(record) + ending, "good", tid, expect=expect)

    def duplicate(self, adjacent: bool) -> Line:
        tid = self.good_ids[-1] if adjacent else self.rng.choice(self.good_ids[:-1])
        if adjacent and self.rng.random() < 0.5:
            record = dict(self.good_records[tid])  # the very same record again
        else:
            record = {
                "transaction_id": tid,
                "card_id": self.rng.choice(self.cards + self.pans),
                "timestamp": self.now,
                "amount": 99.5,
            }
        return Line(dumps(record) + b"\n", "duplicate", tid)

    # bad --------------------------------------------------------------------------------

    def base(self) -> dict[str, Any]:
        self.bad_count += 1
        return {
            "transaction_id": f"bad-{self.bad_count:05d}",
            "card_id": self.rng.choice(self.cards + self.pans),
            "timestamp": self.now,
            "amount": 10.0,
            "lat": 10.0,
            "lon": 20.0,
            "currency": "USD",
        }

    def bad_lines(self, huge: bool) -> list[Line]:
        out: list[Line] = []

        def record(fields: tuple[str, ...], change: Callable[[dict[str, Any]], None]) -> None:
            r = self.base()
            change(r)
            tid = r.get("transaction_id")
            out.append(Line(dumps(r) + b"\n", "bad", tid if isinstance(tid, str) else None, fields))

        def setter(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
            return lambda r: r.__setitem__(name, value)

        def card_alias(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
            def change(r: dict[str, Any]) -> None:
                del r["card_id"]
                r[name] = value

            return change

        def lng_instead(value: Any) -> Callable[[dict[str, Any]], None]:
            def change(r: dict[str, Any]) -> None:
                del r["lon"]
                r["lng"] = value

            return change

        raw = self.raw_bad_lines()
        out.extend(raw)
        # missing each required field, and each given as null
        for name in ("transaction_id", "card_id", "timestamp", "amount"):
            record((name,), lambda r, name=name: r.pop(name))
            record((name,), setter(name, None))
        # empty strings
        for name in ("transaction_id", "card_id", "timestamp", "amount"):
            record((name,), setter(name, ""))
        record(("account_id",), card_alias("account_id", ""))
        record(("card_number",), card_alias("card_number", ""))
        # wrong types for every field
        wrong_for_text = ({"a": 1}, [1, 2], 1.5, True, False)
        for name in ("transaction_id", "card_id", "user_id", *TEXT_FIELDS):
            for value in wrong_for_text:
                record((name,), setter(name, value))
        for value in wrong_for_text:
            record(("account_id",), card_alias("account_id", value))
            record(("card_number",), card_alias("card_number", value))
        wrong_for_number = ({"a": 1}, [1], "abc", "12,50", True, False, "")
        for name in ("amount", "lat", "lon"):
            for value in wrong_for_number:
                record((name,), setter(name, value))
        for value in wrong_for_number:
            record(("lng",), lng_instead(value))
        for value in ({"a": 1}, [1], "abc", True, False, 1.5, -0.25, "1.5e12"):
            record(("timestamp",), setter("timestamp", value))
        # NaN / Infinity amounts as strings (the JSON tokens are in raw_bad_lines)
        for value in ("NaN", "nan", "Infinity", "-Infinity", "inf", "1e400"):
            record(("amount",), setter("amount", value))
            record(("lat",), setter("lat", value))
        # negative amounts
        for value in (-1, -0.01, -1e9, "-5"):
            record(("amount",), setter("amount", value))
        # out-of-range coordinates, one coordinate alone
        for value in (90.0001, -91, 1e9, "95"):
            record(("lat",), setter("lat", value))
        for value in (180.5, -181, 1e12):
            record(("lon",), setter("lon", value))
            record(("lng",), lng_instead(value))
        record(("lat", "lon"), lambda r: r.pop("lon"))
        record(("lat", "lon"), lambda r: r.pop("lat"))
        record(("lat", "lng", "lon"), lambda r: (r.pop("lat"), lng_instead(3.0)(r)))
        record(("lat", "lon"), setter("lat", None))
        # ids and texts too long
        record(("transaction_id",), setter("transaction_id", "t" * 129))
        record(("card_id",), setter("card_id", "c" * 129))
        record(("card_id",), setter("card_id", "7" * 129))
        record(("user_id",), setter("user_id", "u" * 200))
        record(("account_id",), card_alias("account_id", "a" * 300))
        for name in TEXT_FIELDS:
            record((name,), setter(name, "z" * 257))
        # huge fields: a 100 KB line and a 1 MB string
        if huge:
            record(("record", "device_id"), setter("device_id", "d" * 100_000))
            record(("record", "zipcode"), setter("zipcode", "9" * 1_000_000))
            record(("record", "merchant_category"), setter("merchant_category", "m" * 70_000))
        # bad ISO timestamps, no offset, out of range
        for value in (
            "2024-01-01T00:00:00",
            "2024-01-01 12:00:00",
            "2024-02-30T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T25:00:00+00:00",
            "2024-01-01T00:00:00+25:00",
            "01/02/2024 10:00",
            "yesterday",
            "2024-01-01T00:00:00 UTC",
            "T",
            "-",
            "12:00:00+00:00",
            10**16,
            -(10**16),
            str(10**17),
            1e300,
        ):
            record(("timestamp",), setter("timestamp", value))
        # booleans where numbers go
        for name in ("amount", "timestamp", "lat", "lon"):
            record((name,), setter(name, True))
        # bad currency
        for value in ("usd", "US", "EURO", "U$D", 978, "€€€", " EU", {"code": "USD"}, True):
            record(("currency",), setter("currency", value))
        # numbers no float can hold, and digits int() does not take
        record(("amount",), setter("amount", 10**400))
        record(("amount",), setter("amount", -(10**400)))
        record(("lat",), setter("lat", 10**400))
        record(("lon",), setter("lon", 10**400))
        record(("timestamp",), setter("timestamp", "9" * 5_000))
        record(("timestamp",), setter("timestamp", "²"))
        record(("timestamp",), setter("timestamp", "1²3"))
        # card numbers in the wrong field: never to be shown in full
        pan = self.rng.choice(self.pans)
        record(("timestamp",), setter("timestamp", pan))
        record(("timestamp",), setter("timestamp", int(pan)))
        record(("timestamp",), setter("timestamp", pan + "Z"))
        record(("amount",), setter("amount", -int(pan)))
        record(("amount",), setter("amount", pan + "x"))
        record(("amount",), setter("amount", "-" + pan))
        record(("currency",), setter("currency", pan))
        return out

    def raw_bad_lines(self) -> list[Line]:
        pan = self.rng.choice(self.pans)
        texts = [
            '{"transaction_id": "x", "card_id": "c", ',
            '{"transaction_id": "x" "card_id": "c"}',
            "{transaction_id: 1}",
            "{'transaction_id': 'x'}",
            '{"transaction_id": "x", "amount": 1,}',
            '{"transaction_id": "x"}}',
            "not json at all",
            "<xml/>",
            "{",
            "}",
            '"unterminated',
            '{"transaction_id": "nan-1", "card_id": "c", "timestamp": 1, "amount": NaN}',
            '{"transaction_id": "nan-2", "card_id": "c", "timestamp": 1, "amount": Infinity}',
            '{"transaction_id": "nan-3", "card_id": "c", "timestamp": 1, "amount": -Infinity}',
            '{"transaction_id": "nan-4", "card_id": "c", "timestamp": 1, "amount": 1, '
            '"lat": NaN, "lon": 1}',
            '{"transaction_id": "x", "card_id": "c", "timestamp": 01, "amount": 1}',
            '{"transaction_id": "x", "card_id": "\\ud800", "timestamp": 1, "amount": 1}',
            f'{{"transaction_id": "pan-in-broken-json", "card_id": "{pan}", ',
            f'{{"card_number": {pan}, "amount": 5 oops}}',
        ]
        lines = [Line(t.encode() + b"\n", "bad", None, ()) for t in texts]
        # not an object
        for value in ("[]", "[1, 2]", '"a string"', "123", "12.5", "null", "true", "false"):
            lines.append(Line(value.encode() + b"\n", "bad", None, ("record",)))
        lines.append(Line(b"[" + dumps(self.good_records_example()) + b"]\n", "bad", None, ()))
        # bytes that are not UTF-8
        lines.append(
            Line(
                b'{"transaction_id": "bad-utf8", "card_id": "\xff\xfe", "timestamp": 1, '
                b'"amount": 1}\n',
                "bad",
                "bad-utf8",
                (),
            )
        )
        lines.append(Line(b"\xc3\x28\n", "bad", None, ()))
        lines.append(Line(b"\x00\x00\x00\n", "bad", None, ()))
        return lines

    @staticmethod
    def good_records_example() -> dict[str, Any]:
        return {"transaction_id": "in-a-list", "card_id": "c", "timestamp": T0, "amount": 1}


def build_corpus(seed: int = SEED, good: int = 1_200) -> Corpus:
    rng = random.Random(seed)
    builder = Builder(rng)
    bad: list[Line] = []
    while len(bad) < 1_000:  # >= 1,000 malformed lines
        bad += builder.bad_lines(huge=not bad)
    rng.shuffle(bad)
    kinds = ["good"] * good + ["bad"] * len(bad) + ["dup"] * 25 + ["pair"] * 10 + ["blank"] * 6
    rng.shuffle(kinds)
    kinds = ["good", "good", *kinds]
    lines: list[Line] = []
    bad_iter = iter(bad)
    good_index = 0
    reuse_future_ids = 0
    for kind in kinds:
        if kind == "good":
            good_index += 1
            lines.append(builder.good(good_index))
        elif kind == "bad":
            line = next(bad_iter)
            # a few bad lines carry the id of a good record still to come: it must stay good
            if reuse_future_ids < 10 and line.transaction_id and line.transaction_id[:4] == "bad-":
                future = f"g-{good_index + 5:05d}"
                if good_index + 5 <= good:
                    reuse_future_ids += 1
                    text = line.data.replace(
                        f'"{line.transaction_id}"'.encode(), f'"{future}"'.encode(), 1
                    )
                    line = Line(text, "bad", future, line.fields)
            lines.append(line)
        elif kind == "dup":
            lines.append(builder.duplicate(adjacent=False))
        elif kind == "pair":
            good_index += 1
            lines.append(builder.good(good_index))
            lines.append(builder.duplicate(adjacent=True))
        else:
            lines.append(Line(rng.choice((b"\n", b"   \n", b"\t\r\n")), "blank"))
    # the last line without a newline at the end
    good_index += 1
    last = builder.good(good_index)
    last.data = last.data.rstrip(b"\r\n")
    lines.append(last)
    assert sum(line.kind == "good" for line in lines) >= 1_000
    assert sum(line.kind == "bad" for line in lines) >= 1_000
    return Corpus(lines, builder.pans)


# --- running it ----------------------------------------------------------------------------


@dataclass
class Run:
    returncode: int
    stdout: bytes
    stderr: str
    decisions: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    summary: dict[str, Any]
    files: dict[str, bytes]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def run_cli(directory: Path, corpus: Corpus, via_stdin: bool) -> Run:
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "input.jsonl"
    source.write_bytes(corpus.data())
    decisions = directory / "decisions.jsonl"
    dead = directory / "dead-letters.jsonl"
    summary = directory / "summary.json"
    command = [
        FRAUDSTREAM,
        "run",
        "--input",
        "-" if via_stdin else str(source),
        "--decisions",
        str(decisions),
        "--dead-letters",
        str(dead),
        "--summary-json",
        str(summary),
    ]
    with source.open("rb") as stdin:
        done = subprocess.run(
            command,
            stdin=stdin if via_stdin else subprocess.DEVNULL,
            capture_output=True,
            env=env(),
            timeout=300,
        )
    files = {p.name: p.read_bytes() for p in (decisions, dead, summary) if p.exists()}
    return Run(
        done.returncode,
        done.stdout,
        done.stderr.decode("utf-8", "replace"),
        read_jsonl(decisions),
        read_jsonl(dead),
        json.loads(summary.read_text()) if summary.exists() else {},
        files,
    )


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return build_corpus()


@pytest.fixture(scope="module", params=["file", "stdin"])
def run(request: pytest.FixtureRequest, corpus: Corpus, tmp_path_factory: Any) -> Run:
    directory = tmp_path_factory.mktemp(f"bad-input-{request.param}")
    return run_cli(directory, corpus, via_stdin=request.param == "stdin")


def assert_ran(run: Run) -> None:
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 0, run.stderr[-3000:]


def reason_field(reason: str) -> str:
    return reason.split(":", 1)[0]


# --- the checks ----------------------------------------------------------------------------


def test_exit_zero_without_traceback(run: Run) -> None:
    assert_ran(run)
    assert run.summary, "no --summary-json written"


def test_every_good_record_decided_exactly_once(run: Run, corpus: Corpus) -> None:
    assert_ran(run)
    good = corpus.positions("good")
    counts = Counter(d["transaction_id"] for d in run.decisions)
    twice = {tid: n for tid, n in counts.items() if n != 1}
    assert not twice, f"decided more than once: {sorted(twice)[:10]}"
    expected = {line.transaction_id for line in good.values()}
    assert set(counts) == expected, (
        f"missing: {sorted(expected - set(counts))[:10]}, "
        f"decided but not good: {sorted(set(counts) - expected)[:10]}"
    )
    by_id = {d["transaction_id"]: d for d in run.decisions}
    wrong = []
    for position, line in good.items():
        decision = by_id[line.transaction_id]
        got = {k: decision[k] for k in line.expect}
        if got != line.expect:
            wrong.append((position, line.data[:200], line.expect, got))
    assert not wrong, f"{len(wrong)} decisions with wrong normalised fields, e.g. {wrong[:3]}"


def test_every_bad_line_is_a_dead_letter_with_reason_and_position(run: Run, corpus: Corpus) -> None:
    assert_ran(run)
    positions = Counter(d["position"] for d in run.dead_letters)
    repeated = [p for p, n in positions.items() if n > 1]
    assert not repeated, f"positions dead-lettered more than once: {repeated[:10]}"
    expected = corpus.positions("bad", "duplicate")
    got = {d["position"]: d for d in run.dead_letters}
    assert set(got) == set(expected), (
        f"bad lines not dead-lettered: {sorted(set(expected) - set(got))[:10]}; "
        f"dead letters at positions without a bad line: {sorted(set(got) - set(expected))[:10]}"
    )
    problems = []
    for position, line in expected.items():
        letter = got[position]
        reason = letter.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            problems.append((position, "empty reason", letter))
            continue
        if line.kind == "duplicate":
            if "duplicate" not in reason or line.transaction_id not in reason:
                problems.append((position, "duplicate not named", reason))
            continue
        if line.fields and not any(f in reason_field(reason) for f in line.fields):
            problems.append((position, f"reason should name {line.fields}", reason[:200]))
    assert not problems, f"{len(problems)} bad dead letters, e.g. {problems[:5]}"


def test_dead_letters_keep_the_raw_line(run: Run, corpus: Corpus) -> None:
    """The raw input is kept (digits may be masked, long lines shortened)."""
    assert_ran(run)
    got = {d["position"]: d for d in run.dead_letters}
    problems = []
    for position, line in corpus.positions("bad").items():
        if len(line.data) > 4_000 or position not in got:
            continue
        raw = got[position].get("raw")
        want = line.data.decode("utf-8", "replace").rstrip("\r\n")
        if not isinstance(raw, str):
            problems.append((position, raw))
            continue
        # a masked card number standing outside a JSON string is quoted (JSON stays JSON)
        shown = re.sub(r"[\d*]", "#", raw.rstrip("\r\n")).replace('"', "")
        if shown != re.sub(r"\d", "#", want).replace('"', ""):
            problems.append((position, raw[:200], want[:200]))
    assert not problems, f"{len(problems)} dead letters lost their raw line: {problems[:3]}"


def test_summary_counts_add_up(run: Run, corpus: Corpus) -> None:
    assert_ran(run)
    s = run.summary
    records = sum(line.kind != "blank" for line in corpus.lines)
    good = len(corpus.positions("good"))
    bad = len(corpus.positions("bad"))
    duplicates = len(corpus.positions("duplicate"))
    assert s["records"] == records
    assert s["records"] == s["decided"] + s["dead_letters"] + s["late"]
    assert s["decided"] == good == len(run.decisions)
    assert s["late"] == 0
    assert s["duplicates"] == duplicates
    assert s["dead_letters"] == bad + duplicates == len(run.dead_letters)
    assert sum(s["decisions"].values()) == s["decided"]


def test_no_full_card_number_in_any_output(run: Run, corpus: Corpus) -> None:
    assert_ran(run)
    outputs = dict(run.files)
    outputs["stdout"] = run.stdout
    outputs["stderr"] = run.stderr.encode()
    leaks = []
    for name, data in outputs.items():
        for pan in corpus.pans:
            at = data.find(pan.encode())
            if at >= 0:
                line_start = data.rfind(b"\n", 0, at) + 1
                line_end = data.find(b"\n", at)
                leaks.append((name, pan, data[line_start : min(line_end, line_start + 300)]))
    assert not leaks, f"{len(leaks)} full card numbers in outputs, e.g. {leaks[:4]}"


# --- the crashers one by one, in process (fast and precise) -------------------------------

VALID = {"transaction_id": "t1", "card_id": "c1", "timestamp": T0, "amount": 5.0}


def decode_one(line: bytes) -> tuple[int, list[Any]]:
    decoder = Decoder(CardTokenizer(TOKEN_KEY.encode()))
    batch, dead = decoder.lines([line], [7], [0.0])
    return len(batch), dead


@pytest.mark.parametrize(
    ("line", "field_name"),
    [
        (b'{"transaction_id": "t1", "card_id": "\xff", "timestamp": 1, "amount": 1}', None),
        (dumps({**VALID, "amount": 10**400}), "amount"),
        (dumps({**VALID, "lat": 10**400, "lon": 1.0}), "lat"),
        (dumps({**VALID, "lat": 1.0, "lon": -(10**400)}), "lon"),
        (dumps({**VALID, "timestamp": "9" * 5_000}), "timestamp"),
        (dumps({**VALID, "timestamp": "²"}), "timestamp"),
    ],
    ids=["invalid-utf8", "amount-1e400-int", "lat-1e400-int", "lon-1e400-int", "ts-5000-digits",
         "ts-superscript-two"],
)  # fmt: skip
def test_bad_line_is_a_dead_letter_not_a_crash(line: bytes, field_name: str | None) -> None:
    good, dead = decode_one(line)
    assert good == 0
    assert len(dead) == 1 and dead[0].position == 7
    assert dead[0].reason.strip()
    if field_name is not None:
        assert field_name in reason_field(dead[0].reason), dead[0].reason


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("timestamp", lambda pan: pan),
        ("timestamp", int),
        ("timestamp", lambda pan: pan[:8] + "T" + pan[8:14] + "x"),
        ("amount", lambda pan: -int(pan)),
        ("amount", lambda pan: "-" + pan),
        ("amount", lambda pan: pan + "x"),
    ],
    ids=["ts-str", "ts-int", "ts-iso-ish", "amount-neg-int", "amount-neg-str", "amount-text"],
)
def test_card_number_in_a_wrong_field_is_not_in_the_reason(
    name: str, make: Callable[[str], Any]
) -> None:
    pan = "4111111111111111"
    good, dead = decode_one(dumps({**VALID, name: make(pan)}))
    assert good == 0 and len(dead) == 1
    assert name in reason_field(dead[0].reason)
    assert pan not in dead[0].reason, dead[0].reason
    assert pan not in dead[0].raw


def test_line_of_exactly_the_limit_is_read_the_same_from_a_file_and_stdin(
    tmp_path: Path,
) -> None:
    """A record line of exactly MAX_LINE_BYTES bytes (its newline not counted) is not too long,
    and a file and a pipe agree on it (DESIGN.md: replay and live give the same decisions)."""
    from fraudstream.io.files import FileSource, StdinSource
    from fraudstream.schema import MAX_LINE_BYTES

    record = {**VALID, "note": ""}
    record["note"] = "n" * (MAX_LINE_BYTES - len(dumps(record)))
    line = dumps(record)
    assert len(line) == MAX_LINE_BYTES
    path = tmp_path / "limit.jsonl"
    path.write_bytes(line + b"\n")
    decoder = Decoder(CardTokenizer(TOKEN_KEY.encode()))

    def outcome(items: Any) -> tuple[int, list[str]]:
        good, reasons = 0, []
        for item in items:
            if item is None:
                continue
            batch, dead = item
            good += len(batch)
            reasons += [d.reason for d in dead]
        return good, reasons

    from_file = outcome(FileSource(path, "jsonl").batches(decoder))
    with path.open("rb") as handle:
        from_pipe = outcome(StdinSource(handle, idle_timeout_ms=50).batches(decoder))
    assert from_file == from_pipe
    assert from_file == (1, [])


def test_edge_valid_values_are_decided_without_numeric_warnings() -> None:
    """Amount 0 and coordinates on the limits are valid: decided, and no RuntimeWarning
    (a zero running average must not divide by zero on the next transaction)."""
    import warnings

    from fraudstream.engine.pipeline import Pipeline

    rows = [
        {"transaction_id": "z1", "card_id": "c", "timestamp": T0, "amount": 0},
        {"transaction_id": "z2", "card_id": "c", "timestamp": T0 + 1_000, "amount": 0.0},
        {"transaction_id": "z3", "card_id": "c", "timestamp": T0 + 2_000, "amount": 25.0},
        {"transaction_id": "z4", "card_id": "d", "timestamp": T0 + 3_000, "amount": 1.0,
         "lat": 90, "lon": 180},
        {"transaction_id": "z5", "card_id": "d", "timestamp": T0 + 4_000, "amount": 1.0,
         "lat": -90, "lng": -180},
    ]  # fmt: skip
    decoder = Decoder(CardTokenizer(TOKEN_KEY.encode()))
    batch, dead = decoder.records(rows, list(range(1, 6)), [0.0] * 5)
    assert dead == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipeline = Pipeline()
        decided = []
        for result in (pipeline.submit(batch), pipeline.flush()):
            if result.decisions is not None:
                decided += result.decisions.tx.transaction_id.to_pylist()
    assert sorted(decided) == ["z1", "z2", "z3", "z4", "z5"]


# --- the record limits (tests/io/test_hostile_input.py runs them end to end) -----------------


def good_line(index: int, **extra: Any) -> bytes:
    return dumps({**VALID, "transaction_id": f"t{index}", "timestamp": T0 + index, **extra})


def outcome(batch: Any, dead: list[Any]) -> tuple[list[str], dict[int, str]]:
    return batch.transaction_id.to_pylist(), {d.position: d.reason for d in dead}


def test_the_limits_are_configurable_and_named_in_the_reason() -> None:
    from fraudstream.io.limits import RecordLimits

    decoder = Decoder(CardTokenizer(TOKEN_KEY.encode()), limits=RecordLimits(200, 3))
    lines = [
        good_line(1, meta={"a": [1]}),  # 3 deep: the limit
        good_line(2, meta={"a": [[1]]}),
        good_line(3, note="x" * 200),
        b"[[[[]]]]",
    ]
    ids, reasons = outcome(*decoder.lines(lines, [1, 2, 3, 4], [0.0] * 4))
    assert ids == ["t1"]
    assert reasons == {
        2: "record: nested deeper than 3 levels",
        3: "record: longer than 200 bytes",
        4: "record: nested deeper than 3 levels",
    }


@pytest.mark.parametrize(
    "nested", [b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000]
)
def test_a_block_never_hands_arrow_a_line_nested_past_the_limit(nested: bytes) -> None:
    """Arrow's JSON reader crashed the process on 10,000 nested arrays (and took seconds on
    5,000): the block goes the line-by-line way, and that line is a dead letter."""
    lines = [good_line(k) for k in range(1, 200)]
    lines.insert(100, good_line(0)[:-1] + b',"meta":' + nested + b"}")
    decoder = Decoder(CardTokenizer(TOKEN_KEY.encode()))
    ids, reasons = outcome(*decoder.block(b"\n".join(lines) + b"\n", 1, 0.0))
    assert len(ids) == 199 and reasons == {101: "record: nested deeper than 64 levels"}


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    lines = [good_line(k, note="[{" * 500 + "}]" * 500 if k % 7 == 0 else "") for k in range(100)]
    decoder = Decoder(CardTokenizer(TOKEN_KEY.encode()))
    ids, reasons = outcome(*decoder.block(b"\n".join(lines), 1, 0.0))
    assert len(ids) == 100 and reasons == {}


def test_a_value_holding_a_line_end_keeps_every_position() -> None:
    """A Kafka value may hold a line end: two objects in one value are one bad record, and
    the values after it keep their offsets (the columnar path counted two rows and
    misaligned every later position)."""
    values = [good_line(k) for k in range(100)]
    values[50] += b"\n" + good_line(1_000)
    decoder = Decoder(CardTokenizer(TOKEN_KEY.encode()))
    ids, reasons = outcome(*decoder.lines(values, list(range(100)), [0.0] * 100))
    assert ids == [f"t{k}" for k in range(100) if k != 50]
    assert list(reasons) == [50] and reasons[50].startswith("invalid JSON")


def test_an_over_long_line_is_never_held_whole(tmp_path: Path) -> None:
    """A file's and a pipe's line past the limit keeps only its head (the rest is skipped to
    its line end); the lines around it are read as usual."""
    from fraudstream.io.files import FileSource, StdinSource

    path = tmp_path / "long.jsonl"
    path.write_bytes(good_line(1) + b"\n" + b'{"x":"' + b"y" * 3_000_000 + b'"}\n' + good_line(2))
    decoder = Decoder(CardTokenizer(TOKEN_KEY.encode()))

    def read(items: Any) -> tuple[list[str], list[Any]]:
        ids, dead = [], []
        for item in items:
            if item is not None:
                ids += item[0].transaction_id.to_pylist()
                dead += item[1]
        return ids, dead

    with path.open("rb") as handle:
        for ids, dead in (
            read(FileSource(path, "jsonl", batch_rows=100).batches(decoder)),
            read(StdinSource(handle, idle_timeout_ms=50).batches(decoder)),
        ):
            assert ids == ["t1", "t2"]
            assert [(d.position, d.reason) for d in dead] == [
                (2, "record: longer than 65536 bytes")
            ]
            assert dead[0].raw.endswith("...[cut after 4096 bytes]") and len(dead[0].raw) < 5_000


def test_csv_rows_the_csv_module_refuses_are_dead_letters(tmp_path: Path) -> None:
    from fraudstream.io.files import FileSource

    path = tmp_path / "hostile.csv"
    rows = [
        "transaction_id,card_id,timestamp,amount,note",
        f"c1,card,{T0},1.5,ok",
        f"c2,card,{T0 + 1},1.5," + "n" * 200_000,  # past the csv module's field limit
        f"c3,card,{T0 + 2},1.5," + "n" * 70_000,  # past the record limit
        f"c4,card,{T0 + 3},1.5,nul\x00byte",
        f"c5,card,{T0 + 4},1.5,ok",
    ]
    path.write_bytes("\n".join(rows).encode() + b"\n\xff\xfe,\xc3\x28,\xff,1\n")
    decoder = Decoder(CardTokenizer(TOKEN_KEY.encode()))
    ids, dead = [], []
    for batch, letters in FileSource(path, "csv").batches(decoder):  # type: ignore[misc]
        ids += batch.transaction_id.to_pylist()
        dead += letters
    assert ids == ["c1", "c4", "c5"]
    reasons = {d.position: d.reason for d in dead}
    assert reasons[3].startswith("record: field larger than field limit")
    assert reasons[4] == "record: longer than 65536 bytes"
    assert reasons[7].startswith("timestamp")  # invalid UTF-8 read as U+FFFD: a bad field


def test_a_parquet_column_nested_past_the_limit_is_checked_row_by_row() -> None:
    import pyarrow as pa

    from fraudstream.io.limits import RecordLimits

    deep = pa.array([None, [[[1]]], [[[2, 3]]]], pa.list_(pa.list_(pa.list_(pa.int64()))))
    table = pa.table(
        {
            "transaction_id": ["p1", "p2", "p3"],
            "card_id": ["c", "c", "c"],
            "timestamp": [T0, T0 + 1, T0 + 2],
            "amount": [1.0, 2.0, 3.0],
            "meta": deep,  # the record nests 4 deep where meta is set
        }
    )
    for depth, good in ((4, ["p1", "p2", "p3"]), (3, ["p1"])):
        decoder = Decoder(CardTokenizer(TOKEN_KEY.encode()), limits=RecordLimits(max_depth=depth))
        ids, reasons = outcome(*decoder.table(table, 1, 0.0))
        assert ids == good
        assert set(reasons.values()) <= {"record: nested deeper than 3 levels"}


def test_no_byte_sequence_crashes_decoding_and_each_line_is_decided_or_a_dead_letter() -> None:
    """Random bytes, random nesting and mangled records, as a block and as lines: every
    non-blank line is either accepted or a dead letter, and both ways agree."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    fragments = st.sampled_from(
        [b"[", b"]", b"{", b"}", b'"', b"\\", b":", b",", b"\x00", b"\xff", b"\xef\xbb\xbf",
         b"\r", b"1e400", b"9" * 30, b'"a"', b"null", b"true", b" "]
    )  # fmt: skip
    mangled = st.builds(
        lambda k, cut, junk: good_line(k)[:cut] + junk + good_line(k)[cut:],
        st.integers(0, 10_000),
        st.integers(0, 60),
        st.binary(max_size=8),
    )
    deep = st.builds(lambda n, k: good_line(k)[:-1] + b',"m":' + b"[" * n + b"]" * n + b"}",
                     st.integers(60, 3_000), st.integers(0, 10_000))  # fmt: skip
    line = st.one_of(
        st.builds(good_line, st.integers(0, 10_000)),
        mangled,
        deep,
        st.lists(fragments, max_size=40).map(b"".join),
        st.binary(max_size=60),
    ).map(lambda data: data.replace(b"\n", b" "))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(line, min_size=1, max_size=120))
    def check(lines: list[bytes]) -> None:
        decoder = Decoder(CardTokenizer(TOKEN_KEY.encode()))
        kept = [line for line in lines if line.strip()]
        positions = [k + 1 for k, line in enumerate(lines) if line.strip()]
        as_lines = outcome(*decoder.lines([line.rstrip(b"\r") for line in kept], positions,
                                          [0.0] * len(kept)))  # fmt: skip
        as_block = outcome(*decoder.block(b"\n".join(lines), 1, 0.0))
        assert as_lines == as_block
        ids, reasons = as_block
        assert len(ids) + len(reasons) == len(kept)
        assert all(reason.strip() for reason in reasons.values())

    check()


def test_lines_with_fields_of_their_own_go_record_by_record_with_their_extras() -> None:
    """Arrow gives every row a cell in every column: a block where each line brings fields
    no other has would cost it rows x fields (hours for 32 MB). Such a block is not handed
    to it; its records are decided with their own extras all the same."""
    from fraudstream.io.json_columns import parse_block

    lines = [good_line(k, **{f"k{k}_{j}": j for j in range(10)}) for k in range(2_000)]
    block = b"\n".join(lines)
    assert parse_block(block) is None
    batch, dead = Decoder(CardTokenizer(TOKEN_KEY.encode())).block(block, 1, 0.0)
    assert dead == [] and len(batch) == 2_000
    assert batch.extras is not None and batch.extras[7] == {f"k7_{j}": j for j in range(10)}
    flat = [good_line(k, channel_hint="web", score=k) for k in range(2_000)]
    assert parse_block(b"\n".join(flat)) is not None  # a few fields every line has: columns
