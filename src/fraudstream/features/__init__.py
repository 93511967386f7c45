"""Streaming features for models, computed by the runtime's own keyed state.

- :mod:`.kernels`: numba kernels over per-customer and per-terminal rings (exact windows).
- :mod:`.engine`: :class:`StreamingFeatures`, the state and the step the pipeline calls.
- :mod:`.catalog`: feature names (the handbook's 15, ours).
- :mod:`.reference`: the same features written plainly, the oracle the tests use.
- :mod:`.checkpoint`: the feature state as arrays for checkpoints, and back.
"""

from __future__ import annotations

from .catalog import BOOK_FEATURES, OUR_FEATURES
from .engine import FeatureConfig, StreamingFeatures

__all__ = ["BOOK_FEATURES", "OUR_FEATURES", "FeatureConfig", "StreamingFeatures"]
