"""A Flink job that fails once mid-stream restarts from its checkpoint and loses nothing.

The test-only fault (`--fail-once-after N`) raises in the decide operator once N decisions
were made and a checkpoint has completed, leaving a marker so it fires only once. Flink's
restart strategy restores every operator from the checkpoint (the sequencer notes it), the
FileSink drops what it had not committed, and the outputs equal those of the embedded run
over the same stream: nothing lost, nothing twice. One run reads the file line by line
through Flink's FileSource (``--read-lines``, the sharded job), so checkpoint barriers fall
mid-stream; the other is the fused job at parallelism 1 reading chunks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flink_helpers import by_id, by_position, read_jsonl


def test_a_failed_job_restarts_from_its_checkpoint_with_exactly_once_outputs(
    embedded: Path, flink_run: Callable[..., Path]
) -> None:
    flink = flink_run(
        "--read-lines", "--fail-once-after", "8000", "--batch-bytes", "100000",
        "--checkpoint-interval-ms", "100", "--restart-delay-ms", "200",
    )  # fmt: skip
    marker = flink / "checkpoints" / "injected-fault"
    assert marker.exists(), "the fault did not fire"
    restored = (flink / "checkpoints" / "injected-fault.restored").read_text()
    assert "sequencer restored at" in restored
    assert int(restored.split()[-1]) > 0  # from a checkpoint, not from scratch
    decisions = read_jsonl(flink / "decisions")
    counts = Counter(d["transaction_id"] for d in decisions)
    assert max(counts.values()) == 1, "a decision written twice"
    assert by_id(decisions) == by_id(read_jsonl(embedded / "decisions.jsonl"))
    assert by_position(read_jsonl(flink / "dead_letters")) == by_position(
        read_jsonl(embedded / "dead_letters.jsonl")
    )
    assert without_watermark(read_jsonl(flink / "late")) == without_watermark(
        read_jsonl(embedded / "late.jsonl")
    )


def test_the_fused_job_fails_restarts_and_writes_each_output_once(
    embedded: Path, flink_run: Callable[..., Path]
) -> None:
    """The fused job over chunks: Flink's checkpoint barriers queue behind the chunk
    descriptors (the source sends them all at once), so a failure mid-file restarts the
    job from the start; the FileSink drops the uncommitted parts, nothing is written twice."""
    flink = flink_run(
        "--graph", "fused", "--fail-once-after", "8000", "--fail-without-checkpoint",
        "--batch-bytes", "300000", "--restart-delay-ms", "200",
    )  # fmt: skip
    assert (flink / "checkpoints" / "injected-fault").read_text().startswith("failed after")
    decisions = read_jsonl(flink / "decisions")
    assert max(Counter(d["transaction_id"] for d in decisions).values()) == 1
    assert by_id(decisions) == by_id(read_jsonl(embedded / "decisions.jsonl"))
    assert by_position(read_jsonl(flink / "dead_letters")) == by_position(
        read_jsonl(embedded / "dead_letters.jsonl")
    )
    assert without_watermark(read_jsonl(flink / "late")) == without_watermark(
        read_jsonl(embedded / "late.jsonl")
    )


def without_watermark(late: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Late records without the reason's "(now N ms behind)": the watermark at the end of the
    micro-batch, which depends on where batches are cut (this run cuts small ones)."""
    return [{**r, "reason": r["reason"].split(" (now ")[0]} for r in by_position(late)]
