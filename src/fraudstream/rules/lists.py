"""Named lists a rule tests with ``x in list('name')``: inline, or a file of one value a line.

In the rules file::

    lists:
      blocked_devices: [d-666, d-667]          # inline
      risky_mcc: {file: lists/risky_mcc.txt}   # one value a line, relative to the rules file

Values are texts (``5944`` and ``'5944'`` are the same entry); a number tested against a list
compares with the entries that read as numbers. In a list file, blank lines and lines starting
with ``#`` are skipped. A running pipeline reloads the rules when a list file changes, like
the rules file itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudstream.config import ConfigError

__all__ = ["NamedList", "load_lists"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class NamedList:
    """A list's name, values and, when it comes from one, its file (absolute)."""

    name: str
    values: tuple[str, ...]
    file: str | None = None

    def to_document(self) -> Any:
        """Its entry in a rules file (a file list stays a file reference)."""
        return {"file": self.file} if self.file is not None else list(self.values)


def load_lists(section: Any, base: Path | None = None) -> tuple[NamedList, ...]:
    """The ``lists:`` section; raises ConfigError naming the list.

    >>> [(x.name, x.values) for x in load_lists({"blocked": ["d-1", 7]})]
    [('blocked', ('d-1', '7'))]
    """
    if section is None:
        return ()
    if not isinstance(section, dict):
        raise ConfigError("'lists' must be a mapping of name -> [values] or {file: path}")
    out = []
    for name, spec in section.items():
        where = f"list '{name}'"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}: a list name is letters, digits, _ . -")
        if isinstance(spec, list):
            if any(isinstance(v, dict | list) or v is None for v in spec):
                raise ConfigError(f"{where}: values must be texts or numbers")
            out.append(NamedList(name, tuple(str(v) for v in spec)))
        elif isinstance(spec, dict) and set(spec) == {"file"}:
            path = Path(str(spec["file"])).expanduser()
            if not path.is_absolute() and base is not None:
                path = base / path
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{where}: cannot read {path}: {exc}") from None
            values = tuple(
                line.strip() for line in lines if line.strip() and not line.startswith("#")
            )
            out.append(NamedList(name, values, str(path.resolve())))
        else:
            raise ConfigError(f"{where}: write [values] or {{file: path}}")
    return tuple(out)
