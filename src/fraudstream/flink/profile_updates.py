"""User profiles changed while the keyed job runs: the ``users-config`` stream on Flink.

::

  FileSource (a watched directory: each new file, profiles as JSON lines)
    -> ProfileUpserts (checked, audited; parallelism 1)
       -> broadcast with the rules versions (flink.rules_broadcast) -> card and user operators

Each line is one profile, the fields of :mod:`fraudstream.profiles` (as a message of
``fraudstream run --profiles-topic``); a later one for a user replaces the earlier (an
upsert) and takes effect for that user's records released after it reaches the operator,
as the embedded runtime applies a topic's profiles between micro-batches. A line that is not
JSON or fails validation is refused, never applied half-way. Each accepted or refused line
is appended to the audit log (``DIR.audit.jsonl`` by default), the operators keep the
profiles in broadcast state, so a restored or rescaled job has them again.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyflink.common import Duration
from pyflink.datastream import ProcessFunction
from pyflink.datastream.connectors.file_system import FileSource, StreamFormat

from fraudstream.config import ConfigError
from fraudstream.flink.functions import PICKLED
from fraudstream.flink.uris import to_uri
from fraudstream.profiles import normalise_profile
from fraudstream.rules import AuditLog

PROFILE = "profile"  # the broadcast tag of a profile upsert (rules versions: "rules")
WATCH_MS = 1_000  # how often the directory is listed for new files
WHO = "flink:profiles-updates"

__all__ = ["PROFILE", "ProfileUpserts", "profile_upserts"]


def profile_upserts(env: Any, directory: str, audit_log: str, never_late: Any) -> Any:
    """The stream of checked profile upserts read from ``directory`` (pickled
    ``(PROFILE, profile)``), at parallelism 1; ``never_late``: its watermark strategy."""
    files = (
        FileSource.for_record_stream_format(StreamFormat.text_line_format(), to_uri(directory))
        .monitor_continuously(Duration.of_millis(WATCH_MS))
        .build()
    )
    return (
        env.from_source(files, never_late, "profiles updates")
        .uid("fraudstream-profiles-source")
        .set_parallelism(1)
        .process(ProfileUpserts(directory, audit_log), output_type=PICKLED)
        .set_parallelism(1)
        .name("profile upserts (checked, audited)")
        .uid("fraudstream-profile-upserts")
    )


class ProfileUpserts(ProcessFunction):  # type: ignore[misc]
    """Each line a profile (JSON): a valid one goes on, normalised; one that does not check
    is refused. Both are logged."""

    def __init__(self, directory: str, audit_log: str) -> None:
        self.directory = directory
        self.audit_log = audit_log

    def process_element(self, value: str, ctx: Any) -> Iterator[bytes]:
        if not value.strip():
            return
        try:
            raw = json.loads(value)
            if not isinstance(raw, dict):
                raise ConfigError("a profile is a JSON object")
            profile = normalise_profile(raw)
        except (ConfigError, ValueError, TypeError, RecursionError) as exc:
            self._audit(None, f"refused: {exc}")
            return
        self._audit(profile, "")
        yield pickle.dumps((PROFILE, profile))

    def _audit(self, profile: dict[str, Any] | None, note: str) -> None:
        shown = {k: _json_safe(v) for k, v in profile.items()} if profile else None
        AuditLog(Path(self.audit_log)).append(WHO, self.directory, {"profile": shown, "note": note})


def _json_safe(value: Any) -> Any:
    """NaN (a number the profile leaves out) as null."""
    return None if isinstance(value, float) and value != value else value
