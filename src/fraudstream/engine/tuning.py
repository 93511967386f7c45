"""Settings for a process (or an embedded interpreter) that runs one pipeline."""

from __future__ import annotations

import gc

__all__ = ["settle_garbage_collector"]


def settle_garbage_collector() -> None:
    """For a process that runs one pipeline: fewer, cheaper cyclic-GC passes.

    Setup objects leave the collector's view (``freeze``) and young collections wait for
    50,000 new container objects instead of 700: the hot path makes few cycles, and a batch's
    short-lived reasons would otherwise trigger hundreds of passes.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
