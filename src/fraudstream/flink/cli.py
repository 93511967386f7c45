"""``fraudstream flink run``: the same pipeline as a PyFlink job (MiniCluster or a cluster).

Outputs are directories of part files written by Flink's FileSink (committed at each
checkpoint: exactly once); a Kafka topic with ``--kafka-servers`` and the connector jar.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from fraudstream.cli_options import (
    AlertCommandOption,
    AnonymousNetworksOption,
    IdleTimeoutOption,
    IpCountriesOption,
    LakehouseOption,
    LatenessOption,
    MaxNestingDepthOption,
    MaxRecordBytesOption,
    OutOfOrdernessOption,
    ProfilesOption,
    RulesOption,
    StoreOption,
    TimeMode,
    TimeOption,
    WebhookOption,
    WebhookSecretEnvOption,
)
from fraudstream.config import ConfigError
from fraudstream.flink.hooks import Hooks
from fraudstream.flink.operate_cli import cluster_app, lakehouse_commit, stop
from fraudstream.flink.uris import is_local, local_path
from fraudstream.io.limits import RecordLimits
from fraudstream.schema import MAX_NESTING_DEPTH, MAX_RECORD_BYTES

flink_app = typer.Typer(
    name="flink",
    help="Run the pipeline on Apache Flink (PyFlink): same detectors, Flink state and checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_err = Console(stderr=True, soft_wrap=True)

__all__ = ["flink_app", "count_lines", "pipeline_parts"]


class Graph(StrEnum):
    """Which job graph (see docs/flink.md, The job)."""

    keyed = "keyed"
    fused = "fused"
    sharded = "sharded"


class Target(StrEnum):
    """Where the job runs."""

    local = "local"  # an in-process MiniCluster
    remote = "remote"  # a running cluster at --jobmanager


class ExecutionMode(StrEnum):
    """How PyFlink runs the Python operators."""

    process = "process"  # Beam Python worker processes (gRPC data plane)
    thread = "thread"  # pemja: Python embedded in the TaskManager's JVM


class StateBackend(StrEnum):
    """Flink's keyed state backends."""

    hashmap = "hashmap"
    rocksdb = "rocksdb"


def _fail(message: str) -> None:
    _err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def pipeline_parts(
    rules: Path | None,
    profiles: Path | None,
    out_of_orderness_ms: int,
    allowed_lateness_ms: int,
    idle_timeout_ms: int,
    ip_countries: Path | None,
    anonymous_networks: Path | None,
    state_ttl_hours: float,
    time: TimeMode = TimeMode.event,
) -> Any:
    """The job's pipeline definition, checked as `fraudstream run` checks it."""
    from fraudstream.assembly import pipeline_config, state_ttl_ms
    from fraudstream.flink.stages import PipelineParts

    ttl_ms = state_ttl_ms(state_ttl_hours)
    rules_in_force, table, time_config, reference = pipeline_config(
        rules, profiles, time, out_of_orderness_ms, allowed_lateness_ms,
        idle_timeout_ms, ip_countries, anonymous_networks,
    )  # fmt: skip
    return PipelineParts(rules_in_force, table, time_config, reference, ttl_ms)


def count_lines(directory: str) -> int:
    """Records in a FileSink output directory (committed part files only)."""
    path = Path(directory)
    if not path.is_dir():
        return 0
    total = 0
    for part in path.iterdir():
        if part.is_file() and not part.name.startswith("."):
            with part.open("rb") as handle:
                total += sum(1 for _ in handle)
    return total


