"""Checkpoints: the pipeline's whole state, source positions and sink markers, saved atomically.

A checkpoint is taken between micro-batches, when every record the source has yielded has
gone through the pipeline (decided, buffered for the watermark, late or a duplicate). It is a
directory ``chk-<n>/`` in the checkpoint directory (a local path, or any fsspec URL)::

    chk-00000007/
      state.npz       every keyed array: key spaces (keys in slot order), detector state
                      tables, profile table, the id set of the dedup, last-seen times (TTL),
                      the user rules' aggregate windows
      pending.arrow   records buffered by the event clock, not yet released (Arrow IPC)
      manifest.json   format version, checkpoint id, run id, rules in force, watermark,
                      profiles, source position, sink commit markers, summary counts;
                      written last

On a local disk it is written as ``chk-<n>.tmp/`` and renamed when complete, so a crash
leaves either the previous checkpoint or the new one, never half of one; the last ``keep``
are kept. An object store (``s3://bucket/prefix``, any non-local fsspec URL) has no atomic
rename of a directory, so there the data objects are put straight into ``chk-<n>/`` and the
manifest, which names each data object's SHA-256, is put last: one PUT, atomic. Only a
checkpoint with a manifest counts; a crash between the data and the manifest leaves an
incomplete ``chk-<n>/`` that is ignored (the previous checkpoint is restored) and removed by
the next checkpoint, and reading checks the digests, so a checkpoint never restores from
data it was not written with.

The order of a checkpoint (see :meth:`fraudstream.run.Runner.checkpoint`): (1) sinks make
what they have durable and return a marker (a JSON-lines file its byte size, Parquet output
its finished part count, the Iceberg table commits its buffer tagged with the checkpoint id);
(2) the state and manifest are written and renamed into place; (3) the source's ``commit`` is
called (Kafka commits offsets). On resume from checkpoint n, sinks cut back to their markers
(a file is truncated, later Parquet parts are deleted, Iceberg rows committed by this run
after checkpoint n are deleted: a crash between the Iceberg commit and the rename) and the
source seeks to n's position, so outputs equal those of a run that never crashed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import fsspec  # type: ignore[import-untyped]
import msgspec
import numpy as np
import pyarrow as pa

from fraudstream.engine.batch import TxBatch

if TYPE_CHECKING:
    from fraudstream.engine.pipeline import Pipeline

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_NAME = re.compile(r"^chk-(\d+)$")
__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointStore",
    "PipelineSnapshot",
    "batch_from_table",
    "batch_to_table",
    "restore_pipeline",
    "snapshot_pipeline",
]


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit this run."""


@dataclass(slots=True)
class PipelineSnapshot:
    """Everything keyed: arrays by name, the clock's pending records, and JSON metadata."""

    arrays: dict[str, np.ndarray[Any, Any]]
    pending: TxBatch
    meta: dict[str, Any]


# --- the pipeline's state ------------------------------------------------------------------


def _put(arrays: dict[str, Any], prefix: str, values: dict[str, Any]) -> None:
    arrays.update({f"{prefix}/{k}": v for k, v in values.items()})


def _get(arrays: dict[str, Any], prefix: str) -> dict[str, Any]:
    start = prefix + "/"
    return {k[len(start) :]: v for k, v in arrays.items() if k.startswith(start)}


