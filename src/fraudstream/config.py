"""Configuration errors and file loading shared by rules, profiles and the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration problem, said in one line a person can act on."""


def load_document(path: Path) -> Any:
    """A YAML or JSON document (by suffix; YAML otherwise), with a readable error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {first}"
        ) from None


def load_rows(path: Path, list_key: str) -> list[dict[str, Any]]:
    """Rows from a CSV file, or the ``list_key`` list (or a bare list) of a YAML/JSON file."""
    if path.suffix.lower() == ".csv":
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                return [dict(row) for row in csv.DictReader(handle)]
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    document = load_document(path)
    if isinstance(document, dict):
        document = document.get(list_key)
    if not isinstance(document, list) or not all(isinstance(r, dict) for r in document):
        raise ConfigError(f"{path}: expected a list of {list_key} (a '{list_key}:' list)")
    return document
