"""The bounds a raw record must keep, whatever brings it: its size and how deeply it nests.

No byte sequence may stop a run (DESIGN.md), and two kinds of input could: a line so long
that holding it costs the memory of the whole run, and JSON nested so deeply that a parser
recurses off its stack. Arrow's JSON reader takes seconds for one line of 5,000 nested
arrays and crashes the process at 10,000; msgspec (like Python's ``json``) raises
``RecursionError`` near 1,000 levels. So every record is held to two named limits, and one
that breaks either becomes a dead letter saying which:

* ``max_record_bytes`` (default 64 KiB): a JSON line, a Kafka value or an API body's record,
  in bytes without its line end. A longer line is never held whole: a file or a pipe keeps
  only its first ``max_record_bytes + 1`` bytes and skips the rest up to its line end.
* ``max_depth`` (default 64): levels of objects and arrays, the record itself being level
  1 (``{"meta": {"tags": [1]}}`` nests 3 deep). Transactions are flat; an unknown field may
  hold a little structure, carried through to the enriched output.

The checks are cheap where input is plentiful: a block of lines goes to Arrow only after a
count of its opening brackets proves no line can nest past the limit (or, when the count
cannot, an exact scan of the lines it leaves in doubt); a line decoded on its own goes to
msgspec first and is looked at again (:func:`decode_record`) only if msgspec refuses it; a
valid record's unknown fields are measured without recursion (:func:`nests_deeper`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from fraudstream.schema import MAX_NESTING_DEPTH, MAX_RECORD_BYTES, InvalidRecord

__all__ = [
    "MAX_NESTING_DEPTH",
    "MAX_RECORD_BYTES",
    "RecordLimits",
    "decode_record",
    "json_depth",
    "nests_deeper",
]

_OPEN_BRACE, _OPEN_BRACKET = ord("{"), ord("[")
# A JSON string (escapes skipped whole) or a bracket; brackets inside strings do not nest.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """How large and how deeply nested one record may be (see the module doc).

    >>> RecordLimits().too_long(b"x" * 65_537), RecordLimits(max_depth=2).too_deep({"a": {}})
    (True, False)
    >>> RecordLimits(max_depth=0)
    Traceback (most recent call last):
    ...
    ValueError: the nesting limit must be at least 1 (the record itself), got 0
    """

    max_record_bytes: int = MAX_RECORD_BYTES
    max_depth: int = MAX_NESTING_DEPTH

    def __post_init__(self) -> None:
        if self.max_record_bytes < 1:
            raise ValueError(
                f"the record size limit must be at least 1 byte, got {self.max_record_bytes}"
            )
        if self.max_depth < 1:
            raise ValueError(
                f"the nesting limit must be at least 1 (the record itself), got {self.max_depth}"
            )

    @property
    def too_long_reason(self) -> str:
        """The dead-letter reason of a record over ``max_record_bytes``."""
        return f"record: longer than {self.max_record_bytes} bytes"

    @property
    def too_deep_reason(self) -> str:
        """The dead-letter reason of a record nested past ``max_depth``."""
        return f"record: nested deeper than {self.max_depth} levels"

    def too_long(self, line: bytes | bytearray | memoryview) -> bool:
        """Whether a raw record is over ``max_record_bytes``."""
        return len(line) > self.max_record_bytes

    def too_deep(self, value: Any) -> bool:
        """Whether a decoded record (dicts, lists, scalars) nests past ``max_depth``."""
        return nests_deeper(value, self.max_depth)

    def block_within(
        self, raw: np.ndarray[Any, Any], starts: np.ndarray[Any, Any], arrays: bool = True
    ) -> bool:
        """Whether no line of a block nests past ``max_depth``, for a block whose lines all
        start with ``{`` (``raw``: its bytes without the last line end; ``starts``: where
        each line starts; ``arrays``: whether the block holds a ``[`` at all).

        The line with the most brackets holds at most the block's count less one for each
        other line, so a flat feed is cleared by one count in numpy (no GIL held). Otherwise
        the lines are counted one by one, and those holding more brackets than the limit
        are scanned.

        >>> raw = np.frombuffer(b'{"a":1}\\n{"b":[[1]]}', dtype=np.uint8)
        >>> starts = np.array([0, 8])
        >>> [RecordLimits(max_depth=d).block_within(raw, starts) for d in (3, 2)]
        [True, False]
        """
        opens = int(np.count_nonzero(raw == _OPEN_BRACE))
        if arrays:
            opens += int(np.count_nonzero(raw == _OPEN_BRACKET))
        if opens - (len(starts) - 1) <= self.max_depth:
            return True
        at = np.flatnonzero((raw == _OPEN_BRACE) | (raw == _OPEN_BRACKET))
        bounds = np.append(starts, len(raw))
        per_line = np.diff(np.searchsorted(at, bounds))
        for line in np.flatnonzero(per_line > self.max_depth).tolist():
            text = raw[bounds[line] : bounds[line + 1]].tobytes()
            if json_depth(text, self.max_depth) > self.max_depth:
                return False
        return True


def json_depth(text: bytes, stop_after: int | None = None) -> int:
    """How deeply a JSON text nests objects and arrays (brackets in strings not counted);
    stops counting once past ``stop_after``. Malformed text gets an upper bound of what a
    parser would reach before it failed.

    >>> json_depth(b'{"a": [1, {"b": "]]}"}]}'), json_depth(b'"x"'), json_depth(b"[[[[", 2)
    (3, 0, 3)
    """
    depth = deepest = 0
    for token in _TOKENS.finditer(text):
        bracket = token.group()
        if bracket in (b"{", b"["):
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_after is not None and deepest > stop_after:
                    break
        elif bracket in (b"}", b"]"):
            depth = max(depth - 1, 0)
    return deepest


def nests_deeper(value: Any, max_depth: int, level: int = 1) -> bool:
    """Whether a decoded value (``level`` deep itself) holds a dict or list below
    ``max_depth``; iterative, so any depth is measured without recursing.

    >>> nests_deeper({"a": [[1]]}, 3), nests_deeper({"a": [[1]]}, 2), nests_deeper(5, 0)
    (False, True, False)
    """
    if not isinstance(value, dict | list):
        return False
    pending: list[tuple[Any, int]] = [(value, level)]
    while pending:
        container, depth = pending.pop()
        if depth > max_depth:
            return True
        children = container.values() if isinstance(container, dict) else container
        for child in children:
            if isinstance(child, dict | list):
                pending.append((child, depth + 1))
    return False


_json = msgspec.json.Decoder()
_BYTE_ORDER_MARK = b"\xef\xbb\xbf"


def decode_record(text: bytes, limits: RecordLimits) -> Any:
    """One raw JSON record (a line, a Kafka value, an API body) as Python values, or
    :class:`~fraudstream.schema.InvalidRecord` saying why not: too long, nested too deeply,
    not UTF-8, not JSON, a number no float or integer holds. A leading byte-order mark is
    ignored (RFC 8259 allows a parser that), so a file saved with one loses no record.

    Callers decoding many lines try msgspec on each first and come here for those it refuses
    (the reason, or a byte-order mark), so the lines that decode pay nothing for this.

    >>> decode_record(b'\\xef\\xbb\\xbf{"a": 1}', RecordLimits())
    {'a': 1}
    >>> for text in (b"[" * 2000, b'{"a": "\\xff"}', b'{"a": 1e400}', b'{"a": '):
    ...     try:
    ...         decode_record(text, RecordLimits())
    ...     except InvalidRecord as exc:
    ...         print(exc)
    record: nested deeper than 64 levels
    invalid UTF-8: byte 0xff at offset 7
    record: number out of range
    invalid JSON: Input data was truncated
    """
    if limits.too_long(text):
        raise InvalidRecord(limits.too_long_reason)
    if text.startswith(_BYTE_ORDER_MARK):
        text = text[len(_BYTE_ORDER_MARK) :]
    try:
        value = _json.decode(text)
    except RecursionError:
        raise InvalidRecord(limits.too_deep_reason) from None
    except UnicodeDecodeError:
        raise InvalidRecord(_utf8_reason(text)) from None
    except msgspec.ValidationError as exc:  # valid JSON, but a number beyond any type
        message = str(exc).split(" - at ", 1)[0]
        raise InvalidRecord(f"record: {message[:1].lower()}{message[1:]}") from None
    except msgspec.DecodeError as exc:
        if json_depth(text, limits.max_depth) > limits.max_depth:
            raise InvalidRecord(limits.too_deep_reason) from None
        raise InvalidRecord(f"invalid JSON: {exc}") from None
    if limits.too_deep(value):
        raise InvalidRecord(limits.too_deep_reason)
    return value


def _utf8_reason(text: bytes) -> str:
    """Where a text stops being UTF-8, in the words Python's codec finds."""
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8: byte 0x{text[exc.start]:02x} at offset {exc.start}"
    return "invalid UTF-8"
