"""Flink's REST API, the few calls operating a job needs: its state, stop with a savepoint.

Any cluster's REST endpoint (``host:port``: a standalone cluster's, a session cluster's,
what ``--jobmanager`` takes). Plain ``urllib``: the answers are small JSON documents.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from fraudstream.flink.uris import to_uri

__all__ = ["job_state", "rest_get", "rest_post", "stop_with_savepoint", "subtask_hosts"]


def rest_get(address: str, path: str, timeout_s: float = 10.0) -> Any:
    """GET a REST path (``/jobs/overview``) at ``host:port`` and decode its JSON."""
    with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout_s) as response:
        return json.loads(response.read())


def rest_post(address: str, path: str, body: dict[str, Any], timeout_s: float = 10.0) -> Any:
    """POST a JSON body to a REST path and decode the JSON answer."""
    request = urllib.request.Request(
        f"http://{address}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def job_state(address: str, job_id: str) -> str:
    """RUNNING, FINISHED, CANCELED, FAILED, ... of one job."""
    return str(rest_get(address, f"/jobs/{job_id}")["state"])


def stop_with_savepoint(
    address: str, job_id: str, directory: str, drain: bool = False, timeout_s: float = 300.0
) -> str:
    """Stops a job with a savepoint in ``directory`` and returns the savepoint's path.

    ``drain`` advances event time to the end first (every timer fires): for a job that will
    not be resumed. Without it the savepoint resumes the job exactly where it stopped.
    """
    target = to_uri(directory)
    trigger = rest_post(
        address, f"/jobs/{job_id}/stop", {"targetDirectory": target, "drain": drain}
    )["request-id"]
    deadline = time.monotonic() + timeout_s
    while True:
        answer = rest_get(address, f"/jobs/{job_id}/savepoints/{trigger}")
        if answer["status"]["id"] == "COMPLETED":
            operation = answer["operation"]
            if "failure-cause" in operation:
                cause = operation["failure-cause"].get("class", "unknown")
                raise RuntimeError(f"the savepoint failed: {cause}")
            return str(operation["location"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"no savepoint of job {job_id} after {timeout_s:.0f} s")
        time.sleep(0.5)


def subtask_hosts(address: str, job_id: str) -> dict[str, set[str]]:
    """For each operator (vertex name), the TaskManagers its subtasks ran on."""
    hosts: dict[str, set[str]] = {}
    for vertex in rest_get(address, f"/jobs/{job_id}")["vertices"]:
        detail = rest_get(address, f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")
        hosts[vertex["name"]] = {tm["taskmanager-id"] for tm in detail["taskmanagers"]}
    return hosts
