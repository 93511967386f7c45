"""``fraudstream rules history`` and ``fraudstream rules rollback N``: the numbered versions
of a rules file's rule sets (``RULES.versions.jsonl``, written by ``run`` and by rollbacks)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fraudstream.cli.common import err, fail
from fraudstream.config import ConfigError

__all__ = ["rules_app"]

rules_app = typer.Typer(
    name="rules",
    help="Rule versions: every rule set applied, with who, when and what changed.",
    no_args_is_help=True,
)

RulesFile = Annotated[Path, typer.Option("--rules", help="The rules file a run watches.")]
VersionsFile = Annotated[
    Path | None,
    typer.Option(help="The versions file (default: RULES.versions.jsonl next to it)."),
]


def _versions_path(rules: Path, versions: Path | None) -> Path:
    return versions if versions is not None else rules.with_name(rules.name + ".versions.jsonl")


@rules_app.command("history", epilog="Example: fraudstream rules history --rules rules.yaml")
def history(
    rules: RulesFile,
    versions: VersionsFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout.")] = False,
) -> None:
    """Every version of the rules, newest first: number, when, who, from where, the diff."""
    from fraudstream.rules.versions import RuleVersions

    path = _versions_path(rules, versions)
    if not path.is_file():
        fail(f"{path}: no versions yet (a run with --rules {rules} writes them)")
        return
    entries = RuleVersions(path).history()
    if as_json:
        for entry in entries:
            typer.echo(json.dumps(entry))
        return
    table = Table(title=f"rule versions of {rules}", title_justify="left")
    for column in ("version", "at", "who", "source", "changes"):
        table.add_column(column, justify="right" if column == "version" else "left")
    for entry in entries:
        changes = "\n".join(entry["changes"]) or ("first version" if entry["version"] == 1 else "")
        if entry.get("note"):
            changes += f"\n({entry['note']})"
        table.add_row(str(entry["version"]), entry["at"], entry["who"], entry["source"], changes)
    err.print(table)


@rules_app.command("rollback", epilog="Example: fraudstream rules rollback 3 --rules rules.yaml")
def rollback(
    version: Annotated[int, typer.Argument(help="The version to apply again.")],
    rules: RulesFile,
    versions: VersionsFile = None,
    audit_log: Annotated[
        Path | None,
        typer.Option(help="Where rules changes are logged (default: RULES.audit.jsonl)."),
    ] = None,
    who: Annotated[str | None, typer.Option(help="Who rolls back (default: $USER).")] = None,
    note: Annotated[str, typer.Option(help="Why, for the audit log.")] = "",
) -> None:
    """Apply version N again: the rules file is rewritten with it (a running `run` reloads
    it, keeping its detector state) and the rollback becomes the newest version."""
    from fraudstream.rules import AuditLog, RuleSet
    from fraudstream.rules.versions import RuleVersions, version_document

    name = who or f"cli:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'unknown'}"
    log = AuditLog(audit_log or rules.with_name(rules.name + ".audit.jsonl"))
    path = _versions_path(rules, versions)
    registry = RuleVersions(path)
    try:
        before = RuleSet.load(rules)
    except ConfigError:  # the file is broken or gone: the last version applied
        before = registry.rules(registry.latest) if registry.latest else RuleSet.default()
    try:
        target = registry.rules(version)
    except ConfigError as exc:
        log.record(name, "rollback", before, None, f"refused: {exc}")
        fail(str(exc))
        return
    why = f"rollback to version {version}" + (f": {note}" if note else "")
    document = json.loads(json.dumps(version_document(target)))  # tuples as lists
    import yaml

    temporary = rules.with_name(f".{rules.name}.rollback")
    temporary.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    os.replace(temporary, rules)  # a watcher never reads half a file
    number = registry.record(target, name, "rollback", why)
    log.record(name, "rollback", before, target, why)
    err.print(f"rules file {rules} is version {version} again, recorded as version {number}")