def snapshot_pipeline(pipeline: Pipeline) -> PipelineSnapshot:
    """The pipeline's state as arrays (views of live state: write them before going on)."""
    arrays: dict[str, Any] = {}
    _put(arrays, "keys/cards", pipeline.cards.snapshot())
    _put(arrays, "keys/users", pipeline.users.snapshot())
    _put(arrays, "keys/ips", pipeline.ips.snapshot())
    for name, space in pipeline.codes.items():
        _put(arrays, f"keys/codes/{name}", space.snapshot())
    arrays["ips/country"] = pipeline.ip_country
    arrays["ips/network"] = pipeline.ip_network
    _put(arrays, "dedup", pipeline.dedup.snapshot())
    states = []
    for name, table in pipeline.states.items():
        instance = pipeline.instances.get(name)
        if instance is None:
            used = table.capacity  # a disabled rule's state: kept whole, in case it returns
        else:
            keys = pipeline.users if instance.detector.key == "user" else pipeline.cards
            used = len(keys)
        _put(arrays, f"state/{name}", table.snapshot(used))
        states.append(name)
    profiles = pipeline.profiles
    _put(arrays, "profiles", profiles.table.snapshot(len(pipeline.users)))
    expiry = None
    if pipeline.expiry is not None:
        expiry, seen = pipeline.expiry.snapshot()
        _put(arrays, "expiry", seen)
    model = None
    stage = getattr(pipeline, "model_stage", None)
    if stage is not None:  # streaming features / model: their own (meta, arrays)
        model, model_arrays = stage.snapshot()
        _put(arrays, "model", model_arrays)
    if pipeline.user_rules is not None:  # the aggregates' window state
        _put(arrays, "user_rules", pipeline.user_rules.snapshot())
    watermark, pending = pipeline.clock.snapshot()
    meta = {
        "rules": pipeline.rules.to_document(),
        "time": asdict(pipeline.time),
        "watermark": watermark,
        "last_sweep_ms": pipeline.last_sweep_ms,
        "dedup_horizon": pipeline.dedup.horizon,
        "states": states,
        "profiles": {
            "profiles": profiles.profiles,
            "first_names": profiles.first_names,
            "last_names": profiles.last_names,
        },
        "expiry": expiry,
        "model": model,
    }
    return PipelineSnapshot(arrays, pending, meta)


def restore_pipeline(pipeline: Pipeline, snapshot: PipelineSnapshot) -> None:
    """Loads a snapshot into a pipeline built with the same configuration (in place)."""
    from fraudstream.rules import RuleSet

    arrays, meta = snapshot.arrays, snapshot.meta
    pipeline.user_rules = None  # window state comes from the snapshot, none carried over
    pipeline.apply_rules(RuleSet.from_document(meta["rules"]), "checkpoint", "resume")
    if pipeline.user_rules is not None:
        pipeline.user_rules.restore(_get(arrays, "user_rules"))
    pipeline.cards.restore(_get(arrays, "keys/cards"))
    pipeline.users.restore(_get(arrays, "keys/users"))
    pipeline.ips.restore(_get(arrays, "keys/ips"))
    for name, space in pipeline.codes.items():
        space.restore(_get(arrays, f"keys/codes/{name}"))
    pipeline.ip_country = np.array(arrays["ips/country"], dtype=np.int32)
    pipeline.ip_network = np.array(arrays["ips/network"], dtype=np.int32)
    pipeline.dedup.horizon = int(meta["dedup_horizon"])
    pipeline.dedup.restore(_get(arrays, "dedup"))
    for name in meta["states"]:
        table = pipeline.states.get(name)
        if table is not None:
            table.restore(_get(arrays, f"state/{name}"))
    profiles = pipeline.profiles
    profiles.table.restore(_get(arrays, "profiles"))
    profiles.profiles = dict(meta["profiles"]["profiles"])
    profiles.first_names = list(meta["profiles"]["first_names"])
    profiles.last_names = list(meta["profiles"]["last_names"])
    if pipeline.expiry is not None and meta.get("expiry"):
        pipeline.expiry.restore(meta["expiry"], _get(arrays, "expiry"))
    stage = getattr(pipeline, "model_stage", None)
    if stage is not None and meta.get("model") is not None:
        stage.restore(meta["model"], _get(arrays, "model"))
    pipeline.clock.restore(int(meta["watermark"]), snapshot.pending)
    pipeline.last_sweep_ms = int(meta["last_sweep_ms"])


_TEXT = (
    "transaction_id", "card_id", "user_id", "currency", "zipcode", "merchant_id",
    "merchant_category", "country", "channel", "device_id", "ip",
)  # fmt: skip
_NUMBERS = ("timestamp_ms", "amount", "lat", "lon", "position", "arrival_ms")


