"""On a real standalone cluster: a JobManager and two TaskManagers (one slot each), separate
JVMs started from the distribution apache-flink ships, the job submitted with
``--target remote``.

- the sharded job at parallelism 2 runs its detector stages on both TaskManagers, each
  subtask getting the same number of shard parts, and decides exactly like the embedded run;
- the Flink walkthrough paced at 10 records/s into a live job in processing time alerts once
  on card 3's 871.15, with the decision store, a webhook, an alert command and the lakehouse
  each holding every decision (or the alert) once;
- a live job with a model and labels changes rules and a user's profile mid-stream
  (broadcast to every subtask) while labels become known, then stops with a savepoint and
  goes on restored from it: every decision (score, features, the model's reasons) is the
  embedded run's with the rules and profiles in force when it was decided;
- a live job (a watched directory: the keyed job, its lines batched in Flink SQL) stopped
  with a savepoint at parallelism 2 resumes from it at parallelism 1, and, after two more
  TaskManagers join, at parallelism 4, with decisions identical to one embedded run over all
  the input; its lakehouse rows are committed by the job while it runs, and each once across
  the stops and restores;
- ``--explain`` prints Flink's plan without running anything, every node at the parallelism
  asked for (bounded files and a live input).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flink_helpers import FRAUDSTREAM, OPTIONS, OUTPUTS, Receiver, by_id, by_position, read_jsonl
from test_model_stages import save_small_model, write_labels

from fraudstream.config import ConfigError
from fraudstream.flink.cluster import StandaloneCluster
from fraudstream.flink.rest import job_state, rest_get, subtask_hosts
from fraudstream.io.lakehouse import open_table
from fraudstream.io.sqlstore import DecisionStore
from fraudstream.rules import RuleSet, replace_rule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    started = StandaloneCluster(tmp_path_factory.mktemp("cluster"), taskmanagers=2, slots=1)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def submit(cluster: StandaloneCluster, *arguments: str) -> str:
    """`fraudstream flink run --target remote --detach ...`: the job id."""
    command = [FRAUDSTREAM, "flink", "run", "--target", "remote", "--jobmanager",
               cluster.address, "--detach", "--quiet", *arguments]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def wait_for(predicate: object, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_keyed_job_runs_on_both_taskmanagers(
    cluster: StandaloneCluster, stream: tuple[Path, Path], embedded: Path, tmp_path: Path
) -> None:
    path, profiles = stream
    outputs = [a for n in OUTPUTS for a in (f"--{n.replace('_', '-')}", str(tmp_path / n))]
    job = submit(
        cluster, "--input", str(path), "--profiles", str(profiles), *OPTIONS,
        "--batch-bytes", "1000000", "--state-backend", "rocksdb", "--shards", "32",
        "--parallelism", "2", "--checkpoint-dir", str(tmp_path / "checkpoints"), *outputs,
    )  # fmt: skip
    wait_for(lambda: job_state(cluster.address, job) in {"FINISHED", "FAILED"}, "the job")
    assert job_state(cluster.address, job) == "FINISHED"

    hosts = subtask_hosts(cluster.address, job)
    both = set(cluster.taskmanager_ids())
    assert len(both) == 2
    # vertex names: PyFlink fuses a Python function with the Python step after it
    stages = ("decode", "card detectors", "user detectors")
    on = {stage: hosts[name] for name in hosts for stage in stages if name.startswith(stage)}
    assert on.keys() == set(stages) and all(h == both for h in on.values()), hosts
    for vertex in rest_get(cluster.address, f"/jobs/{job}")["vertices"]:
        if vertex["name"].startswith(stages[1:]):
            detail = rest_get(cluster.address, f"/jobs/{job}/vertices/{vertex['id']}")
            # each subtask holds 64 of the 128 key groups; a chunk brings a part per key
            # group, so both get an even share of the parts (32 shards: this stream's cards
            # fill all of them; with the default 8 a small stream can leave some empty)
            parts = [s["metrics"]["read-records"] for s in detail["subtasks"]]
            assert len(parts) == 2 and min(parts) >= 0.4 * sum(parts) > 0, (vertex["name"], parts)

    assert by_id(read_jsonl(tmp_path / "decisions")) == by_id(
        read_jsonl(embedded / "decisions.jsonl")
    )
    for name in ("dead_letters", "late"):
        got = by_position(read_jsonl(tmp_path / name))
        assert got == by_position(read_jsonl(embedded / f"{name}.jsonl"))


def demo_stream(tmp_path: Path) -> tuple[list[bytes], Path]:
    """The demo generator's 8,000 lines (in order) and its profiles file."""
    profiles = tmp_path / "profiles.yaml"
    lines = subprocess.run(
        [FRAUDSTREAM, "simulate", "--scenario", "demo", "--count", "8000", "--fast",
         "--profiles-out", str(profiles)],
        check=True, capture_output=True,
    ).stdout.splitlines(keepends=True)  # fmt: skip
    return lines, profiles


