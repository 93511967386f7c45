"""fraudstream: real-time card-fraud detection with stateful detectors, rules and decisions."""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from fraudstream.config import ConfigError
    from fraudstream.engine.pipeline import Pipeline, TimeConfig
    from fraudstream.profiles import ProfileTable
    from fraudstream.rules import Rule, RuleSet
    from fraudstream.run import decide_records
    from fraudstream.schema import CardTokenizer, InvalidRecord

__version__ = "0.1.0"

__all__ = [
    "CardTokenizer",
    "ConfigError",
    "InvalidRecord",
    "Pipeline",
    "ProfileTable",
    "Rule",
    "RuleSet",
    "TimeConfig",
    "__version__",
    "decide_records",
]

# The public names load on first use, so importing one module of the package (a child
# process parsing JSON, `fraudstream --help`) does not import the pipeline, numba and pandas.
_HOME = {
    "CardTokenizer": "fraudstream.schema",
    "ConfigError": "fraudstream.config",
    "InvalidRecord": "fraudstream.schema",
    "Pipeline": "fraudstream.engine.pipeline",
    "ProfileTable": "fraudstream.profiles",
    "Rule": "fraudstream.rules",
    "RuleSet": "fraudstream.rules",
    "TimeConfig": "fraudstream.engine.pipeline",
    "decide_records": "fraudstream.run",
}


def __getattr__(name: str) -> _Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'fraudstream' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
