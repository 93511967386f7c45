"""Pipeline assembly: the checked rules, profiles, time settings and IP reference a pipeline
is built from, shared by ``fraudstream run``, the web app and the Flink job (none of which
imports another's command-line code)."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from fraudstream.config import ConfigError

__all__ = [
    "DEFAULT_STATE_TTL_HOURS",
    "TimeMode",
    "build_pipeline",
    "file_editor",
    "pipeline_config",
    "state_ttl_ms",
]

# A card or user idle this long starts fresh, so memory stays bounded on an endless stream.
DEFAULT_STATE_TTL_HOURS = 720.0


class TimeMode(StrEnum):
    """Which clock the detectors use."""

    event = "event"
    processing = "processing"


def pipeline_config(
    rules: Path | None,
    profiles: Path | None,
    time_mode: TimeMode,
    out_of_orderness_ms: int,
    allowed_lateness_ms: int,
    idle_timeout_ms: int,
    ip_countries: Path | None,
    anonymous_networks: Path | None,
) -> tuple[Any, Any, Any, Any]:
    """The checked rule set, profiles, time settings and IP reference of a pipeline, as
    ``run`` builds them (``flink run`` builds its job from the same pieces)."""
    from fraudstream.engine.pipeline import TimeConfig
    from fraudstream.profiles import ProfileTable
    from fraudstream.reference import IpReference
    from fraudstream.rules import RuleSet

    rule_set = RuleSet.load(rules) if rules else RuleSet.default()
    table = ProfileTable()
    if profiles:
        table.load(profiles)
    for name, value in (
        ("--out-of-orderness-ms", out_of_orderness_ms),
        ("--allowed-lateness-ms", allowed_lateness_ms),
        ("--idle-timeout-ms", idle_timeout_ms),
    ):
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")
    reference = IpReference.default()
    if ip_countries or anonymous_networks:
        reference = IpReference.from_csv(ip_countries, anonymous_networks)
    time_config = TimeConfig(
        time_mode.value, out_of_orderness_ms, allowed_lateness_ms, idle_timeout_ms
    )
    return rule_set, table, time_config, reference


def build_pipeline(
    rules: Path | None,
    profiles: Path | None,
    time_mode: TimeMode,
    out_of_orderness_ms: int,
    allowed_lateness_ms: int,
    idle_timeout_ms: int,
    ip_countries: Path | None,
    anonymous_networks: Path | None,
    state_ttl_ms: int | None = None,
    versions: Any = None,
) -> Any:
    """The pipeline of :func:`pipeline_config`'s parts, its kernels compiled; with
    ``versions``, the rules file's set is recorded as the version a run started with."""
    from fraudstream.engine.pipeline import Pipeline, warm_up

    rule_set, table, time_config, reference = pipeline_config(
        rules, profiles, time_mode, out_of_orderness_ms, allowed_lateness_ms,
        idle_timeout_ms, ip_countries, anonymous_networks,
    )  # fmt: skip
    warm_up(rule_set)  # compile the kernels now, not on the first live record
    if versions is not None and rules is not None:  # numbered as the file's, not "start"
        versions.record(rule_set, file_editor(), str(rules), "the rules a run started with")
    return Pipeline(rule_set, table, time_config, reference, state_ttl_ms, versions)


def file_editor() -> str:
    """Who edits a rules file, as versions and the audit log name them: ``file:$USER``."""
    return f"file:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'unknown'}"


def state_ttl_ms(hours: float) -> int | None:
    """``--state-ttl-hours`` in milliseconds; 0 means never (None).

    >>> state_ttl_ms(1.5), state_ttl_ms(0)
    (5400000, None)
    """
    if hours < 0:
        raise ConfigError(f"--state-ttl-hours must be >= 0, got {hours}")
    return round(hours * 3_600_000) or None
