"""Paths and Flink file-system URIs: what runs where a TaskManager reads it.

A job's TaskManagers do not run in the client's working directory, so every local path the
job carries is absolute; ``file:`` URIs (``file:///x`` and Flink's own ``file:/x``) are
local paths too; any other scheme (``s3://``, ``hdfs://``) is Flink's to read.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

__all__ = ["is_local", "local_path", "to_uri"]


def is_local(path: str) -> bool:
    """Whether ``path`` is on the local file system (not ``s3://``, ``hdfs://``, ...).

    >>> is_local("tx.jsonl"), is_local("file:/tmp/sp"), is_local("s3://bucket/tx")
    (True, True, False)
    """
    return "://" not in path or path.startswith("file:")


def local_path(path: str) -> Path:
    """A local file's absolute path, from a plain path or a ``file:`` URI.

    >>> str(local_path("file:///data/tx.jsonl")), str(local_path("file:/data/sp"))
    ('/data/tx.jsonl', '/data/sp')
    >>> local_path("tx.jsonl").is_absolute()
    True
    """
    if path.startswith("file:"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(path).path))
    return Path(path).resolve()


def to_uri(path: str) -> str:
    """A Flink file-system URI: local paths become absolute ``file://`` URIs.

    >>> to_uri("s3://bucket/out"), to_uri("/data/out")
    ('s3://bucket/out', 'file:///data/out')
    """
    if not is_local(path) or path.startswith("file:"):
        return path
    return Path(path).resolve().as_uri()
