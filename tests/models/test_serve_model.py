"""`fraudstream serve-model`: the artifact over HTTP, token required, readable 4xx."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from starlette.exceptions import StarletteDeprecationWarning

from fraudstream.models.serve import model_app
from fraudstream.models.train import train_model

with warnings.catch_warnings():  # starlette prefers httpx2; the venv has httpx
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


def _artifact(tmp_path: Path):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = x[:, 0] + 0.1 * rng.normal(size=400) > 1.0
    artifact = train_model("xgboost", x, y, ["amount", "customer_amount_ratio"], name="t")
    artifact.save(tmp_path / "m")
    return artifact


def test_scores_with_contributions_and_needs_the_token(tmp_path: Path) -> None:
    client = TestClient(model_app(_artifact(tmp_path), "secret"))
    info = client.get("/v1/model").json()
    assert info["features"] == ["amount", "customer_amount_ratio"] and info["version"]
    body = {"rows": [{"amount": 3.0, "customer_amount_ratio": 0.0}, {"amount": -3.0}]}
    assert client.post("/v1/score", json=body).status_code == 401
    answer = client.post("/v1/score", json=body, headers={"Authorization": "Bearer secret"})
    assert answer.status_code == 200
    scores = answer.json()["scores"]
    assert scores[0]["probability"] > 0.5 > scores[1]["probability"]
    assert scores[0]["contributions"][0]["feature"] == "amount"
    assert scores[1]["contributions"][1]["value"] is None  # missing stays missing
    bad = client.post(
        "/v1/score", json={"rows": [{"speed": 1.0}]}, headers={"Authorization": "Bearer secret"}
    )
    assert bad.status_code == 422 and "unknown features" in bad.text
