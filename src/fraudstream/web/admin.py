"""Rules and profiles, changed while the pipeline runs: no restart, every change audited.

* ``GET /v1/rules``: the running rule set, each rule with its effective thresholds (defaults
  filled in) and the decision thresholds; ``GET /v1/rules/file``: the same as a rules file
  (YAML) to keep; ``GET /v1/rules/audit``: the changes, newest first.
* ``PATCH /v1/rules/{rule_id}`` (token): ``enabled``, ``score``, ``severity`` and/or
  ``thresholds``; ``PATCH /v1/rules`` (token): the global ``review_threshold`` /
  ``decline_threshold``. A change is validated exactly like a rules file entry
  (:func:`fraudstream.rules.replace_rule`), applied with :meth:`Pipeline.apply_rules` between
  two batches (detector state survives), and logged by :class:`fraudstream.rules.AuditLog`
  with who, when and the before/after. A refused change (409: review above decline, a
  threshold the rule does not have) is logged too, with the reason; a body that breaks the
  documented schema is a 422.
* User rules (``when`` expressions): :mod:`fraudstream.web.user_rules`.
* ``GET /v1/profiles``, ``GET /v1/profiles/{user_id}``, ``PUT /v1/profiles/{user_id}``
  (token): the profiles; a change (fields given replace, ``null`` clears) takes effect for
  the next transaction, and is logged (``profiles.audit.jsonl``).

The audit logs are JSON lines in the app's data directory (kept in memory without one).
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParameter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from fraudstream.config import ConfigError
from fraudstream.detectors import RULE_FAMILY
from fraudstream.profiles import PROFILE_FIELDS
from fraudstream.rules import AuditLog, RuleSet, replace_rule
from fraudstream.rules.changes import changes_between, effective_rules
from fraudstream.rules.versions import RuleVersions
from fraudstream.web.guard import ReadAccess, json_response
from fraudstream.web.schemas import ErrorBody, Profile, ProfileAudit, RuleAudit, RulesShown
from fraudstream.web.service import DecisionService, error_body

__all__ = ["Admin", "Change", "admin_router", "changes_between", "effective_rules"]

AUDIT_KEPT = 500
_NOT_CHANGES = frozenset({"/v1/rules/validate", "/v1/rules/backtest"})  # they apply nothing


class YamlText(Response):
    """A YAML document (documented as ``application/yaml``)."""

    media_type = "application/yaml"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _tail(path: Path | None, keep: int) -> list[dict[str, Any]]:
    if path is None or not path.is_file():
        return []
    lines: deque[str] = deque(maxlen=keep)
    with path.open(encoding="utf-8") as handle:
        lines.extend(line for line in handle if line.strip())
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _rules_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """An audit-file entry as shown: who, when, what changed (before/after as effective)."""
    shown = {k: entry.get(k) for k in ("at", "who", "source", "note")}
    try:
        before = effective_rules(RuleSet.from_document(entry["before"]))
        after = entry.get("after")
        if after is None:
            shown["changes"] = []
            shown["refused"] = True
        else:
            shown["changes"] = changes_between(
                before, effective_rules(RuleSet.from_document(after))
            )
            shown["refused"] = False
    except (ConfigError, KeyError, TypeError):
        shown |= {"changes": [], "refused": entry.get("after") is None}
    return shown


class Admin:
    """Live changes of the pipeline's rules and profiles, with their audit trails."""

    def __init__(self, service: DecisionService, data_dir: Path | None) -> None:
        self.service = service
        self.pipeline = service.pipeline
        self.lock: threading.Lock = service.lock  # never mid-batch
        self.scrub = service.decoder.tokenize.scrub  # card numbers in who/note: tokens
        rules_path = data_dir / "rules.audit.jsonl" if data_dir is not None else None
        self.profiles_path = data_dir / "profiles.audit.jsonl" if data_dir is not None else None
        self.rules_log = AuditLog(rules_path) if rules_path is not None else None
        # Every rule set applied is a numbered version (kept next to the audit log); the
        # rules the app starts with are one (the latest again when they did not change).
        versions_path = data_dir / "rules.versions.jsonl" if data_dir is not None else None
        with self.lock:
            self.pipeline.versions = RuleVersions(versions_path)
            self.pipeline.apply_rules(self.pipeline.rules, "start", "serve")
        self.hits: Counter[str] = Counter()  # live and shadow rules' hits since the start
        service.listeners.append(self._count_hits)
        self.rules_audit: deque[dict[str, Any]] = deque(
            (_rules_entry(e) for e in _tail(rules_path, AUDIT_KEPT)), maxlen=AUDIT_KEPT
        )
        self.profiles_audit: deque[dict[str, Any]] = deque(
            _tail(self.profiles_path, AUDIT_KEPT), maxlen=AUDIT_KEPT
        )

    # --- rules ---------------------------------------------------------------------------

    def rules(self) -> dict[str, Any]:
        """The running rules, as shown, each with its hits, and the version in force."""
        shown = effective_rules(self.pipeline.rules)
        for rule in (*shown["rules"], *shown["user_rules"]):
            rule["hits"] = self.hits.get(rule["id"], 0)
        shown["version"] = self.pipeline.rule_version
        return shown

    def _count_hits(self, rows: list[dict[str, Any]], _summaries: list[dict[str, Any]]) -> None:
        hits = self.hits
        for row in rows:
            for reason in row["reasons"]:
                hits[reason["rule"]] += 1
            for reason in row.get("shadow_reasons", ()):
                hits[reason["rule"]] += 1

    def change(
        self, make: Callable[[RuleSet], RuleSet], who: str, note: str, source: str = "web"
    ) -> RuleSet:
        """Applies ``make(current)`` to the running pipeline as a new rule version;
        ConfigError when refused (audited as refused)."""
        who, note = self.scrub(who), self.scrub(note)  # audit logs hold no card number
        with self.lock:
            before = self.pipeline.rules
            try:
                after = make(before)
            except ConfigError as exc:
                self._audit(who, before, None, f"refused: {exc}", source)
                raise
            if after != before:
                self.pipeline.apply_rules(after, who, source, note)
                self._audit(who, before, after, note, source)
            return after

    def refuse(self, who: str, note: str) -> None:
        """Audits a change refused before it reached the rules (a body the schema refuses)."""
        with self.lock:
            self._audit(self.scrub(who), self.pipeline.rules, None, self.scrub(note))

    def refused_request(self, request: Any, body: Any, detail: list[dict[str, Any]]) -> None:
        """Audits a rule change whose body the schema refused (a 422 before any rule code
        ran): who (from the body, when it says), and why."""
        path = request.url.path
        changes_rules = path == "/v1/rules" or (
            path.startswith("/v1/rules/") and path not in _NOT_CHANGES
        )
        if request.method not in ("PATCH", "PUT", "DELETE", "POST") or not changes_rules:
            return
        who = body.get("who") if isinstance(body, dict) else None
        who = who if isinstance(who, str) and who else request.query_params.get("who") or "?"
        why = "; ".join(f"{d['field']}: {d['message']}" for d in detail)
        self.refuse(who[:64], f"refused: {request.method} {path}: {why}")

    def versions(self) -> list[dict[str, Any]]:
        """Every rule version, newest first, the one in force marked ``current``."""
        current = self.pipeline.rule_version
        return [
            {**entry, "current": entry["version"] == current}
            for entry in self.pipeline.versions.history()
        ]

    def rollback(self, version: int, who: str, note: str) -> RuleSet:
        """Applies rule version ``version`` again (a new version); ConfigError when there is
        no such version (audited as refused). Detector and window state are kept."""
        why = f"rollback to version {version}" + (f": {note}" if note else "")
        return self.change(
            lambda _current: self.pipeline.versions.rules(version), who, why, "rollback"
        )

    def _audit(
        self, who: str, before: RuleSet, after: RuleSet | None, note: str, source: str = "web"
    ) -> None:
        if self.rules_log is not None:
            self.rules_log.record(who, source, before, after, note)
        entry: dict[str, Any] = {"at": _now(), "who": who, "source": source, "note": note}
        entry["before"] = before.to_document()
        entry["after"] = after.to_document() if after is not None else None
        self.rules_audit.append(_rules_entry(entry))

    # --- profiles ------------------------------------------------------------------------

    def profiles(self) -> list[dict[str, Any]]:
        """Every profile, users in natural order (user_2 before user_10)."""
        found = self.pipeline.profiles.profiles
        return [found[k] for k in sorted(found, key=_natural)]

    def upsert_profile(
        self, user_id: str, fields: dict[str, Any], who: str, note: str
    ) -> dict[str, Any]:
        """Creates or changes a profile for the next transaction; ConfigError when invalid."""
        who, note = self.scrub(who), self.scrub(note)  # audit logs hold no card number
        with self.lock:
            table = self.pipeline.profiles
            before = table.get(user_id)
            merged = dict.fromkeys(PROFILE_FIELDS) | (_clean_nan(before) or {}) | fields
            merged["user_id"] = user_id
            after = table.upsert(merged)
            entry: dict[str, Any] = {"at": _now(), "who": who, "user_id": user_id, "note": note}
            entry |= {"before": _clean_nan(before), "after": _clean_nan(after)}
            if self.profiles_path is not None:
                self.profiles_path.parent.mkdir(parents=True, exist_ok=True)
                with self.profiles_path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry, allow_nan=False, default=str) + "\n")
            self.profiles_audit.append(entry)
            return after


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