def batch_to_table(batch: TxBatch) -> pa.Table:
    """A TxBatch as an Arrow table (extras as JSON text), for the pending-records file."""
    columns: dict[str, Any] = {name: getattr(batch, name) for name in _TEXT}
    columns.update({name: pa.array(getattr(batch, name)) for name in _NUMBERS})
    extras = batch.extras
    columns["extras"] = pa.array(
        [None if e is None else msgspec.json.encode(e).decode() for e in extras]
        if extras is not None
        else [None] * len(batch),
        pa.string(),
    )
    return pa.table(columns)


def batch_from_table(table: pa.Table) -> TxBatch:
    """The inverse of :func:`batch_to_table`."""
    values: dict[str, Any] = {
        name: table.column(name).combine_chunks().cast(pa.string()) for name in _TEXT
    }
    dtypes = {"timestamp_ms": np.int64, "position": np.int64}
    for name in _NUMBERS:
        column = table.column(name).to_numpy()
        values[name] = np.ascontiguousarray(column, dtype=dtypes.get(name, np.float64))
    raw = table.column("extras").to_pylist()
    extras = None
    if any(e is not None for e in raw):
        extras = np.empty(len(raw), dtype=object)
        extras[:] = [None if e is None else msgspec.json.decode(e) for e in raw]
    return TxBatch(**values, extras=extras)


# --- on disk -----------------------------------------------------------------------------


def _named_arrays(snapshot: PipelineSnapshot, index: dict[str, str]) -> dict[str, Any]:
    # typed Any: numpy's stubs would read an ndarray keyword as savez's allow_pickle flag
    return {index[k]: np.asarray(v) for k, v in snapshot.arrays.items()}


def _pending_bytes(pending: TxBatch) -> bytes:
    """The clock's pending records as an Arrow IPC file."""
    sink = io.BytesIO()
    table = batch_to_table(pending)
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


