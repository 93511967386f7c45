"""Models in the loop: training, the handbook's evaluation, artifacts and inline scoring.

- :mod:`.artifact`: a trained model with its feature list, window, metrics and versions.
- :mod:`.train`: logistic regression, random forest, XGBoost with class weighting.
- :mod:`.evaluate`: the handbook's protocol, AUC ROC, average precision, Card Precision@k.
- :mod:`.stage`: streaming features + batch scoring + reasons inside the pipeline.
- :mod:`.dataset`: attaching the stage to a pipeline; feature tables from live runs.
"""

from __future__ import annotations

__all__: list[str] = []
