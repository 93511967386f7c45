"""The AWS path (seed 000): Kinesis in, DynamoDB, S3 and SQS/SNS out.

One concept per module, every one importing boto3 only when used (the ``aws`` extra), so a
base install still runs and an AWS URI without boto3 says how to install it in one line:

* :mod:`~fraudstream.io.aws.clients`: clients from the standard AWS chain (region,
  credentials, ``AWS_ENDPOINT_URL`` / ``--aws-endpoint-url``) and one-line errors;
* :mod:`~fraudstream.io.aws.kinesis_source` and :mod:`~fraudstream.io.aws.kinesis_shards`:
  ``--input kinesis://STREAM``, every shard, resharding followed, sequence numbers in
  checkpoints;
* :mod:`~fraudstream.io.aws.kinesis_sink`: ``--alerts kinesis://STREAM``;
* :mod:`~fraudstream.io.aws.dynamodb_store`: ``--store dynamodb://TABLE`` and
  ``fraudstream decisions``; :mod:`~fraudstream.io.aws.dynamodb_profiles`:
  ``--profiles dynamodb://TABLE``;
* :mod:`~fraudstream.io.aws.sqs_sns`: ``--alerts sqs://QUEUE`` and ``--alerts sns://ARN``;
* :mod:`~fraudstream.io.aws.s3`: rules, profiles and reference lists read from ``s3://``.

Checkpoints on S3 (``--checkpoint-dir s3://bucket/prefix``) go through fsspec (s3fs) in
:mod:`fraudstream.engine.checkpoint`.
"""

from __future__ import annotations

from typing import Any

from fraudstream.config import ConfigError

__all__ = ["AWS_SCHEMES", "is_aws_uri", "open_aws_sink"]

AWS_SCHEMES = ("kinesis://", "dynamodb://", "sqs://", "sns://", "s3://")


def is_aws_uri(target: object) -> bool:
    """Whether ``target`` names an AWS resource (a stream, table, queue, topic or object).

    >>> is_aws_uri("kinesis://CreditCardTransactions"), is_aws_uri("alerts.jsonl")
    (True, False)
    """
    return isinstance(target, str) and target.lower().startswith(AWS_SCHEMES)


def open_aws_sink(target: str) -> Any:
    """The output an AWS URI names: a Kinesis stream, an SQS queue or an SNS topic."""
    scheme = target.split("://", 1)[0].lower()
    if scheme == "kinesis":
        from fraudstream.io.aws.kinesis_sink import KinesisSink

        return KinesisSink(target)
    if scheme == "sqs":
        from fraudstream.io.aws.sqs_sns import SqsAlertSink

        return SqsAlertSink(target)
    if scheme == "sns":
        from fraudstream.io.aws.sqs_sns import SnsAlertSink

        return SnsAlertSink(target)
    raise ConfigError(f"{target}: not an output (kinesis://, sqs:// or sns:// are)")
