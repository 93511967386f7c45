"""Rule versions: every rule set applied to a pipeline, numbered, with who, when and the diff.

A versions file is JSON lines next to the audit log (``RULES.versions.jsonl`` beside
``RULES.audit.jsonl``; ``rules.versions.jsonl`` in the web app's data directory), one entry
per version::

    {"version": 3, "at": "...", "who": "web:ana", "source": "web", "note": "...",
     "changes": ["velocity.mode: 'live' -> 'shadow'"], "rules": {<the rules document>}}

``rules`` holds the whole rule set with its lists' values inline, so a version can be
applied again exactly (:meth:`RuleVersions.rules`, a rollback) even after a list file changed.
Recording a rule set equal to the latest version records nothing and returns that version's
number: a reload of a rules file that a rollback just wrote keeps the rollback's entry.
Every decision carries the number of the version that decided it (``rule_version``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraudstream.config import ConfigError
from fraudstream.rules.changes import rule_changes
from fraudstream.rules.ruleset import RuleSet

__all__ = ["RuleVersions", "version_document", "versions_path_for"]


def version_document(rules: RuleSet) -> dict[str, Any]:
    """The rules document a version keeps: list files' values inline.

    >>> version_document(RuleSet.default())["decision"]
    {'review_threshold': 0.5, 'decline_threshold': 0.9}
    """
    document = rules.to_document()
    if rules.lists:
        document["lists"] = {x.name: list(x.values) for x in rules.lists}
    return document


def _canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True)


def versions_path_for(audit_log: Path) -> Path:
    """The versions file kept next to an audit log.

    >>> versions_path_for(Path("rules.yaml.audit.jsonl")).name
    'rules.yaml.versions.jsonl'
    """
    name = audit_log.name.removesuffix(".jsonl").removesuffix(".audit")
    return audit_log.with_name(f"{name}.versions.jsonl")


class RuleVersions:
    """The numbered versions of a pipeline's rules (in memory when ``path`` is None)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = []
        self._read = 0  # bytes of the file read so far
        self.refresh()

    def refresh(self) -> None:
        """Reads versions another process appended (``fraudstream rules rollback`` while a
        run is going), so numbers never repeat."""
        if self.path is None or not self.path.is_file():
            return
        with self.path.open("rb") as handle:
            handle.seek(self._read)
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # being written: read it next time
                self._read += len(line)
                try:
                    entry = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # a line cut by a crash: the versions before it stand
                if isinstance(entry, dict) and isinstance(entry.get("version"), int):
                    self.entries.append(entry)

    @property
    def latest(self) -> int:
        """The latest version's number (0: none yet)."""
        return int(self.entries[-1]["version"]) if self.entries else 0

    def record(self, rules: RuleSet, who: str, source: str, note: str = "") -> int:
        """Numbers ``rules`` as the next version (unless it equals the latest): its number."""
        self.refresh()
        document = version_document(rules)
        if self.entries and _canonical(self.entries[-1]["rules"]) == _canonical(document):
            return self.latest
        changes = rule_changes(self.rules(self.latest), rules) if self.entries else []
        entry = {
            "version": self.latest + 1,
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "who": who,
            "source": source,
            "note": note,
            "changes": changes,
            "rules": document,
        }
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = (json.dumps(entry) + "\n").encode()
            with self.path.open("ab") as handle:
                handle.write(line)
            self._read += len(line)
        self.entries.append(entry)
        return self.latest

    def entry(self, version: int) -> dict[str, Any]:
        """The entry of ``version``; ConfigError naming the versions there are."""
        for entry in self.entries:
            if entry["version"] == version:
                return entry
        known = f"1..{self.latest}" if self.entries else "none yet"
        raise ConfigError(f"no rule version {version} (versions: {known})")

    def rules(self, version: int) -> RuleSet:
        """The rule set of ``version``, to apply again."""
        return RuleSet.from_document(self.entry(version)["rules"])

    def history(self) -> list[dict[str, Any]]:
        """Every version without its rules document, newest first."""
        return [{k: v for k, v in e.items() if k != "rules"} for e in reversed(self.entries)]
