"""What every command module shares: the error console, one-line failures, the progress bar
and the end-of-run summary."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

err = Console(stderr=True, soft_wrap=True)  # an error stays one line, whatever the width


class InputFormat(StrEnum):
    """Input file formats."""

    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


def fail(message: str) -> NoReturn:
    """One readable line and exit code 2."""
    # escaped: a message may hold brackets ("fraudstream[aws]", "topic[2]") rich would eat
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


def warn(message: str) -> None:
    """One yellow warning line."""
    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def run_with_progress(runner: Any, source: Any, quiet: bool, doing: str = "deciding") -> Any:
    """``runner.run(source)`` with a progress bar over the source's bytes (a file's); any
    runner whose ``run`` takes a ``(done, total)`` callback (the backtest's too)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from fraudstream.engine.tuning import settle_garbage_collector

    settle_garbage_collector()
    if quiet or not source.total_bytes:
        return runner.run(source)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(doing, total=source.total_bytes)
        return runner.run(source, lambda done, total: bar.update(task, completed=done))


def print_summary(summary: Any, console: Console = err) -> None:
    """The end-of-run table."""
    table = Table(title="fraudstream run", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("records read", f"{summary.records:,}")
    table.add_row("decided", f"{summary.decided:,}")
    for tier in ("approve", "review", "decline"):
        table.add_row(f"  {tier}", f"{summary.tiers.get(tier, 0):,}")
    table.add_row("dead letters", f"{summary.dead_letters:,}")
    if summary.duplicates:
        table.add_row("  of which duplicates", f"{summary.duplicates:,}")
    table.add_row("late", f"{summary.late:,}")
    if summary.expired_keys or summary.reclaimed_keys:
        table.add_row("expired keys (TTL)", f"{summary.expired_keys:,}")
        table.add_row("  slots reclaimed", f"{summary.reclaimed_keys:,}")
    if summary.checkpoints:
        resumed = "" if summary.resumed_from is None else f" (resumed {summary.resumed_from})"
        table.add_row("checkpoints", f"{summary.checkpoints:,}{resumed}")
    table.add_row("throughput", f"{summary.throughput:,.0f} tx/s ({summary.seconds:.2f} s)")
    console.print(table)
    if summary.dead_reasons:
        dead = Table(title="dead letters by reason", title_justify="left")
        dead.add_column("reason")
        dead.add_column("records", justify="right")
        for reason, count in summary.dead_reasons.most_common(10):
            dead.add_row(reason, f"{count:,}")
        console.print(dead)
    if summary.fired_by_rule or summary.shadow_fired_by_rule:
        rules = Table(title="rules", title_justify="left")
        rules.add_column("rule")
        rules.add_column("fired", justify="right")
        rules.add_column("in alerts", justify="right")
        for rule, fired in summary.fired_by_rule.most_common():
            rules.add_row(rule, f"{fired:,}", f"{summary.alerts_by_rule.get(rule, 0):,}")
        for rule, fired in summary.shadow_fired_by_rule.most_common():
            rules.add_row(f"{rule} (shadow)", f"{fired:,}", "-")  # recorded, never scored
        console.print(rules)
