"""The noisy-or score and tier: an authorization's few rows (plain Python) score exactly as
the columnar path does, model evidence, missing thresholds and rounding ties included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.decide import combine
from fraudstream.engine.batch import FEW_ROWS

unit = st.floats(0.0, 1.0, allow_nan=False)
threshold = st.one_of(unit, st.just(float("nan")), st.sampled_from([0.5, 0.85, 0.999999]))


@settings(max_examples=300, deadline=None)
@given(
    rows=st.integers(1, FEW_ROWS),
    scores=st.lists(st.one_of(unit, st.sampled_from([0.5, 0.3, 0.15, 0.0000005])), max_size=5),
    data=st.data(),
    with_model=st.booleans(),
)
def test_few_rows_score_and_tier_as_many_do(
    rows: int, scores: list[float], data: st.DataObject, with_model: bool
) -> None:
    fired = {
        f"r{k}": np.array(data.draw(st.lists(st.booleans(), min_size=rows, max_size=rows)))
        for k in range(len(scores))
    }
    rule_scores = {f"r{k}": score for k, score in enumerate(scores)}
    review = np.array(data.draw(st.lists(threshold, min_size=rows, max_size=rows)))
    decline = np.array(data.draw(st.lists(threshold, min_size=rows, max_size=rows)))
    model = (
        np.array(data.draw(st.lists(unit, min_size=rows, max_size=rows))) if with_model else None
    )
    few = combine(fired, rule_scores, review, decline, model)
    # the same rows repeated past FEW_ROWS take the columnar path
    copies = FEW_ROWS // rows + 1
    many = combine(
        {rule: np.tile(mask, copies) for rule, mask in fired.items()},
        rule_scores,
        np.tile(review, copies),
        np.tile(decline, copies),
        None if model is None else np.tile(model, copies),
    )
    assert few[0].tolist() == many[0][:rows].tolist()
    assert few[1].tolist() == many[1][:rows].tolist()
    assert few[0].dtype == many[0].dtype and few[1].dtype == many[1].dtype
