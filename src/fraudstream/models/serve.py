"""``fraudstream serve-model``: the same model artifact over HTTP, for other systems (seed 004).

The pipeline scores inline and never calls this; it is for services that hold their own
features and want the model's probability and reasons:

    GET  /v1/model   the artifact's metadata (name, version, features, window, metrics)
    POST /v1/score   {"rows": [{feature: value, ...}, ...]} -> probability and top
                     contributions per row (a missing feature is a missing value)

Scoring needs the bearer token (``FRAUDSTREAM_TOKEN``), like every endpoint that takes
input; at most 10,000 rows a request.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

from fraudstream.models.artifact import ModelArtifact
from fraudstream.web.guard import token_dependency

__all__ = ["ScoreRequest", "model_app"]

MAX_ROWS = 10_000


class ScoreRequest(BaseModel):
    """Rows of features to score."""

    rows: list[dict[str, float | None]] = Field(min_length=1, max_length=MAX_ROWS)
    top: int = Field(default=3, ge=0, le=50)


def model_app(artifact: ModelArtifact, token: str) -> FastAPI:
    """The model service for ``artifact``."""
    app = FastAPI(title="fraudstream model", version=artifact.info.version or "0")
    names = artifact.features

    @app.get("/v1/model")
    def model_info() -> dict[str, Any]:
        return asdict(artifact.info)

    @app.post("/v1/score", dependencies=[Depends(token_dependency(token))])
    def score(request: ScoreRequest) -> dict[str, Any]:
        unknown = sorted({k for row in request.rows for k in row} - set(names))
        if unknown:
            raise HTTPException(
                422, detail=[{"field": "rows", "message": f"unknown features: {unknown[:10]}"}]
            )
        x = np.full((len(request.rows), len(names)), np.nan, dtype=np.float64)
        for i, row in enumerate(request.rows):
            for j, name in enumerate(names):
                value = row.get(name)
                if value is not None:
                    x[i, j] = value
        probability = artifact.predict(x)
        contributions = artifact.contributions(x) if request.top else None
        out = []
        for i, p in enumerate(probability.tolist()):
            item: dict[str, Any] = {"probability": p}
            if contributions is not None:
                order = np.argsort(-np.abs(contributions[i]))[: request.top].tolist()
                item["contributions"] = [
                    {"feature": names[j], "value": None if np.isnan(x[i, j]) else float(x[i, j]),
                     "contribution": float(contributions[i, j])}
                    for j in order
                ]  # fmt: skip
            out.append(item)
        return {"model": artifact.info.name, "version": artifact.info.version, "scores": out}

    return app
