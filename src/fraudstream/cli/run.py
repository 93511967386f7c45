"""``fraudstream run``: decide a file, stdin, a Kafka topic or a Kinesis stream."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from fraudstream.assembly import build_pipeline, file_editor, state_ttl_ms
from fraudstream.cli.common import InputFormat, fail, print_summary, run_with_progress, warn
from fraudstream.cli_options import (
    DEFAULT_STATE_TTL_HOURS,
    AlertCommandOption,
    AnonymousNetworksLocationOption,
    AwsEndpointOption,
    GroupIdOption,
    IdleTimeoutOption,
    IpCountriesLocationOption,
    LakehouseOption,
    LatenessOption,
    MaxNestingDepthOption,
    MaxRecordBytesOption,
    OutOfOrdernessOption,
    ProfilesLocationOption,
    ProfilesTopicOption,
    RulesLocationOption,
    StopAtEndOption,
    StoreOption,
    TimeMode,
    TimeOption,
    WebhookOption,
    WebhookSecretEnvOption,
)
from fraudstream.config import ConfigError
from fraudstream.schema import MAX_NESTING_DEPTH, MAX_RECORD_BYTES


def run_command(
    input: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            rich_help_panel="Input",
            help="Input file, - for stdin, kafka://HOST:PORT/TOPIC or kinesis://STREAM.",
        ),
    ],
    format: Annotated[
        InputFormat | None,
        typer.Option(
            "--format", rich_help_panel="Input", help="Input format (default: by suffix)."
        ),
    ] = None,
    rules: RulesLocationOption = None,
    profiles: ProfilesLocationOption = None,
    decisions: Annotated[
        str | None,
        typer.Option(rich_help_panel="Outputs", help="Decisions output (.jsonl, .parquet, -)."),
    ] = None,
    alerts: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Outputs",
            help="Alerts output (non-approve decisions): a file, kafka://, kinesis://STREAM, "
            "sqs://QUEUE or sns://TOPIC-ARN.",
        ),
    ] = None,
    enriched: Annotated[
        str | None, typer.Option(rich_help_panel="Outputs", help="Enriched transactions output.")
    ] = None,
    dead_letters: Annotated[
        str | None, typer.Option(rich_help_panel="Outputs", help="Dead-letter output.")
    ] = None,
    late: Annotated[
        str | None, typer.Option(rich_help_panel="Outputs", help="Late-record output.")
    ] = None,
    time: TimeOption = TimeMode.event,
    out_of_orderness_ms: OutOfOrdernessOption = 0,
    allowed_lateness_ms: LatenessOption = 300_000,
    idle_timeout_ms: IdleTimeoutOption = 1_000,
    ip_countries: IpCountriesLocationOption = None,
    anonymous_networks: AnonymousNetworksLocationOption = None,
    store: StoreOption = None,
    webhook: WebhookOption = None,
    webhook_secret_env: WebhookSecretEnvOption = None,
    alert_command: AlertCommandOption = None,
    audit_log: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel="Rules and profiles",
            help="Where rules changes are logged (default: RULES.audit.jsonl).",
        ),
    ] = None,
    lakehouse: LakehouseOption = None,
    checkpoint_dir: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Checkpoints",
            help="Checkpoint here (a directory or an fsspec URL: s3://bucket/prefix).",
        ),
    ] = None,
    checkpoint_interval_s: Annotated[
        float, typer.Option(rich_help_panel="Checkpoints", help="Checkpoint every N seconds.")
    ] = 10.0,
    checkpoint_every_records: Annotated[
        int | None,
        typer.Option(rich_help_panel="Checkpoints", help="Also checkpoint every N records."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            rich_help_panel="Checkpoints",
            help="Restart from the latest complete checkpoint.",
        ),
    ] = False,
    batch_rows: Annotated[
        int,
        typer.Option(
            rich_help_panel="Input",
            help="Records per micro-batch read from a file (per shard and GetRecords call from "
            "Kinesis, at most 10,000).",
        ),
    ] = 262_144,
    state_ttl_hours: Annotated[
        float,
        typer.Option(
            rich_help_panel="Rules and profiles",
            help="Forget a card's/user's state after this long idle (0: never).",
        ),
    ] = DEFAULT_STATE_TTL_HOURS,
    summary_json: Annotated[
        Path | None,
        typer.Option(rich_help_panel="Outputs", help="Also write the summary as JSON here."),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", rich_help_panel="Outputs", help="No progress bar or summary."
        ),
    ] = False,
    group_id: GroupIdOption = "fraudstream",
    profiles_topic: ProfilesTopicOption = None,
    stop_at_end: StopAtEndOption = False,
    max_record_bytes: MaxRecordBytesOption = MAX_RECORD_BYTES,
    max_nesting_depth: MaxNestingDepthOption = MAX_NESTING_DEPTH,
    model: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel="Model", help="Score every transaction with this model artifact."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel="Model", help="Label stream (transaction_id, is_fraud, label_time)."
        ),
    ] = None,
    model_weight: Annotated[
        float,
        typer.Option(
            rich_help_panel="Model", help="The model's weight in the noisy-or (score = weight x p)."
        ),
    ] = 1.0,
    aws_endpoint_url: AwsEndpointOption = None,
) -> None:
    """Decide every transaction of a file, a stream (stdin), a Kafka topic or a Kinesis stream;
    write the outputs."""
    from fraudstream.startup import skip_import_probes

    skip_import_probes()  # first: the probes for pandas and SciPy take a quarter of start-up
    from fraudstream.io.files import FileSource, StdinSource, guess_format
    from fraudstream.io.limits import RecordLimits
    from fraudstream.io.preflight import check_input_file
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
        pipeline = build_pipeline(
            rules_file, None if profiles_table else local_path(profiles, "--profiles"), time,
            out_of_orderness_ms, allowed_lateness_ms, idle_timeout_ms,
            local_path(ip_countries, "--ip-countries"),
            local_path(anonymous_networks, "--anonymous-networks"), state_ttl_ms(state_ttl_hours),
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
                warn=warn,
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
            file_format = format.value if format else guess_format(input)
            check_input_file(path, file_format)
            if batch_rows < 1:
                raise ConfigError(f"--batch-rows must be >= 1, got {batch_rows}")
            source = FileSource(path, file_format, batch_rows=batch_rows)
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
                warn,
            )
        runner = Runner(
            pipeline,
            outputs,
            CardTokenizer.from_environment(),
            between_batches=watcher.poll if watcher is not None else None,
            recovery=recovery_for(
                checkpoint_dir, checkpoint_interval_s, checkpoint_every_records, resume
            ),
            limits=RecordLimits(max_record_bytes, max_nesting_depth),
        )
        if kafka is not None:  # users-config upserts apply between batches
            runner.between_batches = kafka.between_batches(runner.between_batches)
        summary = run_with_progress(runner, source, quiet or input == "-")
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
    if summary.records and not summary.decided and summary.dead_letters >= summary.records:
        fail(nothing_decided(summary, input))


def nothing_decided(summary: Any, input: str) -> str:
    """The one line a run that decided none of its records ends with (exit code 2)."""
    reasons = summary.dead_reasons.most_common(1)
    why = f"; most for {reasons[0][0]!r}" if reasons else ""
    return (
        f"--input {input}: no record could be decided: {summary.dead_letters:,} of "
        f"{summary.records:,} were dead letters{why} (see --dead-letters for each reason)"
    )


def recovery_for(
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
