"""No card number anywhere (issue 16, DESIGN.md "Card numbers").

Luhn-valid card numbers are planted in every field (ids, text fields, extras, nested and as
integers), bare, grouped by spaces, by dashes and with a leading space, in good records,
duplicates, late records, invalid records and lines that are not JSON at all. They go through
``fraudstream run`` from JSON lines (every output on: decisions, alerts, enriched, dead
letters, late, the SQLite store, the lakehouse, checkpoints), Parquet, CSV and stdin, and
through the API (single and batch posts, decisions read back, dead letters, late records,
the review queue, a review note, notes of rule and profile changes, the live feed). Every
file, database, checkpoint, response and the captured output is then searched: none of the
numbers is found in any writing, the same card has the same token however it was written,
and epoch-ms times (Luhn-valid ones chosen on purpose) are kept as they were, with every
dead-letter line still JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudstream.cardnumbers import CardTokenizer, luhn_valid

with warnings.catch_warnings():  # starlette prefers httpx2; the venv has httpx
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))
START_MS = 1_767_225_600_000
KEY = "test"  # tests/conftest.py's FRAUDSTREAM_TOKEN_KEY
SENT_MS = next(t for t in range(1_546_300_800_000, 1_546_300_801_000) if luhn_valid(str(t)))
API_TOKEN = "card-test-token"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


class Planted:
    """Distinct Luhn-valid card numbers (16 digits, 15 for Amex-like) and how they were written."""

    def __init__(self, seed: int) -> None:
        self.numbers: list[str] = []
        self.seed = seed

    def new(self) -> str:
        k = len(self.numbers)
        prefix = ("4", "52", "6011", "37")[k % 4]
        length = 15 if prefix == "37" else 16
        body = f"{prefix}{self.seed:02d}{k:07d}".ljust(length - 1, "3")
        number = body + next(d for d in "0123456789" if luhn_valid(body + d))
        self.numbers.append(number)
        return number

    def written(self, form: int, number: str | None = None) -> str:
        """The number bare, spaced, dashed, or bare with a leading space."""
        number = number or self.new()
        groups = [number[k : k + 4] for k in range(0, len(number), 4)]
        return (number, " ".join(groups), "-".join(groups), " " + number)[form % 4]


def transactions(planted: Planted, count: int, cards: int = 12) -> list[dict[str, Any]]:
    """Good records: each card is written in every form; numbers in every field."""
    card_numbers = [planted.new() for _ in range(cards)]
    records = []
    for i in range(count):
        form = i // cards  # card c appears as c, c+12, c+24, ...: in the four forms
        records.append(
            {
                "transaction_id": f"tx-{i}-{planted.written(i)}",
                "card_id": planted.written(form, card_numbers[i % cards]),
                "user_id": f"user {planted.written(i + 1)}",
                "timestamp": START_MS + i * 2_000,
                "amount": 0.80 if form % 2 == 0 else 871.15,
                "currency": "USD",
                "lat": 52.5,
                "lon": 13.4,
                "zipcode": planted.written(i + 2),
                "merchant_id": f"m-{planted.written(i + 3)}",
                "merchant_category": planted.written(i),
                "country": planted.written(i + 1),
                "channel": planted.written(i + 2),
                "device_id": planted.written(i + 3),
                "ip": planted.written(i),
                "note": f"paid with {planted.written(i + 1)} at {SENT_MS}",
                "sent_ms": SENT_MS,
                "pan": int(planted.new()),
                "meta": {"nested": planted.written(i + 2)},
            }
        )
    return records


def awkward_lines(planted: Planted, good: list[dict[str, Any]]) -> tuple[list[bytes], int]:
    """Duplicates, late records, invalid records and non-JSON lines, all with card numbers;
    and how many of them are JSON (their dead-letter raw must stay JSON)."""
    late = dict(
        good[3], transaction_id=f"late-{planted.written(1)}", timestamp=START_MS - 3_600_000
    )
    late |= {"zipcode": planted.written(2), "note": planted.written(0)}
    invalid = [
        dict(good[0], transaction_id=f"bad-{planted.written(0)}", currency=planted.written(1)),
        dict(good[1], transaction_id=f"bad-{planted.written(2)}", amount=-int(planted.new())),
        {"transaction_id": "ts-bad", "card_id": int(planted.new()), "timestamp": SENT_MS,
         "amount": -1, "note": planted.written(3)},
        {"transaction_id": "t-text", "card_id": "c", "amount": 1,
         "timestamp": f"soon, 2026 {planted.written(2)}"},
    ]  # fmt: skip
    # copies of the last records (sent again at once: duplicates; a copy of an early record
    # arriving this late would be late, which the late record covers)
    json_lines = [json.dumps(r).encode() for r in (good[-2], good[-1], late, *invalid)]
    broken = [
        b'{"transaction_id": "broken ' + planted.written(1).encode() + b'", "amount": ',
        b"card " + planted.written(2).encode() + b" and " + planted.written(0).encode(),
    ]
    return json_lines + broken, len(json_lines)


# --- searching everything --------------------------------------------------------------------


def texts_of(path: Path) -> Iterator[str]:
    """Every readable text of a file: its bytes, and what Parquet, npz/zip, SQLite hold."""
    data = path.read_bytes()
    yield data.decode("utf-8", "replace")
    if data.startswith(b"PAR1"):
        yield json.dumps(pq.read_table(path).to_pylist(), default=str)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                member = archive.read(name)
                yield member.decode("utf-8", "replace")
                if name.endswith(".npy"):
                    array = np.load(io.BytesIO(member), allow_pickle=False)
                    yield str(array.ravel().tolist())
    if data.startswith(b"SQLite format 3"):
        with sqlite3.connect(path) as connection:
            yield "\n".join(connection.iterdump())


def found_numbers(texts: Iterator[str] | list[str], numbers: list[str]) -> list[str]:
    """The numbers found in any writing (spaces and dashes removed before looking)."""
    found = set()
    for text in texts:
        flat = re.sub(r"[ \-]", "", text)
        found.update(n for n in numbers if n in flat)
    return sorted(found)


def everything_under(directory: Path) -> Iterator[str]:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            yield from texts_of(path)


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, FRAUDSTREAM_TOKEN_KEY=KEY, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [FRAUDSTREAM, "run", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_same_token_for_every_writing(decisions: list[dict[str, Any]], cards: list[str]) -> None:
    """Card c (written bare, spaced, dashed, padded) has the keyed token of its digits."""
    by_index = {int(d["transaction_id"].split("-")[1]): d["card_id"] for d in decisions}
    tokenizer = CardTokenizer(KEY.encode())
    for i, token in by_index.items():
        assert token == tokenizer.token(cards[i % len(cards)]), i


# --- fraudstream run ---------------------------------------------------------------------------


def test_no_card_number_in_any_output_of_a_run(tmp_path: Path) -> None:
    planted = Planted(1)
    good = transactions(planted, 240)
    extra, json_count = awkward_lines(planted, good)
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join([json.dumps(r).encode() for r in good] + extra) + b"\n")
    out = tmp_path / "out"
    out.mkdir()
    done = run_cli(
        "--input", str(source), "--decisions", str(out / "decisions.jsonl"),
        "--alerts", str(out / "alerts.jsonl"), "--enriched", str(out / "enriched.jsonl"),
        "--dead-letters", str(out / "dead.jsonl"), "--late", str(out / "late.jsonl"),
        "--store", str(out / "store.db"), "--lakehouse", str(out / "lake"),
        "--checkpoint-dir", str(out / "checkpoints"), "--checkpoint-every-records", "60",
        "--summary-json", str(out / "summary.json"), "--batch-rows", "100",
    )  # fmt: skip
    logs = [done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")]
    assert found_numbers([*everything_under(out), *logs], planted.numbers) == []

    decisions = read_jsonl(out / "decisions.jsonl")
    assert len(decisions) == len(good)
    assert read_jsonl(out / "alerts.jsonl")
    assert_same_token_for_every_writing(decisions, planted.numbers[:12])
    enriched = read_jsonl(out / "enriched.jsonl")
    assert {e["sent_ms"] for e in enriched} == {SENT_MS}
    assert all(e["note"].endswith(f" at {SENT_MS}") for e in enriched)
    assert all(e["pan"].startswith("tok_") for e in enriched)
    assert any(str(e["features"].get("last_zipcode", "")).startswith("tok_") for e in enriched)
    late = read_jsonl(out / "late.jsonl")
    assert len(late) == 1
    dead = read_jsonl(out / "dead.jsonl")
    reasons = [d["reason"] for d in dead]
    assert sum(r.startswith("duplicate") for r in reasons) == 2
    assert len(dead) == 2 + 4 + 2  # duplicates, invalid records, non-JSON lines
    raw_json = [d["raw"] for d in dead if not d["reason"].startswith(("duplicate", "invalid"))]
    assert len(raw_json) == json_count - 3  # the invalid records' lines
    parsed = [json.loads(raw) for raw in raw_json]  # still JSON
    assert any(p.get("timestamp") == SENT_MS for p in parsed)


@pytest.mark.parametrize("kind", ["parquet", "csv", "stdin"])
def test_no_card_number_from_parquet_csv_or_stdin(tmp_path: Path, kind: str) -> None:
    planted = Planted(2)
    good = transactions(planted, 120)
    bad = dict(good[0], transaction_id=f"bad-{planted.written(2)}", currency=planted.written(0))
    records = [*good, bad]
    out = tmp_path / "out"
    out.mkdir()
    stdin = None
    if kind == "parquet":
        source = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pylist(records), source)
    elif kind == "csv":
        source = tmp_path / "in.csv"
        with source.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(good[0]))
            writer.writeheader()
            writer.writerows({**r, "meta": r["meta"]["nested"]} for r in records)
    else:
        source = Path("-")
        stdin = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    done = run_cli(
        "--input", str(source), "--decisions", str(out / "decisions.jsonl"),
        "--enriched", str(out / "enriched.parquet"), "--dead-letters", str(out / "dead.jsonl"),
        stdin=stdin,
    )  # fmt: skip
    logs = [done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")]
    assert found_numbers([*everything_under(out), *logs], planted.numbers) == []
    decisions = read_jsonl(out / "decisions.jsonl")
    assert len(decisions) == len(good)
    assert_same_token_for_every_writing(decisions, planted.numbers[:12])
    enriched = pq.read_table(out / "enriched.parquet").to_pylist()
    assert all(f" at {SENT_MS}" in e["note"] for e in enriched)
    assert len(read_jsonl(out / "dead.jsonl")) == 1


# --- the API -------------------------------------------------------------------------------------


def test_no_card_number_through_the_api(tmp_path: Path) -> None:
    from fraudstream.assembly import TimeMode, build_pipeline
    from fraudstream.web.app import create_app

    planted = Planted(3)
    good = transactions(planted, 48)
    extra, _ = awkward_lines(planted, good)
    pipeline = build_pipeline(None, None, TimeMode.event, 0, 300_000, 1_000, None, None)
    tokenizer = CardTokenizer(KEY.encode())
    app = create_app(pipeline, API_TOKEN, tokenizer, data_dir=tmp_path / "data")
    service = app.state.service
    feed = service.subscribe(size=10_000, with_transaction=True)
    responses: list[str] = []
    with TestClient(app, base_url="http://127.0.0.1") as client:

        def call(method: str, url: str, **kwargs: Any) -> Any:
            response = client.request(method, url, headers=AUTH, **kwargs)
            responses.append(response.text)
            return response

        for record in good[:24]:
            assert call("POST", "/v1/transactions", json=record).status_code == 200
        assert call("POST", "/v1/transactions/batch", json=good[24:]).status_code == 200
        for line in extra:
            call("POST", "/v1/transactions", content=line)
        call("POST", "/v1/transactions/batch", content=b"[" + extra[-1])
        decided = list(service.decisions)
        assert len(decided) == len(good)
        for record in good[:5]:  # read back by the id as it was sent: found, no number shown
            assert call("GET", f"/v1/decisions/{record['transaction_id']}").status_code == 200
        missing = f"/v1/decisions/none-{planted.written(1)}"
        assert call("GET", missing).status_code == 404
        for path in ("/v1/dead-letters", "/v1/late", "/v1/review-queue?status=all", "/healthz"):
            assert call("GET", path).status_code == 200
        queue = call("GET", "/v1/review-queue").json()
        assert queue, "the planted records should raise alerts"
        sent_as = {tokenizer.scrub(r["transaction_id"]): r["transaction_id"] for r in good}
        alert = sent_as[queue[0]["transaction_id"]]  # used as sent, with its card number
        note = f"customer read out {planted.written(1)} on the phone"
        body = {"verdict": "confirm_fraud", "analyst": f"ana {planted.written(2)}", "note": note}
        assert call("POST", f"/v1/reviews/{alert}", json=body).status_code == 200
        change = {"who": f"ops {planted.written(3)}", "note": f"re {planted.written(0)}"}
        assert call("PATCH", "/v1/rules", json={**change, "review_threshold": 0.4}).is_success
        assert call("PUT", "/v1/profiles/u-1", json={**change, "max_speed_kmh": 900}).is_success
        for path in (f"/v1/review-queue/{alert}", "/v1/reviews", "/v1/labels", "/v1/rules/audit",
                     "/v1/profiles/audit", f"/v1/reviews?transaction_id={alert}"):  # fmt: skip
            assert call("GET", path).status_code == 200
        assert len(responses[-1]) > 2  # the review, found by the id as sent
    events = []
    while not feed.queue.empty():
        events.append(feed.queue.get_nowait().decode())
    assert len(events) == len(good)
    assert found_numbers([*responses, *events, *everything_under(tmp_path / "data")],
                         planted.numbers) == []  # fmt: skip
    kept_decisions = [json.loads(row) for row in service.decisions.values()]  # kept as JSON
    assert_same_token_for_every_writing(kept_decisions, planted.numbers[:12])
    kept = [json.loads(d["raw"]) for d in service.dead_letters if "ts-bad" in d["raw"]]
    assert [k["timestamp"] for k in kept] == [SENT_MS]
