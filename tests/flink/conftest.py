"""A messy 20,000-record stream, the embedded run over it, and Flink runs shared by the tests.

The stream is the demo generator's (every scenario) with, seeded: records moved a few places
later (out of order, decided within the allowed lateness), records moved thousands of places
later (behind the watermark by more than the lateness: late), malformed lines and repeated
transaction ids (dead letters). Each Flink run starts a MiniCluster (~10-15 s), so every
configuration runs once per session.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("pyflink", reason="Flink's tests run in .venv-flink (scripts/test.sh does)")
if shutil.which("java") is None:
    pytest.skip("flink tests need a JDK (java on PATH)", allow_module_level=True)

from flink_helpers import FRAUDSTREAM, OPTIONS, OUTPUTS, Receiver, messy_stream  # noqa: E402


@pytest.fixture(scope="session")
def stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The messy input file and its profiles."""
    return messy_stream(tmp_path_factory.mktemp("flink-stream"))


@pytest.fixture(scope="session")
def embedded(stream: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`fraudstream run` over the stream: one JSON-lines file per output."""
    path, profiles = stream
    out = tmp_path_factory.mktemp("embedded")
    outputs = [a for n in OUTPUTS for a in (f"--{n.replace('_', '-')}", str(out / f"{n}.jsonl"))]
    subprocess.run(
        [FRAUDSTREAM, "run", "--input", str(path), "--profiles", str(profiles), *OPTIONS,
         "--quiet", *outputs],
        check=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def flink_run(
    stream: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Path]:
    """`fraudstream flink run --target local` with extra options, once per option set."""
    done: dict[tuple[str, ...], Path] = {}

    def run(*extra: str) -> Path:
        if extra not in done:
            path, profiles = stream
            out = tmp_path_factory.mktemp("flink")
            command = [
                FRAUDSTREAM, "flink", "run", "--input", str(path), "--profiles", str(profiles),
                *OPTIONS, "--target", "local", "--checkpoint-dir", str(out / "checkpoints"),
                "--quiet", *extra,
                *[a for name in OUTPUTS for a in (f"--{name.replace('_', '-')}", str(out / name))],
            ]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, result.stderr[-3000:]
            done[extra] = out
        return done[extra]

    return run


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook endpoint on a free port that refuses its first two deliveries."""
    endpoint = Receiver(refuse=2)
    thread = threading.Thread(target=endpoint.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        endpoint.server.shutdown()
        endpoint.server.server_close()
