"""Backtests: a candidate rule set replayed over labelled history against a baseline, with
the very pipeline that runs live (:mod:`.replay`), counted (:mod:`.tally`) and shown
(:mod:`.html`)."""

from fraudstream.backtest.replay import Backtest, BacktestResult, rule_modes
from fraudstream.backtest.tally import FraudLookup, Tally, report

__all__ = ["Backtest", "BacktestResult", "FraudLookup", "Tally", "report", "rule_modes"]
