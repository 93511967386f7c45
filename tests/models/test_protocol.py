"""The handbook protocol's test set: which cards count as already known to be compromised."""

from __future__ import annotations

from datetime import date

import pandas as pd  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.models.evaluate import Protocol, split

TRAIN_START = date(2018, 7, 25)
FIRST = (TRAIN_START - date(1970, 1, 1)).days  # epoch day of the first training day


def frame(rows: list[tuple[str, int, bool]]) -> pd.DataFrame:
    """(card, day offset from the first training day, fraud) -> the protocol's frame."""
    return pd.DataFrame(
        {
            "card_id": [r[0] for r in rows],
            "day": [FIRST + r[1] for r in rows],
            "is_fraud": [r[2] for r in rows],
        }
    )


def test_a_fraud_seven_days_before_a_test_day_removes_the_card_by_default() -> None:
    # the first test day is offset 14; a fraud on offset 8 is D-7 for the test day 15
    data = frame([("a", 8, True), ("a", 15, False), ("b", 15, False), ("c", 3, True),
                  ("c", 14, False)])  # fmt: skip
    _, test = split(data, Protocol(TRAIN_START))
    assert sorted(test["card_id"]) == ["b"]  # a: fraud at D-7; c: fraud in training
    _, book_code = split(data, Protocol(TRAIN_START, known_cutoff_days=8))
    assert sorted(book_code["card_id"]) == ["a", "b"]  # D-8 rule: a's fraud not known yet


def test_cutoff_appears_in_the_window() -> None:
    assert Protocol(known_cutoff_days=8).window()["known_cutoff_days"] == "8"


events = st.lists(
    st.tuples(st.sampled_from("abcdef"), st.integers(0, 24), st.booleans()), max_size=60
)


@given(events, st.integers(1, 10))
@settings(max_examples=200, deadline=None)
def test_the_test_set_is_the_definition(rows: list[tuple[str, int, bool]], cutoff: int) -> None:
    """A test row on day D stays exactly when its card has no fraud from the first training
    day up to D - cutoff (the training week's frauds always count)."""
    data = frame(rows)
    protocol = Protocol(TRAIN_START, known_cutoff_days=cutoff)
    _, test = split(data, protocol)
    expected = []
    for card, day, fraud in rows:
        if not 14 <= day < 21:
            continue
        last_known = max(6, day - cutoff)
        if not any(c == card and f and 0 <= d <= last_known for c, d, f in rows):
            expected.append((card, day, fraud))
    got = list(zip(test["card_id"], test["day"] - FIRST, test["is_fraud"], strict=True))
    assert sorted(got) == sorted(expected)
    # a shorter cutoff knows more: its test set is a subset of a longer one's
    _, longer = split(data, Protocol(TRAIN_START, known_cutoff_days=cutoff + 1))
    assert set(test.index) <= set(longer.index)
