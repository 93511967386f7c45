"""Crash recovery at full size: 1,000,000 records, SIGKILL at >= 10 random moments, resume.

    python benchmarks/crash_recovery.py [--records 1000000] [--kills 12] [--seed 2026]

Runs the experiment of ``tests/test_crash_recovery.py`` (which the suite runs on 30,000
records): an uninterrupted `fraudstream run` with the decision store (SQLite), alerts and
decisions files, dead letters and the Iceberg lakehouse, then the same run killed with
SIGKILL at seeded random moments and resumed with ``--resume`` each time until it ends.
Prints the kills, the time to restore the last checkpoint, the runs' times and the row
counts of every output, which must be equal (asserted); appends them to
benchmarks/results/crash_recovery.jsonl.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Runs the full-size crash test (the test module's options) and records its figures."""
    spec = importlib.util.spec_from_file_location(
        "crash_recovery_test", ROOT / "tests" / "test_crash_recovery.py"
    )
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    figures = harness.full_size(__doc__.splitlines()[0])
    figures["equal_outputs"] = True  # crash_test asserts it; reaching here means it held
    print(json.dumps(figures, indent=2))
    record("crash_recovery", figures)


if __name__ == "__main__":
    main()
