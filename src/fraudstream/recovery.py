"""Checkpointing a run and resuming it: when to checkpoint, what order, and how to restart.

:class:`Recovery` plugs into :class:`fraudstream.run.Runner`. Between micro-batches, every
``interval_s`` seconds or ``every_records`` records (whichever comes first), and once at the
end of the input, it takes checkpoint n:

1. every output makes what it has durable and returns a commit marker
   (:meth:`fraudstream.run.Outputs.commit`; the Iceberg table commits its buffer here, tagged
   with n and the run id);
2. the pipeline's state, the source position, the markers and the summary counts are written
   to ``chk-n.tmp/`` and renamed to ``chk-n/`` (:class:`~fraudstream.engine.checkpoint.
   CheckpointStore`);
3. the source's ``commit(position)`` runs (Kafka commits the group's offsets).

``resume=True`` restarts from the newest complete checkpoint: the pipeline, the summary and
the source position are restored, and each output is cut back to its marker. Without a
complete checkpoint it starts from the beginning of the input, with outputs cut back to
nothing. Without ``resume`` the directory's old checkpoints are cleared and a new run id is
drawn.
"""

from __future__ import annotations

import time
from typing import Any

from fraudstream.config import ConfigError
from fraudstream.engine.checkpoint import CheckpointError, CheckpointStore

__all__ = ["Recovery"]


class Recovery:
    """Checkpoints of one run in ``store``, and resuming from them."""

    def __init__(
        self,
        store: CheckpointStore,
        interval_s: float | None = 10.0,
        every_records: int | None = None,
        resume: bool = False,
    ) -> None:
        if interval_s is not None and interval_s <= 0:
            raise ValueError(f"checkpoint interval must be > 0 s, got {interval_s}")
        if every_records is not None and every_records <= 0:
            raise ValueError(f"checkpoint every N records needs N > 0, got {every_records}")
        self.store = store
        self.interval_s = interval_s
        self.every_records = every_records
        self.resume = resume
        self.checkpoint_id = 0
        self.run_id = ""
        self.resumed_from: int | None = None
        self.taken = 0
        self.seconds = 0.0  # time spent taking checkpoints
        self.restore_seconds = 0.0
        self._last_time = time.monotonic()
        self._last_records = 0

    def start(self, runner: Any, source: Any) -> None:
        """Before the run: restores the newest checkpoint (resume) or clears old ones."""
        started = time.perf_counter()
        stage = getattr(runner.pipeline, "model_stage", None)
        if stage is not None and not hasattr(stage, "snapshot"):
            # Its streaming feature state would not survive a restart: refuse, not diverge.
            raise ConfigError("--checkpoint-dir: this model stage cannot be checkpointed yet")
        store = self.store
        latest = store.latest() if self.resume else None
        if not self.resume:
            store.clear()
        self.run_id = store.run_id(fresh=not self.resume)
        outputs = runner.outputs
        outputs.checkpointed = True
        outputs.run_id = self.run_id
        outputs.resume = {} if self.resume else None
        if latest is not None:
            try:
                manifest, snapshot = store.read(latest)
                if manifest.get("run_id") != self.run_id:
                    raise CheckpointError(
                        f"{store.url}: checkpoint {latest} belongs to another run; "
                        "start without --resume"
                    )
                runner.pipeline.restore(snapshot)
                runner.summary.restore(manifest["summary"])
                source.seek(manifest["source"])
            except (CheckpointError, ValueError, KeyError) as exc:
                raise ConfigError(f"--resume from checkpoint {latest}: {exc}") from None
            outputs.resume = manifest["sinks"]
            self.checkpoint_id = latest
            self.resumed_from = latest
            runner.summary.resumed_from = latest
            self._last_records = runner.summary.records
        outputs.resume_checkpoint = self.checkpoint_id
        self._last_time = time.monotonic()
        self.restore_seconds = time.perf_counter() - started
        runner.summary.restore_seconds = self.restore_seconds

    def due(self, records: int, outputs: Any = None) -> bool:
        """Whether a checkpoint is due after a batch (records: read so far)."""
        if self.every_records is not None and records - self._last_records >= self.every_records:
            return True
        if outputs is not None and any(
            getattr(hook, "wants_commit", False) for hook in outputs.hooks.values()
        ):
            return True  # the lakehouse buffer is full
        return self.interval_s is not None and time.monotonic() - self._last_time >= self.interval_s

    def take(self, runner: Any, source: Any) -> int:
        """Takes the next checkpoint (see the module docstring); returns its id."""
        started = time.perf_counter()
        checkpoint_id = self.checkpoint_id + 1
        markers = runner.outputs.commit(checkpoint_id)
        position = source.position()
        runner.summary.checkpoints = self.taken + 1
        info = {
            "run_id": self.run_id,
            "source": position,
            "sinks": markers,
            "summary": runner.summary.state(),
        }
        self.store.write(checkpoint_id, runner.pipeline.snapshot(), info)
        source.commit(position)
        self.checkpoint_id = checkpoint_id
        self.taken += 1
        self._last_records = runner.summary.records
        self._last_time = time.monotonic()
        self.seconds += time.perf_counter() - started
        return checkpoint_id
