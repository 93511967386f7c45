"""boto3 clients from the standard AWS chain, and AWS failures said in one line.

Region, credentials and endpoint come from wherever boto3 finds them: the environment
(``AWS_DEFAULT_REGION`` or ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ...),
``~/.aws/config`` and ``~/.aws/credentials``, an instance or task role. ``AWS_ENDPOINT_URL``
(which ``--aws-endpoint-url`` sets for the run) sends every client, s3fs included, to
LocalStack or moto instead of AWS.

boto3 is imported here only when a client is made: without the ``aws`` extra an AWS URI
fails with one line saying how to install it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fraudstream.config import ConfigError

__all__ = ["AwsError", "aws_errors", "client", "error_code", "set_endpoint_url"]

log = logging.getLogger("fraudstream.aws")
INSTALL = "install fraudstream[aws] (pip install 'fraudstream[aws]')"
MAX_ATTEMPTS = 10  # botocore's standard mode: throttling and 5xx retried with backoff


class AwsError(ConfigError):
    """An AWS call failed in a way the run cannot continue past (said in one line)."""


def set_endpoint_url(url: str | None) -> None:
    """Sends every AWS client of this process (boto3, s3fs) to ``url`` (LocalStack, moto).

    It is the standard ``AWS_ENDPOINT_URL`` setting, so boto3 and s3fs agree on it.

    >>> set_endpoint_url("http://127.0.0.1:5000"); os.environ["AWS_ENDPOINT_URL"]
    'http://127.0.0.1:5000'
    >>> set_endpoint_url(None); "AWS_ENDPOINT_URL" in os.environ
    False
    """
    if url:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--aws-endpoint-url must be an http(s) URL, got {url!r}")
        os.environ["AWS_ENDPOINT_URL"] = url
    else:
        os.environ.pop("AWS_ENDPOINT_URL", None)


def boto3_module() -> Any:
    """The boto3 module, or one readable error when the ``aws`` extra is missing."""
    try:
        import boto3
    except ImportError:
        raise ConfigError(f"AWS inputs and outputs need boto3: {INSTALL}") from None
    return boto3


def client(service: str) -> Any:
    """A boto3 client for ``service`` (retries with backoff on throttling and 5xx)."""
    boto3 = boto3_module()
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    config = Config(
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        connect_timeout=5,
        read_timeout=30,
    )
    session = boto3.session.Session()
    if session.region_name is None and os.environ.get("AWS_REGION"):
        # AWS_REGION is what Lambda, ECS and the other SDKs set; boto3 reads only
        # AWS_DEFAULT_REGION and the profile
        session = boto3.session.Session(region_name=os.environ["AWS_REGION"])
    try:
        return session.client(service, config=config)
    except BotoCoreError as exc:  # no region, a bad profile, ...
        raise AwsError(f"{service}: {exc}") from None


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (empty for other errors)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Turns botocore failures inside the block into one-line :class:`AwsError`\\ s.

    >>> with aws_errors("test"):
    ...     pass
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = error.get("Message") or error.get("Code") or str(exc)
        raise AwsError(f"{what}: {message} ({error.get('Code', 'error')})") from None
    except BotoCoreError as exc:  # no credentials, no region, endpoint unreachable
        raise AwsError(f"{what}: {exc}") from None
