"""The keyed job's stages against the embedded runtime, without Flink.

``keyed_run`` plays the keyed job's dataflow in one process, as Flink runs it: source splits
(contiguous ranges of chunks) decoded in an interleaving chosen by hypothesis, per-split
lateness, parts buffered per card key group and released in event-time order when the
watermark (the minimum over the splits still running) passes them, card answers cut by user
key group and buffered again, each key group's state in a dict of per-key values. For any
stream whose records keep within the out-of-orderness, whatever the split count and the
interleaving, its decisions, duplicates and late records must equal the embedded runtime's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.engine.batch import TxBatch
from fraudstream.engine.pipeline import Pipeline, TimeConfig
from fraudstream.engine.state import StateTable
from fraudstream.flink.key_rows import KeyRows
from fraudstream.flink.keyed import (
    AggregateStage,
    CardStage,
    Routes,
    TerminalStage,
    UserStage,
    late_rows,
    release_order,
)
from fraudstream.flink.stages import PipelineParts
from fraudstream.flink.transport import (
    bucket_parts,
    part_times,
    result_batch,
    take_part,
    tx_batch,
    unpack_result,
    unpack_tx,
)
from fraudstream.io.records import decision_dicts, duplicate_letters
from fraudstream.models.dataset import attach
from fraudstream.profiles import ProfileTable
from fraudstream.reference import IpReference
from fraudstream.rules import RuleSet
from fraudstream.schema import CardTokenizer, validate_record

T0 = 1_767_225_600_000
MINUTE = 60_000
OUT_OF_ORDERNESS = 10 * MINUTE
LATENESS = 5 * MINUTE
KEY_GROUPS = 8
GROUPS = tuple(range(KEY_GROUPS))
TIMING = TimeConfig(out_of_orderness_ms=OUT_OF_ORDERNESS, allowed_lateness_ms=LATENESS)
WALL_CLOCK = ("processed_at", "latency_ms")
END = 2**63 - 1  # Flink's watermark at the end of input


def records(seed: int, count: int, cards: int, late: bool = True) -> list[dict[str, Any]]:
    """A stream within the out-of-orderness (arrival = event time + a jitter below it), with
    copies of records sent again and (``late``) records far behind."""
    rng = random.Random(seed)
    out = []
    time = T0
    for k in range(count):
        time += rng.choice([1_000, 20_000, 45_000, 90_000, 3 * MINUTE])
        card = rng.randrange(cards)
        out.append(
            {
                "transaction_id": f"t{k:05d}",
                "card_id": f"card-{card}",
                "user_id": f"user-{card // 2 if rng.random() < 0.9 else rng.randrange(cards)}",
                "timestamp": time,
                "amount": rng.choice([0.5, 0.9, 12.0, 40.0, 75.0, 620.0, 2_400.0]),
                "lat": rng.choice([52.52, 48.85, 40.71, -33.87]),
                "lon": rng.choice([13.40, 2.35, -74.0, 151.2]),
                "zipcode": rng.choice(["10115", "75001", "10001", None]),
                "merchant_id": f"m{rng.randrange(6)}",
                "device_id": rng.choice(["d1", "d2", "d3", f"d{k}"]),
                "ip": rng.choice(["100.64.0.1", "8.8.8.8", "185.220.101.1"]),
                "country": rng.choice(["DE", "FR", "US", None]),
            }
        )
    jitter = [r["timestamp"] + rng.randrange(OUT_OF_ORDERNESS) for r in out]
    stream = [r for _, r in sorted(zip(jitter, out, strict=True), key=lambda p: p[0])]
    for _ in range(count // 25):  # sent again, a little later
        i = rng.randrange(len(stream) - 3)
        stream.insert(i + rng.randrange(1, 4), dict(stream[i]))
    for _ in range(count // 40 if late else 0):  # far behind: late
        i = rng.randrange(len(stream) // 2)
        stream.insert(min(len(stream), i + 60 + rng.randrange(40)), stream.pop(i))
    return stream


def decode(stream: list[dict[str, Any]]) -> TxBatch:
    tokenize = CardTokenizer(b"test")
    rows = [validate_record(r, tokenize) for r in stream]
    return TxBatch.from_valid(
        rows, np.arange(1, len(rows) + 1, dtype=np.int64), np.zeros(len(rows))
    )


def comparable(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["transaction_id"]: {k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rows}


def embedded(
    batch: TxBatch,
    chunk: int,
    ttl: int | None = None,
    rules: RuleSet | None = None,
    **attached: Any,
) -> tuple[dict[str, Any], list[int], list[int]]:
    """`fraudstream run` over the stream in micro-batches of ``chunk`` records (``ttl``: the
    state TTL; ``attached``: the model and labels, as `run --model --labels` attaches them)."""
    pipeline = Pipeline(
        rules or RuleSet.default(), ProfileTable(), TIMING, IpReference.default(), ttl
    )
    if attached:
        attach(pipeline, **attached)
    decided: list[dict[str, Any]] = []
    duplicates: list[int] = []
    late: list[int] = []
    steps = [
        pipeline.submit(batch.take(np.arange(s, min(s + chunk, len(batch)))), 0.0)
        for s in range(0, len(batch), chunk)
    ]
    for step in [*steps, pipeline.flush(0.0)]:
        if step.decisions is not None:
            decided.extend(decision_dicts(step.decisions))
        duplicates.extend(step.duplicates.position.tolist())
        late.extend(step.late.position.tolist())
    return comparable(decided), sorted(duplicates), sorted(late)


@dataclass
class KeyGroup:
    """One key group of one keyed operator: its waiting parts and its per-key values."""

    pending: list[Any] = field(default_factory=list)
    values: dict[str, bytes] = field(default_factory=dict)

    def fetch(self, keys: list[str]) -> list[bytes | None]:
        return [self.values.get(key) for key in keys]


def released(group: KeyGroup, watermark: int, times: Any, take: Any) -> list[Any]:
    ready, later = [], []
    for part in group.pending:
        due = times(part) <= watermark
        if due.any():
            ready.append(take(part, np.flatnonzero(due)))
        if not due.all():
            later.append(take(part, np.flatnonzero(~due)))
    group.pending = later
    return ready


class Downstream:
    """The card and user operators: parts buffered per key group, released in event-time
    order as the watermark passes them; card answers cut by the next operator's key group.
    Between them, as the job routes them (:class:`Routes`): with a model the terminal
    operator (by merchant), with aggregating `when:` rules one operator per key space (by
    its key); customers' feature values beside the users' detector values."""

    def __init__(self, parts: PipelineParts) -> None:
        self.card_stage, self.user_stage = CardStage(parts), UserStage(parts)
        self.routes = Routes(parts)
        self.middle: dict[str, Any] = {
            hop: TerminalStage(parts) if hop == "terminal" else AggregateStage(parts, hop)
            for hop in self.routes.hops[:-1]
        }
        self.groups = {hop: [KeyGroup() for _ in GROUPS] for hop in ["card", *self.routes.hops]}
        self.customers = [KeyGroup() for _ in range(KEY_GROUPS)]
        self.decided: list[dict[str, Any]] = []
        self.duplicates: list[int] = []

    # Parts travel as the job sends them: bytes (fraudstream.flink.transport), cut by key
    # group, cut again where the watermark splits them.
    def advance(self, watermark: int) -> None:
        for group in self.groups["card"]:
            ready = released(group, watermark, part_times, take_part)
            if ready:
                tx = TxBatch.concat([unpack_tx(part) for part in ready])
                tx = tx.take(release_order(tx))
                result, repeated, values = self.card_stage.process(tx, group.fetch, watermark, 0.0)
                group.values.update(values)
                self.duplicates.extend(repeated.position.tolist())
                self.send("card", result)
        for hop, stage in self.middle.items():
            for group in self.groups[hop]:
                ready = released(group, watermark, part_times, take_part)
                if ready:
                    answers = [unpack_result(part) for part in ready]
                    if hop == "terminal":
                        answers, values = stage.process(answers, group.fetch)
                    else:
                        answers, values = stage.process(answers, group.fetch, watermark)
                    group.values.update(values)
                    for answer in answers:
                        self.send(hop, answer)
        for user_group, customers in zip(self.groups["user"], self.customers, strict=True):
            ready = released(user_group, watermark, part_times, take_part)
            if ready:
                answers = [unpack_result(part) for part in ready]
                decisions, values, features = self.user_stage.process(
                    answers, user_group.fetch, watermark, 0.0, customers.fetch
                )
                user_group.values.update(values)
                customers.values.update(features)
                self.decided.extend(decision_dicts(decisions))

    def send(self, hop: str, result: Any) -> None:
        after = self.routes.after(hop)
        column = self.routes.column(after, result.tx)
        for g, part in bucket_parts(result_batch(result), column, GROUPS):
            self.groups[after][g].pending.append(part)


def keyed_run(
    batch: TxBatch,
    chunk: int,
    splits: int,
    interleaving: list[int],
    model: Any = None,
    ttl: int | None = None,
    rules: RuleSet | None = None,
) -> tuple[dict[str, Any], list[int], list[int]]:
    """The keyed job's dataflow (module docstring); ``model``: a ModelSpec (its labels
    pruned as the job prunes them); ``ttl``: the state TTL; ``rules``: not the default."""
    parts = PipelineParts(
        rules or RuleSet.default(), ProfileTable(), TIMING, IpReference.default(), ttl,
        None if model is None else model.keyed(),
    )  # fmt: skip
    downstream = Downstream(parts)
    chunks = [np.arange(s, min(s + chunk, len(batch))) for s in range(0, len(batch), chunk)]
    bounds = np.linspace(0, len(chunks), splits + 1).astype(int)
    queues = [list(range(bounds[s], bounds[s + 1])) for s in range(splits)]
    latest: list[int | None] = [None] * splits
    late: list[int] = []
    for split in interleaving + [s for s in range(splits) for _ in queues[s]]:
        if not queues[split]:
            continue
        tx = batch.take(chunks[queues[split].pop(0)])
        mask, _, after = late_rows(tx.timestamp_ms, latest[split], OUT_OF_ORDERNESS, LATENESS)
        late.extend(tx.position[mask].tolist())
        tx = tx.take(np.flatnonzero(~mask))
        latest[split] = after
        for g, part in bucket_parts(tx_batch(tx), tx.card_id, GROUPS):
            downstream.groups["card"][g].pending.append(part)
        running = [
            latest[s] - OUT_OF_ORDERNESS - 1 if latest[s] is not None else -END
            for s in range(splits)
            if queues[s]
        ]
        downstream.advance(min(running, default=END))
    downstream.advance(END)
    return comparable(downstream.decided), sorted(downstream.duplicates), sorted(late)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    splits=st.sampled_from([1, 2, 4]),
    chunk=st.sampled_from([17, 64, 400]),
    interleaving=st.lists(st.integers(0, 3), max_size=40),
)
def test_keyed_stages_decide_as_embedded(
    seed: int, splits: int, chunk: int, interleaving: list[int]
) -> None:
    # Lateness is per source split: with one split it is the embedded rule exactly; with
    # more, a split's first records have no history (docs/flink.md), so no late records.
    batch = decode(records(seed, 300, cards=12, late=splits == 1))
    want = embedded(batch, chunk)
    got = keyed_run(batch, chunk, splits, [s % splits for s in interleaving])
    assert got[0] == want[0]  # every decision: tier, score, reasons, features
    assert got[1] == want[1]  # the same copies are the duplicates
    assert got[2] == want[2]


def test_a_key_moves_between_releases_and_slots() -> None:
    """A key's values survive being loaded into another slot, next to other keys."""
    pipeline = Pipeline()
    rows = KeyRows(pipeline, "card")
    devices: StateTable = pipeline.states["new_device"]
    rows.load([None, None, None])
    devices["devices"][:3, 0] = pipeline.codes["device"].slots(decode_ids(["d1", "d2", "d3"]))
    devices["count"][:3] = [4, 5, 6]
    values = rows.dump(3)
    pipeline.codes["device"] = type(pipeline.codes["device"])()  # another process: no codes
    rows.load([values[2], None, values[0]])
    names = pipeline.codes["device"].keys
    assert [names[c] for c in devices["devices"][[0, 2], 0]] == ["d3", "d1"]
    assert devices["count"][:3].tolist() == [6, 0, 4]


def decode_ids(values: list[str]) -> Any:
    import pyarrow as pa

    return pa.array(values, pa.string())


def test_duplicates_are_found_per_card_across_releases() -> None:
    parts = PipelineParts(RuleSet.default(), ProfileTable(), TIMING, IpReference.default())
    stage = CardStage(parts)
    group = KeyGroup()
    first = decode(records(1, 5, cards=1))
    result, repeated, values = stage.process(first, group.fetch, 0, 0.0)
    group.values.update(values)
    assert len(repeated) == 0
    again = first.take(np.array([3, 1]))
    _, repeated, _ = stage.process(again, group.fetch, 0, 0.0)
    assert sorted(repeated.transaction_id.to_pylist()) == sorted(
        first.transaction_id.take([3, 1]).to_pylist()
    )
    assert duplicate_letters(repeated)[0]["reason"].startswith("duplicate")
