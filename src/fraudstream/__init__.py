"""fraudstream: real-time card-fraud detection with stateful detectors, rules and decisions."""

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
