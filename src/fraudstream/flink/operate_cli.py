"""``fraudstream flink cluster start|stop``, ``fraudstream flink stop`` and ``fraudstream
flink lakehouse-commit``: operating jobs.

A standalone cluster on this machine (:mod:`fraudstream.flink.cluster`) to try a real
multi-process deployment, stop-with-savepoint for any cluster's job (its REST API), and the
lakehouse rows a job left staged committed (a detached job's last checkpoint).
"""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

cluster_app = typer.Typer(
    name="cluster",
    help="A standalone Flink cluster on 127.0.0.1 (from the apache-flink package).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_err = Console(stderr=True, soft_wrap=True)
DirectoryOption = Annotated[
    Path, typer.Option("--dir", help="Where the cluster keeps its configuration, logs, pids.")
]

__all__ = ["cluster_app", "lakehouse_commit", "stop"]


def _fail(message: str) -> None:
    _err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


@cluster_app.command("start", epilog="Example: fraudstream flink cluster start")
def cluster_start(
    directory: DirectoryOption = Path("fraudstream-flink-cluster"),
    taskmanagers: Annotated[int, typer.Option(help="TaskManager processes.")] = 2,
    slots: Annotated[int, typer.Option(help="Task slots per TaskManager.")] = 1,
    rest_port: Annotated[int, typer.Option(help="REST port (0: a free one).")] = 8081,
) -> None:
    """Start a JobManager and TaskManagers; prints the address for --jobmanager."""
    from fraudstream.flink.cluster import StandaloneCluster

    if taskmanagers < 1 or slots < 1:
        _fail("--taskmanagers and --slots must be >= 1")
    cluster = StandaloneCluster(directory.resolve(), taskmanagers, slots, rest_port)
    try:
        address = cluster.start()
    except (RuntimeError, OSError) as exc:
        _fail(str(exc))
    print(address)


@cluster_app.command("stop", epilog="Example: fraudstream flink cluster stop")
def cluster_stop(directory: DirectoryOption = Path("fraudstream-flink-cluster")) -> None:
    """Stop every process of the cluster started from --dir."""
    from fraudstream.flink.cluster import StandaloneCluster

    cluster = StandaloneCluster(directory.resolve())
    if not cluster.running():
        _fail(f"no cluster from {directory} is running")
    cluster.stop()


def stop(
    job_id: Annotated[str, typer.Argument(help="The job's id (what --detach printed).")],
    jobmanager: Annotated[str, typer.Option(help="host:port of the cluster's REST endpoint.")],
    savepoint_dir: Annotated[
        str, typer.Option(help="Where the savepoint goes (a directory or file-system URI).")
    ],
    drain: Annotated[
        bool, typer.Option(help="Fire every timer first (for a job that will not resume).")
    ] = False,
) -> None:
    """Stop a running job with a savepoint; prints its path for --from-savepoint."""
    from fraudstream.flink.rest import stop_with_savepoint

    try:
        location = stop_with_savepoint(jobmanager, job_id, savepoint_dir, drain)
    except urllib.error.HTTPError as exc:
        _fail(f"the cluster at {jobmanager} refused to stop job {job_id}: HTTP {exc.code}")
    except (OSError, RuntimeError, TimeoutError) as exc:
        _fail(f"could not stop job {job_id} at {jobmanager}: {exc}")
    print(location)


def lakehouse_commit(
    lakehouse: Annotated[
        str, typer.Option(help="The lakehouse the job wrote (as given to flink run).")
    ],
    lakehouse_staging: Annotated[
        str | None, typer.Option(help="Its staging directory, if flink run was given one.")
    ] = None,
) -> None:
    """Commit the lakehouse rows a job left staged (the last checkpoint of a detached job
    that ended); each part once, whenever it runs."""
    from fraudstream.config import ConfigError
    from fraudstream.io.lakehouse_staging import commit_staged, staging_dir

    try:
        staging = staging_dir(lakehouse, lakehouse_staging)
        done = commit_staged(lakehouse, staging)
    except (ConfigError, OSError, ValueError) as exc:
        _fail(str(exc))
    print(
        f"{done.rows} rows of {done.appended_parts} parts committed; "
        f"{done.already_committed} parts were in the table already"
    )
