"""The model in the loop on Flink decides exactly like `fraudstream run --model --labels`.

On a MiniCluster: an XGBoost model trained on the messy stream's own features and a label for
every transaction, then `fraudstream run --model --labels` and `fraudstream flink run --model
--labels` give identical decisions and alerts on each graph; a job that fails once
mid-stream restarts from its checkpoint with the features continuing exactly (same
decisions as the embedded run). Three MiniCluster runs serve every assertion: the keyed job
(the default on files: terminal features by merchant key group, customer features with the
user state, labels folded by time), the fused job, and the sharded job at parallelism 2
(features in the sequencer, the model in the join) reading line by line with the
test-only fault. The stages themselves: test_model_stages.py, test_keyed_model.py.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from flink_helpers import FRAUDSTREAM, OPTIONS, OUTPUTS, by_id, by_position, read_jsonl
from test_model_stages import SMALL, save_small_model, write_labels
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.features.catalog import OUR_FEATURES
from fraudstream.features.kernels import DAY_MS
from fraudstream.models.train import train_model


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stage tests' small synthetic XGBoost artifact (for the CLI's error cases)."""
    return save_small_model(tmp_path_factory.mktemp("model") / "xgb")


@pytest.fixture(scope="module")
def stream_labels(stream: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A label for every transaction of the messy stream (the demo generator's ``is_fraud``),
    known a day after it: frauds early in the stream are known to the later decisions."""
    path, _ = stream
    labels = {}
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line)
            labels[record["transaction_id"]] = (
                record["transaction_id"],
                bool(record["is_fraud"]),
                record["timestamp"] + DAY_MS,
            )
        except (ValueError, KeyError, TypeError):
            continue  # the stream's malformed lines
    return write_labels(tmp_path_factory.mktemp("labels") / "labels.parquet", list(labels.values()))


@pytest.fixture(scope="module")
def stream_model(
    stream: tuple[Path, Path], stream_labels: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """XGBoost trained on the messy stream's own features (`fraudstream features` with the
    labels), the demo generator's ``is_fraud`` as the truth."""
    path, profiles = stream
    base = tmp_path_factory.mktemp("stream-model")
    features = base / "features.parquet"
    subprocess.run(
        [FRAUDSTREAM, "features", "--input", str(path), "--profiles", str(profiles),
         "--labels", str(stream_labels), "--output", str(features)],
        check=True, capture_output=True,
    )  # fmt: skip
    labels = pq.read_table(stream_labels)
    ids, fraud = labels["transaction_id"].to_pylist(), labels["is_fraud"].to_pylist()
    truth = dict(zip(ids, fraud, strict=True))
    table = pq.read_table(features)
    names = [n for n in OUR_FEATURES if n in table.column_names]
    x = np.column_stack([table.column(n).to_numpy() for n in names]).astype(np.float64)
    y = np.array([truth[t] for t in table.column("transaction_id").to_pylist()])
    artifact = train_model("xgboost", x, y, names, name="flink-demo", params=SMALL)
    return artifact.save(base / "xgb")


@pytest.fixture(scope="module")
def embedded_model(
    stream: tuple[Path, Path],
    stream_model: Path,
    stream_labels: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """`fraudstream run --model --labels` over the messy stream."""
    path, profiles = stream
    out = tmp_path_factory.mktemp("embedded-model")
    outputs = [a for n in OUTPUTS for a in (f"--{n.replace('_', '-')}", str(out / f"{n}.jsonl"))]
    subprocess.run(
        [FRAUDSTREAM, "run", "--input", str(path), "--profiles", str(profiles), *OPTIONS,
         "--model", str(stream_model), "--labels", str(stream_labels), *WEIGHT, "--quiet",
         *outputs],
        check=True,
    )  # fmt: skip
    return out


WEIGHT = ("--model-weight", "0.9")
# The MiniCluster runs shared by the tests: the keyed job (the default on files) and the
# fused job reading chunks, and the sharded job at parallelism 2 reading line by line with
# small micro-batches and the test-only fault (a restart); 8 shards there (a micro-batch
# costs a call per shard it touches).
RUNS = {
    "keyed": ("--parallelism", "1"),
    "fused": ("--parallelism", "1", "--graph", "fused"),
    "p2-restarted": (
        "--parallelism", "2", "--shards", "8", "--read-lines", "--fail-once-after", "8000",
        "--batch-bytes", "100000", "--checkpoint-interval-ms", "100", "--restart-delay-ms", "200",
    ),
}  # fmt: skip


def run_with_model(flink_run: Callable[..., Path], model: Path, labels: Path, run: str) -> Path:
    """The Flink run ``run`` of :data:`RUNS` with the model and labels (once per session)."""
    return flink_run(*RUNS[run], "--model", str(model), "--labels", str(labels), *WEIGHT)


@pytest.mark.parametrize("run", list(RUNS))
def test_flink_scores_with_the_model_exactly_like_embedded(
    run: str,
    stream_model: Path,
    stream_labels: Path,
    embedded_model: Path,
    flink_run: Callable[..., Path],
) -> None:
    flink = run_with_model(flink_run, stream_model, stream_labels, run)
    expected = by_id(read_jsonl(embedded_model / "decisions.jsonl"))
    decisions = read_jsonl(flink / "decisions")
    assert max(Counter(d["transaction_id"] for d in decisions).values()) == 1
    got = by_id(decisions)
    assert len(expected) > 19_000 and got.keys() == expected.keys()
    differing = [tx for tx in expected if got[tx] != expected[tx]]
    assert not differing, (differing[:3], [got[t] for t in differing[:1]], expected[differing[0]])
    assert by_id(read_jsonl(flink / "alerts")) == by_id(read_jsonl(embedded_model / "alerts.jsonl"))
    assert by_position(read_jsonl(flink / "dead_letters")) == by_position(
        read_jsonl(embedded_model / "dead_letters.jsonl")
    )
    # the test can fail: the model scored, and gave reasons with its top contributions
    info = json.loads((stream_model / "model.json").read_text())
    assert all(d["model"]["version"] == info["version"] for d in expected.values())
    reasons = [r for d in expected.values() for r in d["reasons"] if r["rule"] == "model"]
    assert len(reasons) > 20 and all(" top: " in r["message"] for r in reasons)
    assert len({d["features"]["customer_tx_7d"] for d in expected.values()}) > 5
    assert sum(d["features"]["terminal_known_frauds_30d"] > 0 for d in expected.values()) > 100


def test_a_failed_job_with_a_model_restores_its_features(
    stream_model: Path, stream_labels: Path, flink_run: Callable[..., Path]
) -> None:
    """The restarted run decided like the embedded one (above): here, that it did restart
    from a checkpoint mid-stream, i.e. the feature state came back from Flink state."""
    flink = run_with_model(flink_run, stream_model, stream_labels, "p2-restarted")
    assert (flink / "checkpoints" / "injected-fault").exists(), "the fault did not fire"
    restored = (flink / "checkpoints" / "injected-fault.restored").read_text()
    assert int(restored.split()[-1]) > 0  # from a checkpoint, not from scratch


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "{tmp}"], "not a model artifact"),
        (["--model", "{bad}"], "cannot load the model"),
        (["--model", "{model}", "--model-weight", "1.5"], "--model-weight must be within"),
        (["--labels", "{tx}"], "missing column(s) is_fraud, label_time"),
    ],
)
def test_bad_model_options_get_one_line(
    tmp_path: Path, small_model: Path, arguments: list[str], message: str
) -> None:
    tx = tmp_path / "tx.jsonl"
    tx.write_text('{"transaction_id": "t1", "card_id": "c", "timestamp": 0, "amount": 1}\n')
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.json").write_text((small_model / "model.json").read_text())
    (bad / "model.ubj").write_bytes(b"not a booster")
    args = [a.format(tmp=tmp_path, bad=bad, model=small_model, tx=tx) for a in arguments]
    result = CliRunner().invoke(app, ["flink", "run", "--input", str(tx), "--alerts", "o", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
