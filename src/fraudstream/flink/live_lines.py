"""A live source's lines for the keyed job: batched in Flink SQL, decoded in Python.

A watched directory's files and Kafka topics arrive line by line from Flink's parallel
source. Sending each line through Python costs about 30 us of CPU (a call and a ``ListState``
add per line, measured on a 2 M-line file); instead :func:`line_batches` lets Flink SQL
collect them, Java-side: a tumbling processing-time window of ``window_ms`` per *part* (the
line's hash modulo the parts) gathers the part's lines with ``ARRAY_AGG`` in Flink state
(about 5 us a line, the conversion to Python included). Python then sees one call per part
and window. The window's contents are checkpointed like any other state, so no line is lost
between the source and the decoder, and a savepoint rescales them by key group.

:class:`DecodeLines` runs on the window operator's own subtask (a forward edge): it gets that
subtask's batches window after window, each window's parts in any order. It decodes a batch
as :class:`~fraudstream.flink.keyed_functions.DecodeChunks` decodes a chunk: dead letters and
late records out (late by the embedded clock's rule, per part, whose lines keep their arrival
order), the rest cut into one part per card key group. What differs is the time a batch
carries: a part's latest time may come from lines that arrived after another part's lines of
the same window, so every batch of a window carries the latest time of this subtask's
*earlier* windows. The subtask's watermark then follows one window behind and never passes a
record still to come to it while records keep within the out-of-orderness; the card
operator's watermark is the minimum over the subtasks, so however far apart the subtasks'
windows fall, none passes another's records.

Idle: the window operator also gets a few *ticks* a second (Flink SQL's ``datagen``, random
parts), so windows keep coming when no line does. A subtask whose windows have held nothing
but ticks for ``idle_timeout_ms`` catches its watermark up with its latest record, as the
embedded clock does on an idle source, and declares itself idle (an event timed
:data:`~fraudstream.flink.watermarks.IDLE_MARK`, read by the job's own watermark generator,
:mod:`fraudstream.flink.watermarks`): Flink then leaves it out, and once every subtask is
idle moves the watermark on to the largest of theirs, the embedded clock's catch-up. Only a
declaration makes a subtask idle, never a silence: a decoder busy with a batch, or on a
TaskManager still starting, holds the others back. The ticks travel behind the lines on the
same channel: a tick window cannot overtake a batch still on its way, however far the
decoder lags.

Until it first has lines, a subtask's ticks hold the watermark at the beginning of time, so
a job's start waits for every subtask's first batch; one that has none for
``START_HOLD_MS`` of windows declares itself idle, so a part without traffic does not stop
the job. Idle subtasks are out of Flink's minimum, so one that has lines again holds its
watermark for ``RESUME_HOLD_MS`` of windows: the others, idle too, may be sending the
batches of the same moments a little later.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pyflink.datastream import ProcessFunction, RuntimeContext

from fraudstream.flink.functions import DEAD_LETTERS, json_lines
from fraudstream.flink.keyed import late_rows
from fraudstream.flink.keyed_functions import without_late
from fraudstream.flink.stages import PipelineParts
from fraudstream.flink.transport import bucket_parts, tx_batch
from fraudstream.flink.watermarks import IDLE_MARK
from fraudstream.io.decode import Decoder, ParsedBlock
from fraudstream.schema import MIN_TIMESTAMP_MS, CardTokenizer

# Before every valid record's time, and far from Long.MIN_VALUE (Flink's "no timestamp")
NOTHING_BEFORE = MIN_TIMESTAMP_MS - 1
POSITIONS_PER_PART = 2**40  # a part's lines are numbered from part x this: unique positions
TICKS_PER_SECOND = 200  # spread over the parts at random: every subtask gets some each second
# A subtask that has had no lines yet holds the watermark this long from its first window:
# the others' watermark must not pass the records of its first batch. Past it, it declares
# itself idle, so parts that get no traffic delay the job's first decisions by at most this.
START_HOLD_MS = 30_000
# A subtask that was idle and has lines again holds its watermark this long: the other idle
# subtasks may be sending the batches of the same moments, a little later.
RESUME_HOLD_MS = 2_000

__all__ = [
    "NOTHING_BEFORE",
    "RESUME_HOLD_MS",
    "START_HOLD_MS",
    "DecodeLines",
    "line_batches",
]


def line_batches(env: Any, lines: Any, parts: int, window_ms: int) -> Any:
    """``lines`` (a DataStream of str) as rows (part, text, window end): each part's
    lines of one ``window_ms`` processing-time window, in the order they reached the window,
    joined by line ends (ticks are empty lines)."""
    from pyflink.table import Schema, StreamTableEnvironment

    t_env = StreamTableEnvironment.create(env)
    # Stable uids for the SQL operators too (a savepoint maps state to operators by uid).
    t_env.get_config().set("table.exec.uid.generation", "ALWAYS")
    schema = (
        Schema.new_builder()
        .column("f0", "STRING")
        .column_by_expression("arrival", "PROCTIME()")
        .build()
    )
    t_env.create_temporary_view("fraudstream_lines", t_env.from_data_stream(lines, schema))
    t_env.execute_sql(
        f"""
        CREATE TEMPORARY TABLE fraudstream_ticks (part INT, arrival AS PROCTIME())
        WITH ('connector' = 'datagen', 'rows-per-second' = '{TICKS_PER_SECOND}',
              'fields.part.kind' = 'random', 'fields.part.min' = '0',
              'fields.part.max' = '{int(parts) - 1}')
        """
    )
    t_env.create_temporary_view(
        "fraudstream_input",
        t_env.sql_query(
            f"""
            SELECT MOD(HASH_CODE(f0), {int(parts)}) AS part, f0, arrival FROM fraudstream_lines
            UNION ALL SELECT part, '' AS f0, arrival FROM fraudstream_ticks
            """
        ),
    )
    batches = t_env.sql_query(
        f"""
        SELECT part, ARRAY_JOIN(ARRAY_AGG(f0), CHR(10)) AS text,
               CAST(window_end AS STRING) AS window_end
        FROM TABLE(TUMBLE(TABLE fraudstream_input, DESCRIPTOR(arrival),
                          INTERVAL '{window_ms / 1000:.3f}' SECOND))
        GROUP BY part, window_start, window_end
        """
    )
    return t_env.to_data_stream(batches)


class DecodeLines(ProcessFunction):  # type: ignore[misc]
    """(part, text, window end) -> the text's records, one part per card key group; dead
    letters and late records out. One per window-operator subtask (a forward edge)."""

    def __init__(self, parts: PipelineParts, keys: tuple[int, ...], wanted: frozenset[str]) -> None:
        self.parts = parts
        self.keys = keys
        self.wanted = wanted

    def open(self, runtime_context: RuntimeContext) -> None:
        self.decoder = Decoder(CardTokenizer.from_environment(), "input", self.parts.limits)
        # This subtask's clock, in memory: after a restore the watermark starts again one
        # window behind the first batches (a late record needs the part's history again).
        self.latest: dict[int, int] = {}  # per part: the latest event time of its lines
        self.window_end_ms = 0  # the window being received
        self.latest_in_window: int | None = None  # the latest time of its lines so far
        self.before: int | None = None  # the latest time of the earlier windows
        self.lines_window_ms = 0  # the end of the last window that brought lines
        self.first_window_ms: int | None = None  # the end of the first window received
        self.idle = False  # declared idle: every line it had is decided, or none came
        self.holding_until_ms = 0  # resumed after idle: the watermark holds until then
        self.read: dict[int, int] = {}  # per part: lines read (positions)
        self.arrival_ms = 0  # processing time: the last batch's arrival stamp (increasing)

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        part, text = int(value[0]), str(value[1]).strip("\n")
        window_end_ms = _epoch_ms(value[2])
        if window_end_ms > self.window_end_ms:  # a new window: the last one is complete
            self.window_end_ms = window_end_ms
            self.before = _later(self.before, self.latest_in_window)
            self.latest_in_window = None
        if self.first_window_ms is None:
            self.first_window_ms = window_end_ms
        if not text:  # ticks only
            yield from self._tick()
            return
        if self.idle:  # out of Flink's minimum: the others may be passing its moments
            self.idle = False
            self.holding_until_ms = window_end_ms + RESUME_HOLD_MS
        self.lines_window_ms = window_end_ms
        yield from self._decode(part, text)

    def _carried(self) -> int:
        """The time a batch carries: its subtask's latest before this window, unless the
        subtask holds its watermark (no lines yet, or resumed after idle)."""
        if self.before is None or self.window_end_ms < self.holding_until_ms:
            return NOTHING_BEFORE
        return self.before

    def _decode(self, part: int, text: str) -> Iterator[Any]:
        block = ParsedBlock.of(text.encode("utf-8", "replace") + b"\n", threads=False)
        self.arrival_ms = max(int(time.time() * 1000), self.arrival_ms + 1)
        read = self.read.get(part, 0)
        first = part * POSITIONS_PER_PART + read
        tx, dead = self.decoder.block(block, first, float(self.arrival_ms))
        self.read[part] = read + block.lines
        if dead and "dead_letters" in self.wanted:
            yield DEAD_LETTERS, json_lines([d.to_dict() for d in dead])
        timing = self.parts.time
        if timing.mode == "processing":  # the watermark runs on arrival stamps: none late
            for key, part_tx in bucket_parts(tx_batch(tx), tx.card_id, self.keys):
                yield key, part_tx, self.arrival_ms
            yield self.keys[0], None, self.arrival_ms + 1
            return
        if len(tx):
            late, watermark, latest = late_rows(
                tx.timestamp_ms,
                self.latest.get(part),
                timing.out_of_orderness_ms,
                timing.allowed_lateness_ms,
            )
            self.latest[part] = latest
            self.latest_in_window = _later(self.latest_in_window, latest)
            letters, tx = without_late(tx, late, watermark, timing.allowed_lateness_ms, self.wanted)
            yield from letters
        carried = self._carried()
        for key, part_tx in bucket_parts(tx_batch(tx), tx.card_id, self.keys):
            yield key, part_tx, carried
        yield self.keys[0], None, carried

    def _tick(self) -> Iterator[Any]:
        """Ticks keep a subtask sending times while it has lines to see decided or waits
        for its first; then it declares itself idle and sends nothing more. In processing
        time every tick moves the subtask's watermark to now."""
        timing = self.parts.time
        if timing.mode == "processing":  # any later batch is stamped after now: pass now
            self.arrival_ms = max(int(time.time() * 1000), self.arrival_ms + 1)
            yield self.keys[0], None, self.arrival_ms + 1
            return
        if self.idle:
            return
        latest = _later(self.before, self.latest_in_window)
        assert self.first_window_ms is not None
        if latest is None:  # no lines yet: hold the others back until its first batch
            if self.window_end_ms - self.first_window_ms >= START_HOLD_MS:
                self.idle = True
                yield self.keys[0], None, IDLE_MARK
            else:
                yield self.keys[0], None, NOTHING_BEFORE
        elif (
            self.window_end_ms - self.lines_window_ms >= timing.idle_timeout_ms
            and self.window_end_ms >= self.holding_until_ms
        ):
            # Every line this subtask got is in: its watermark catches up with its latest
            # record, and it declares itself idle. Once every subtask is, Flink moves the
            # watermark on to the largest of theirs: the embedded clock's catch-up.
            self.idle = True
            yield self.keys[0], None, latest + timing.out_of_orderness_ms + 1
            yield self.keys[0], None, IDLE_MARK
        else:
            yield self.keys[0], None, self._carried()


def _later(a: int | None, b: int | None) -> int | None:
    """The later of two times, either possibly unknown."""
    if a is None:
        return b
    return a if b is None else max(a, b)


def _epoch_ms(moment: Any) -> int:
    """A window end (Flink SQL's text of the timestamp, or milliseconds) in milliseconds;
    only differences between them matter, so the session's time zone does not."""
    if isinstance(moment, int):
        return moment
    return int(datetime.fromisoformat(str(moment)).replace(tzinfo=UTC).timestamp() * 1000)
