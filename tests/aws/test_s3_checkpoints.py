"""Checkpoints on S3 (moto): the manifest is written last, so a crash between the data and
the manifest restores the previous checkpoint, and a manifest never restores other data."""

from __future__ import annotations

import boto3
import pytest
from aws_support import unique

from fraudstream.engine.checkpoint import CheckpointError, CheckpointStore
from fraudstream.engine.pipeline import Pipeline

T0 = 1_767_225_600_000


class _Crash(Exception):
    """The process dies here."""


def _store(bucket: str, keep: int = 3) -> CheckpointStore:
    return CheckpointStore(f"s3://{bucket}/checkpoints", keep=keep)


def _bucket() -> str:
    name = unique("checkpoints")
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def _keys(bucket: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def test_a_crash_between_data_and_manifest_restores_the_previous_checkpoint(
    aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraudstream.engine.batch import TxBatch
    from fraudstream.io.decode import Decoder
    from fraudstream.schema import CardTokenizer

    bucket = _bucket()
    store = _store(bucket)
    pipeline = Pipeline()
    decoder = Decoder(CardTokenizer.from_environment(), "test")

    def feed(card: str, i: int) -> None:
        batch, dead = decoder.records(
            [{"transaction_id": f"{card}-{i}", "card_id": card, "timestamp": T0 + i,
              "amount": 5.0}], [i], [0.0],
        )  # fmt: skip
        assert not dead and isinstance(batch, TxBatch)
        pipeline.submit(batch, now_ms=0.0)

    feed("a", 1)
    store.write(store.next_id(), pipeline.snapshot(), {"run_id": "r", "source": {"n": 1}})
    feed("b", 2)
    store.write(store.next_id(), pipeline.snapshot(), {"run_id": "r", "source": {"n": 2}})
    feed("c", 3)

    real_write = CheckpointStore._write_bytes

    def dies_at_the_manifest(self: CheckpointStore, path: str, data: bytes) -> None:
        if path.endswith("/manifest.json"):
            raise _Crash(path)
        real_write(self, path, data)

    with monkeypatch.context() as patched, pytest.raises(_Crash):
        patched.setattr(CheckpointStore, "_write_bytes", dies_at_the_manifest)
        store.write(store.next_id(), pipeline.snapshot(), {"run_id": "r", "source": {"n": 3}})
    assert "checkpoints/chk-00000003/state.npz" in _keys(bucket)  # the data is there ...

    restarted = _store(bucket)  # ... but a restart only sees complete checkpoints
    assert restarted.latest() == 2
    manifest, snapshot = restarted.read(2)
    restored = Pipeline()
    restored.restore(snapshot)
    assert manifest["source"] == {"n": 2} and restored.cards.keys == ["a", "b"]

    # The next checkpoint 3 replaces the leftover, complete this time.
    restarted.write(3, restored.snapshot(), {"run_id": "r", "source": {"n": 3}})
    assert restarted.ids() == [1, 2, 3] and restarted.read(3)[0]["source"] == {"n": 3}


def test_a_manifest_never_restores_data_it_was_not_written_with(aws: str) -> None:
    bucket = _bucket()
    store = _store(bucket, keep=2)
    pipeline = Pipeline()
    for _ in range(3):
        store.write(store.next_id(), pipeline.snapshot(), {"run_id": "r"})
    assert store.ids() == [2, 3]
    assert not any("chk-00000001" in key for key in _keys(bucket))  # pruned
    s3 = boto3.client("s3")
    older = s3.get_object(Bucket=bucket, Key="checkpoints/chk-00000002/pending.arrow")
    s3.put_object(
        Bucket=bucket,
        Key="checkpoints/chk-00000003/pending.arrow",
        Body=older["Body"].read() + b"x",
    )
    with pytest.raises(CheckpointError, match="not the data of this manifest"):
        _store(bucket).read(3)
