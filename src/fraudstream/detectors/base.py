"""What every detector is: a pure step over (state, transactions) with declared state.

A detector family names the fraud pattern it catches (``name``), the key its state is kept
under (``key``: per card or per user), its state fields (``state_fields``: the checkpoint and
Flink state names) and its thresholds (a frozen dataclass with DESIGN.md's defaults). Its
``process`` reads a micro-batch of transactions, in processing order, and its state arrays,
and returns which records fired which rule with the values that made them fire. The kernels
are compiled with numba so the per-record loop runs at native speed; each detector also keeps
a readable single-record reference (``reference_step``) that tests hold the kernel to.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudstream.engine.keys import KeySpace
from fraudstream.engine.state import FieldSpec, StateTable

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Bools = npt.NDArray[np.bool_]
NONE_MS = np.iinfo(np.int64).min // 4  # "no time recorded" in int64 state fields


@dataclass(slots=True)
class DetectorInput:
    """The columns detectors read, for one micro-batch in processing order.

    ``time_ms`` is event time (or arrival time in processing-time mode). Text fields come as
    dense integer codes (-1 when missing) so kernels compare integers, not strings.
    """

    time_ms: I64
    event_ms: I64
    amount: F64
    lat: F64
    lon: F64
    card: I32
    user: I32
    zipcode: I32
    merchant: I32
    device: I32
    hour: npt.NDArray[np.int8]
    ip_country: I32
    expected_country: I32
    anonymous_network: I32
    max_speed_kmh: F64
    transaction_id: pa.Array
    first_name: pa.Array
    last_name: pa.Array
    # code -> text, by code: a list, an Arrow string array, or the key space itself (large
    # key spaces: nothing built per batch for all of its keys)
    decode: Mapping[str, list[str] | pa.Array | KeySpace] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.time_ms)


@dataclass(slots=True)
class Findings:
    """A detector's answer for a batch: rule id -> fired mask, and feature columns."""

    fired: dict[str, Bools]
    features: dict[str, Any]


T = TypeVar("T")


class Detector(ABC, Generic[T]):
    """Base of every detector family; see the module docstring."""

    name: ClassVar[str]
    rules: ClassVar[tuple[str, ...]]
    key: ClassVar[Literal["card", "user"]] = "card"
    seed: ClassVar[str]
    state_fields: ClassVar[dict[str, FieldSpec]]
    thresholds_type: ClassVar[type[Any]]
    # Which threshold names belong to which rule (for the rules file and its errors).
    rule_thresholds: ClassVar[dict[str, tuple[str, ...]]] = {}
    # State fields that hold codes of a text column (``DetectorInput.zipcode``, ``merchant``,
    # ``device``): field -> column. Codes are dense per key space, so whatever stores a key's
    # state apart from the key spaces (Flink's per-key state) keeps these as the text itself.
    coded_fields: ClassVar[dict[str, str]] = {}

    def __init__(self, thresholds: T | None = None, **overrides: Any) -> None:
        base: Any = thresholds if thresholds is not None else self.thresholds_type()
        self.thresholds: T = dataclasses.replace(base, **overrides) if overrides else base
        check = getattr(self.thresholds, "check", None)
        if check is not None:
            check()

    def new_state(self, capacity: int = 1024) -> StateTable:
        """An empty state table for this detector's key space."""
        return StateTable(self.state_fields, capacity)

    @abstractmethod
    def process(self, state: StateTable, tx: DetectorInput) -> Findings:
        """Runs the batch through the detector, updating ``state`` in place."""

    def on_time(self, state: StateTable, now_ms: int, used: int) -> None:  # noqa: B027
        """Fires the timers due at ``now_ms`` (watermark or wall clock); none by default."""

    @abstractmethod
    def message(self, rule: str, values: Mapping[str, Any]) -> str:
        """The reason a person reads, with the values that fired ``rule``."""

    def messages(self, rule: str, columns: Mapping[str, list[Any]]) -> list[str]:
        """:meth:`message` for many fired rows at once (``columns``: the values by name, one
        list per name, a row each). A detector whose rules fire often writes them in one
        pass instead (no dict per row); the texts must be :meth:`message`'s."""
        names = list(columns)
        message = self.message
        return [
            message(rule, dict(zip(names, values, strict=True)))
            for values in zip(*columns.values(), strict=True)
        ]


def nan_column(n: int) -> F64:
    """A float feature column with no values yet."""
    column: F64 = filled(n, np.nan, np.float64)
    return column


def filled(shape: int | tuple[int, ...], value: Any, dtype: Any) -> Any:
    """``np.full``, at a third of its cost (a Python function: a one-record batch's detectors
    make a dozen such columns)."""
    out = np.empty(shape, dtype=dtype)
    out.fill(value)
    return out


def fmt_money(value: float) -> str:
    """Amounts the way reasons show them: 1,204.50."""
    return f"{value:,.2f}"


def fmt_seconds(seconds: float) -> str:
    """Durations the way reasons show them: 0.5 s, 42 s, 9.5 min, 3.2 h."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def decode_codes(tx: DetectorInput, column: str, codes: I32) -> pa.Array:
    """Text for integer codes of ``column`` (null for -1); the code itself if no dictionary."""
    names = tx.decode.get(column)
    if isinstance(names, KeySpace):
        return names.texts(codes)
    if isinstance(names, pa.Array):
        return names.take(pa.array(codes, pa.int32(), mask=codes < 0)).cast(pa.string())
    if names is None:
        text = np.array([None if c < 0 else str(c) for c in codes.tolist()], dtype=object)
        return pa.array(text, pa.string())
    lookup = np.array([*names, None], dtype=object)
    return pa.array(lookup[codes], pa.string())
