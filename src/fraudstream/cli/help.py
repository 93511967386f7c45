"""How ``--help`` shows an option's value: a word that reads (``PATH``, ``MS``, ``N``,
``jsonl|csv``) instead of typer's ``<int>``, ``<bool>`` after a flag or ``<list[str]>``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from typer.core import TyperArgument, TyperOption

__all__ = ["install_readable_metavars", "readable_metavar"]

# the unit a name ends in says more than the Python type
_UNITS = {"_ms": "MS", "_s": "SECONDS", "_seconds": "SECONDS", "_hours": "HOURS"}
_TYPES = {"int": "N", "float": "N", "Path": "PATH", "str": "TEXT", "bool": "BOOL"}
# where a run reads or writes: a file, or a URL (kafka://, s3://, sqlite:..., dynamodb://)
_LOCATIONS = {"input", "rules", "profiles", "decisions", "alerts", "enriched", "dead_letters"}
_LOCATIONS |= {"late", "store", "lakehouse", "checkpoint_dir", "ip_countries", "output"}
_LOCATIONS |= {"anonymous_networks", "to", "webhook"}
_NAMED = {"port": "PORT", "host": "HOST", "seed": "N", "store": "STORE", "sql": "SQL"}


def readable_metavar(
    name: str | None, python_type: str, is_flag: bool = False, choices: Sequence[str] = ()
) -> str | None:
    """The word ``--help`` shows after an option (None after a flag): the option's choices,
    its unit, else what its Python type reads as.

    >>> readable_metavar("out_of_orderness_ms", "int"), readable_metavar("count", "int")
    ('MS', 'N')
    >>> readable_metavar("quiet", "bool", is_flag=True) is None
    True
    >>> readable_metavar("format", "InputFormat", choices=["jsonl", "csv"])
    'jsonl|csv'
    >>> readable_metavar("rules", "Path"), readable_metavar("input", "str")
    ('PATH', 'PATH|URL')
    >>> readable_metavar("group_id", "str")
    'TEXT'
    >>> readable_metavar("allowed_host", "list[str]")
    'TEXT'
    """
    if is_flag:
        return None
    name = name or ""
    if choices:
        return "|".join(choices)
    for suffix, unit in _UNITS.items():
        if name.endswith(suffix):
            return unit
    if name in _NAMED:
        return _NAMED[name]
    if name in _LOCATIONS and python_type == "str":
        return "PATH|URL"
    inner = python_type.removeprefix("list[").removesuffix("]")
    return _TYPES.get(inner, "TEXT")


def _option_metavar(self: TyperOption, ctx: Any) -> str | None:
    if self.metavar is not None:
        return self.metavar or None
    described = self.type_descriptor
    choices = [str(choice) for choice in described.choices or ()] if described.is_choice else []
    if described.is_path:
        python_type = "Path"
    else:
        python_type = self.bare_type()
    shown = readable_metavar(self.name, python_type, bool(self.is_flag), choices)
    if shown is not None and described.is_list:
        shown += "..."  # repeatable
    return shown


def _argument_metavar(self: TyperArgument, ctx: Any) -> str | None:
    return None  # an argument's name (SQL, TX_ID) is already shown in capitals


def install_readable_metavars() -> None:
    """Makes every typer option in this process show :func:`readable_metavar`'s word."""
    patched: Any = TyperOption
    patched.display_type_rich = _option_metavar
    patched = TyperArgument
    patched.display_type_rich = _argument_metavar
