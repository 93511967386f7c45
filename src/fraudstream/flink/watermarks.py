"""Watermarks whose idleness the stream declares, for the live keyed job.

Flink's ``with_idleness`` takes an input for idle when nothing has come from it for a while.
Between the live decoders and the card operator that guess is unsafe: the watermark
assigner runs in a task of its own (the job runs unchained), so a decoder busy with a large
batch, or on a TaskManager still loading its Python modules, looks idle after the timeout,
and the other decoders' watermark passes the records it is about to send (seen on a loaded
two-core machine: a savepoint restored at parallelism 4 decided most records out of order).

``DeclaredIdleness`` (``java/DeclaredIdleness.java``, a ``WatermarkStrategy``) is Flink's
bounded-out-of-orderness generator plus one rule: an event timed :data:`IDLE_MARK` marks its
input idle (after its watermark is out), and the next other event makes it active again. A
decoder sends that mark only when every line it had is decided
(:mod:`fraudstream.flink.live_lines`), so a busy decoder is never left out. PyFlink has no
Python API for a generator, so the class is compiled once with the JDK's ``javac`` against the
wheel's own Flink jars (about a second) into a jar cached under ``~/.cache/fraudstream``, and
the jar goes with the job (``pipeline.jars``) to whichever cluster runs it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from fraudstream.config import ConfigError
from fraudstream.schema import MIN_TIMESTAMP_MS

# Before NOTHING_BEFORE (live_lines) and every valid record's time; far from Long.MIN_VALUE.
IDLE_MARK = MIN_TIMESTAMP_MS - 2
SOURCE = Path(__file__).parent / "java" / "DeclaredIdleness.java"
CLASS_NAME = "fraudstream.flink.DeclaredIdleness"

__all__ = ["IDLE_MARK", "declared_idleness", "declared_idleness_jar"]


def declared_idleness(env: Any, out_of_orderness_ms: int) -> Any:
    """A PyFlink ``WatermarkStrategy``: bounded out-of-orderness, idle only when declared.
    Adds its jar to ``env``."""
    from pyflink.common import WatermarkStrategy
    from pyflink.java_gateway import get_gateway

    env.add_jars(declared_idleness_jar().as_uri())
    strategy_class = get_gateway().jvm.fraudstream.flink.DeclaredIdleness
    return WatermarkStrategy(strategy_class(int(out_of_orderness_ms), int(IDLE_MARK)))


def declared_idleness_jar() -> Path:
    """The compiled jar, built on first use (cached by the source's and Flink's versions)."""
    import pyflink

    flink_lib = Path(pyflink.__file__).parent / "lib"
    source = SOURCE.read_bytes()
    flink = sorted(p.name for p in flink_lib.glob("flink-dist*.jar"))
    digest = hashlib.sha256(source + "\n".join(flink).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fraudstream"
    jar = cache / f"declared-idleness-{digest}.jar"
    if jar.is_file():
        return jar
    javac = shutil.which("javac")
    if javac is None:
        raise ConfigError(
            "the live Flink job compiles a watermark generator with javac, which is not on "
            "PATH: install a JDK (Flink needs Java 11 or later) rather than a JRE alone"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as work:
        classes = Path(work) / "classes"
        result = subprocess.run(
            [javac, "--release", "11", "-nowarn", "-cp", f"{flink_lib}/*",
             "-d", str(classes), str(SOURCE)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ConfigError(f"javac could not compile {SOURCE.name}: {result.stderr.strip()}")
        built = Path(work) / jar.name
        with zipfile.ZipFile(built, "w") as archive:
            for path in sorted(classes.rglob("*.class")):
                archive.write(path, path.relative_to(classes).as_posix())
        os.replace(built, jar)  # atomic: a concurrent build writes the same bytes
    return jar
