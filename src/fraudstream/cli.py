"""The ``fraudstream`` command: run, simulate, demo."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from fraudstream.cli_options import (
    DEFAULT_STATE_TTL_HOURS,
    AnonymousNetworksLocationOption,
    AwsEndpointOption,
    GroupIdOption,
    IdleTimeoutOption,
    IpCountriesLocationOption,
    LatenessOption,
    MaxNestingDepthOption,
    MaxRecordBytesOption,
    OutOfOrdernessOption,
    ProfilesLocationOption,
    ProfilesTopicOption,
    RulesLocationOption,
    StopAtEndOption,
    TimeMode,
    TimeOption,
)
from fraudstream.config import ConfigError
from fraudstream.engine.tuning import settle_garbage_collector
from fraudstream.schema import MAX_NESTING_DEPTH, MAX_RECORD_BYTES

app = typer.Typer(
    name="fraudstream",
    help="Real-time card-fraud detection: stateful detectors, rules and decisions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, whatever the width


class InputFormat(StrEnum):
    """Input file formats."""

    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


class Scenario(StrEnum):
    """Simulated streams."""

    flink_walkthrough = "flink-walkthrough"
    demo = "demo"
    handbook = "handbook"


def fail(message: str) -> None:
    """One readable line and exit code 2."""
    # escaped: a message may hold brackets ("fraudstream[aws]", "topic[2]") rich would eat
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


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


def _pipeline_parts(
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


def print_summary(summary: Any, console: Console = err) -> None:
    """The end-of-run table."""
    table = Table(title="fraudstream run", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("records read", f"{summary.records:,}")
    table.add_row("decided", f"{summary.decided:,}")
    for tier in ("approve", "review", "decline"):
        table.add_row(f"  {tier}", f"{summary.tiers.get(tier, 0):,}")
    table.add_row("dead letters", f"{summary.dead_letters:,}")
    if summary.duplicates:
        table.add_row("  of which duplicates", f"{summary.duplicates:,}")
    table.add_row("late", f"{summary.late:,}")
    if summary.expired_keys or summary.reclaimed_keys:
        table.add_row("expired keys (TTL)", f"{summary.expired_keys:,}")
        table.add_row("  slots reclaimed", f"{summary.reclaimed_keys:,}")
    if summary.checkpoints:
        resumed = "" if summary.resumed_from is None else f" (resumed {summary.resumed_from})"
        table.add_row("checkpoints", f"{summary.checkpoints:,}{resumed}")
    table.add_row("throughput", f"{summary.throughput:,.0f} tx/s ({summary.seconds:.2f} s)")
    console.print(table)
    if summary.dead_reasons:
        dead = Table(title="dead letters by reason", title_justify="left")
        dead.add_column("reason")
        dead.add_column("records", justify="right")
        for reason, count in summary.dead_reasons.most_common(10):
            dead.add_row(reason, f"{count:,}")
        console.print(dead)
    if summary.fired_by_rule or summary.shadow_fired_by_rule:
        rules = Table(title="rules", title_justify="left")
        rules.add_column("rule")
        rules.add_column("fired", justify="right")
        rules.add_column("in alerts", justify="right")
        for rule, fired in summary.fired_by_rule.most_common():
            rules.add_row(rule, f"{fired:,}", f"{summary.alerts_by_rule.get(rule, 0):,}")
        for rule, fired in summary.shadow_fired_by_rule.most_common():
            rules.add_row(f"{rule} (shadow)", f"{fired:,}", "-")  # recorded, never scored
        console.print(rules)


@app.command()
def run(
    input: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="Input file, - for stdin, kafka://HOST:PORT/TOPIC or kinesis://STREAM.",
        ),
    ],
    format: Annotated[
        InputFormat | None, typer.Option("--format", help="Input format (default: by suffix).")
    ] = None,
    rules: RulesLocationOption = None,
    profiles: ProfilesLocationOption = None,
    decisions: Annotated[
        str | None, typer.Option(help="Decisions output (.jsonl, .parquet, -).")
    ] = None,
    alerts: Annotated[
        str | None,
        typer.Option(
            help="Alerts output (non-approve decisions): a file, kafka://, kinesis://STREAM, "
            "sqs://QUEUE or sns://TOPIC-ARN."
        ),
    ] = None,
    enriched: Annotated[str | None, typer.Option(help="Enriched transactions output.")] = None,
    dead_letters: Annotated[str | None, typer.Option(help="Dead-letter output.")] = None,
    late: Annotated[str | None, typer.Option(help="Late-record output.")] = None,
    time: TimeOption = TimeMode.event,
    out_of_orderness_ms: OutOfOrdernessOption = 0,
    allowed_lateness_ms: LatenessOption = 300_000,
    idle_timeout_ms: IdleTimeoutOption = 1_000,
    ip_countries: IpCountriesLocationOption = None,
    anonymous_networks: AnonymousNetworksLocationOption = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Decision store: a SQLite path, an SQLAlchemy URL or dynamodb://TABLE "
            "(upsert by id)."
        ),
    ] = None,
    webhook: Annotated[
        str | None, typer.Option(help="POST every alert here (retried; kept if undeliverable).")
    ] = None,
    webhook_secret_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the webhook's HMAC secret."),
    ] = None,
    alert_command: Annotated[
        str | None, typer.Option(help="Run this command for every alert (alert JSON on stdin).")
    ] = None,
    audit_log: Annotated[
        Path | None,
        typer.Option(help="Where rules changes are logged (default: RULES.audit.jsonl)."),
    ] = None,
    lakehouse: Annotated[
        str | None,
        typer.Option(help="Iceberg lakehouse: a directory, or a pyiceberg catalog YAML/JSON."),
    ] = None,
    checkpoint_dir: Annotated[
        str | None,
        typer.Option(help="Checkpoint here (a directory or an fsspec URL: s3://bucket/prefix)."),
    ] = None,
    checkpoint_interval_s: Annotated[
        float, typer.Option(help="Checkpoint every N seconds.")
    ] = 10.0,
    checkpoint_every_records: Annotated[
        int | None, typer.Option(help="Also checkpoint every N records.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Restart from the latest complete checkpoint.")
    ] = False,
    batch_rows: Annotated[
        int,
        typer.Option(
            help="Records per micro-batch read from a file (per shard and GetRecords call from "
            "Kinesis, at most 10,000)."
        ),
    ] = 262_144,
    state_ttl_hours: Annotated[
        float, typer.Option(help="Forget a card's/user's state after this long idle (0: never).")
    ] = DEFAULT_STATE_TTL_HOURS,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the summary as JSON here.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")
    ] = False,
    group_id: GroupIdOption = "fraudstream",
    profiles_topic: ProfilesTopicOption = None,
    stop_at_end: StopAtEndOption = False,
    max_record_bytes: MaxRecordBytesOption = MAX_RECORD_BYTES,
    max_nesting_depth: MaxNestingDepthOption = MAX_NESTING_DEPTH,
    model: Annotated[
        Path | None, typer.Option(help="Score every transaction with this model artifact.")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Label stream (transaction_id, is_fraud, label_time).")
    ] = None,
    model_weight: Annotated[
        float, typer.Option(help="The model's weight in the noisy-or (score = weight x p).")
    ] = 1.0,
    aws_endpoint_url: AwsEndpointOption = None,
) -> None:
    """Decide every transaction of a file, a stream (stdin), a Kafka topic or a Kinesis stream;
    write the outputs."""
    from fraudstream.io.files import FileSource, StdinSource, guess_format
    from fraudstream.io.limits import RecordLimits
    from fraudstream.rules import AuditLog, RulesFileWatcher
    from fraudstream.rules.versions import RuleVersions, versions_path_for
    from fraudstream.run import Outputs, Runner
    from fraudstream.schema import CardTokenizer

    kafka: Any = None  # a kafka:// input (fraudstream.io.kafka_run.KafkaInput)
    restore_signals: Any = None  # a kinesis:// input's signal handlers, put back at the end
    try:
        if aws_endpoint_url is not None:
            from fraudstream.io.aws.clients import set_endpoint_url

            set_endpoint_url(aws_endpoint_url)
        from fraudstream.io.aws.s3 import local_path  # s3:// objects: a local copy

        profiles_table = profiles if profiles and profiles.startswith("dynamodb://") else None
        rules_file = local_path(rules, "--rules")
        log_path = None
        versions = None  # without a rules file: numbered in memory (the defaults: 1)
        if rules_file is not None:  # every rule set applied is a numbered version, kept on disk
            log_path = audit_log or rules_file.with_name(rules_file.name + ".audit.jsonl")
            versions = RuleVersions(versions_path_for(log_path))
        pipeline = _pipeline_parts(
            rules_file, None if profiles_table else local_path(profiles, "--profiles"), time,
            out_of_orderness_ms, allowed_lateness_ms, idle_timeout_ms,
            local_path(ip_countries, "--ip-countries"),
            local_path(anonymous_networks, "--anonymous-networks"), _ttl_ms(state_ttl_hours),
            versions,
        )  # fmt: skip
        if profiles_table is not None:
            from fraudstream.io.aws.dynamodb_profiles import load_profiles

            load_profiles(profiles_table, pipeline.profiles)
        if model is not None or labels is not None:
            from fraudstream.models.dataset import attach

            if not 0.0 <= model_weight <= 1.0:
                raise ConfigError(f"--model-weight must be within [0, 1], got {model_weight}")
            attach(pipeline, labels, model, model_weight)
        source: Any
        if profiles_topic and not input.lower().startswith("kafka://"):
            raise ConfigError("--profiles-topic needs a kafka:// --input")
        if input == "-":
            source = StdinSource(idle_timeout_ms=idle_timeout_ms or 1_000)
        elif input.lower().startswith("kafka://"):
            from fraudstream.io.kafka_run import KafkaInput

            kafka = KafkaInput.open(
                input,
                group_id=group_id,
                table=pipeline.profiles,
                profiles_topic=profiles_topic,
                idle_timeout_ms=idle_timeout_ms or 1_000,
                stop_at_end=stop_at_end,
                warn=lambda message: err.print(f"[yellow]warning:[/] {message}", highlight=False),
            )
            kafka.stop_on_signals()  # SIGTERM / Ctrl-C: finish the batch, commit, exit 0
            source = kafka.source
        elif input.lower().startswith("kinesis://"):
            from fraudstream.io.aws.kinesis_source import KinesisSource, stop_on_signals

            source = KinesisSource(
                input,
                idle_timeout_ms=idle_timeout_ms or 1_000,
                stop_at_end=stop_at_end,
                batch_records=batch_rows,
            )
            restore_signals = stop_on_signals(source)  # SIGTERM / Ctrl-C: finish the batch
        else:
            path = Path(input)
            if not path.is_file():
                raise ConfigError(f"--input {input}: no such file")
            if batch_rows < 1:
                raise ConfigError(f"--batch-rows must be >= 1, got {batch_rows}")
            source = FileSource(
                path, format.value if format else guess_format(input), batch_rows=batch_rows
            )
        secret = None
        if webhook_secret_env:
            value = os.environ.get(webhook_secret_env)
            if not value:
                raise ConfigError(f"--webhook-secret-env: {webhook_secret_env} is not set")
            secret = value.encode()
        outputs = Outputs(
            decisions,
            alerts,
            enriched,
            dead_letters,
            late,
            store=store,
            webhook=webhook,
            webhook_secret=secret,
            alert_command=shlex.split(alert_command) if alert_command else None,
            lakehouse=lakehouse,
        )
        watcher = None
        if (
            rules is not None
            and rules_file is not None
            and log_path is not None
            and not rules.lower().startswith("s3://")
        ):
            # editing the rules file changes the running pipeline (a copy of an S3 object is
            # read once)
            log = AuditLog(log_path)
            watched = rules_file
            watcher = RulesFileWatcher(
                rules_file,
                lambda changed: pipeline.apply_rules(changed, file_editor(), str(watched)),
                pipeline.rules,
                log,
                lambda message: err.print(f"[yellow]warning:[/] {message}", highlight=False),
            )
        runner = Runner(
            pipeline,
            outputs,
            CardTokenizer.from_environment(),
            between_batches=watcher.poll if watcher is not None else None,
            recovery=_recovery(
                checkpoint_dir, checkpoint_interval_s, checkpoint_every_records, resume
            ),
            limits=RecordLimits(max_record_bytes, max_nesting_depth),
        )
        if kafka is not None:  # users-config upserts apply between batches
            runner.between_batches = kafka.between_batches(runner.between_batches)
        summary = _run_with_progress(runner, source, quiet or input == "-")
        if kafka is not None:
            kafka.finish()  # a normal end: outputs are closed, the offsets can be committed
    except ConfigError as exc:
        fail(str(exc))
        return
    except OSError as exc:
        fail(f"{exc.filename or ''}: {exc.strerror or exc}")
        return
    finally:
        if kafka is not None:
            kafka.close()
        if restore_signals is not None:
            restore_signals()
    if summary_json:
        summary_json.write_text(json.dumps(summary.as_dict(), indent=2))
    if not quiet:
        print_summary(summary)


def _ttl_ms(hours: float) -> int | None:
    if hours < 0:
        raise ConfigError(f"--state-ttl-hours must be >= 0, got {hours}")
    return round(hours * 3_600_000) or None


def _recovery(
    directory: str | None, interval_s: float, every_records: int | None, resume: bool
) -> Any:
    """Checkpointing for `run`, or None without --checkpoint-dir."""
    if directory is None:
        if resume or every_records is not None:
            raise ConfigError("--resume and --checkpoint-every-records need --checkpoint-dir")
        return None
    from fraudstream.engine.checkpoint import CheckpointStore
    from fraudstream.recovery import Recovery

    try:
        return Recovery(CheckpointStore(directory), interval_s, every_records, resume)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    except ImportError as exc:  # s3:// without s3fs, gs:// without gcsfs, ...
        hint = " (install fraudstream[aws])" if directory.lower().startswith("s3://") else ""
        raise ConfigError(f"--checkpoint-dir {directory}: {exc}{hint}") from None


def _run_with_progress(runner: Any, source: Any, quiet: bool) -> Any:
    settle_garbage_collector()
    if quiet or not source.total_bytes:
        return runner.run(source)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("deciding", total=source.total_bytes)
        return runner.run(source, lambda done, total: bar.update(task, completed=done))


@app.command()
def simulate(
    scenario: Annotated[Scenario, typer.Option(help="Which stream to simulate.")] = Scenario.demo,
    count: Annotated[
        int | None, typer.Option(help="Records (walkthrough: endless if unset).")
    ] = None,
    fast: Annotated[bool, typer.Option("--fast", help="No pacing: as fast as possible.")] = False,
    rate: Annotated[float, typer.Option(help="Records per second when paced.")] = 10.0,
    seed: Annotated[int | None, typer.Option(help="Random seed (demo 7, handbook 4).")] = None,
    users: Annotated[
        int, typer.Option(help="Generated users besides the seed-002 four (demo).")
    ] = 200,
    output: Annotated[str, typer.Option("--output", "-o", help="File, or - for stdout.")] = "-",
    profiles_out: Annotated[
        Path | None,
        typer.Option(help="Write the demo profiles here (.yaml, .json, .csv or .parquet)."),
    ] = None,
    customers: Annotated[int, typer.Option(help="Customers (handbook).")] = 5_000,
    terminals: Annotated[int, typer.Option(help="Terminals (handbook).")] = 10_000,
    days: Annotated[int, typer.Option(help="Days from 2018-04-01 (handbook).")] = 183,
    labels_out: Annotated[
        str | None, typer.Option(help="Handbook: also write its label stream (7-day delay) here.")
    ] = None,
) -> None:
    """Print simulated transactions as JSON lines (paced at --rate unless --fast).

    The handbook scenario writes all its transactions at once (Parquet when --output ends
    in .parquet) and prints its fraud counts next to the book's.
    """
    from fraudstream.simulate.pacing import paced

    if scenario is Scenario.handbook:
        from fraudstream.model_cli import simulate_handbook

        simulate_handbook(
            customers, terminals, days, 4 if seed is None else seed, output, labels_out
        )
        return
    seed = 7 if seed is None else seed

    if count is not None and count < 0:
        fail(f"--count must be >= 0, got {count}")
    if rate <= 0:
        fail(f"--rate must be > 0, got {rate}")
    records: Any
    if scenario is Scenario.flink_walkthrough:
        from fraudstream.simulate.walkthrough import walkthrough_records

        records = walkthrough_records(count)
    else:
        from fraudstream.simulate.demo import demo_profiles, demo_records, write_profiles

        records = demo_records(count=20_000 if count is None else count, users=users, seed=seed)
        if profiles_out:
            write_profiles(profiles_out, demo_profiles(users=users, seed=seed))
    if not fast:
        records = paced(records, rate)
    encoder = msgspec.json.Encoder()
    handle = sys.stdout.buffer if output == "-" else open(output, "wb")  # noqa: SIM115
    try:
        for record in records:
            handle.write(encoder.encode(record) + b"\n")
            if not fast:
                handle.flush()
    except BrokenPipeError:
        pass
    finally:
        if output != "-":
            handle.close()
        else:
            try:
                handle.flush()
            except BrokenPipeError:
                pass


@app.command()
def demo(
    directory: Annotated[Path, typer.Option(help="Where the demo writes everything.")] = Path(
        "fraudstream-demo"
    ),
    count: Annotated[int, typer.Option(help="Simulated transactions.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    picture: Annotated[
        Path | None, typer.Option("--svg", help="Also save the printed summary as an SVG picture.")
    ] = None,
    serve: Annotated[
        bool | None,
        typer.Option(
            "--serve/--no-serve",
            help="Then serve the analyst app, the simulator feeding it live "
            "(default: only when run in a terminal).",
        ),
    ] = None,
    serve_seconds: Annotated[
        float | None, typer.Option(help="Stop serving after N seconds (default: Ctrl-C).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the analyst app (127.0.0.1).")] = 8888,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(help="Also answer this Host name (repeatable); loopback names always."),
    ] = None,
) -> None:
    """The main job: simulate the demo users with injected frauds and decide them all.

    Then, in a terminal (or with --serve), the analyst app at http://127.0.0.1:8888 with
    the simulator feeding it live.
    """
    if picture is not None:
        err.record = True
    from fraudstream.io.files import FileSource
    from fraudstream.run import Outputs, Runner
    from fraudstream.schema import CardTokenizer
    from fraudstream.simulate.demo import demo_profiles, demo_records, write_profiles

    if count < 1:
        fail(f"--count must be >= 1, got {count}")
    if serve_seconds is not None and serve_seconds <= 0:
        fail(f"--serve-seconds must be > 0, got {serve_seconds}")
    if not 0 < port <= 65535:
        fail(f"--port must be within 1..65535, got {port}")
    directory.mkdir(parents=True, exist_ok=True)
    transactions = directory / "transactions.jsonl"
    profiles_path = directory / "profiles.yaml"
    err.print(f"simulating {count:,} transactions of the seed-002 users and 200 more ...")
    records = demo_records(count=count, seed=seed)
    encoder = msgspec.json.Encoder()
    with transactions.open("wb") as handle:
        for record in records:
            handle.write(encoder.encode(record) + b"\n")
    write_profiles(profiles_path, demo_profiles(seed=seed))
    paths = {
        "decisions": directory / "decisions.jsonl",
        "alerts": directory / "alerts.jsonl",
        "enriched": directory / "enriched.jsonl",
        "dead_letters": directory / "dead-letters.jsonl",
        "late": directory / "late.jsonl",
    }
    pipeline = _pipeline_parts(None, profiles_path, TimeMode.event, 0, 300_000, 1_000, None, None)
    lake = directory / "lakehouse"  # the Iceberg table; `fraudstream query` reads it
    shutil.rmtree(lake, ignore_errors=True)  # a rerun replaces the demo's table
    outputs = Outputs(
        decisions=str(paths["decisions"]),
        alerts=str(paths["alerts"]),
        enriched=str(paths["enriched"]),
        dead_letters=str(paths["dead_letters"]),
        late=str(paths["late"]),
        lakehouse=str(lake),
    )
    runner = Runner(pipeline, outputs, CardTokenizer.from_environment())
    summary = _run_with_progress(runner, FileSource(transactions, "jsonl"), False)
    print_summary(summary)
    _print_catch_rate(records, paths["decisions"])
    (directory / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2))
    shown = {"transactions": transactions, "profiles": profiles_path, **paths}
    shown["summary"] = directory / "summary.json"
    # Plain lines with whole paths: a table would cut them to the terminal's width.
    lines = [f"  {name.replace('_', ' '):<13} {path}" for name, path in shown.items()]
    sys.stderr.write("outputs\n" + "\n".join(lines) + "\n")
    sys.stderr.write(f"lakehouse (Iceberg) {lake}\n")
    sys.stderr.write(f"  query it: fraudstream query --lakehouse {lake} alert-rate\n")
    if picture is not None:
        err.save_svg(str(picture), title="fraudstream demo")
    if serve is None:  # scripts, CI and tests (no terminal) get the batch demo only
        serve = sys.stdin.isatty() and sys.stderr.isatty()
    if serve:
        _serve_demo(directory, profiles_path, records, port, serve_seconds, allowed_host or [])


def _serve_demo(
    directory: Path,
    profiles: Path,
    records: Any,
    port: int,
    seconds: float | None,
    allowed_hosts: list[str],
) -> None:
    try:
        from fraudstream.web.live import serve_demo
    except ImportError as exc:
        fail(f"serving needs {exc.name or 'fastapi'}: pip install 'fraudstream[web]'")
        return
    try:
        serve_demo(
            directory, profiles, records, port=port, seconds=seconds, allowed_hosts=allowed_hosts
        )
    except ConfigError as exc:
        fail(str(exc))


def _print_catch_rate(records: list[dict[str, Any]], decisions_path: Path) -> None:
    """Per injected scenario: how many records alerted, and which rules fired on them."""
    verdicts: dict[str, tuple[str, list[str]]] = {}
    with decisions_path.open("rb") as handle:
        for line in handle:
            decision = msgspec.json.decode(line)
            rules = [reason["rule"] for reason in decision["reasons"]]
            verdicts[decision["transaction_id"]] = (decision["decision"], rules)
    totals: Counter[str] = Counter()
    alerted: Counter[str] = Counter()
    fired: dict[str, Counter[str]] = {}
    for record in records:
        scenario = record.get("scenario", "normal")
        totals[scenario] += 1
        tier, rules = verdicts.get(record["transaction_id"], ("approve", []))
        alerted[scenario] += tier != "approve"
        fired.setdefault(scenario, Counter()).update(rules)
    table = Table(title="injected scenarios vs alerts", title_justify="left")
    table.add_column("scenario")
    table.add_column("records", justify="right")
    table.add_column("alerted", justify="right")
    table.add_column("rules fired on these records (count)")
    for scenario, total in sorted(totals.items()):
        share = alerted[scenario] / total
        shown = ", ".join(f"{rule} {count}" for rule, count in fired[scenario].most_common(3))
        table.add_row(scenario, f"{total:,}", f"{alerted[scenario]:,} ({share:.0%})", shown)
    err.print(table)


def _register_serve() -> None:
    # The web app is an extra (fastapi, uvicorn): without it, `serve` says how to install it.
    try:
        from fraudstream.web.serve import serve_command
    except ImportError as exc:
        missing = exc.name or "fastapi"

        @app.command("serve")
        def serve_missing() -> None:
            """Serve the decision API (needs the web extra)."""
            fail(f"serve needs {missing}: pip install 'fraudstream[web]'")

        return
    app.command("serve")(serve_command)


_register_serve()


def _register_decisions() -> None:
    # Always there: the store extra (sqlalchemy) or the aws one (dynamodb://) is imported
    # when a store is opened, with one line saying what to install when missing.
    from fraudstream.store_cli import decisions_app

    app.add_typer(decisions_app)


_register_decisions()


def _register_models() -> None:
    # features / train / evaluate (scikit-learn, xgboost: the models extra)
    try:
        from fraudstream.model_cli import register
    except ImportError:
        return
    register(app)


_register_models()


def _register_query() -> None:
    try:
        from fraudstream.query_cli import query_command
    except ImportError as exc:  # the lake extra (pyiceberg, duckdb) is not installed
        missing = exc.name or "pyiceberg"

        @app.command("query")
        def query_missing() -> None:
            """SQL over the Iceberg lakehouse (needs the lake extra)."""
            fail(f"query needs {missing}: pip install 'fraudstream[lake]'")

        return
    app.command("query")(query_command)


_register_query()


def _register_rules_lifecycle() -> None:
    from fraudstream.backtest_cli import backtest_command
    from fraudstream.rules_cli import rules_app

    app.command("backtest")(backtest_command)
    app.add_typer(rules_app)


_register_rules_lifecycle()


def _register_produce() -> None:
    # Kafka is an extra (confluent-kafka): without it, `produce` says how to install it.
    try:
        import confluent_kafka  # noqa: F401

        from fraudstream.produce_cli import produce_command
    except ImportError as exc:
        missing = exc.name or "confluent-kafka"

        @app.command("produce")
        def produce_missing() -> None:
            """Send transactions to a Kafka topic (needs the kafka extra)."""
            fail(f"produce needs {missing}: pip install 'fraudstream[kafka]'")

        return
    app.command("produce")(produce_command)


_register_produce()


def _register_flink() -> None:
    # apache-flink is an extra: `flink run` imports it only when it runs, and says how to
    # install it when it is missing.
    from fraudstream.flink.cli import flink_app

    app.add_typer(flink_app)


_register_flink()


def main() -> None:
    """Entry point: readable one-line errors instead of tracebacks."""
    try:
        app()
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