class Change(BaseModel):
    """Who makes a change, and a note for the audit log."""

    # Strict: a number is a JSON number, text is a JSON string, as the schema says (pydantic
    # would otherwise take false for 0.0 and "1" for 1.0).
    model_config = ConfigDict(strict=True)

    who: str = Field(min_length=1, max_length=64, description="who makes the change")
    note: str = Field(default="", max_length=2000)


class RuleChange(Change):
    """What to change in one rule (fields left out stay)."""

    enabled: bool | None = None
    mode: Literal["live", "shadow"] | None = None
    score: float | None = Field(default=None, ge=0, le=1)
    severity: Literal["low", "medium", "high", "critical"] | None = None
    thresholds: dict[str, bool | int | float] | None = None


class DecisionChange(Change):
    """The global decision thresholds (fields left out stay)."""

    review_threshold: float | None = Field(default=None, ge=0, le=1)
    decline_threshold: float | None = Field(default=None, ge=0, le=1)


class ProfileChange(Change):
    """Profile fields to set; ``null`` clears one; fields left out stay."""

    first_name: str | None = Field(default=None, max_length=128)
    last_name: str | None = Field(default=None, max_length=128)
    max_speed_kmh: float | None = Field(default=None, ge=0)
    home_lat: float | None = Field(default=None, ge=-90, le=90)
    home_lon: float | None = Field(default=None, ge=-180, le=180)
    home_country: str | None = Field(default=None, max_length=64)
    review_threshold: float | None = Field(default=None, ge=0, le=1)
    decline_threshold: float | None = Field(default=None, ge=0, le=1)


