"""Transaction simulators: where test, demo and benchmark traffic comes from.

- :mod:`.walkthrough`: Apache Flink's DataStream walkthrough source (seed 003), 50 amounts
  looped, the ``account 3`` small-then-large case.
- :mod:`.demo`: seed 002's four users plus generated ones moving around 30 world cities, with
  labelled fraud scenarios injected (impossible travel, velocity, card testing, small then
  large, zip mismatch, amount anomaly, new device, anonymous network).
- :mod:`.workload`: millions of rows as an Arrow table for benchmarks (imported on first use,
  so importing this package does not load pyarrow).
- :mod:`.pacing`: :func:`paced`, a drift-free wall-clock rate limiter for live demos.

All generators are deterministic for a given seed and need no network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .demo import (
    CITIES,
    COUNTRY_IP_BLOCKS,
    DEMO_USERS,
    FRAUD_SCENARIOS,
    SCENARIOS,
    demo_profiles,
    demo_records,
    ip_country,
    write_profiles,
)
from .pacing import paced
from .walkthrough import WALKTHROUGH_AMOUNTS, walkthrough_records

if TYPE_CHECKING:
    from .workload import benchmark_table, write_table

__all__ = [
    "CITIES",
    "COUNTRY_IP_BLOCKS",
    "DEMO_USERS",
    "FRAUD_SCENARIOS",
    "SCENARIOS",
    "WALKTHROUGH_AMOUNTS",
    "benchmark_table",
    "demo_profiles",
    "demo_records",
    "ip_country",
    "paced",
    "walkthrough_records",
    "write_profiles",
    "write_table",
]


def __getattr__(name: str) -> Any:
    if name in ("benchmark_table", "write_table"):
        from . import workload

        return getattr(workload, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
