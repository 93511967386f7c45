"""The card-number scrubber (DESIGN.md "Card numbers"), as properties of the text it sees.

Any Luhn-valid run of 12-19 digits, grouped by single spaces or dashes, inside any text is
replaced by the keyed token of its digits; numbers that fail Luhn and epoch-ms timestamps are
kept; scrubbing twice changes nothing; the Arrow column path equals the per-value path; and
every path into the decoder (records, JSON lines one by one and as Arrow blocks, Parquet
tables) gives the same scrubbed transactions.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fraudstream.cardnumbers import (
    CardTokenizer,
    card_number_spans,
    luhn_valid,
    mask_card_numbers,
    mask_card_numbers_in_json,
    mask_raw_text,
)
from fraudstream.io.card_columns import scrub_column
from fraudstream.io.decode import Decoder
from fraudstream.io.labels import read_labels

TOKENIZER = CardTokenizer(b"test-key")
TOKEN = re.compile(r"tok_[0-9a-f]{24}")


def check_digit(body: str) -> str:
    """The Luhn check digit that completes ``body``."""
    for digit in "0123456789":
        if luhn_valid(body + digit):
            return digit
    raise AssertionError("unreachable")


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    """A Luhn-valid number of 12-19 digits that is not an epoch time (DESIGN.md: a lone
    13/16/19-digit group starting with 1 is one)."""
    length = draw(st.integers(12, 19))
    first = draw(st.sampled_from("23456789" if length in (13, 16, 19) else "123456789"))
    body = first + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=length - 2,
                                         max_size=length - 2)))  # fmt: skip
    return body + check_digit(body)


@st.composite
def grouped(draw: st.DrawFn, digits: str) -> str:
    """``digits`` split into groups joined by single spaces or dashes (or not split)."""
    out, rest = [], digits
    while rest:
        size = draw(st.integers(1, len(rest)))
        out.append(rest[:size])
        rest = rest[size:]
        if rest:
            out.append(draw(st.sampled_from(" -")))
    return "".join(out)


# Text around a number: anything but digits, cut off from the number by a character that is
# neither a digit nor a separator (so the number is a run of its own).
FILLER = st.text(st.characters(exclude_categories=("Nd", "Cs")), max_size=30)
BOUNDARY = st.sampled_from(list("x\"':,;/()[]{}=\n\t"))


def removed(text: str, digits: str) -> bool:
    return digits not in re.sub(r"[ -]", "", text)


def masked_as_expected(written: str) -> str:
    """Every digit but the last four as ``*``, separators kept."""
    total = sum(c.isdigit() for c in written)
    out, seen = [], 0
    for char in written:
        if char.isdigit():
            seen += 1
            char = char if seen > total - 4 else "*"
        out.append(char)
    return "".join(out)


# A Luhn-valid epoch-ms time: not a card number all the same.
SENT_MS = next(t for t in range(1_546_300_800_000, 1_546_300_801_000) if luhn_valid(str(t)))


@settings(max_examples=300, deadline=None)
@given(card_numbers().flatmap(lambda n: st.tuples(st.just(n), grouped(n))), FILLER, BOUNDARY,
       BOUNDARY, FILLER)  # fmt: skip
def test_a_card_number_in_any_grouping_inside_any_text_is_tokenized(
    number: tuple[str, str], before: str, left: str, right: str, after: str
) -> None:
    digits, written = number
    text = before + left + written + right + after
    scrubbed = TOKENIZER.scrub(text)
    assert removed(scrubbed, digits)
    masked = mask_card_numbers(text)
    assert removed(masked, digits)
    if len(re.split("[ -]", written)[0]) >= 4:  # as card numbers are printed: its own token
        assert scrubbed == before + left + TOKENIZER.token(digits) + right + after
        assert masked == before + left + masked_as_expected(written) + right + after
    assert TOKENIZER(written) == TOKENIZER.token(digits)  # as a card id: the same token


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(card_numbers(), st.text("0123456789 -", max_size=25), FILLER),
                max_size=8))  # fmt: skip
def test_scrubbing_is_idempotent_and_leaves_no_card_number(pieces: list[str]) -> None:
    text = "".join(pieces)
    once = TOKENIZER.scrub(text)
    assert TOKENIZER.scrub(once) == once
    assert card_number_spans(once) == []
    runs_left = {re.sub(r"[ -]", "", run) for run in re.findall(r"\d+(?:[ -]\d+)*", once)}
    for _start, _end, digits in card_number_spans(text):
        assert luhn_valid(digits) and 12 <= len(digits) <= 19
        assert digits not in runs_left
    # every number found is a token; a group a number left out may turn out to be one on its
    # own in the next pass of scrub (e.g. "100000000008327-320-100000000008327-32"): more
    assert len(TOKEN.findall(once)) >= len(card_number_spans(text)) + len(TOKEN.findall(text))


@st.composite
def non_card_numbers(draw: st.DrawFn) -> str:
    length = draw(st.integers(12, 19))
    digits = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=length,
                                   max_size=length)))  # fmt: skip
    assume(not luhn_valid(digits))
    return digits


@settings(max_examples=300, deadline=None)
@given(non_card_numbers(), FILLER, BOUNDARY, BOUNDARY, FILLER)
def test_numbers_failing_luhn_are_kept(
    digits: str, before: str, left: str, right: str, after: str
) -> None:
    text = before + left + digits + right + after
    assert TOKENIZER.scrub(text) == text
    assert mask_card_numbers(text) == text


@settings(max_examples=300, deadline=None)
@given(st.integers(10**12, 2 * 10**12 - 1), FILLER, BOUNDARY, FILLER)
def test_millisecond_timestamps_are_kept_even_when_luhn_valid(
    ms: int, before: str, left: str, after: str
) -> None:
    text = before + left + str(ms) + "," + after
    assert TOKENIZER.scrub(text) == text
    line = json.dumps({"timestamp": ms, "note": text, "amount": 1.5})
    assert mask_card_numbers_in_json(line) == line


def test_luhn_valid_timestamps_stay_next_to_a_masked_card() -> None:
    ms = SENT_MS
    line = f'{{"timestamp": {ms}, "card_id": 5200828282828210, "n": "4000 0566 5566 5556"}}'
    masked = mask_card_numbers_in_json(line)
    assert json.loads(masked) == {
        "timestamp": ms,
        "card_id": "************8210",
        "n": "**** **** **** 5556",
    }
    negative = mask_card_numbers_in_json('{"amount": -5200828282828210}')
    assert json.loads(negative) == {"amount": "-************8210"}


def test_decimal_fractions_and_long_ids_are_not_card_numbers() -> None:
    fraction = "0." + "4111111111111111"
    assert TOKENIZER.scrub(f"lat {fraction}") == f"lat {fraction}"
    assert TOKENIZER.scrub("id 41111111111111111111") == "id 41111111111111111111"


def test_a_card_number_next_to_other_digit_groups_is_still_found() -> None:
    card = "4111 1111 1111 1111"
    for text in (f"tel 0612 {card}", f"{card} 123", f"12 {card} 34"):
        assert removed(TOKENIZER.scrub(text), "4111111111111111"), text


def test_raw_text_is_never_cut_inside_a_card_number() -> None:
    line = '{"note": "' + "x" * 20 + ' 4000 0566 5566 5556"}'
    for limit in range(20, len(line)):
        assert removed(mask_raw_text(line, limit), "4000056655665556"), limit
        assert "0566 5566" not in mask_raw_text(line, limit)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), FILLER, card_numbers().flatmap(grouped),
                          st.builds(lambda a, b: a + " " + b, FILLER, card_numbers())),
                max_size=40))  # fmt: skip
def test_the_column_path_equals_the_value_path(values: list[str | None]) -> None:
    column = pa.array(values, pa.string())
    for replace in (TOKENIZER.scrub, TOKENIZER):
        expected = [None if v is None else replace(v) for v in values]
        assert scrub_column(column, replace).to_pylist() == expected
        sliced = column.slice(1)
        assert scrub_column(sliced, replace).to_pylist() == expected[1:]


def test_extras_are_scrubbed_deeply_and_integers_become_tokens() -> None:
    card = "5200828282828210"
    value = {
        "note": f"call about {card[:4]} {card[4:8]} {card[8:12]} {card[12:]}",
        card: [int(card), {"pan": f"-{card}-"}],
        "sent_ms": 1_700_000_000_123,
        "flag": True,
    }
    scrubbed = TOKENIZER.scrub_value(value)
    assert removed(json.dumps(scrubbed), card)
    token = TOKENIZER.token(card)
    assert scrubbed[token][0] == token and scrubbed["sent_ms"] == 1_700_000_000_123
    assert scrubbed["flag"] is True


# --- every decoder path scrubs the same way ----------------------------------------------------


def planted_records(count: int) -> list[dict[str, Any]]:
    """Records with card numbers (bare, spaced, dashed, padded) in every string field."""
    records = []
    for i in range(count):
        body = f"4{i:013d}0"
        number = body + check_digit(body)
        forms = (
            number,
            " ".join(number[k : k + 4] for k in range(0, 16, 4)),
            "-".join(number[k : k + 4] for k in range(0, 16, 4)),
            " " + number,
        )
        form = forms[i % 4]
        records.append(
            {
                "transaction_id": f"t{i}-{form}",
                "card_id": form,
                "user_id": f"u {form}",
                "timestamp": 1_700_000_000_000 + i,
                "amount": 1.0 + i,
                "zipcode": form,
                "merchant_id": f"m:{form}",
                "merchant_category": form,
                "country": form,
                "channel": form,
                "device_id": form,
                "ip": form,
                "note": f"card {form}, sent {SENT_MS}",
            }
        )
    return records


def test_every_decoder_path_gives_the_same_scrubbed_records() -> None:
    records = planted_records(130)  # above COLUMNAR_MIN_ROWS: the Arrow paths run
    decoder = Decoder(TOKENIZER, "test")
    positions = list(range(1, len(records) + 1))
    lines = [msgspec.json.encode(r) for r in records]
    results = {
        "records": decoder.records(records[:5], positions[:5], [0.0] * 5)[0],
        "lines": decoder.lines(lines, positions, [0.0] * len(lines))[0],
        "block": decoder.block(b"\n".join(lines) + b"\n", 1, 0.0)[0],
        "table": decoder.table(pa.Table.from_pylist(records), 1, 0.0)[0],
    }
    expected = [dict(results["records"].record(k)) for k in range(5)]
    for name, batch in results.items():
        assert len(batch) == (5 if name == "records" else len(records)), name
        rows = [batch.record(k) for k in range(len(batch))]
        assert [dict(r) for r in rows[:5]] == expected, name
        text = json.dumps(rows)
        for record in records:
            assert removed(text, re.sub(r"\D", "", record["card_id"])), name
        assert text.count(str(SENT_MS)) == len(rows), name
    first = "4" + "0" * 14
    token = TOKENIZER.token(first + check_digit(first))
    assert expected[0]["card_id"] == token and expected[0]["transaction_id"] == f"t0-{token}"
    assert expected[0]["note"] == f"card {token}, sent {SENT_MS}"


def test_label_ids_are_scrubbed_as_transaction_ids_are(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    rows = [
        {"transaction_id": "tx-4111 1111 1111 1111", "is_fraud": True, "label_time": 5},
        {"transaction_id": f"tx-{SENT_MS}", "is_fraud": False, "label_time": 6},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    decided = Decoder(CardTokenizer(os.environ["FRAUDSTREAM_TOKEN_KEY"].encode())).records(
        [dict(row, card_id="c", timestamp=1, amount=1.0) for row in rows], [1, 2], [0.0, 0.0]
    )[0]
    assert read_labels(path).transaction_id.to_pylist() == decided.transaction_id.to_pylist()
    assert decided.transaction_id.to_pylist()[1] == f"tx-{SENT_MS}"