def _like(default: Any, value: Any) -> Any:
    """A JSON number as the threshold's own type (150 for a float threshold is 150.0)."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _clean_nan(profile: dict[str, Any] | None) -> dict[str, Any] | None:
    if profile is None:
        return None
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in profile.items()}


# A well-formed change the running rules refuse (review above decline, a threshold the
# rule's detector does not have): it depends on the rule set, so 409, not 422.
_REFUSED = {"model": ErrorBody, "description": "the running rules refuse the change (why)"}


def admin_router(admin: Admin, authorized: Callable[..., None], reads: ReadAccess) -> APIRouter:
    """Rules and profiles: reads as ``reads`` says, changes with the token."""
    router = APIRouter(tags=["admin"])
    changes = [Depends(authorized)]

    @router.get(
        "/v1/rules",
        response_model=RulesShown,
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="The running rules with their effective thresholds",
    )
    async def rules() -> Response:
        return json_response(200, admin.rules())

    @router.get(
        "/v1/rules/file",
        dependencies=reads.dependencies,
        summary="The running rules as a rules file (YAML)",
        response_class=YamlText,
        responses={
            **reads.responses,
            200: {
                "content": {
                    "application/yaml": {
                        "schema": {"type": "object", "required": ["decision", "rules"]}
                    }
                }
            },
        },
    )
    async def rules_file() -> Response:
        text = yaml.safe_dump(admin.pipeline.rules.to_document(), sort_keys=False)
        return YamlText(text)

    @router.get(
        "/v1/rules/audit",
        response_model=list[RuleAudit],
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="Changes of the running rules, newest first",
    )
    async def rules_audit(limit: int = Query(100, ge=1, le=AUDIT_KEPT)) -> Response:
        return json_response(200, list(reversed(admin.rules_audit))[:limit])

    @router.patch(
        "/v1/rules",
        response_model=RulesShown,
        summary="Change the decision thresholds",
        dependencies=changes,
        responses={409: _REFUSED},
    )
    async def change_decision(body: DecisionChange) -> Response:
        def make(current: RuleSet) -> RuleSet:
            document = current.to_document()
            for name in ("review_threshold", "decline_threshold"):
                value = getattr(body, name)
                if value is not None:
                    document["decision"][name] = value
            return RuleSet.from_document(document)

        try:
            admin.change(make, body.who, body.note)
        except ConfigError as exc:
            return json_response(409, error_body("decision", str(exc)))
        return json_response(200, admin.rules())

    @router.patch(
        "/v1/rules/{rule_id}",
        response_model=RulesShown,
        summary="Change one rule",
        dependencies=changes,
        responses={404: {"model": ErrorBody, "description": "no such rule"}, 409: _REFUSED},
    )
    async def change_rule(
        body: RuleChange,
        rule_id: str = PathParameter(examples=[rule.id for rule in admin.pipeline.rules.rules]),
    ) -> Response:
        if admin.pipeline.rules.get(rule_id) is None:
            return json_response(404, error_body("rule_id", f"no rule {rule_id!r}"))

        def make(current: RuleSet) -> RuleSet:
            rule = current.get(rule_id)
            assert rule is not None
            edits: dict[str, Any] = {
                name: getattr(body, name)
                for name in ("enabled", "mode", "score", "severity")
                if getattr(body, name) is not None
            }
            if body.thresholds is not None:
                defaults = RULE_FAMILY[rule.detector].thresholds_type()
                given = {
                    name: _like(getattr(defaults, name, None), value)
                    for name, value in body.thresholds.items()
                }
                edits["thresholds"] = dict(rule.thresholds) | given
            return replace_rule(current, rule_id, **edits)

        try:
            admin.change(make, body.who, body.note)
        except ConfigError as exc:
            field = "thresholds" if "threshold" in str(exc) else "rule"
            return json_response(409, error_body(field, str(exc)))
        return json_response(200, admin.rules())

    @router.get(
        "/v1/profiles",
        response_model=list[Profile],
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="Every user profile",
    )
    async def profiles() -> Response:
        return json_response(200, [_clean_nan(p) for p in admin.profiles()])

    @router.get(
        "/v1/profiles/audit",
        response_model=list[ProfileAudit],
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="Changes of profiles, newest first",
    )
    async def profiles_audit(limit: int = Query(100, ge=1, le=AUDIT_KEPT)) -> Response:
        return json_response(200, list(reversed(admin.profiles_audit))[:limit])

    @router.get(
        "/v1/profiles/{user_id}",
        response_model=Profile,
        dependencies=reads.dependencies,
        responses={**reads.responses, 404: {"model": ErrorBody, "description": "no such profile"}},
        summary="One user profile",
    )
    async def profile(user_id: str) -> Response:
        found = admin.pipeline.profiles.get(user_id)
        if found is None:
            return json_response(404, error_body("user_id", f"no profile for {user_id!r}"))
        return json_response(200, _clean_nan(found))

    @router.put(
        "/v1/profiles/{user_id}",
        summary="Create or change a profile",
        dependencies=changes,
        response_model=Profile,
    )
    async def put_profile(
        body: ProfileChange, user_id: str = PathParameter(min_length=1, max_length=128)
    ) -> Response:
        fields = {
            name: getattr(body, name)
            for name in body.model_fields_set
            if name in PROFILE_FIELDS and name != "user_id"
        }
        try:
            after = admin.upsert_profile(user_id, fields, body.who, body.note)
        except ConfigError as exc:
            named = next((f for f in PROFILE_FIELDS if f in str(exc)), "profile")
            return json_response(422, error_body(named, str(exc)))
        return json_response(200, _clean_nan(after))

    return router
