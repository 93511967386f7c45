"""Prints the part of requirements.lock that fraudstream's core and the given extras need.

    python3 scripts/lock_subset.py web lake > demo-requirements.txt
    python3 scripts/lock_subset.py --package uv     # one pin (with its hashes) alone

The lock is compiled for every extra; its ``# via`` comments say which package pulled each
pin in. A pin is kept when one of its dependants is kept, starting from the core
dependencies and the extras named (so a package only the dev or flink extras need, such as
apache-flink's pandas and beam, is left out). The pins keep their hashes, so the subset
installs with ``pip install --require-hashes --no-deps``. Standard library only: it runs
before the virtual environment exists.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
SELF = "fraudstream"


def normalise(name: str) -> str:
    """PEP 503: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(text: str) -> dict[str, tuple[list[str], set[str]]]:
    """Each pin's lines and the packages that pulled it in (its ``# via`` names)."""
    pins: dict[str, tuple[list[str], set[str]]] = {}
    current = None
    in_via = False
    for line in text.splitlines():
        pinned = PIN.match(line)
        if pinned:
            current = normalise(pinned.group(1))
            pins[current] = ([line], set())
            in_via = False
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("--hash") or line.startswith("    --"):
            pins[current][0].append(line)
        elif stripped.startswith("# via"):
            in_via = True
            rest = stripped.removeprefix("# via").strip()
            if rest:
                pins[current][1].add(normalise(rest.split()[0]))
        elif in_via and stripped.startswith("#"):
            named = NAME.match(stripped.lstrip("#").strip())
            if named:
                pins[current][1].add(normalise(named.group(1)))
    return pins


def roots(extras: list[str]) -> set[str]:
    """The core dependencies and those of ``extras``, by name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    return {normalise(NAME.match(requirement).group(1)) for requirement in wanted}  # type: ignore[union-attr]


def subset(pins: dict[str, tuple[list[str], set[str]]], start: set[str]) -> list[str]:
    """The pins of ``start`` and, transitively, of every package they pulled in."""
    kept = {name for name in start if name in pins}
    grew = True
    while grew:
        grew = False
        for name, (_, via) in pins.items():
            if name not in kept and via & kept:
                kept.add(name)
                grew = True
    return [line for name in sorted(kept) for line in pins[name][0]]


def main() -> None:
    pins = read_lock((ROOT / "requirements.lock").read_text())
    if sys.argv[1:2] == ["--package"]:
        names = [normalise(name) for name in sys.argv[2:]]
        print("\n".join(line for name in names for line in pins[name][0]))
        return
    print("\n".join(subset(pins, roots(sys.argv[1:]))))


if __name__ == "__main__":
    main()
