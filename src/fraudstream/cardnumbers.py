"""Card numbers (DESIGN.md "Card numbers"): found in any text, tokenized or masked.

Where records enter, any run of 12-19 digits, possibly split into groups by single spaces or
dashes, that passes the Luhn check, in any string field, is replaced by a keyed token
(``tok_`` and 24 hex digits of an HMAC-SHA256 of the digits): the same number gives the same
token however it was written. ``card_id`` (and ``user_id``) keep the rule they always had: a
whole value of 12-19 digits is the card number (Luhn or not), now also when grouped.

Not card numbers, left as they are:

* a group of 13, 16 or 19 digits starting with 1 standing alone (not grouped with others
  into a card number): an epoch time in ms, us or ns (2001-2286); no card scheme issues
  numbers of those lengths starting with 1;
* digits right after ``<digit>.``: the fraction of a decimal number;
* a number starting with 0 (no card number does: "t0-4111 1111 1111 1111" holds the card
  number 4111111111111111, not 04111111111111111);
* a single group of more than 19 digits (an id, not a card number);
* runs whose digits fail the Luhn check.

Within a run of groups ("tel 0612 4111 1111 1111 1111"), each longest sub-run of whole
groups that is a card number is replaced, so neighbouring digits cannot hide one.

Raw lines kept for people (dead letters) are masked rather than tokenized, with no key
needed: every digit but the last four becomes ``*``, and a number standing outside a JSON
string is quoted, so a JSON line stays JSON.

Arrow columns are scrubbed the same way by :mod:`fraudstream.io.card_columns`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any

__all__ = [
    "CardTokenizer",
    "card_number_spans",
    "luhn_valid",
    "mask_card_numbers",
    "mask_card_numbers_in_json",
    "mask_raw_text",
]

MIN_DIGITS = 12
MAX_DIGITS = 19
# A run of at least 12 digits (any script: Python's \d), single spaces or dashes between
# groups; not the fraction of a decimal number. Greedy, so it takes the whole run.
_RUN = re.compile(r"(?<!\d)(?<!\d\.)\d(?:[ -]?\d){11,}")
# A token stands for itself: digits next to its hex never join a run (scrubbing is idempotent).
_TOKEN_OR_RUN = re.compile(r"tok_[0-9a-f]{24}(?![0-9a-f])|" + _RUN.pattern)
_GROUP = re.compile(r"\d+")
_WHOLE_NUMBER = re.compile(r"\s*\d+(?:[ -]\d+)*\s*")
_NOT_DIGIT = re.compile(r"\D+")
_TIMESTAMP_LENGTHS = (13, 16, 19)  # epoch ms, us, ns since 2001-09-09
# A JSON string literal, or a card-number candidate outside one.
_JSON_STRING_OR_RUN = re.compile(r'"(?:[^"\\\n]|\\.)*"|-?' + _RUN.pattern)
_TOKEN_CACHE_LIMIT = 1_000_000
_DIGITS_AT_END = re.compile(r"[\d \-]+$")


def _ascii_digits(digits: str) -> str:
    if digits.isascii():
        return digits
    return "".join(str(unicodedata.decimal(c)) for c in digits)


def luhn_valid(digits: str) -> bool:
    """Whether a string of ASCII digits passes the Luhn check.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _timestamp_like(group: str) -> bool:
    return len(group) in _TIMESTAMP_LENGTHS and group[0] == "1"


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # a Luhn-doubled digit's digit sum


class _Run:
    """The digit groups of one run, with prefix sums that give the Luhn sum of any span of
    whole groups in O(1) (a run of thousands of one-digit groups costs milliseconds)."""

    def __init__(self, run: str) -> None:
        self.groups = [(m.start(), _ascii_digits(m.group())) for m in _GROUP.finditer(run)]
        self.digits = "".join(group for _, group in self.groups)
        self.bounds = [0]  # where each group starts in ``digits``, and the end
        for _, group in self.groups:
            self.bounds.append(self.bounds[-1] + len(group))
        # by the parity of a digit's index: running sums of the digits, and of them doubled
        values = [ord(char) - 48 for char in self.digits]
        doubled = [_DOUBLED[value] for value in values]
        self.plain, self.doubled = (
            tuple(
                list(accumulate((v if i % 2 == parity else 0 for i, v in enumerate(of)), initial=0))
                for parity in (0, 1)
            )
            for of in (values, doubled)
        )

    def luhn_valid(self, start: int, end: int) -> bool:
        """Whether ``digits[start:end]`` passes Luhn: the digits at an even distance from
        the last one (index parity of ``end - 1``, plus one) are the doubled ones."""
        twice = end % 2  # indices i with i = end (mod 2) are odd places from the right
        total = self.doubled[twice][end] - self.doubled[twice][start]
        total += self.plain[1 - twice][end] - self.plain[1 - twice][start]
        return total % 10 == 0

    def longest_card(self, first: int) -> tuple[int, str] | None:
        """The longest card number of whole groups from ``first``: (last group, digits)."""
        groups, bounds = self.groups, self.bounds
        if first >= len(groups) or groups[first][1][0] == "0":  # no card number starts with 0
            return None
        found = None
        start = bounds[first]
        for last in range(first, len(groups)):
            size = bounds[last + 1] - start
            if size > MAX_DIGITS:
                break
            if size >= MIN_DIGITS and self.luhn_valid(start, bounds[last + 1]):
                if last > first or not _timestamp_like(groups[last][1]):
                    found = last  # keep going: the longest wins
        if found is None:
            return None
        return found, self.digits[start : bounds[found + 1]]

    def better_without(
        self, first: int, found: tuple[int, str], following: tuple[int, str] | None
    ) -> bool:
        """Whether the card number from the next group beats ``found`` (from ``first``),
        which it overlaps: it reaches further, or as far and ``first`` is shorter than 4."""
        if following is None or found[0] == first:  # no overlap: both are card numbers
            return False
        if following[0] > found[0]:
            return True
        return following[0] == found[0] and len(self.groups[first][1]) < 4


