"""The live job's watermark generator is built from its Java source on first use, and a
machine without a JDK's compiler gets one readable line instead of a traceback."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from fraudstream.config import ConfigError
from fraudstream.flink import watermarks


def test_the_generator_is_compiled_once_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    jar = watermarks.declared_idleness_jar()
    assert jar.parent == tmp_path / "fraudstream"
    with zipfile.ZipFile(jar) as archive:
        names = set(archive.namelist())
    assert {
        "fraudstream/flink/DeclaredIdleness.class",
        "fraudstream/flink/DeclaredIdleness$Generator.class",
    } <= names
    built = jar.stat().st_mtime_ns
    monkeypatch.setattr(watermarks.shutil, "which", lambda _: None)  # no javac needed now
    assert watermarks.declared_idleness_jar() == jar
    assert jar.stat().st_mtime_ns == built


def test_without_javac_one_readable_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(watermarks.shutil, "which", lambda _: None)
    with pytest.raises(ConfigError, match="javac, which is not on PATH: install a JDK"):
        watermarks.declared_idleness_jar()
