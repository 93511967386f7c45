"""Command-line options shared by the commands that build a pipeline (`run`, `serve`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class TimeMode(StrEnum):
    """Which clock the detectors use."""

    event = "event"
    processing = "processing"


# A card or user idle this long starts fresh, so memory stays bounded on an endless stream.
DEFAULT_STATE_TTL_HOURS = 720.0

RulesOption = Annotated[Path | None, typer.Option(help="Rules YAML/JSON file.")]
ProfilesOption = Annotated[
    Path | None, typer.Option(help="Profiles YAML/JSON/CSV/Parquet file (CSV, Parquet: fastest).")
]
TimeOption = Annotated[TimeMode, typer.Option("--time", help="event or processing time.")]
OutOfOrdernessOption = Annotated[int, typer.Option(help="Watermark delay (ms).")]
LatenessOption = Annotated[
    int, typer.Option(help="Decide records this far behind the watermark (ms).")
]
IdleTimeoutOption = Annotated[
    int, typer.Option(help="Advance time after this long without input (ms).")
]
IpCountriesOption = Annotated[
    Path | None, typer.Option(help="CSV network,country for ip_country_mismatch.")
]
AnonymousNetworksOption = Annotated[
    Path | None, typer.Option(help="CSV network,label for anonymous_network.")
]
GroupIdOption = Annotated[
    str, typer.Option(help="Kafka consumer group of a kafka:// input (offsets at checkpoints).")
]
ProfilesTopicOption = Annotated[
    str | None,
    typer.Option(
        help="Compacted Kafka topic of user profiles (a topic on the input's cluster, "
        "or kafka://host:port/topic); upserts apply to the next batch."
    ),
]
MaxRecordBytesOption = Annotated[
    int,
    typer.Option(
        help="A record (JSON line, Kafka value, API record) longer than this many bytes is a "
        "dead letter; a longer line is never held whole.",
        min=1,
    ),
]
MaxNestingDepthOption = Annotated[
    int,
    typer.Option(
        help="A record nesting objects/arrays deeper than this (the record itself is level 1) "
        "is a dead letter.",
        min=1,
    ),
]
StopAtEndOption = Annotated[
    bool,
    typer.Option(
        "--stop-at-end",
        help="kafka:// or kinesis:// input: stop once every partition (shard) is read to its "
        "end (a backfill).",
    ),
]
# `run` also reads these from S3 (and profiles from DynamoDB): plain strings, since a Path
# would fold the URL's "//".
RulesLocationOption = Annotated[
    str | None, typer.Option("--rules", help="Rules YAML/JSON file (or s3://bucket/key).")
]
ProfilesLocationOption = Annotated[
    str | None,
    typer.Option(
        "--profiles",
        help="Profiles YAML/JSON/CSV/Parquet file (CSV, Parquet: fastest), s3://bucket/key, "
        "or dynamodb://TABLE.",
    ),
]
IpCountriesLocationOption = Annotated[
    str | None,
    typer.Option("--ip-countries", help="CSV network,country for ip_country_mismatch (or s3://)."),
]
AnonymousNetworksLocationOption = Annotated[
    str | None,
    typer.Option(
        "--anonymous-networks", help="CSV network,label for anonymous_network (or s3://)."
    ),
]
AwsEndpointOption = Annotated[
    str | None,
    typer.Option(
        "--aws-endpoint-url",
        help="Send every AWS call (Kinesis, DynamoDB, S3, SQS, SNS) here: LocalStack, moto. "
        "Default: AWS_ENDPOINT_URL, else AWS itself.",
    ),
]
