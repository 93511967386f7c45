"""The running rules' history and live reload: an audit log and a rules-file watcher."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fraudstream.config import ConfigError
from fraudstream.rules.ruleset import RuleSet

__all__ = ["AuditLog", "RulesFileWatcher"]


class AuditLog:
    """Every change of the running rules: who, when, from where, and the before/after.

    One JSON object per line, appended and flushed at once, so the log survives a crash.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(
        self, who: str, source: str, before: RuleSet, after: RuleSet | None, note: str = ""
    ) -> None:
        """Appends one change (``after`` None: a change that was refused, with ``note``)."""
        self.append(
            who,
            source,
            {
                "before": before.to_document(),
                "after": after.to_document() if after is not None else None,
                "note": note,
            },
        )

    def append(self, who: str, source: str, fields: dict[str, object]) -> None:
        """Appends one entry: when, who, from where, then ``fields``."""
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "who": who,
            "source": source,
            **fields,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


class RulesFileWatcher:
    """Reloads a rules file when it changes, for a running pipeline (no restart).

    ``poll()`` is cheap (one ``stat`` per file); call it between micro-batches. The rules'
    list files (``lists: {name: {file: ...}}``) are watched too. A file that no longer parses
    (or a rule that no longer checks) keeps the rules that run and is logged as refused, with
    the reason.
    """

    def __init__(
        self,
        path: Path,
        apply: Callable[[RuleSet], None],
        current: RuleSet,
        audit: AuditLog | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.apply = apply
        self.current = current
        self.audit = audit
        self.on_error = on_error
        self._seen = self._stamp()

    def _stamp(self) -> tuple[tuple[int, int], ...] | None:
        files = [self.path, *(Path(x.file) for x in self.current.lists if x.file is not None)]
        stamps = []
        for path in files:
            try:
                stat = path.stat()
            except OSError:
                if path == self.path:
                    return None
                stamps.append((-1, -1))  # a list file gone: the reload names it
                continue
            stamps.append((stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)

    def poll(self) -> bool:
        """Applies the file if it changed since last time; True when new rules now run."""
        stamp = self._stamp()
        if stamp == self._seen or stamp is None:
            return False
        self._seen = stamp
        who = f"file:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'unknown'}"
        try:
            rules = RuleSet.load(self.path)
        except ConfigError as exc:
            if self.audit is not None:
                self.audit.record(who, str(self.path), self.current, None, f"refused: {exc}")
            if self.on_error is not None:
                self.on_error(f"rules not reloaded: {exc}")
            return False
        if rules == self.current:
            return False
        before, self.current = self.current, rules
        self._seen = self._stamp()  # the new rules may watch other list files
        self.apply(rules)
        if self.audit is not None:
            self.audit.record(who, str(self.path), before, rules)
        return True
