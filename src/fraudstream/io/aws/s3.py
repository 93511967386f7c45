"""Rules, profiles and reference lists read from S3 (seed 000 keeps reference data there).

``--rules s3://bucket/rules.yaml``, ``--profiles s3://bucket/profiles.csv``,
``--ip-countries s3://...`` and ``--anonymous-networks s3://...`` are copied once, when the
run starts, into a private temporary directory removed at exit; the run then reads the copy
exactly as it reads a local file (the format comes from the object's suffix). A rules file on
S3 is therefore not watched for edits: change it and restart, or keep the live rules file
local. The copy goes through fsspec (s3fs), so it uses the same credentials and endpoint as
every other AWS client.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from fraudstream.config import ConfigError
from fraudstream.io.aws.clients import INSTALL

__all__ = ["is_s3_url", "local_copy", "local_path"]

_copies: list[str] = []  # temporary directories to remove at exit


def is_s3_url(location: object) -> bool:
    """Whether ``location`` is an ``s3://`` URL.

    >>> is_s3_url("s3://flink-fraud-detection-bucket/rules.yaml"), is_s3_url("rules.yaml")
    (True, False)
    """
    return isinstance(location, str) and location.lower().startswith("s3://")


def _remove_copies() -> None:
    for directory in _copies:
        shutil.rmtree(directory, ignore_errors=True)


def local_copy(url: str, option: str) -> Path:
    """A local copy of the S3 object ``url`` (read by ``option``), kept until exit."""
    try:
        import fsspec  # type: ignore[import-untyped]

        fs, path = fsspec.core.url_to_fs(url)
    except ImportError:
        raise ConfigError(f"{option} {url}: reading from S3 needs s3fs: {INSTALL}") from None
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise ConfigError(f"{option} {url}: name an object, not a prefix")
    if not _copies:
        atexit.register(_remove_copies)
    directory = tempfile.mkdtemp(prefix="fraudstream-s3-")
    _copies.append(directory)
    target: Path = Path(directory) / str(name)
    try:
        fs.get_file(path, str(target))
    except FileNotFoundError:
        raise ConfigError(f"{option} {url}: no such object") from None
    except (OSError, ValueError) as exc:  # s3fs says what went wrong (rights, endpoint)
        raise ConfigError(f"{option} {url}: {exc}") from None
    return target


def local_path(location: str | None, option: str) -> Path | None:
    """The file an option names: a local path as is, an ``s3://`` object as a local copy.

    >>> local_path("rules.yaml", "--rules"), local_path(None, "--rules")
    (PosixPath('rules.yaml'), None)
    >>> local_path("gs://bucket/rules.yaml", "--rules")
    Traceback (most recent call last):
    ...
    fraudstream.config.ConfigError: --rules gs://bucket/rules.yaml: a file path or s3://bucket/key
    """
    if location is None:
        return None
    if is_s3_url(location):
        return local_copy(location, option)
    if "://" in location:
        raise ConfigError(f"{option} {location}: a file path or s3://bucket/key")
    return Path(location)
