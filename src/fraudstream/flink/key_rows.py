"""One key's detector state as one value: what the keyed job keeps in Flink's ``MapState``.

The embedded runtime holds a detector's state as dense arrays indexed by key slot
(:class:`~fraudstream.engine.state.StateTable`). The keyed Flink job keeps each card's (or
user's) state in Flink keyed state instead, one value a key, and runs the very same
detector kernels over a micro-batch: :class:`KeyRows` loads the batch's keys' values into
the first slots of the tables (gather), and writes the slots back as values (scatter).

A value is the key's numeric fields packed as one numpy structured record (every detector
of the key, the key's last event time for the state TTL, the hashes of its last
transaction ids for duplicate detection), then the byte count of each text slot (int32,
-1 for none) and the UTF-8 bytes of those texts: the fields that hold codes of a text column
(``Detector.coded_fields``) are kept as text, because codes are only meaningful inside one
key space, and a value must mean the same after a restore on another TaskManager. Loading
and writing go column-wise (numpy, Arrow): no Python object per text.

>>> import numpy as np
>>> from fraudstream.engine.pipeline import Pipeline
>>> pipeline = Pipeline()
>>> rows = KeyRows(pipeline, "card")
>>> card_history = pipeline.states["card_history"]
>>> rows.load([None, None])
>>> card_history["last_zipcode"][:2] = pipeline.codes["zipcode"].slots(pa.array(["10115", None]))
>>> card_history["last_ms"][:2] = [5_000, 7_000]
>>> values = rows.dump(2)
>>> rows.load([values[1], values[0]])  # another batch: the keys in other slots
>>> card_history["last_ms"][:2].tolist()
[7000, 5000]
>>> zipcodes = pipeline.codes["zipcode"].keys
>>> [zipcodes[c] if c >= 0 else None for c in card_history["last_zipcode"][:2]]
[None, '10115']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numba
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.engine.expiry import NEVER

if TYPE_CHECKING:
    from fraudstream.engine.pipeline import Pipeline
    from fraudstream.engine.state import StateTable

Key = Literal["card", "user"]
RECENT_IDS = 16  # transaction-id hashes kept per card for duplicate detection
# DetectorInput's coded columns -> the pipeline's key space of that text
CODE_SPACES = {"zipcode": "zipcode", "merchant": "merchant", "device": "device"}

__all__ = ["RECENT_IDS", "KeyRows"]


class KeyRows:
    """Gathers and scatters one key type's detector state rows (see the module docstring)."""

    def __init__(self, pipeline: Pipeline, key: Key) -> None:
        self.pipeline = pipeline
        self.key = key
        self.tables: dict[str, StateTable] = {}
        numeric: list[tuple[Any, ...]] = [("last_ms", np.int64)]
        if key == "card":
            numeric.append(("recent_ids", np.uint64, (RECENT_IDS,)))
        self.coded: list[tuple[str, str, str, int]] = []  # (table, field, code space, width)
        for name, instance in pipeline.instances.items():
            detector = instance.detector
            if detector.key != key:
                continue
            table = pipeline.states[name]
            self.tables[name] = table
            for field, (dtype, _) in table.spec.items():
                column = detector.coded_fields.get(field)
                width = dtype[1] if isinstance(dtype, tuple) else 0
                if column is not None:
                    self.coded.append((name, field, CODE_SPACES[column], width))
                elif width:
                    numeric.append((f"{name}.{field}", dtype[0], (width,)))
                else:
                    numeric.append((f"{name}.{field}", dtype))
        self.dtype = np.dtype(numeric)
        self.size = self.dtype.itemsize
        self.spans = [max(width, 1) for *_, width in self.coded]  # text slots per coded field
        # a value's fixed part: the numeric record, then each text slot's byte count (-1: none)
        self.fixed_size = self.size + 4 * sum(self.spans)
        self.recent_ids = np.zeros((0, RECENT_IDS), np.uint64)
        self.last_ms = np.zeros(0, np.int64)  # each loaded key's last event time

    def load(self, values: list[bytes | None]) -> None:
        """Slots ``0..len(values)-1`` of every table get these keys' state (fresh when None);
        the expiry's last times and :attr:`recent_ids` too."""
        k = len(values)
        for table in self.tables.values():
            table.ensure(k)
            table.reset(np.arange(k))
        present = [i for i, value in enumerate(values) if value is not None]
        rows = np.array(present, dtype=np.int64)
        self.last_ms = np.full(k, NEVER, dtype=np.int64)
        if self.key == "card":
            self.recent_ids = np.zeros((k, RECENT_IDS), dtype=np.uint64)
        if present:
            chosen = [values[i] for i in present]
            lengths = np.fromiter(map(len, chosen), dtype=np.int64, count=len(chosen))  # type: ignore[arg-type]
            packed = np.frombuffer(b"".join(chosen), dtype=np.uint8)  # type: ignore[arg-type]
            starts = np.zeros(len(chosen), dtype=np.int64)
            np.cumsum(lengths[:-1], out=starts[1:])
            fixed = np.empty((len(chosen), self.fixed_size), dtype=np.uint8)  # one row per key
            _copy_runs(packed, starts, np.full(len(chosen), self.fixed_size), fixed.ravel(),
                       np.arange(len(chosen), dtype=np.int64) * self.fixed_size)  # fmt: skip
            records = fixed[:, : self.size].copy().view(self.dtype).ravel()
            for name in self.dtype.names or ():
                if "." in name:
                    detector, field = name.split(".", 1)
                    self.tables[detector][field][rows] = records[name]
            self.last_ms[rows] = records["last_ms"]
            if self.key == "card":
                self.recent_ids[rows] = records["recent_ids"]
            if self.coded:
                sizes = fixed[:, self.size :].copy().view(np.int32)  # (keys, text slots)
                text_lengths = lengths - self.fixed_size
                text_starts = np.zeros(len(chosen), dtype=np.int64)
                np.cumsum(text_lengths[:-1], out=text_starts[1:])
                data = np.empty(int(text_lengths.sum()), dtype=np.uint8)
                _copy_runs(packed, starts + self.fixed_size, text_lengths, data, text_starts)
                self._load_texts(rows, sizes, data)
        expiry = self.pipeline.expiry
        if expiry is not None:
            expiry.seen[self.key] = self.last_ms.copy()
            expiry.seen["user" if self.key == "card" else "card"] = np.full(k, NEVER, np.int64)

    def _load_texts(
        self, rows: npt.NDArray[np.int64], sizes: npt.NDArray[np.int32], data: npt.NDArray[np.uint8]
    ) -> None:
        # Every text of every loaded key as one Arrow string array (no Python string each),
        # key after key, slot after slot: the key spaces hash them straight from the buffer.
        valid = sizes.ravel() >= 0
        offsets = np.zeros(valid.size + 1, dtype=np.int32)
        np.cumsum(np.where(valid, sizes.ravel(), 0), out=offsets[1:])
        texts = pa.StringArray.from_buffers(
            valid.size,
            pa.py_buffer(offsets),
            pa.py_buffer(np.ascontiguousarray(data)),
            pa.py_buffer(np.packbits(valid, bitorder="little")),
        )
        slot = 0
        for table, field, space, width in self.coded:
            span = max(width, 1)
            columns = np.arange(slot, slot + span)
            picked = (np.arange(len(rows))[:, None] * sizes.shape[1] + columns).ravel()
            codes = self.pipeline.codes[space].slots(texts.take(pa.array(picked, pa.int64())))
            target = self.tables[table][field]
            target[rows] = codes.reshape(len(rows), width) if width else codes
            slot += span

    def dump(self, k: int, last_ms: npt.NDArray[np.int64] | None = None) -> list[bytes]:
        """The values of slots ``0..k-1`` (after the detectors ran), in slot order."""
        records = np.zeros(k, dtype=self.dtype)
        for name in self.dtype.names or ():
            if "." in name:
                detector, field = name.split(".", 1)
                records[name] = self.tables[detector][field][:k]
        if self.key == "card":
            records["recent_ids"] = self.recent_ids[:k]
        expiry = self.pipeline.expiry
        if last_ms is not None:
            records["last_ms"] = last_ms
        elif expiry is not None:
            records["last_ms"] = expiry.seen[self.key][:k]
        fixed = records.view(np.uint8).reshape(k, self.size)
        if not self.coded:
            blob = fixed.tobytes()
            size = self.size
            return [blob[i * size : (i + 1) * size] for i in range(k)]
        sizes, texts = [], []
        for table, field, space, width in self.coded:
            codes = self.tables[table][field][:k].reshape(k, max(width, 1))
            arena = self.pipeline.codes[space].snapshot()
            starts = np.asarray(arena["offsets"], dtype=np.int64)
            known = codes >= 0
            at = np.where(known, codes, 0)
            ends = np.append(starts, starts[-1])  # (an empty key space: a code 0 never used)
            sizes.append(np.where(known, ends[at + 1] - ends[at], -1).astype(np.int32))
            spelled = pa.LargeStringArray.from_buffers(
                len(starts) - 1,
                pa.py_buffer(starts),
                pa.py_buffer(np.ascontiguousarray(arena["bytes"])),
            )
            texts.append(spelled.take(pa.array(at.ravel(), pa.int64(), mask=~known.ravel())))
        slot_sizes = np.concatenate(sizes, axis=1)  # (keys, text slots)
        fixed = np.concatenate([fixed, slot_sizes.view(np.uint8).reshape(k, -1)], axis=1)
        # per key: its fixed part, then its texts slot after slot (field after field)
        text_lengths = np.where(slot_sizes >= 0, slot_sizes, 0).astype(np.int64)
        value_lengths = self.fixed_size + text_lengths.sum(axis=1)
        value_starts = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(value_lengths, out=value_starts[1:])
        out = np.empty(int(value_starts[-1]), dtype=np.uint8)
        _copy_runs(fixed.ravel(), np.arange(k, dtype=np.int64) * self.fixed_size,
                   np.full(k, self.fixed_size), out, value_starts[:-1])  # fmt: skip
        at = value_starts[:-1] + self.fixed_size
        for column, span in zip(texts, self.spans, strict=True):
            # each key's texts of this field sit together in the column: copy them as a run
            offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)[: len(column) + 1]
            data = np.frombuffer(column.buffers()[2] or b"", dtype=np.uint8)
            per_key = offsets[::span]
            for_key = np.diff(per_key)
            _copy_runs(data, per_key[:-1], for_key, out, at)
            at = at + for_key
        blob = out.tobytes()
        return [
            blob[a:b]
            for a, b in zip(value_starts[:-1].tolist(), value_starts[1:].tolist(), strict=True)
        ]


@numba.njit(cache=True, nogil=True)
def _copy_runs(
    source: Any, source_starts: Any, lengths: Any, target: Any, target_starts: Any
) -> None:
    # Byte runs from one flat buffer to another: the values' parts, without index arrays.
    for i in range(lengths.size):
        s, t = source_starts[i], target_starts[i]
        for j in range(lengths[i]):
            target[t + j] = source[s + j]