@flink_app.command(
    "run",
    epilog="Example: fraudstream flink run -i fraudstream-demo/transactions.jsonl "
    "--decisions out/decisions --alerts out/alerts",
)
def run(
    input: Annotated[
        list[str],
        typer.Option(
            "--input",
            "-i",
            rich_help_panel="Input",
            help="JSON-lines file or directory (repeatable).",
        ),
    ],
    decisions: Annotated[
        str | None, typer.Option(rich_help_panel="Outputs", help="Decisions: output directory.")
    ] = None,
    alerts: Annotated[
        str | None, typer.Option(rich_help_panel="Outputs", help="Alerts: output directory.")
    ] = None,
    enriched: Annotated[
        str | None, typer.Option(rich_help_panel="Outputs", help="Enriched: output directory.")
    ] = None,
    dead_letters: Annotated[
        str | None, typer.Option(rich_help_panel="Outputs", help="Dead letters: directory.")
    ] = None,
    late: Annotated[
        str | None, typer.Option(rich_help_panel="Outputs", help="Late records: output directory.")
    ] = None,
    store: StoreOption = None,
    lakehouse: LakehouseOption = None,
    lakehouse_staging: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Outputs",
            help="Where the lakehouse's rows wait for their commit (default: beside it; "
            "a directory every TaskManager and this client share).",
        ),
    ] = None,
    webhook: WebhookOption = None,
    webhook_secret_env: WebhookSecretEnvOption = None,
    alert_command: AlertCommandOption = None,
    max_record_bytes: MaxRecordBytesOption = MAX_RECORD_BYTES,
    max_nesting_depth: MaxNestingDepthOption = MAX_NESTING_DEPTH,
    rules: RulesOption = None,
    rules_updates: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Rules and profiles",
            help="Watch this directory for rules versions (each new file one rules document "
            "as JSON on one line); a version applies from the next records, state kept. The "
            "job then runs until stopped.",
        ),
    ] = None,
    audit_log: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel="Rules and profiles",
            help="Where rules changes are logged (default: RULES_UPDATES.audit.jsonl).",
        ),
    ] = None,
    profiles: ProfilesOption = None,
    profiles_updates: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Rules and profiles",
            help="Watch this directory for profile upserts (each new file, profiles as JSON "
            "lines, the fields of --profiles); an upsert applies to the user's next records. "
            "Logged to PROFILES_UPDATES.audit.jsonl. The job then runs until stopped.",
        ),
    ] = None,
    time_mode: TimeOption = TimeMode.event,
    out_of_orderness_ms: OutOfOrdernessOption = 0,
    allowed_lateness_ms: LatenessOption = 300_000,
    idle_timeout_ms: IdleTimeoutOption = 1_000,
    ip_countries: IpCountriesOption = None,
    anonymous_networks: AnonymousNetworksOption = None,
    state_ttl_hours: Annotated[
        float,
        typer.Option(
            rich_help_panel="Rules and profiles",
            help="Forget a card's/user's state after this long idle (0: never).",
        ),
    ] = 720.0,
    monitor_interval_ms: Annotated[
        int | None,
        typer.Option(
            rich_help_panel="Input",
            help="Keep watching the input directories for new files (a live source).",
        ),
    ] = None,
    target: Annotated[
        Target, typer.Option(rich_help_panel="Cluster", help="local (MiniCluster) or remote.")
    ] = Target.local,
    jobmanager: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Cluster", help="host:port of the cluster's REST endpoint (remote)."
        ),
    ] = None,
    parallelism: Annotated[
        int, typer.Option(rich_help_panel="Cluster", help="Parallelism of the detector stages.")
    ] = 1,
    shards: Annotated[
        int,
        typer.Option(
            rich_help_panel="Cluster",
            help=(
                "State shards per key: the most subtasks a detector stage can use, fixed for "
                "the life of a job's state (keep >= the parallelism you may rescale to)."
            ),
        ),
    ] = 8,
    max_parallelism: Annotated[
        int,
        typer.Option(
            rich_help_panel="Cluster", help="Flink's max parallelism (key groups; >= --shards)."
        ),
    ] = 128,
    checkpoint_dir: Annotated[
        str,
        typer.Option(
            rich_help_panel="Checkpoints",
            help="Flink checkpoints (a directory or a file-system URI).",
        ),
    ] = "fraudstream-flink-checkpoints",
    checkpoint_interval_ms: Annotated[
        int, typer.Option(rich_help_panel="Checkpoints", help="Checkpoint interval.")
    ] = 10_000,
    state_backend: Annotated[
        StateBackend, typer.Option(rich_help_panel="Cluster", help="Keyed state backend.")
    ] = StateBackend.hashmap,
    execution_mode: Annotated[
        ExecutionMode,
        typer.Option(
            rich_help_panel="Cluster",
            help="PyFlink's Python execution: thread (in the JVM) or process (Beam).",
        ),
    ] = ExecutionMode.thread,
    restart_attempts: Annotated[
        int, typer.Option(rich_help_panel="Checkpoints", help="Fixed-delay restarts.")
    ] = 3,
    restart_delay_ms: Annotated[
        int, typer.Option(rich_help_panel="Checkpoints", help="Delay between restarts.")
    ] = 1_000,
    jar: Annotated[
        list[str] | None,
        typer.Option(
            rich_help_panel="Cluster", help="Connector jar to add (e.g. the Kafka connector)."
        ),
    ] = None,
    python_archive: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Cluster",
            metavar="ARCHIVE#DIR",
            help="A packed virtualenv shipped with the job and unpacked on every TaskManager "
            "into DIR (PyFlink's -pyarch, python.archives); give --python-executable in it.",
        ),
    ] = None,
    python_executable: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Cluster",
            metavar="PATH",
            help="The TaskManagers' Python (PyFlink's -pyexec, python.executable), e.g. "
            "DIR/bin/python in --python-archive. Default: this interpreter.",
        ),
    ] = None,
    kafka_servers: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Input",
            help="Read card-transactions from Kafka here; outputs not paths are topics.",
        ),
    ] = None,
    batch_bytes: Annotated[
        int,
        typer.Option(
            rich_help_panel="Input", help="Micro-batch size in input bytes (the embedded file cut)."
        ),
    ] = 262_144 * 128,
    read_lines: Annotated[
        bool,
        typer.Option(
            "--read-lines/--read-chunks",
            rich_help_panel="File reading",
            help="Bounded files: Flink's FileSource line by line, or chunks read by the "
            "sequencer (faster).",
        ),
    ] = False,
    graph: Annotated[
        Graph | None,
        typer.Option(
            rich_help_panel="Cluster",
            help="keyed: parallel decode, card and user key groups with per-key state (files "
            "in chunks and live inputs; a model in event time); fused: one operator; "
            "sharded: sequencer and shards. Default: keyed where it can run, else fused at "
            "parallelism 1 on files, else sharded.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel="Model", help="Score every transaction with this model artifact."
        ),
    ] = None,
    model_weight: Annotated[
        float,
        typer.Option(
            rich_help_panel="Model", help="The model's weight in the noisy-or (score = weight x p)."
        ),
    ] = 1.0,
    labels: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel="Model",
            help="Labels (transaction_id, is_fraud, label_time) for the features.",
        ),
    ] = None,
    fail_once_after: Annotated[
        int | None, typer.Option(hidden=True, help="Tests: fail once after N decisions.")
    ] = None,
    fail_without_checkpoint: Annotated[
        bool, typer.Option(hidden=True, help="Tests: the fault need not wait for a checkpoint.")
    ] = False,
    from_savepoint: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Checkpoints",
            help="Start from this savepoint (or retained checkpoint) directory.",
        ),
    ] = None,
    detach: Annotated[
        bool, typer.Option(help="Remote: submit the job, print its id and return.")
    ] = False,
    explain: Annotated[
        bool, typer.Option(help="Print Flink's execution plan (JSON) instead of running.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary.")] = False,
) -> None:
    """Decide transactions on Apache Flink exactly as `fraudstream run` does."""
    outputs = {
        name: target_dir
        for name, target_dir in (
            ("decisions", decisions),
            ("alerts", alerts),
            ("enriched", enriched),
            ("dead_letters", dead_letters),
            ("late", late),
        )
        if target_dir
    }
    if store and "://" not in store:  # a SQLite file: the same one wherever subtasks run
        store = str(Path(store).resolve())
    hooks = Hooks(
        store=store,
        webhook=webhook,
        webhook_secret_env=webhook_secret_env,
        alert_command=tuple(shlex.split(alert_command)) if alert_command else None,
        lakehouse=lakehouse,
        lakehouse_staging=str(Path(lakehouse_staging).resolve()) if lakehouse_staging else None,
        lakehouse_commit_ms=max(checkpoint_interval_ms, 1000),
    )
    if not outputs and not hooks.wanted:
        _fail(
            "give at least one output: --decisions, --alerts, --enriched, --store, --lakehouse, ..."
        )
    if target is Target.remote and not jobmanager:
        _fail("--target remote needs --jobmanager host:port")
    if detach and target is not Target.remote:
        _fail("--detach needs --target remote (a local MiniCluster ends with this command)")
    if from_savepoint:
        if is_local(from_savepoint) and not local_path(from_savepoint).is_dir():
            _fail(
                f"savepoint not found: {from_savepoint} (give the directory `flink stop` printed)"
            )
    for option, directory in (
        ("--rules-updates", rules_updates),
        ("--profiles-updates", profiles_updates),
    ):
        if directory and is_local(directory) and not local_path(directory).is_dir():
            _fail(f"{option} {directory}: no such directory (create it; new files there apply)")
    if kafka_servers and not jar:
        _fail("--kafka-servers needs the Kafka connector: --jar flink-sql-connector-kafka-*.jar")
    if python_archive and not python_executable:
        _fail("--python-archive needs --python-executable (e.g. venv/bin/python for ARCHIVE#venv)")
    if parallelism < 1 or shards < parallelism:
        _fail("--parallelism must be >= 1 and --shards >= --parallelism")
    if not shards <= max_parallelism <= 32_768:
        _fail("--max-parallelism must be >= --shards and <= 32768 (Flink's limit)")
    if not kafka_servers:
        missing = [path for path in input if is_local(path) and not local_path(path).exists()]
        if missing:
            _fail(f"input not found: {missing[0]}")
    try:
        import pyflink  # noqa: F401
    except ImportError:
        _fail(
            "flink run needs apache-flink: pip install 'fraudstream[flink]' (and a JDK 11+),"
            " or in a checkout bash scripts/install.sh flink (.venv-flink)"
        )
    from fraudstream.flink.functions import Fault
    from fraudstream.flink.job import FlinkJob

    try:
        parts = pipeline_parts(
            rules, profiles, out_of_orderness_ms, allowed_lateness_ms, idle_timeout_ms,
            ip_countries, anonymous_networks, state_ttl_hours, time_mode,
        )  # fmt: skip
        if model is not None or labels is not None:  # as run's attach(pipeline, labels, model)
            from fraudstream.flink.model import ModelSpec

            spec = ModelSpec.load(model, model_weight, labels)
            parts = dataclasses.replace(parts, model=spec)
        parts = dataclasses.replace(parts, limits=RecordLimits(max_record_bytes, max_nesting_depth))
        hooks.check()
    except (ConfigError, OSError, ValueError) as exc:
        _fail(str(exc))
    fault = None
    if fail_once_after is not None:
        marker = str(Path(checkpoint_dir) / "injected-fault")
        checkpoints = str(Path(checkpoint_dir).resolve())
        fault = Fault(fail_once_after, marker, checkpoints, not fail_without_checkpoint)
    job = FlinkJob(
        parts=parts,
        inputs=input,
        outputs=outputs,
        checkpoint_dir=checkpoint_dir,
        monitor_ms=monitor_interval_ms,
        parallelism=parallelism,
        shards=shards,
        max_parallelism=max_parallelism,
        checkpoint_interval_ms=checkpoint_interval_ms,
        state_backend=state_backend.value,
        execution_mode=execution_mode.value,
        restart_attempts=restart_attempts,
        restart_delay_ms=restart_delay_ms,
        jobmanager=jobmanager if target is Target.remote else None,
        detach=detach,
        savepoint=from_savepoint,
        jars=jar or [],
        python_archive=python_archive,
        python_executable=python_executable,
        kafka_servers=kafka_servers,
        batch_bytes=batch_bytes,
        read_lines=read_lines,
        graph=graph.value if graph is not None else None,
        fault=fault,
        hooks=hooks if hooks.wanted else None,
        rules_updates=str(Path(rules_updates).resolve()) if rules_updates else None,
        audit_log=str(audit_log.resolve()) if audit_log else None,
        profiles_updates=str(Path(profiles_updates).resolve()) if profiles_updates else None,
    )
    refused = job.refuses()
    if refused:
        _fail(refused)
    from fraudstream.rules.user import windowed

    with_windows = windowed(parts.rules.enabled_user_rules())
    if with_windows and not (job.fused or job.keyed):
        _fail(
            f"rule {with_windows[0]} has an aggregate: rules with aggregates run on the keyed "
            "job (files in chunks or a live input) and the fused job, not on the sharded job "
            "(--read-lines, s3://), which keys by card and user shards only"
        )
    if explain:
        try:
            plan = job.explain()
        except Exception as exc:  # noqa: BLE001 - Py4J wraps every failure
            _fail(f"the job graph could not be built: {_first_line(exc)}")
        print(plan)
        return
    started = time.perf_counter()
    try:
        result = job.run()
    except Exception as exc:  # noqa: BLE001 - Py4J wraps every job failure
        _fail(f"the Flink job failed: {_first_line(exc)}")
    if detach:
        print(result)  # the job id, for `fraudstream flink stop`
        return
    if hooks.lakehouse:  # the last checkpoint's parts, visible once the job ended
        from fraudstream.io.lakehouse_staging import commit_staged

        commit_staged(hooks.lakehouse, hooks.staging)
    if not quiet and not kafka_servers:
        counts = {name: count_lines(path) for name, path in outputs.items()}
        seconds = time.perf_counter() - started
        summary = {"seconds": round(seconds, 3), "records_written": counts}
        _err.print(json.dumps(summary), highlight=False)
    sys.stdout.flush()


flink_app.command(
    "stop", epilog="Example: fraudstream flink stop JOB_ID --jobmanager localhost:8081"
)(stop)
flink_app.command(
    "lakehouse-commit",
    epilog="Example: fraudstream flink lakehouse-commit --lakehouse fraudstream-demo/lakehouse",
)(lakehouse_commit)
flink_app.add_typer(cluster_app)
