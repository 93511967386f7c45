"""``fraudstream backtest``: a candidate rule set replayed over labelled history against a
baseline (the running rules, or the defaults), with the pipeline ``run`` uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fraudstream.cli.common import err, fail, run_with_progress
from fraudstream.cli_options import (
    DEFAULT_STATE_TTL_HOURS,
    AnonymousNetworksOption,
    IdleTimeoutOption,
    IpCountriesOption,
    LatenessOption,
    OutOfOrdernessOption,
    ProfilesOption,
    TimeMode,
    TimeOption,
)
from fraudstream.config import ConfigError

__all__ = ["backtest_command", "print_report"]


def backtest_command(
    input: Annotated[Path, typer.Option("--input", "-i", help="History: transactions file.")],
    labels: Annotated[
        Path, typer.Option(help="Labels file (transaction_id, is_fraud, label_time).")
    ],
    rules: Annotated[Path, typer.Option("--rules", help="The candidate rules file.")],
    baseline: Annotated[
        Path | None, typer.Option(help="The rules to compare with (default: the defaults).")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the report as JSON here.")] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the report as an HTML page here.")
    ] = None,
    profiles: ProfilesOption = None,
    time: TimeOption = TimeMode.event,
    out_of_orderness_ms: OutOfOrdernessOption = 0,
    allowed_lateness_ms: LatenessOption = 300_000,
    idle_timeout_ms: IdleTimeoutOption = 1_000,
    ip_countries: IpCountriesOption = None,
    anonymous_networks: AnonymousNetworksOption = None,
    state_ttl_hours: Annotated[
        float, typer.Option(help="Forget a card's/user's state after this long idle (0: never).")
    ] = DEFAULT_STATE_TTL_HOURS,
    batch_rows: Annotated[
        int, typer.Option(help="Records per micro-batch read from the file.")
    ] = 262_144,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")
    ] = False,
) -> None:
    """Replay history under a candidate rule set and a baseline; report per rule and tier
    precision, recall, alerts per day and caught fraud amount against the labels."""
    from fraudstream.assembly import pipeline_config
    from fraudstream.backtest import Backtest
    from fraudstream.engine.pipeline import Pipeline, warm_up
    from fraudstream.io.files import FileSource, guess_format
    from fraudstream.io.labels import read_labels
    from fraudstream.profiles import ProfileTable
    from fraudstream.rules import RuleSet
    from fraudstream.schema import CardTokenizer

    try:
        if not input.is_file():
            raise ConfigError(f"--input {input}: no such file")
        if batch_rows < 1:
            raise ConfigError(f"--batch-rows must be >= 1, got {batch_rows}")
        if state_ttl_hours < 0:
            raise ConfigError(f"--state-ttl-hours must be >= 0, got {state_ttl_hours}")
        candidate, _, time_config, reference = pipeline_config(
            rules, profiles, time, out_of_orderness_ms, allowed_lateness_ms, idle_timeout_ms,
            ip_countries, anonymous_networks,
        )  # fmt: skip
        base = RuleSet.load(baseline) if baseline is not None else RuleSet.default()
        ttl_ms = round(state_ttl_hours * 3_600_000) or None
        known = read_labels(labels)
        tokenizer = CardTokenizer.from_environment()
        warm_up(candidate)

        def make(rule_set: RuleSet) -> Pipeline:
            table = ProfileTable()  # each pipeline keys its own users
            if profiles:
                table.load(profiles)
            return Pipeline(rule_set, table, time_config, reference, ttl_ms)

        names = (str(rules), str(baseline) if baseline is not None else "defaults")
        backtest = Backtest(candidate, base, known, make, tokenizer, names)
        source = FileSource(input, guess_format(str(input)), batch_rows=batch_rows)
        result = run_with_progress(backtest, source, quiet, "backtesting")
    except ConfigError as exc:
        fail(str(exc))
        return
    except OSError as exc:
        fail(f"{exc.filename or ''}: {exc.strerror or exc}")
        return
    if report is not None:
        report.write_text(json.dumps(result.report, indent=2))
    if html is not None:
        from fraudstream.backtest.html import report_html

        try:
            page = report_html(result.report)
        except ImportError as exc:  # the chart is matplotlib's (the models extra)
            fail(f"--html needs {exc.name or 'matplotlib'}: pip install 'fraudstream[models]'")
            return
        html.write_text(page, encoding="utf-8")
    if not quiet:
        print_report(result.report)
        speed = result.records / result.seconds if result.seconds else 0.0
        shared = "one detector pass" if result.shared_detectors else "two pipelines"
        err.print(
            f"{result.records:,} records in {result.seconds:.2f} s ({speed:,.0f} tx/s, {shared})"
        )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def print_report(report: dict[str, Any]) -> None:
    """The report's tables on stderr."""
    decision = Table(title="decision (review or decline)", title_justify="left")
    for column in ("rules", "alerts", "precision", "recall"):
        decision.add_column(column, justify="left" if column == "rules" else "right")
    for name in ("baseline", "candidate"):
        figures = report["decision"][name]
        decision.add_row(
            name, f"{figures['alerts']:,}", _share(figures["precision"]), _share(figures["recall"])
        )
    err.print(decision)
    rules = Table(title="candidate rules", title_justify="left")
    rules.add_column("rule", no_wrap=True)
    for column in ("alerts", "TP", "FP", "precision", "recall", "per day", "caught"):
        rules.add_column(column, justify="right")
    for row in report["rules"]:
        shown = row["id"] + (" (shadow)" if row["mode"] == "shadow" else "")
        rules.add_row(
            shown, f"{row['alerts']:,}", f"{row['true_positives']:,}",
            f"{row['false_positives']:,}", _share(row["precision"]), _share(row["recall"]),
            f"{row['alerts_per_day']:,.1f}", f"{row['caught_amount']:,.2f}",
        )  # fmt: skip
    err.print(rules)
    moves = report["tiers"].get("transitions", {})
    if moves:
        err.print("tier changes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(moves.items())))
    else:
        err.print("no transaction changed tier")
