"""Rules are data (DESIGN.md): defaults, rules files, custom and disabled rules, round trips;
profiles with per-profile thresholds, loaded the same from YAML, JSON, CSV and Parquet."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from fraudstream.detectors import STANDARD_RULES
from fraudstream.engine.pipeline import Pipeline
from fraudstream.io.decode import Decoder
from fraudstream.io.records import decision_dicts
from fraudstream.profiles import PROFILE_FIELDS, ProfileTable
from fraudstream.rules import DEFAULT_SCORES, Rule, RuleSet
from fraudstream.schema import CardTokenizer
from fraudstream.simulate.demo import write_profiles

ROOT = Path(__file__).resolve().parents[1]
SEED_PROFILES = ROOT / "examples" / "profiles.yaml"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SEED_USERS = {
    "user_1": ("Lena", "Whitaker", 10.0),
    "user_2": ("Elias", "Monroe", 100.0),
    "user_3": ("Nina", "Langston", 1000.0),
    "user_4": ("Jordan", "Blake", 99999.0),
}


def decide(pipeline: Pipeline, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Decision records by transaction id, for rows run through the pipeline."""
    decoder = Decoder(CardTokenizer(b"test"))
    batch, dead = decoder.records(rows, list(range(1, len(rows) + 1)), [0.0] * len(rows))
    assert dead == [], [d.reason for d in dead]
    out: dict[str, dict[str, Any]] = {}
    for result in (pipeline.submit(batch, now_ms=0.0), pipeline.flush(now_ms=0.0)):
        assert len(result.late) == 0 and len(result.duplicates) == 0
        if result.decisions is not None and len(result.decisions):
            for record in decision_dicts(result.decisions):
                out[record["transaction_id"]] = record
    assert sorted(out) == sorted(r["transaction_id"] for r in rows)
    return out


def fired(decision: dict[str, Any]) -> list[str]:
    return [reason["rule"] for reason in decision["reasons"]]


def burst(
    card: str, count: int, step_ms: int, start: int = T0, **extra: Any
) -> list[dict[str, Any]]:
    return [
        {
            "transaction_id": f"{card}-{k}",
            "card_id": card,
            "timestamp": start + k * step_ms,
            "amount": 50.0,
            **extra,
        }
        for k in range(count)
    ]


def only(*enabled: str, extra: list[dict[str, Any]] | None = None) -> RuleSet:
    """A rule set with only ``enabled`` standard rules on (plus ``extra`` rules)."""
    rules = [{"id": rid, "enabled": rid in enabled} for rid in STANDARD_RULES]
    return RuleSet.from_document({"rules": rules + (extra or [])})


# --- defaults -------------------------------------------------------------------------------


def test_default_has_every_standard_rule_enabled_with_default_scores() -> None:
    rules = RuleSet.default()
    assert set(DEFAULT_SCORES) == set(STANDARD_RULES)
    assert [r.id for r in rules.rules] == list(DEFAULT_SCORES)
    for rule in rules.rules:
        assert rule.enabled, rule.id
        assert rule.detector == rule.id
        assert (rule.score, rule.severity) == DEFAULT_SCORES[rule.id]
        assert rule.thresholds == {}
    assert [r.id for r in rules.enabled()] == list(STANDARD_RULES)
    assert (rules.review_threshold, rules.decline_threshold) == (0.5, 0.9)


def test_default_pipeline_runs_every_rule_with_the_design_thresholds() -> None:
    pipeline = Pipeline(RuleSet.default())
    running = {rid for inst in pipeline.instances.values() for rid in inst.rule_ids.values()}
    assert running == set(STANDARD_RULES)
    t = {name: inst.detector.thresholds for name, inst in pipeline.instances.items()}
    assert (t["small_then_large"].small_amount, t["small_then_large"].large_amount) == (1.0, 500.0)
    assert t["small_then_large"].window_s == 60.0
    assert (t["velocity"].min_transactions, t["velocity"].window_s) == (5, 30.0)
    card_testing = t["card_testing"]
    assert (card_testing.max_amount, card_testing.min_transactions) == (2.0, 3)
    assert (card_testing.min_merchants, card_testing.window_s) == (3, 600.0)
    assert (t["card_history"].window_s, t["card_history"].multiplier) == (600.0, 8.0)


