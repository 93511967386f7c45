"""Command-line options shared by the commands that build a pipeline (`run`, `serve`,
`flink run`, `backtest`): outside the ``cli`` package, which web and Flink code never import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# the options' types and defaults, re-exported for the command modules
from fraudstream.assembly import DEFAULT_STATE_TTL_HOURS as DEFAULT_STATE_TTL_HOURS
from fraudstream.assembly import TimeMode as TimeMode

RulesOption = Annotated[
    Path | None, typer.Option(rich_help_panel="Rules and profiles", help="Rules YAML/JSON file.")
]
ProfilesOption = Annotated[
    Path | None,
    typer.Option(
        rich_help_panel="Rules and profiles",
        help="Profiles YAML/JSON/CSV/Parquet file (CSV, Parquet: fastest).",
    ),
]
TimeOption = Annotated[
    TimeMode, typer.Option("--time", rich_help_panel="Time", help="event or processing time.")
]
OutOfOrdernessOption = Annotated[
    int, typer.Option(rich_help_panel="Time", help="Watermark delay (ms).")
]
LatenessOption = Annotated[
    int,
    typer.Option(rich_help_panel="Time", help="Decide records this far behind the watermark (ms)."),
]
IdleTimeoutOption = Annotated[
    int,
    typer.Option(rich_help_panel="Time", help="Advance time after this long without input (ms)."),
]
IpCountriesOption = Annotated[
    Path | None,
    typer.Option(
        rich_help_panel="Rules and profiles", help="CSV network,country for ip_country_mismatch."
    ),
]
AnonymousNetworksOption = Annotated[
    Path | None,
    typer.Option(
        rich_help_panel="Rules and profiles", help="CSV network,label for anonymous_network."
    ),
]
GroupIdOption = Annotated[
    str,
    typer.Option(
        rich_help_panel="Kafka, Kinesis, AWS",
        help="Kafka consumer group of a kafka:// input (offsets at checkpoints).",
    ),
]
ProfilesTopicOption = Annotated[
    str | None,
    typer.Option(
        rich_help_panel="Kafka, Kinesis, AWS",
        help="Compacted Kafka topic of user profiles (a topic on the input's cluster, "
        "or kafka://host:port/topic); upserts apply to the next batch.",
    ),
]
MaxRecordBytesOption = Annotated[
    int,
    typer.Option(
        rich_help_panel="Input",
        help="A record (JSON line, Kafka value, API record) longer than this many bytes is a "
        "dead letter; a longer line is never held whole.",
        min=1,
    ),
]
MaxNestingDepthOption = Annotated[
    int,
    typer.Option(
        rich_help_panel="Input",
        help="A record nesting objects/arrays deeper than this (the record itself is level 1) "
        "is a dead letter.",
        min=1,
    ),
]
StopAtEndOption = Annotated[
    bool,
    typer.Option(
        "--stop-at-end",
        rich_help_panel="Kafka, Kinesis, AWS",
        help="kafka:// or kinesis:// input: stop once every partition (shard) is read to its "
        "end (a backfill).",
    ),
]
# `run` also reads these from S3 (and profiles from DynamoDB): plain strings, since a Path
# would fold the URL's "//".
RulesLocationOption = Annotated[
    str | None,
    typer.Option(
        "--rules",
        rich_help_panel="Rules and profiles",
        help="Rules YAML/JSON file (or s3://bucket/key).",
    ),
]
ProfilesLocationOption = Annotated[
    str | None,
    typer.Option(
        "--profiles",
        rich_help_panel="Rules and profiles",
        help="Profiles YAML/JSON/CSV/Parquet file (CSV, Parquet: fastest), s3://bucket/key, "
        "or dynamodb://TABLE.",
    ),
]
LakehouseOption = Annotated[
    str | None,
    typer.Option(
        rich_help_panel="Outputs",
        help="Iceberg lakehouse: a directory, or a pyiceberg catalog YAML/JSON.",
    ),
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        rich_help_panel="Outputs",
        help="Decision store: a SQLite path, an SQLAlchemy URL or dynamodb://TABLE (upsert by id).",
    ),
]
WebhookOption = Annotated[
    str | None,
    typer.Option(
        rich_help_panel="Outputs",
        help="POST every alert here (retried; kept if undeliverable; at least once).",
    ),
]
WebhookSecretEnvOption = Annotated[
    str | None,
    typer.Option(
        rich_help_panel="Outputs",
        help="Environment variable holding the webhook's HMAC secret (read where the "
        "decisions are made).",
    ),
]
AlertCommandOption = Annotated[
    str | None,
    typer.Option(
        rich_help_panel="Outputs",
        help="Run this command for every alert (alert JSON on stdin; at least once).",
    ),
]
IpCountriesLocationOption = Annotated[
    str | None,
    typer.Option(
        "--ip-countries",
        rich_help_panel="Rules and profiles",
        help="CSV network,country for ip_country_mismatch (or s3://).",
    ),
]
AnonymousNetworksLocationOption = Annotated[
    str | None,
    typer.Option(
        "--anonymous-networks",
        rich_help_panel="Rules and profiles",
        help="CSV network,label for anonymous_network (or s3://).",
    ),
]
AwsEndpointOption = Annotated[
    str | None,
    typer.Option(
        "--aws-endpoint-url",
        rich_help_panel="Kafka, Kinesis, AWS",
        help="Send every AWS call (Kinesis, DynamoDB, S3, SQS, SNS) here: LocalStack, moto. "
        "Default: AWS_ENDPOINT_URL, else AWS itself.",
    ),
]