def _cards_in_run(run: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, ASCII digits) of each card number in a run of digit groups.

    From the left, each longest card number of whole groups, except that a group is left
    out when the card number starting after it reaches further, or as far and the group is
    shorter than the 4 digits every card number is printed with first: "tx-12-4111 1111
    1111 1111" holds 4111111111111111 even if 124111111111111111 passes Luhn too.
    """
    if " " not in run and "-" not in run:  # one group, the common case: no sums needed
        number = _ascii_digits(run)
        if len(number) <= MAX_DIGITS and number[0] != "0" and not _timestamp_like(number):
            if luhn_valid(number):
                yield 0, len(run), number
        return
    digits = _Run(run)
    groups = digits.groups
    first = 0
    found = digits.longest_card(first)
    while first < len(groups):
        following = digits.longest_card(first + 1)
        if found is None or digits.better_without(first, found, following):
            first, found = first + 1, following
            continue
        last, number = found
        yield groups[first][0], groups[last][0] + len(groups[last][1]), number
        first = last + 1
        found = digits.longest_card(first)


def card_number_spans(text: str) -> list[tuple[int, int, str]]:
    """Where ``text`` holds card numbers: (start, end, the number's digits) each.

    >>> card_number_spans("paid with 4000 0566 5566 5556 at 1546300800000")
    [(10, 29, '4000056655665556')]
    """
    spans: list[tuple[int, int, str]] = []
    for run in _TOKEN_OR_RUN.finditer(text):
        if run.group().startswith("tok_"):
            continue
        base = run.start()
        spans.extend((base + s, base + e, d) for s, e, d in _cards_in_run(run.group()))
    return spans


def _replace_cards(text: str, replace: Callable[[str, str], str]) -> str:
    """``text`` with each card number's span replaced by ``replace(span, digits)``."""
    spans = card_number_spans(text)
    if not spans:
        return text
    parts, at = [], 0
    for start, end, digits in spans:
        parts.append(text[at:start])
        parts.append(replace(text[start:end], digits))
        at = end
    parts.append(text[at:])
    return "".join(parts)


def _mask(span: str, _digits: str) -> str:
    seen = 0
    out = []
    total = sum(c.isdigit() for c in span)
    for char in span:
        if char.isdigit():
            seen += 1
            out.append(char if seen > total - 4 else "*")
        else:
            out.append(char)
    return "".join(out)


def mask_card_numbers(text: str) -> str:
    """Every card number's digits but its last four masked (text kept for people: reasons).

    >>> mask_card_numbers("card 5200-8282-8282-8210, at 1546300800000")
    'card ****-****-****-8210, at 1546300800000'
    """
    if _RUN.search(text) is None:
        return text
    return _replace_cards(text, _mask)


def mask_card_numbers_in_json(text: str) -> str:
    """:func:`mask_card_numbers` for a raw (JSON) line: a number outside a JSON string is
    masked in quotes, so a JSON line stays JSON.

    >>> mask_card_numbers_in_json('{"card": 4111111111111111, "n": "4111 1111 1111 1111"}')
    '{"card": "************1111", "n": "**** **** **** 1111"}'
    """
    if _RUN.search(text) is None:
        return text

    def piece(match: re.Match[str]) -> str:
        found = match.group()
        if found.startswith('"'):
            return _replace_cards(found, _mask)
        masked = _replace_cards(found, _mask)  # a "-" in front is the number's sign
        return masked if masked == found else f'"{masked}"'

    return _JSON_STRING_OR_RUN.sub(piece, text)


def mask_raw_text(text: str, limit: int, cut_note: str | None = None) -> str:
    """A raw line kept for people (a dead letter): its first ``limit`` characters, never cut
    inside a run of digits (the part of a card number left would not be found), card numbers
    masked by :func:`mask_card_numbers_in_json`. ``cut_note``: the text was cut before it
    came here (its end may split a run of digits); the note ends it instead of a count.

    >>> mask_raw_text('{"n": "4111 1111 1111 1111"}', 16)
    '{"n": "...[21 more characters]'
    >>> mask_raw_text('{"n": "4111 1111 11', 100, "...[cut]")
    '{"n": "...[cut]'
    """
    if len(text) <= limit and cut_note is None:
        return mask_card_numbers_in_json(text)
    kept = _DIGITS_AT_END.sub("", text[:limit])
    note = cut_note or f"...[{len(text) - len(kept)} more characters]"
    return mask_card_numbers_in_json(kept) + note


class CardTokenizer:
    """Replaces card numbers with a keyed token, so no full card number is kept.

    The key comes from ``FRAUDSTREAM_TOKEN_KEY`` or a key file (created once, mode 0600), so the
    same card always maps to the same token on one installation and replays are deterministic.
    Called on a card id (or user id): a whole value of 12-19 digits, grouped or not, becomes
    the token of its digits; any other value is :meth:`scrub`-bed.

    >>> t = CardTokenizer(b"k")
    >>> t("4111111111111111").startswith("tok_"), t("card-7")
    (True, 'card-7')
    >>> t(" 4111 1111 1111 1111") == t("4111-1111-1111-1111") == t("4111111111111111")
    True
    """

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._cache: dict[str, str] = {}

    @classmethod
    def from_environment(cls, key_file: Path | None = None) -> CardTokenizer:
        """Key from ``FRAUDSTREAM_TOKEN_KEY``, else from (or into) ``key_file``."""
        env = os.environ.get("FRAUDSTREAM_TOKEN_KEY")
        if env:
            return cls(env.encode())
        path = key_file or Path.home() / ".fraudstream" / "token.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(os.urandom(32).hex().encode())
        return cls(path.read_bytes().strip())

    def token(self, digits: str) -> str:
        """The token of a card number given as its ASCII digits."""
        token = self._cache.get(digits)
        if token is None:
            digest = hmac.new(self._key, digits.encode(), hashlib.sha256).hexdigest()
            token = "tok_" + digest[:24]
            if len(self._cache) < _TOKEN_CACHE_LIMIT:
                self._cache[digits] = token
        return token

    def __call__(self, card_id: str) -> str:
        """Token for a card number, the id (scrubbed) for anything else."""
        if len(card_id) < MIN_DIGITS:
            return card_id  # the common case, decided at once
        if _WHOLE_NUMBER.fullmatch(card_id):
            digits = _ascii_digits(_NOT_DIGIT.sub("", card_id))
            if MIN_DIGITS <= len(digits) <= MAX_DIGITS:
                return self.token(digits)
        return self.scrub(card_id)

    def scrub(self, text: str) -> str:
        """``text`` with every card number in it replaced by its token.

        >>> t = CardTokenizer(b"k")
        >>> t.scrub("note: 4111 1111 1111 1111, ts 1546300800000") == (
        ...     f"note: {t('4111111111111111')}, ts 1546300800000")
        True
        """
        if len(text) < MIN_DIGITS:
            return text  # the common case, decided at once
        while _RUN.search(text) is not None:
            # again until nothing changes: a group left out of one card number (see
            # _cards_in_run) may be one on its own, and scrubbing twice must change nothing
            scrubbed = _replace_cards(text, lambda _span, digits: self.token(digits))
            if scrubbed == text:
                break
            text = scrubbed
        return text

    def scrub_value(self, value: Any) -> Any:
        """A decoded value (an extra field) with every card number in it tokenized: in
        strings, dict keys, lists, and integers of card-number form (which become tokens).

        >>> t = CardTokenizer(b"k")
        >>> t.scrub_value({"pan": 4111111111111111, "n": [1, "x"]}) == {
        ...     "pan": t("4111111111111111"), "n": [1, "x"]}
        True
        """
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            if -_SHORTEST_CARD < value < _SHORTEST_CARD:
                return value  # fewer than 12 digits: the common case, decided at once
            text = str(value)
            scrubbed = self.scrub(text)
            return value if scrubbed == text else scrubbed
        if isinstance(value, dict):
            for key, item in value.items():
                if not (_plain(key) and _plain(item)):
                    break
            else:
                return value  # nothing that could hold a card number: not rebuilt
            return {self.scrub_value(k): self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_value(item) for item in value]
        return value


_SHORTEST_CARD = 10 ** (MIN_DIGITS - 1)
_PLAIN_TYPES = (bool, float, type(None))


def _plain(value: Any) -> bool:
    """A value that cannot hold a card number: short text, a small integer, a float, ..."""
    kind = type(value)
    if kind is str:
        return len(value) < MIN_DIGITS
    if kind is int:
        return bool(-_SHORTEST_CARD < value < _SHORTEST_CARD)
    return kind in _PLAIN_TYPES
