"""A standalone Flink cluster on this machine, from the distribution apache-flink ships.

PyFlink's wheel carries Flink's ``bin/`` scripts and ``lib/`` jars; this starts one
JobManager and ``taskmanagers`` TaskManager processes from them (each its own JVM, as on a
real cluster), bound to 127.0.0.1, with every file it writes (configuration, logs, pid
files) under one directory. ``fraudstream flink run --target remote --jobmanager ADDRESS``
then submits to it as to any cluster; ``fraudstream flink cluster start/stop`` wraps it.

The configuration is Flink's own ``config.yaml`` from the distribution, with the addresses,
ports, slots and memory set here; the TaskManagers run Python operators with this
interpreter (``python.executable``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fraudstream.config import load_yaml
from fraudstream.flink.job import python_path
from fraudstream.flink.rest import rest_get

__all__ = ["StandaloneCluster", "flink_home", "free_port"]

HOST = "127.0.0.1"


def flink_home() -> Path:
    """The Flink distribution inside the installed apache-flink package."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class StandaloneCluster:
    """One JobManager and ``taskmanagers`` TaskManagers with ``slots`` slots each.

    ``directory`` holds ``conf/``, ``lib/`` (links to the distribution's jars), ``log/`` and
    the daemons' pid files; :meth:`stop` ends every process :meth:`start` started, also from
    another process (``fraudstream flink cluster stop``), by those pid files.
    """

    directory: Path
    taskmanagers: int = 2
    slots: int = 1
    rest_port: int = 0  # 0: a free port
    jobmanager_memory: str = "1024m"
    taskmanager_memory: str = "3g"  # micro-batches of ~33 MB cross the Python operators

    @property
    def address(self) -> str:
        """``host:port`` of the REST endpoint (what ``--jobmanager`` takes)."""
        return f"{HOST}:{self._settings()['rest']['port']}"

    def start(self, timeout_s: float = 90.0) -> str:
        """Starts the daemons and waits until every TaskManager has registered."""
        if self.running():
            raise RuntimeError(f"a cluster from {self.directory} is already running")
        self._write_configuration()
        self._daemon("jobmanager.sh", "start")
        started, self.taskmanagers = self.taskmanagers, 0
        self.add_taskmanagers(started, timeout_s)
        return self.address

    def add_taskmanagers(self, count: int, timeout_s: float = 90.0) -> None:
        """Starts ``count`` more TaskManagers (scaling the cluster out) and waits for them."""
        for _ in range(count):
            self._daemon("taskmanager.sh", "start")
        self.taskmanagers += count
        deadline = time.monotonic() + timeout_s
        while (registered := self._registered()) != self.taskmanagers:
            if time.monotonic() > deadline:
                self.stop()
                log = self.directory / "log"
                raise RuntimeError(
                    f"the Flink cluster did not come up in {timeout_s:.0f} s "
                    f"({max(registered, 0)} of {self.taskmanagers} TaskManagers); logs in {log}"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        """Stops every daemon this directory's pid files name (no-op when none runs)."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in self.pids()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.pids():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        for pid_file in (self.directory / "pid").glob("*.pid"):
            pid_file.unlink()

    def running(self) -> bool:
        """Whether a daemon started from this directory is still alive."""
        return any(_alive(pid) for pid in self.pids())

    def taskmanager_ids(self) -> list[str]:
        """The registered TaskManagers' ids, as the REST API names them."""
        answer = rest_get(self.address, "/taskmanagers")
        return [tm["id"] for tm in answer["taskmanagers"]]

    def _registered(self) -> int:
        try:
            return len(self.taskmanager_ids())
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return -1

    def _settings(self) -> dict[str, Any]:
        with (self.directory / "conf" / "config.yaml").open() as handle:
            loaded: dict[str, Any] = load_yaml(handle.read())
        return loaded

    def _write_configuration(self) -> None:
        home = flink_home()
        for name in ("conf", "lib", "log", "pid"):
            (self.directory / name).mkdir(parents=True, exist_ok=True)
        lib = self.directory / "lib"
        # flink-python sits in opt/; Python jobs need it on the cluster's class path.
        for jar in [*(home / "lib").glob("*.jar"), *(home / "opt").glob("flink-python-*.jar")]:
            link = lib / jar.name
            if not link.exists():
                link.symlink_to(jar)
        with (home / "conf" / "config.yaml").open() as handle:
            settings: dict[str, Any] = load_yaml(handle.read()) or {}
        settings["jobmanager"] = {
            "bind-host": HOST,
            "rpc": {"address": HOST, "port": free_port()},
            "memory": {"process": {"size": self.jobmanager_memory}},
            "execution": {"failover-strategy": "region"},
        }
        settings["taskmanager"] = {
            "bind-host": HOST,
            "host": HOST,
            "numberOfTaskSlots": self.slots,
            "memory": {"process": {"size": self.taskmanager_memory}},
        }
        port = self.rest_port or free_port()
        settings["rest"] = {"address": HOST, "bind-address": HOST, "port": port}
        settings["python"] = {
            "executable": sys.executable,
            "client": {"executable": sys.executable},
        }
        with (self.directory / "conf" / "config.yaml").open("w") as handle:
            yaml.safe_dump(settings, handle, sort_keys=False)
        log4j = home / "conf" / "log4j.properties"
        if not log4j.exists():
            log4j = home / "conf" / "log4j-cli.properties"
        shutil.copyfile(log4j, self.directory / "conf" / "log4j.properties")

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            FLINK_CONF_DIR=str(self.directory / "conf"),
            FLINK_LIB_DIR=str(self.directory / "lib"),
            FLINK_LOG_DIR=str(self.directory / "log"),
            FLINK_PID_DIR=str(self.directory / "pid"),
            # bin/find-flink-home.sh asks this interpreter where pyflink lives
            PYFLINK_PYTHON=sys.executable,
            # Thread mode embeds the Python found on PATH in the TaskManager (pemja): it
            # must be this environment's, with its packages (pemja, pyflink, fraudstream).
            PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            PYTHONPATH=python_path(),
        )
        return env

    def _daemon(self, script: str, action: str) -> None:
        subprocess.run(
            ["bash", str(flink_home() / "bin" / script), action],
            env=self._environment(),
            cwd=self.directory,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def pids(self) -> list[int]:
        """The daemons' process ids (from their pid files)."""
        pids: list[int] = []
        for pid_file in (self.directory / "pid").glob("*.pid"):
            pids.extend(int(word) for word in pid_file.read_text().split() if word.isdigit())
        return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
