"""One key's detector state as one value: what the keyed job keeps in Flink's ``MapState``.

The embedded runtime holds a detector's state as dense arrays indexed by key slot
(:class:`~fraudstream.engine.state.StateTable`). The keyed Flink job keeps each card's (or
user's) state in Flink keyed state instead, one value a key, and runs the very same
detector kernels over a micro-batch: :class:`KeyRows` loads the batch's keys' values into
the first slots of the tables (gather), and writes the slots back as values (scatter).

A value is the key's numeric fields packed as one numpy structured record (every detector
of the key, the key's last event time for the state TTL, the hashes of its last
transaction ids for duplicate detection), followed by the text of the fields that hold
codes of a text column (``Detector.coded_fields``): codes are only meaningful inside one
key space, and a value must mean the same after a restore on another TaskManager.

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

import msgspec
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
        self.recent_ids = np.zeros((0, RECENT_IDS), np.uint64)
        self.last_ms = np.zeros(0, np.int64)  # each loaded key's last event time
        self._texts = msgspec.msgpack.Encoder()
        self._read_texts = msgspec.msgpack.Decoder(list[list[str | None]])

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
            size = self.size
            packed = b"".join(values[i][:size] for i in present)  # type: ignore[index]
            records = np.frombuffer(packed, dtype=self.dtype)
            for name in self.dtype.names or ():
                if "." in name:
                    detector, field = name.split(".", 1)
                    self.tables[detector][field][rows] = records[name]
            self.last_ms[rows] = records["last_ms"]
            if self.key == "card":
                self.recent_ids[rows] = records["recent_ids"]
        expiry = self.pipeline.expiry
        if expiry is not None:
            expiry.seen[self.key] = self.last_ms.copy()
            expiry.seen["user" if self.key == "card" else "card"] = np.full(k, NEVER, np.int64)
        if self.coded and present:
            self._load_texts(values, present)

    def _load_texts(self, values: list[bytes | None], present: list[int]) -> None:
        size, read = self.size, self._read_texts.decode
        texts = [read(values[i][size:]) for i in present]  # type: ignore[index]
        rows = np.array(present, dtype=np.int64)
        for position, (table, field, space, width) in enumerate(self.coded):
            flat = [text for row in texts for text in row[position]]
            codes = self.pipeline.codes[space].slots(pa.array(flat, pa.string()))
            target = self.tables[table][field]
            if width:
                target[rows] = codes.reshape(len(present), width)
            else:
                target[rows] = codes

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
        size = self.size
        rows: list[bytes] = records.view(f"S{size}").tolist() if size else [b""] * k
        if any(len(row) != size for row in rows):  # S trims trailing zero bytes: pad back
            rows = [row.ljust(size, b"\0") for row in rows]
        if not self.coded:
            return rows
        columns = []
        for table, field, space, width in self.coded:
            names = np.array([*self.pipeline.codes[space].keys, None], dtype=object)
            codes = self.tables[table][field][:k]
            text = names[np.where(codes >= 0, codes, len(names) - 1)]
            columns.append(text.tolist() if width else [[t] for t in text.tolist()])
        encode = self._texts.encode
        return [rows[i] + encode([column[i] for column in columns]) for i in range(k)]