def embedded_run(tmp_path: Path, name: str, lines: list[bytes], *options: str) -> dict[str, Any]:
    """``fraudstream run`` over ``lines``: its decisions by id, the rule version left out."""
    source, out = tmp_path / f"{name}.jsonl", tmp_path / f"{name}-decisions.jsonl"
    source.write_bytes(b"".join(lines))
    subprocess.run(
        [FRAUDSTREAM, "run", "--input", str(source), *options, "--decisions", str(out), "-q"],
        check=True,
    )  # fmt: skip
    return {k: _unversioned(v) for k, v in by_id(read_jsonl(out)).items()}


def _unversioned(decision: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in decision.items() if k != "rule_version"}


def test_rules_change_profile_upsert_and_labels_mid_stream_decide_as_embedded(
    cluster: StandaloneCluster, tmp_path: Path
) -> None:
    """A live keyed job at parallelism 2, with a model and labels, decides the first 40 % of
    the stream; then a rules version (velocity off) and a profile upsert (one user's decline
    threshold) arrive, and the next 30 % follows; the job stops with a savepoint, and the
    rest is decided by a job restored from it at parallelism 1 (the updates then come from
    broadcast state alone). Labels become known mid-stream (each fraud six hours after its
    transaction), so the customers' and terminals' known frauds grow as the stream goes.
    The first part must be the embedded run's with the starting rules and profiles, the
    rest the embedded run's with the new ones (velocity's state feeds no other detector and
    a profile no state, so the two embedded runs differ only where the change does)."""
    lines, profiles = demo_stream(tmp_path)
    cut, stop_at = len(lines) * 2 // 5, len(lines) * 7 // 10
    ids = [json.loads(line)["transaction_id"] for line in lines]
    changed_ids, restored_ids = set(ids[cut:]), set(ids[stop_at:])
    known = [
        (r["transaction_id"], True, r["timestamp"] + 6 * 3_600_000)
        for r in map(json.loads, lines)
        if r["is_fraud"]
    ]
    labels = write_labels(tmp_path / "labels.parquet", known)
    model = save_small_model(tmp_path / "model")
    modelled = ("--model", str(model), "--labels", str(labels))
    new_rules = replace_rule(RuleSet.default(), "velocity", enabled=False)
    rules_file = tmp_path / "new-rules.json"
    rules_file.write_text(json.dumps(new_rules.to_document()))
    before = embedded_run(tmp_path, "before", lines, "--profiles", str(profiles), *modelled)
    rules_only = embedded_run(
        tmp_path, "rules-only", lines, "--profiles", str(profiles), "--rules", str(rules_file),
        *modelled,
    )  # fmt: skip
    unlabelled = embedded_run(
        tmp_path, "unlabelled", lines, "--profiles", str(profiles), "--model", str(model)
    )
    assert any(unlabelled[tid] != before[tid] for tid in ids[cut:]), "labels must count"
    # the upsert: a user of the last part declines what scores above its lowest score there
    scored = [d for tid, d in rules_only.items() if tid in restored_ids and 0 < d["score"] < 0.5]
    user = Counter(d["user_id"] for d in scored).most_common(1)[0][0]
    threshold = min(d["score"] for d in scored if d["user_id"] == user)
    table = yaml.safe_load(profiles.read_text())
    profile = next(p for p in table["profiles"] if p["user_id"] == user)
    profile["decline_threshold"] = threshold
    new_profiles = tmp_path / "new-profiles.yaml"
    new_profiles.write_text(yaml.safe_dump(table))
    after = embedded_run(
        tmp_path, "after", lines, "--profiles", str(new_profiles), "--rules", str(rules_file),
        *modelled,
    )  # fmt: skip
    by_profile = {tid for tid in changed_ids if after[tid] != rules_only[tid]}
    assert by_profile & restored_ids, "the upsert must change decisions after the restore"

    inbox, rules_dir, profiles_dir = (tmp_path / n for n in ("inbox", "rules.d", "profiles.d"))
    for directory in (inbox, rules_dir, profiles_dir):
        directory.mkdir()
    (inbox / "1.jsonl").write_bytes(b"".join(lines[:cut]))
    out, restored = tmp_path / "flink", tmp_path / "flink-restored"

    def live_job(output: Path, parallelism: int, *extra: str) -> str:
        return submit(
            cluster, "--input", str(inbox), "--monitor-interval-ms", "300",
            "--profiles", str(profiles), "--rules-updates", str(rules_dir),
            "--profiles-updates", str(profiles_dir), "--decisions", str(output),
            "--parallelism", str(parallelism), "--checkpoint-interval-ms", "1000",
            "--checkpoint-dir", str(tmp_path / "checkpoints"), *modelled, *extra,
        )  # fmt: skip

    def decided(output: Path) -> int:
        return len(read_jsonl(output)) if output.is_dir() else 0

    job = live_job(out, 2)
    try:
        wait_for(lambda: decided(out) >= cut, "the first part")
        (rules_dir / "2.json").write_text(json.dumps(new_rules.to_document()) + "\n")
        refused = json.dumps({"user_id": user, "max_speed_kmh": -5})  # does not check
        (profiles_dir / "1.jsonl").write_text(refused + "\n" + json.dumps(profile) + "\n")
        rules_audit = Path(f"{rules_dir}.audit.jsonl")
        profiles_audit = Path(f"{profiles_dir}.audit.jsonl")
        wait_for(
            lambda: rules_audit.is_file() and profiles_audit.is_file()
            and len(profiles_audit.read_text().splitlines()) == 2,
            "the rules version and the profile upsert",
        )  # fmt: skip
        time.sleep(3)  # on their way to every subtask (broadcast): milliseconds
        (inbox / "2.jsonl").write_bytes(b"".join(lines[cut:stop_at]))
        wait_for(lambda: decided(out) >= stop_at, "the second part")
        stopped = subprocess.run(
            [FRAUDSTREAM, "flink", "stop", job, "--jobmanager", cluster.address,
             "--savepoint-dir", str(tmp_path / "savepoints")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr
        (inbox / "3.jsonl").write_bytes(b"".join(lines[stop_at:]))
        job = live_job(restored, 1, "--from-savepoint", stopped.stdout.strip())
        wait_for(lambda: decided(restored) >= len(lines) - stop_at, "the rest, restored")
    finally:  # the update streams are unbounded: the job runs until cancelled
        if job_state(cluster.address, job) == "RUNNING":
            cancel = f"http://{cluster.address}/jobs/{job}?mode=cancel"
            urllib.request.urlopen(urllib.request.Request(cancel, method="PATCH"), timeout=30)
        ended = {"CANCELED", "FAILED", "FINISHED"}
        wait_for(lambda: job_state(cluster.address, job) in ended, "the job to end")

    got = by_id(read_jsonl(out) + read_jsonl(restored))
    assert got.keys() == before.keys()
    for tid, decision in got.items():
        assert decision["rule_version"] == (2 if tid in changed_ids else 1), tid
        expected = after[tid] if tid in changed_ids else before[tid]
        assert _unversioned(decision) == expected, tid
    entries = [json.loads(line) for line in profiles_audit.read_text().splitlines()]
    notes = sorted(entry["note"][:8] for entry in entries)
    assert notes == ["", "refused:"]  # the restored job read no update twice
    applied = next(entry for entry in entries if not entry["note"])
    assert applied["profile"]["user_id"] == user
    assert applied["profile"]["decline_threshold"] == threshold
    assert all(decision["model"]["name"] == "flink-small" for decision in got.values())
    frauds = [got[tid]["features"]["customer_known_frauds_30d"] for tid in ids[stop_at:]]
    assert max(frauds) > 0  # labels known mid-stream reached the restored job's features


def test_paced_walkthrough_in_processing_time_with_every_sink_on_both_taskmanagers(
    cluster: StandaloneCluster, tmp_path: Path, receiver: Receiver
) -> None:
    """The walkthrough at 10 records/s into a watched directory; the live keyed job at
    parallelism 2 in processing time, with the decision store, a webhook, an alert command
    and the lakehouse: one alert, card 3's 871.15 (the seed-003 behaviour), stored, delivered,
    run and committed; every decision once in every sink."""
    records = subprocess.run(
        [FRAUDSTREAM, "simulate", "--scenario", "flink-walkthrough", "--count", "50", "--fast"],
        check=True, capture_output=True,
    ).stdout.splitlines(keepends=True)  # fmt: skip
    inbox, out, checkpoints = tmp_path / "inbox", tmp_path / "out", tmp_path / "checkpoints"
    inbox.mkdir()
    (out / "commands").mkdir(parents=True)
    job = submit(
        cluster, "--input", str(inbox), "--monitor-interval-ms", "200", "--time", "processing",
        "--parallelism", "2", "--checkpoint-interval-ms", "500", "--checkpoint-dir",
        str(checkpoints), "--decisions", str(out / "decisions"), "--alerts", str(out / "alerts"),
        "--store", str(out / "decisions.db"), "--webhook", receiver.url,
        "--alert-command", f"sh -c 'cat > {out}/commands/\"$FRAUDSTREAM_DELIVERY_ID\"'",
        "--lakehouse", str(out / "lakehouse"),
    )  # fmt: skip
    # paced from the job's first checkpoint on: it runs, and watches the directory
    wait_for(lambda: any(checkpoints.glob("*/chk-*")), "the job's first checkpoint")
    for k, record in enumerate(records):
        hidden = inbox / f".{k:03d}.jsonl"  # the source skips hidden files until renamed
        hidden.write_bytes(record)
        hidden.rename(inbox / f"{k:03d}.jsonl")
        time.sleep(0.1)  # the walkthrough's pace: 10 records/s
    decisions = out / "decisions"
    wait_for(lambda: decisions.is_dir() and len(read_jsonl(decisions)) >= len(records), "all")

    def committed() -> list[dict[str, Any]]:
        try:
            table = open_table(str(out / "lakehouse"))
        except ConfigError:
            return []
        return table.scan(selected_fields=("transaction_id", "decision")).to_arrow().to_pylist()

    wait_for(lambda: len(committed()) >= len(records), "the lakehouse commits")
    wait_for(lambda: any(d == "wt-28" for _, _, d in receiver.received), "the webhook")
    wait_for(lambda: (out / "commands" / "wt-28").exists(), "the alert command")
    hosts = subtask_hosts(cluster.address, job)
    stages = [name for name in hosts if name.startswith(("card detectors", "user detectors"))]
    assert stages and all(hosts[name] == set(cluster.taskmanager_ids()) for name in stages)
    stop_job = [FRAUDSTREAM, "flink", "stop", job, "--jobmanager", cluster.address,
                "--savepoint-dir", str(tmp_path / "savepoints")]  # fmt: skip
    subprocess.run(stop_job, check=True, capture_output=True, timeout=300)

    alerts = read_jsonl(out / "alerts")
    assert [(a["transaction_id"], a["card_id"]) for a in alerts] == [("wt-28", "3")]
    assert "small_then_large" in [reason["rule"] for reason in alerts[0]["reasons"]]
    decided = {d["transaction_id"]: d["decision"] for d in read_jsonl(decisions)}
    assert len(decided) == len(records)
    store = DecisionStore(str(out / "decisions.db"))
    try:
        stored = store.list(None, limit=1000, card_id=None)
    finally:
        store.close()
    assert {row["transaction_id"]: row["decision"] for row in stored} == decided
    rows = committed()
    assert len(rows) == len(records)  # each once
    assert {row["transaction_id"]: row["decision"] for row in rows} == decided
    assert {delivery for _, _, delivery in receiver.received} == {"wt-28"}
    assert json.loads((out / "commands" / "wt-28").read_text())["card_id"] == "3"


def test_savepoint_at_p2_resumes_at_p1_and_p4(cluster: StandaloneCluster, tmp_path: Path) -> None:
    lines, profiles = demo_stream(tmp_path)
    half = len(lines) // 2
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"".join(lines[:half]))
    second.write_bytes(b"".join(lines[half:]))
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b"".join(lines))
    expected = tmp_path / "embedded.jsonl"
    subprocess.run(
        [FRAUDSTREAM, "run", "--input", str(whole), "--profiles", str(profiles),
         "--decisions", str(expected), "--quiet"],
        check=True,
    )  # fmt: skip
    expected_decisions = by_id(read_jsonl(expected))

    lake = tmp_path / "lakehouse"  # every job writes it: exactly once across the restores

    def live_job(inbox: Path, out: Path, parallelism: int, *extra: str) -> str:
        return submit(
            cluster, "--input", str(inbox), "--monitor-interval-ms", "300",
            "--profiles", str(profiles), "--decisions", str(out), "--lakehouse", str(lake),
            "--parallelism", str(parallelism), "--checkpoint-interval-ms", "1000",
            "--checkpoint-dir", str(tmp_path / "checkpoints"), *extra,
        )  # fmt: skip

    def in_lakehouse() -> list[str]:
        try:
            table = open_table(str(lake))
        except ConfigError:  # no commit yet
            return []
        rows = table.scan(selected_fields=("transaction_id",)).to_arrow()
        return rows.column("transaction_id").to_pylist()

    def vertices(job: str) -> dict[str, int]:
        """Each operator's parallelism but the lakehouse committer's: one subtask, which sees
        a token per micro-batch, not the records."""
        detail = rest_get(cluster.address, f"/jobs/{job}")["vertices"]
        committer = ("-> lakehouse", "lakehouse (written by the operator before)")
        ones = {v["name"]: v["parallelism"] for v in detail if v["name"].startswith(committer)}
        assert set(ones.values()) == {1}, ones  # it and its (discarding) sink
        return {v["name"]: v["parallelism"] for v in detail if v["name"] not in ones}

    def decided(out: Path, count: int) -> None:
        wait_for(lambda: out.is_dir() and len(read_jsonl(out)) >= count, f"{count} decisions")

    def stop(job: str, name: str) -> str:
        result = subprocess.run(
            [FRAUDSTREAM, "flink", "stop", job, "--jobmanager", cluster.address,
             "--savepoint-dir", str(tmp_path / name)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(first, inbox / "first.jsonl")
    job = live_job(inbox, tmp_path / "at-p2", 2)
    names = " ".join(vertices(job))
    # the keyed job: lines batched by Flink SQL, per-key state in the detector stages
    assert "WindowAggregate" in names and "card detectors" in names, names
    assert set(vertices(job).values()) == {2}
    decided(tmp_path / "at-p2", half)
    # detached: the job's own committer appends the staged rows while it runs
    wait_for(lambda: len(in_lakehouse()) >= half, "the job's lakehouse commits")
    savepoint = stop(job, "savepoints")
    assert savepoint.startswith("file:") and Path(savepoint.removeprefix("file:")).is_dir()
    shutil.copy(second, inbox / "second.jsonl")

    for parallelism in (1, 4):
        if parallelism > 2:
            cluster.add_taskmanagers(parallelism - 2)
        out = tmp_path / f"from-savepoint-at-p{parallelism}"
        job = live_job(inbox, out, parallelism, "--from-savepoint", savepoint)
        assert set(vertices(job).values()) == {parallelism}
        decided(out, len(lines) - half)
        stop(job, f"savepoints-p{parallelism}")
        got = by_id(read_jsonl(tmp_path / "at-p2") + read_jsonl(out))
        assert got.keys() == expected_decisions.keys()
        assert got == expected_decisions, parallelism
    # the last savepoint's rows were staged as the job stopped: committed by the command
    committed = subprocess.run(
        [FRAUDSTREAM, "flink", "lakehouse-commit", "--lakehouse", str(lake)],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    assert "rows of" in committed, committed
    # the p1 run and the p4 run both decided the second half: the lakehouse holds the first
    # half once and the second half twice, each run's rows once
    counts = Counter(in_lakehouse())
    first_ids = {json.loads(line)["transaction_id"] for line in lines[:half]}
    assert counts == Counter({tid: 1 if tid in first_ids else 2 for tid in expected_decisions})


def test_explain_prints_the_plan_without_running(stream: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = stream
    result = subprocess.run(
        [FRAUDSTREAM, "flink", "run", "--input", str(path), "--alerts", str(tmp_path / "out"),
         "--explain", "--parallelism", "4"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    parallelism = {node["type"]: node["parallelism"] for node in plan["nodes"]}
    # PyFlink fuses a Python function with the Python step after it into one node
    names = {name.split(",")[0] for name in parallelism}
    assert {"Source: chunks", "decode", "card detectors", "user detectors"} <= names, names
    assert set(parallelism.values()) == {4}, parallelism  # no operator at parallelism 1
    assert not (tmp_path / "out").exists()  # nothing ran


def test_explain_a_live_keyed_job(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    result = subprocess.run(
        [FRAUDSTREAM, "flink", "run", "--input", str(inbox), "--monitor-interval-ms", "300",
         "--decisions", str(tmp_path / "out"), "--explain", "--parallelism", "4"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    parallelism = {node["type"]: node["parallelism"] for node in plan["nodes"]}
    names = " ".join(parallelism)
    for stage in ("Source: files", "WindowAggregate", "decode", "card detectors", "user detectors"):
        assert stage in names, names
    assert set(parallelism.values()) == {4}, parallelism
