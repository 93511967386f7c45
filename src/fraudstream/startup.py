"""Start-up without two probes for libraries the process never uses: a quarter of its time.

Two dependencies ask, the first time they are used, whether an optional library is
installed, by importing it:

- pyarrow, on its first array built from Python values (``pa.array([...])``), imports pandas
  to recognise pandas objects: about a second (0.6 s with bytecode compiled), although
  nothing in ``fraudstream run`` or ``serve`` hands pyarrow a pandas object. Its lazy shim
  remembers a failed probe and imports pandas for real the first time a caller needs it
  (``Table.to_pandas``, ``Table.from_pandas``, ``pa.table(frame)``), so a failed probe costs
  a pandas user only a slower ``pa.array(series)`` (read as a sequence of values).
- numba, as it loads its first compiled function, imports ``scipy.linalg`` (0.15 s) to decide
  whether ``np.trapz``-style inner products may call BLAS; without it they loop, and
  ``np.dot`` and ``np.linalg`` still import SciPy when a kernel using them compiles. No
  kernel here uses either.

:func:`skip_import_probes` runs both probes with those imports failing, once per process,
before anything else builds an array or loads a kernel; the commands with a start-up bar
(issue 18: ``run`` decides its first record within 1 s, ``serve`` answers within 2 s) call it
first thing. A library already imported is not hidden.

>>> skip_import_probes()
>>> import pyarrow as pa
>>> pa.array([1, 2]).to_pylist()
[1, 2]
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType

__all__ = ["skip_import_probes"]


class _Hidden(importlib.abc.MetaPathFinder):
    """An import finder that answers an import of ``package`` (or below) with
    ModuleNotFoundError."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == self.package or fullname.startswith(self.package + "."):
            raise ModuleNotFoundError(f"{self.package} is not probed for", name=fullname)
        return None


@contextmanager
def _hidden(package: str) -> Iterator[None]:
    finder = _Hidden(package)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def skip_import_probes() -> None:
    """Make pyarrow's "is pandas installed?" and numba's "is SciPy's BLAS installed?" answer
    no, unless that library is imported already.

    Call it before the process builds its first array or loads its first kernel; later
    calls, and calls after a probe has run, change nothing."""
    if "pandas" not in sys.modules:
        import pyarrow as pa

        with _hidden("pandas"):
            pa.array([0])  # the probe runs here and fails; pyarrow records "no pandas"
    if "scipy" not in sys.modules and "numba.np.arraymath" not in sys.modules:
        with _hidden("scipy"):
            importlib.import_module("numba.np.arraymath")  # its BLAS check fails: loops
