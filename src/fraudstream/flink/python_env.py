"""Which Python environment runs Flink: apache-flink has one of its own.

apache-flink (and apache-beam under it) pins pyarrow, numpy and pandas below the versions the
rest of fraudstream is locked at, so a checkout has two virtual environments
(``scripts/install.sh``): ``.venv`` for everything else and ``.venv-flink`` for Flink.
`fraudstream flink ...` started from ``.venv`` runs again in the Flink environment, with this
same fraudstream source first on its ``PYTHONPATH``; the job then hands that interpreter to
Flink (``python.executable``), so the client, the local MiniCluster and a standalone
cluster's TaskManagers all run the same packages.

The Flink environment is ``$FRAUDSTREAM_FLINK_PYTHON`` (an interpreter) when set, else the
checkout's ``.venv-flink`` when there is one. Neither (a ``pip install 'fraudstream[flink]'``
in one environment): Flink runs in this interpreter.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fraudstream.config import ConfigError

__all__ = ["FLINK_PYTHON_VARIABLE", "flink_python", "run_in_flink_python"]

FLINK_PYTHON_VARIABLE = "FRAUDSTREAM_FLINK_PYTHON"
SOURCE = Path(__file__).resolve().parents[2]  # the directory holding the fraudstream package
CHECKOUT_FLINK_VENV = SOURCE.parent / ".venv-flink"


def flink_python() -> Path | None:
    """The Flink environment's interpreter, or None when Flink runs in this one.

    >>> import os, sys
    >>> os.environ[FLINK_PYTHON_VARIABLE] = sys.executable
    >>> flink_python() is None  # this interpreter already
    True
    >>> os.environ[FLINK_PYTHON_VARIABLE] = "/nowhere/python"
    >>> flink_python()
    Traceback (most recent call last):
    ...
    fraudstream.config.ConfigError: FRAUDSTREAM_FLINK_PYTHON=/nowhere/python: no such interpreter
    >>> del os.environ[FLINK_PYTHON_VARIABLE]
    """
    configured = os.environ.get(FLINK_PYTHON_VARIABLE)
    if configured:
        python = Path(configured)
        if not python.is_file():
            raise ConfigError(f"{FLINK_PYTHON_VARIABLE}={configured}: no such interpreter")
    else:
        python = CHECKOUT_FLINK_VENV / "bin" / "python"
        if not python.is_file():
            return None
    if _same_environment(python):
        return None
    return python


def _same_environment(python: Path) -> bool:
    # A venv's bin/python is a link to the base interpreter: compare the environments (a venv
    # is the directory above bin/), not the files the links resolve to.
    if Path(sys.executable).absolute() == python.absolute():
        return True
    return Path(sys.prefix).resolve() == python.absolute().parent.parent.resolve()


def run_in_flink_python(args: list[str]) -> None:
    """Replaces this process with `fraudstream ARGS` in the Flink environment, if it is
    another one; returns when Flink runs here."""
    python = flink_python()
    if python is None:
        return
    env = dict(os.environ)
    # the same fraudstream source, whatever the Flink environment has installed
    path = [str(SOURCE), *env.get("PYTHONPATH", "").split(os.pathsep)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, path)))
    env[FLINK_PYTHON_VARIABLE] = str(python)  # the child is that interpreter: no second hop
    sys.stdout.flush()
    sys.stderr.flush()
    command = [str(python), "-c", "from fraudstream.cli import main; main()", *args]
    os.execve(command[0], command, env)