# --- rules files -------------------------------------------------------------------------------


def test_changing_one_threshold_leaves_the_others_at_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n- id: velocity\n  thresholds:\n    min_transactions: 7\n")
    rules = RuleSet.load(path)
    default = RuleSet.default()
    velocity = rules.get("velocity")
    assert velocity == Rule("velocity", "velocity", True, 0.45, "medium", {"min_transactions": 7})
    assert [r for r in rules.rules if r.id != "velocity"] == [
        r for r in default.rules if r.id != "velocity"
    ]
    assert (rules.review_threshold, rules.decline_threshold) == (0.5, 0.9)
    changed = Pipeline(rules)
    plain = Pipeline(default)
    for name, instance in changed.instances.items():
        if name == "velocity":
            assert instance.detector.thresholds == type(instance.detector.thresholds)(
                min_transactions=7, window_s=30.0
            )
        else:
            assert instance.detector.thresholds == plain.instances[name].detector.thresholds
    # behaviour: 5 within 30 s no longer fires, 7 do
    out = decide(changed, burst("c", 7, 2_000))
    assert ["velocity" in fired(out[f"c-{k}"]) for k in range(7)] == [False] * 6 + [True]


def test_changing_a_shared_family_threshold_keeps_the_partner_default(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": [{"id": "zip_mismatch", "thresholds": {"window_s": 60}}]}))
    pipeline = Pipeline(RuleSet.load(path))
    thresholds = pipeline.instances["card_history"].detector.thresholds
    assert (thresholds.window_s, thresholds.multiplier) == (60, 8.0)


def test_custom_velocity_rule_runs_its_own_instance() -> None:
    custom = {
        "id": "velocity_burst",
        "detector": "velocity",
        "score": 0.95,
        "severity": "high",
        "thresholds": {"min_transactions": 3, "window_s": 10},
    }
    rules = RuleSet.from_document({"rules": [custom]})
    assert rules.get("velocity_burst") is not None and rules.get("velocity") is not None
    pipeline = Pipeline(rules)
    # 0, 20, 21, 22, 23, 24 s: three within 10 s from 22 s on; five within 30 s from 23 s on
    times = [0, 20_000, 21_000, 22_000, 23_000, 24_000]
    rows = [
        {"transaction_id": f"v{k}", "card_id": "card-v", "timestamp": T0 + t, "amount": 40.0}
        for k, t in enumerate(times)
    ]
    out = decide(pipeline, rows)
    burst_fired = ["velocity_burst" in fired(out[f"v{k}"]) for k in range(6)]
    standard_fired = ["velocity" in fired(out[f"v{k}"]) for k in range(6)]
    assert burst_fired == [False, False, False, True, True, True]
    assert standard_fired == [False, False, False, False, True, True]
    third = out["v3"]
    reason = next(r for r in third["reasons"] if r["rule"] == "velocity_burst")
    assert "3" in reason["message"] and "10 s" in reason["message"], reason
    assert third["decision"] == "decline"  # its own score, 0.95
    assert third["features"]["velocity_burst.transactions_in_window"] == 3
    assert third["features"]["transactions_in_window"] == 4
    last = out["v5"]
    assert fired(last)[:2] == ["velocity_burst", "velocity"]  # strongest first


def test_disabled_rule_never_fires() -> None:
    rows = [
        {
            "transaction_id": f"d{k}",
            "card_id": "card-d",
            "timestamp": T0 + k * 500,
            "amount": 30.0,
            "zipcode": "10001" if k % 2 else "94105",
        }
        for k in range(12)
    ]
    enabled = decide(Pipeline(RuleSet.default()), rows)
    assert any("velocity" in fired(d) for d in enabled.values())
    assert any("zip_mismatch" in fired(d) for d in enabled.values())
    document = {
        "rules": [
            {"id": "velocity", "enabled": False},
            {"id": "zip_mismatch", "enabled": False},
        ]
    }
    disabled = decide(Pipeline(RuleSet.from_document(document)), rows)
    for decision in disabled.values():
        assert "velocity" not in fired(decision)
        assert "zip_mismatch" not in fired(decision)


def test_to_document_round_trips(tmp_path: Path) -> None:
    document = {
        "decision": {"review_threshold": 0.4, "decline_threshold": 0.85},
        "rules": [
            {"id": "velocity", "thresholds": {"min_transactions": 6, "window_s": 12.5}},
            {"id": "unusual_hour", "enabled": False},
            {"id": "geo_velocity", "score": 0.66, "severity": "critical",
             "thresholds": {"default_max_speed_kmh": 750.0}},
            {"id": "velocity_burst", "detector": "velocity", "score": 0.2, "severity": "low",
             "thresholds": {"min_transactions": 3}, "description": "three quick ones"},
        ],
    }  # fmt: skip
    for rules in (RuleSet.default(), RuleSet.from_document(document)):
        again = RuleSet.from_document(rules.to_document())
        assert again == rules
        assert again.to_document() == rules.to_document()
        yaml_path = tmp_path / "rules.yaml"
        yaml_path.write_text(yaml.safe_dump(rules.to_document(), sort_keys=False))
        assert RuleSet.load(yaml_path) == rules
        json_path = tmp_path / "rules.json"
        json_path.write_text(json.dumps(rules.to_document()))
        assert RuleSet.load(json_path) == rules


# --- profiles ------------------------------------------------------------------------------------


def test_per_profile_risk_thresholds() -> None:
    pipeline = Pipeline(only("velocity"))  # velocity alone scores 0.45
    for user, review, decline in (
        ("strict", 0.3, 0.4),
        ("watchful", 0.4, 0.9),
        ("relaxed", 0.95, 1.0),
    ):
        pipeline.profiles.upsert(
            {"user_id": user, "review_threshold": review, "decline_threshold": decline}
        )
    rows = []
    for user in ("strict", "watchful", "relaxed", "nobody"):
        rows += burst(f"card-{user}", 5, 1_000, user_id=user)
    out = decide(pipeline, rows)
    tiers = {user: out[f"card-{user}-4"]["decision"] for user in ("strict", "watchful", "relaxed")}
    tiers["nobody"] = out["card-nobody-4"]["decision"]
    assert tiers == {
        "strict": "decline",
        "watchful": "review",
        "relaxed": "approve",
        "nobody": "approve",  # the rule set's 0.5 / 0.9
    }
    for user in ("strict", "watchful", "relaxed", "nobody"):
        assert out[f"card-{user}-4"]["score"] == pytest.approx(0.45)
        assert out[f"card-{user}-0"]["decision"] == "approve"


def test_per_profile_max_speed_drives_geo_velocity() -> None:
    pipeline = Pipeline(only("geo_velocity"))
    assert pipeline.profiles.load(SEED_PROFILES) == 4
    # ~11.1 km north in 30 minutes: ~22 km/h, over Lena's 10 km/h, under Elias's 100 km/h
    users = ("user_1", "user_2", "stranger")
    rows = [
        {
            "transaction_id": f"{user}-{step}",
            "card_id": f"card-{user}",
            "user_id": user,
            "timestamp": T0 + offset,
            "amount": 5.0,
            "lat": lat,
            "lon": -0.12,
        }
        for step, offset, lat in (("a", 0, 51.5), ("b", 1_800_000, 51.6))
        for user in users
    ]  # fmt: skip  (in event-time order)
    out = decide(pipeline, rows)
    assert fired(out["user_1-b"]) == ["geo_velocity"]
    assert fired(out["user_2-b"]) == []
    assert fired(out["stranger-b"]) == []  # the configured default speed
    assert out["user_1-b"]["features"]["max_speed_kmh"] == 10.0
    assert out["user_1-b"]["features"]["first_name"] == "Lena"
    assert out["user_2-b"]["features"]["last_name"] == "Monroe"
    assert "Lena" not in json.dumps(out["stranger-b"])


def _profiles_of(path: Path) -> dict[str, dict[str, Any]]:
    table = ProfileTable()
    assert table.load(path) == 4
    clean: dict[str, dict[str, Any]] = {}
    for user, profile in table.profiles.items():
        clean[user] = {
            k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in profile.items()
        }
    return clean


def test_profiles_from_yaml_json_csv_and_parquet_load_identically(tmp_path: Path) -> None:
    document = yaml.safe_load(SEED_PROFILES.read_text())
    rows = document["profiles"]
    as_json = tmp_path / "profiles.json"
    as_json.write_text(json.dumps({"profiles": rows}, indent=2))
    bare_json = tmp_path / "bare.json"
    bare_json.write_text(json.dumps(rows))
    as_csv = tmp_path / "profiles.csv"
    with as_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(PROFILE_FIELDS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in PROFILE_FIELDS})
    from_yaml = _profiles_of(SEED_PROFILES)
    assert {
        u: (p["first_name"], p["last_name"], p["max_speed_kmh"]) for u, p in from_yaml.items()
    } == (SEED_USERS)
    assert from_yaml["user_1"]["home_country"] == "GB"
    assert from_yaml["user_4"]["home_lat"] == pytest.approx(-33.8688)
    assert from_yaml["user_1"]["review_threshold"] is None
    as_parquet = write_profiles(tmp_path / "profiles.parquet", rows)
    for other in (as_json, bare_json, as_csv, as_parquet):
        assert _profiles_of(other) == from_yaml, other.name


