"""Start-up skips the pandas and SciPy probes, and loses nothing by it (fraudstream.startup)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from fraudstream.startup import skip_import_probes
skip_import_probes()
import numba, numpy as np, pyarrow as pa
from fraudstream.engine.keys import KeySpace
KeySpace(["a", "b"]).slots(pa.array(["b"]))  # builds arrays, loads compiled kernels
skipped = {"pandas": "pandas" in sys.modules, "scipy": "scipy" in sys.modules}
@numba.njit
def dot(a, b):
    return np.dot(a, b)
blas = float(dot(np.ones(3), np.ones(3)))  # linear algebra still compiles (SciPy on demand)
frame = pa.table({"x": [1, 2]}).to_pandas()  # pandas still comes when asked for
print(json.dumps({"before": skipped, "blas": blas, "frame": frame["x"].tolist()}))
"""


def test_the_probes_are_skipped_and_what_needs_them_still_works() -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("scipy")
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=True
    )
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"before": {"pandas": False, "scipy": False}, "blas": 3.0, "frame": [1, 2]}
