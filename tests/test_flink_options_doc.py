"""docs/flink.md's table names every option of `fraudstream run`, each with a verdict."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from fraudstream.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "flink.md"
HEADING = "### Every `fraudstream run` option on Flink"


def run_options() -> set[str]:
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    names = set()
    for parameter in command.params:
        names.update(o for o in parameter.opts if o.startswith("--") and o != "--help")
    return names


def table_rows() -> list[tuple[str, str]]:
    text = DOC.read_text()
    section = text[text.index(HEADING) :].split("\n### ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 2 and not cells[1].startswith("On Flink"):
            rows.append((cells[0], cells[1]))
    return rows


def test_every_run_option_has_a_row_saying_yes_or_why_not() -> None:
    rows = table_rows()
    named = {name for option, _ in rows for name in re.findall(r"--[a-z][a-z-]*", option)}
    assert run_options() <= named, sorted(run_options() - named)
    for option, verdict in rows:
        assert re.match(r"(yes|no|not yet|as `|JSON lines only|the defaults apply)", verdict), (
            option,
            verdict,
        )
        if not verdict.startswith("yes"):  # a no says why, or what to use instead
            assert ":" in verdict or "as `" in verdict, (option, verdict)