def test_profile_upsert_takes_effect_for_the_next_transaction() -> None:
    pipeline = Pipeline(only("velocity"))
    first = decide(pipeline, burst("card-u", 5, 1_000, user_id="u"))
    assert first["card-u-4"]["decision"] == "approve"
    pipeline.profiles.upsert({"user_id": "u", "review_threshold": 0.1, "decline_threshold": 0.2})
    row = {"transaction_id": "card-u-5", "card_id": "card-u", "user_id": "u",
           "timestamp": T0 + 4_500, "amount": 50.0}  # fmt: skip
    later = decide(pipeline, [row])
    assert later["card-u-5"]["decision"] == "decline"


def test_custom_rule_named_like_a_detector_family_does_not_disable_standard_rules() -> None:
    """``card_history`` is the internal name of the zip_mismatch / amount_anomaly detector;
    a custom rule of that id must be refused or run beside them, never replace them."""
    from fraudstream.config import ConfigError

    document = {"rules": [{"id": "card_history", "detector": "velocity"}]}
    try:
        rules = RuleSet.from_document(document)
    except ConfigError:
        return
    pipeline = Pipeline(rules)
    running = {rid for inst in pipeline.instances.values() for rid in inst.rule_ids.values()}
    assert running == {*STANDARD_RULES, "card_history"}