class CheckpointStore:
    """Numbered checkpoints in a directory (local path or fsspec URL), written atomically.

    >>> import tempfile
    >>> store = CheckpointStore(tempfile.mkdtemp())
    >>> store.latest() is None, store.next_id()
    (True, 1)
    """

    def __init__(self, url: str, keep: int = 3) -> None:
        if keep < 1:
            raise CheckpointError(f"keep at least one checkpoint, got {keep}")
        self.url = url
        self.keep = keep
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        self.fs.makedirs(self.root, exist_ok=True)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def _entries(self) -> list[str]:
        """What the directory holds (an object-store prefix with nothing under it: nothing)."""
        try:
            return list(self.fs.ls(self.root, detail=False))
        except FileNotFoundError:
            return []

    def ids(self) -> list[int]:
        """Complete checkpoints (renamed, with a manifest), oldest first."""
        found = []
        for entry in self._entries():
            match = _NAME.match(entry.rstrip("/").rsplit("/", 1)[-1])
            if match and self.fs.exists(self._path(match.group(0), MANIFEST)):
                found.append(int(match.group(1)))
        return sorted(found)

    def latest(self) -> int | None:
        """The newest complete checkpoint's id, or None."""
        ids = self.ids()
        return ids[-1] if ids else None

    def next_id(self) -> int:
        """The id the next checkpoint gets."""
        return (self.latest() or 0) + 1

    def run_id(self, fresh: bool) -> str:
        """This directory's run id (a new one when ``fresh``); it tags lakehouse commits."""
        path = self._path("run.json")
        if not fresh and self.fs.exists(path):
            return str(json.loads(self.fs.cat_file(path))["run_id"])
        run_id = uuid.uuid4().hex[:16]
        self._write_bytes(path, json.dumps({"run_id": run_id}).encode())
        return run_id

    def clear(self) -> None:
        """Removes every checkpoint (a fresh run in a used directory)."""
        for entry in self._entries():
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name.startswith("chk-"):
                self.fs.rm(entry, recursive=True)

    def _write_bytes(self, path: str, data: bytes) -> None:
        with self.fs.open(path, "wb") as handle:
            handle.write(data)
            if self.local:
                handle.flush()
                os.fsync(handle.fileno())

    def write(self, checkpoint_id: int, snapshot: PipelineSnapshot, info: dict[str, Any]) -> str:
        """Writes checkpoint ``checkpoint_id`` (see the module docstring); returns its path."""
        name = f"chk-{checkpoint_id:08d}"
        index = {key: f"a{i}" for i, key in enumerate(snapshot.arrays)}
        manifest = {
            "format_version": FORMAT_VERSION,
            "checkpoint_id": checkpoint_id,
            "created_at_ms": int(time.time() * 1000),
            "arrays": index,
            "pipeline": snapshot.meta,
            **info,
        }
        if not self.local:
            return self._write_object_store(name, snapshot, index, manifest)
        tmp = self._path(name + ".tmp")
        if self.fs.exists(tmp):
            self.fs.rm(tmp, recursive=True)
        self.fs.makedirs(tmp, exist_ok=True)
        with self.fs.open(f"{tmp}/state.npz", "wb") as handle:
            np.savez(handle, **_named_arrays(snapshot, index))
            handle.flush()
            os.fsync(handle.fileno())
        self._write_bytes(f"{tmp}/pending.arrow", _pending_bytes(snapshot.pending))
        self._write_bytes(f"{tmp}/{MANIFEST}", json.dumps(manifest).encode())
        final = self._path(name)
        self.fs.mv(tmp, final, recursive=True)
        self._sync_dir(self.root)
        self.prune()
        return final

    def _write_object_store(
        self,
        name: str,
        snapshot: PipelineSnapshot,
        index: dict[str, str],
        manifest: dict[str, Any],
    ) -> str:
        """Data objects into ``name/``, then the manifest naming their digests, last."""
        final = self._path(name)
        if self.fs.exists(final):  # an incomplete leftover of a crash (no manifest)
            self.fs.rm(final, recursive=True)
        state = io.BytesIO()
        np.savez(state, **_named_arrays(snapshot, index))
        files = {"state.npz": state.getvalue(), "pending.arrow": _pending_bytes(snapshot.pending)}
        for file_name, data in files.items():
            self._write_bytes(f"{final}/{file_name}", data)
        manifest["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
        self._write_bytes(f"{final}/{MANIFEST}", json.dumps(manifest).encode())
        self.prune()
        return final

    @staticmethod
    def _sync_dir(path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def prune(self) -> None:
        """Keeps the newest ``keep`` checkpoints; removes older ones and leftover tmp dirs."""
        ids = self.ids()
        for old in ids[: -self.keep]:
            self.fs.rm(self._path(f"chk-{old:08d}"), recursive=True)
        for entry in self._entries():
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name.endswith(".tmp"):
                self.fs.rm(entry, recursive=True)
            elif not self.local and _NAME.match(name) and int(name[4:]) not in ids:
                self.fs.rm(entry, recursive=True)  # data without a manifest: a crash's leftover

    def read(self, checkpoint_id: int) -> tuple[dict[str, Any], PipelineSnapshot]:
        """(manifest, snapshot) of a complete checkpoint."""
        base = self._path(f"chk-{checkpoint_id:08d}")
        try:
            manifest = json.loads(self.fs.cat_file(f"{base}/{MANIFEST}"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{base}: unreadable manifest ({exc})") from None
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{base}: checkpoint format {version}, this version reads {FORMAT_VERSION}"
            )
        state = self.fs.cat_file(f"{base}/state.npz")
        pending_bytes = self.fs.cat_file(f"{base}/pending.arrow")
        digests = manifest.get("files")  # written on object stores (see the module docstring)
        if digests is not None:
            for file_name, data in (("state.npz", state), ("pending.arrow", pending_bytes)):
                if hashlib.sha256(data).hexdigest() != digests.get(file_name):
                    raise CheckpointError(f"{base}/{file_name}: not the data of this manifest")
        stored = np.load(io.BytesIO(state), allow_pickle=False)
        arrays = {key: stored[name] for key, name in manifest["arrays"].items()}
        with pa.ipc.open_file(pa.BufferReader(pending_bytes)) as r:
            pending = batch_from_table(r.read_all())
        return manifest, PipelineSnapshot(arrays, pending, manifest["pipeline"])
