"""The API document is what the server does: schemathesis, every check, against the real server.

The server is the app under uvicorn on a free port (``browser_support.live_server``: the demo
profiles, a write token and a read token). Schemathesis reads ``/openapi.json`` from it and
runs its phases (examples, coverage, fuzzing, stateful) with every check: no 5xx, every
status code, content type, header and body as documented, schema-valid requests accepted
(2xx, or 401/404/409: a duplicate id, a late record, a change the running rules refuse),
schema-violating ones rejected, 401 without the token, 405 with ``Allow`` for other methods.
The run is bounded (``--max-examples``) and seeded, so it takes the same cases every time.

Three settings, all deliberate:

* 413 counts as a rejection of schema-violating data (schemathesis' default list leaves it
  out); the server refuses an oversized body before reading it.
* A user rule's ``when`` (``/v1/rules/validate``, ``/v1/rules/user/{rule_id}``) is text
  of the rule language, which a JSON schema cannot describe: a schema-valid body whose
  expression does not parse or check is refused with the documented 422 (message, column).
* ``/v1/decisions/stream`` is left out: an event stream does not end, so no client that reads
  a whole response can test it. ``test_access.py`` and ``test_analyst_api.py`` test it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from browser_support import TOKEN, LiveServer

ST = Path(sys.executable).with_name("st")
MAX_EXAMPLES = 25
SEED = 16
CONFIG = """\
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]

[[operations]]
include-path-regex = "^/v1/rules/(validate|user/)"
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 404, 409, 422]
"""


def test_schemathesis_finds_no_difference_between_the_document_and_the_server(
    server: LiveServer, tmp_path: Path
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(ST), "--config-file", str(config), "run", f"{server.url}/openapi.json",
        "--checks", "all", "--header", f"Authorization: Bearer {TOKEN}",
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--exclude-path", "/v1/decisions/stream", "--request-timeout", "20",
        "--generation-database", "none", "--no-color",
        # Hypothesis' health checks time the data generation, not the API: on a loaded
        # machine "too slow" would fail a run that found nothing.
        "--suppress-health-check", "all",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout or " passed" in run.stdout, run.stdout[-2000:]


def test_the_real_server_refuses_a_foreign_host(server: LiveServer) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/", "/v1/profiles", "/v1/dead-letters", "/openapi.json"):
        refused = httpx.get(server.url + path, headers={**auth, "Host": "evil.example"})
        assert refused.status_code == 400, path
        assert refused.text == "Invalid host header"
        assert httpx.get(server.url + path, headers=auth).status_code == 200, path