def test_profile_names_follow_upserts_for_one_row_and_for_many() -> None:
    """A batch's first and last names: an authorization's few rows read them one by one, a
    large batch from Arrow columns of every name kept between batches; both follow an
    upsert that renames someone, and a restore that replaces the lists."""
    table = ProfileTable()
    for k in range(40):
        table.upsert({"user_id": f"u{k}", "first_name": f"F{k}", "last_name": f"L{k}"})
    slots = table.users.slots  # "nobody" has a user slot but no profile

    def names(users: list[str]) -> list[tuple[str | None, str | None]]:
        first, last = table.names(slots(pa.array(users, pa.string())))
        return list(zip(first.to_pylist(), last.to_pylist(), strict=True))

    many = [f"u{k}" for k in range(40)] + ["nobody"]
    assert names(["u3"]) == [("F3", "L3")] and names(["nobody"]) == [(None, None)]
    assert names(many) == [(f"F{k}", f"L{k}") for k in range(40)] + [(None, None)]
    table.upsert({"user_id": "u3", "first_name": "Ada", "last_name": "Byron"})
    assert names(["u3"]) == [("Ada", "Byron")]
    assert names(many)[3] == ("Ada", "Byron")
    table.first_names = [f"R{k}" for k in range(40)]  # as a checkpoint's restore does
    assert names(many)[5] == ("R5", "L5")
