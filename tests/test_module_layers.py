"""Who may import whom: the ``cli`` package is the command line only; the web app, the Flink
job and the core build pipelines from ``fraudstream.assembly`` and never import it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "fraudstream"
CORE = ["schema.py", "decide.py", "detectors", "rules", "engine", "assembly.py"]


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports are not used here)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sources(*parts: str) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        path = SRC / part
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


@pytest.mark.parametrize("area", ["web", "flink", *CORE])
def test_no_command_line_code_outside_the_cli(area: str) -> None:
    for path in sources(area):
        cli = {
            name
            for name in imported_modules(path)
            if name in ("fraudstream.cli", "fraudstream.model_cli")
            or name.startswith("fraudstream.cli.")
        }
        assert not cli, f"{path.relative_to(SRC)} imports {sorted(cli)}"


@pytest.mark.parametrize("area", CORE)
def test_the_core_imports_no_io_web_or_flink(area: str) -> None:
    for path in sources(area):
        outer = {
            name
            for name in imported_modules(path)
            if name.startswith(("fraudstream.io", "fraudstream.web", "fraudstream.flink"))
        }
        assert not outer, f"{path.relative_to(SRC)} imports {sorted(outer)}"
