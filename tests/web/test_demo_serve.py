"""``fraudstream demo --serve``: after the batch outputs, the app with the simulator feeding it.

Without a terminal (scripts, CI, the other demo tests) the demo does not serve unless asked;
``--serve-seconds`` stops it by itself.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_demo_serves_the_app_fed_live_then_stops(tmp_path: Path) -> None:
    port = free_port()
    directory = tmp_path / "demo"
    command = [FRAUDSTREAM, "demo", "--directory", str(directory), "--count", "2000",
               "--serve", "--serve-seconds", "10", "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={"FRAUDSTREAM_TOKEN": "demo-test-token", "PATH": "/usr/bin:/bin",
                        "FRAUDSTREAM_TOKEN_KEY": "test", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            seen.append(health["decided"])
            if health["decided"] >= 3:
                break
            time.sleep(0.2)
        assert seen and seen[-1] >= 3, f"the simulator did not feed the app: {seen}"
        profiles = httpx.get(f"http://127.0.0.1:{port}/v1/profiles", timeout=5).json()
        assert profiles[0]["first_name"] == "Lena"
        queue = httpx.get(f"http://127.0.0.1:{port}/v1/review-queue?limit=1000", timeout=5).json()
        batch = [item for item in queue if item["transaction_id"].startswith("tx-")]
        assert batch, "the batch run's alerts wait for review"
        assert {item["status"] for item in batch} == {"open"}
        assert all("amount" in item["transaction"] for item in batch)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200
        unauthorised = httpx.patch(f"http://127.0.0.1:{port}/v1/rules", json={"who": "x"})
        assert unauthorised.status_code == 401
        _, stderr = process.communicate(timeout=120)  # --serve-seconds ends it
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert (directory / "decisions.jsonl").is_file()  # the batch demo ran first
    assert re.search(rf"http://127\.0\.0\.1:{port}/#token=demo-test-token", stderr), stderr
    assert (directory / "web" / "reviews.db").is_file()
    queued = re.search(r"review +(\d+) new alerts of the batch run", stderr)
    assert queued and int(queued.group(1)) == len(batch), stderr
