"""``fraudstream demo``: the demo users with injected frauds, decided, then served."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from fraudstream.assembly import TimeMode, build_pipeline
from fraudstream.cli.common import err, fail, print_summary, run_with_progress
from fraudstream.config import ConfigError

DEMO_STORE_NAME = "decisions.db"


def demo_command(
    directory: Annotated[Path, typer.Option(help="Where the demo writes everything.")] = Path(
        "fraudstream-demo"
    ),
    count: Annotated[int, typer.Option(help="Simulated transactions.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    picture: Annotated[
        Path | None, typer.Option("--svg", help="Also save the printed summary as an SVG picture.")
    ] = None,
    serve: Annotated[
        bool | None,
        typer.Option(
            "--serve/--no-serve",
            help="Then serve the analyst app, the simulator feeding it live "
            "(default: only when run in a terminal).",
        ),
    ] = None,
    serve_seconds: Annotated[
        float | None, typer.Option(help="Stop serving after N seconds (default: Ctrl-C).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the analyst app (127.0.0.1).")] = 8888,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(help="Also answer this Host name (repeatable); loopback names always."),
    ] = None,
) -> None:
    """The main job: simulate the demo users with injected frauds and decide them all.

    Then, in a terminal (or with --serve), the analyst app at http://127.0.0.1:8888 with
    the simulator feeding it live.
    """
    if picture is not None:
        err.record = True
    from fraudstream.io.files import FileSource
    from fraudstream.run import Outputs, Runner
    from fraudstream.schema import CardTokenizer
    from fraudstream.simulate.demo import demo_profiles, demo_records, write_profiles

    if count < 1:
        fail(f"--count must be >= 1, got {count}")
    if serve_seconds is not None and serve_seconds <= 0:
        fail(f"--serve-seconds must be > 0, got {serve_seconds}")
    if not 0 < port <= 65535:
        fail(f"--port must be within 1..65535, got {port}")
    directory.mkdir(parents=True, exist_ok=True)
    transactions = directory / "transactions.jsonl"
    profiles_path = directory / "profiles.yaml"
    err.print(f"simulating {count:,} transactions of the seed-002 users and 200 more ...")
    records = demo_records(count=count, seed=seed)
    encoder = msgspec.json.Encoder()
    with transactions.open("wb") as handle:
        for record in records:
            handle.write(encoder.encode(record) + b"\n")
    write_profiles(profiles_path, demo_profiles(seed=seed))
    paths = {
        "decisions": directory / "decisions.jsonl",
        "alerts": directory / "alerts.jsonl",
        "enriched": directory / "enriched.jsonl",
        "dead_letters": directory / "dead-letters.jsonl",
        "late": directory / "late.jsonl",
    }
    pipeline = build_pipeline(None, profiles_path, TimeMode.event, 0, 300_000, 1_000, None, None)
    lake = directory / "lakehouse"  # the Iceberg table; `fraudstream query` reads it
    shutil.rmtree(lake, ignore_errors=True)  # a rerun replaces the demo's table
    store = directory / DEMO_STORE_NAME  # `fraudstream decisions list/show` and the app read it
    store.unlink(missing_ok=True)  # ... and its decisions
    outputs = Outputs(
        decisions=str(paths["decisions"]),
        alerts=str(paths["alerts"]),
        enriched=str(paths["enriched"]),
        dead_letters=str(paths["dead_letters"]),
        late=str(paths["late"]),
        lakehouse=str(lake),
        store=str(store),
    )
    runner = Runner(pipeline, outputs, CardTokenizer.from_environment())
    # about twenty batches, so the progress bar moves
    source = FileSource(transactions, "jsonl", batch_rows=max(1_000, count // 20))
    summary = run_with_progress(runner, source, False)
    print_summary(summary)
    err.print(
        f"[dim]throughput: this whole run, records per wall-clock second on one core: reading "
        f"JSON lines, deciding, and writing five files, the Iceberg table and the SQLite "
        f"store ({summary.seconds:.1f} s in all). The engine alone decides ~550,000 tx/s from "
        f"Parquet (README, Performance: benchmarks/throughput.py).[/]",
        highlight=False,
        soft_wrap=False,  # a note wraps to the width (the errors stay one line)
    )
    _print_catch_rate(records, paths["decisions"])
    (directory / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2))
    shown = {"transactions": transactions, "profiles": profiles_path, **paths}
    shown["summary"] = directory / "summary.json"
    shown["store"] = store
    # Plain lines with whole paths: a table would cut them to the terminal's width.
    lines = [f"  {name.replace('_', ' '):<13} {path}" for name, path in shown.items()]
    sys.stderr.write("outputs\n" + "\n".join(lines) + "\n")
    sys.stderr.write(f"lakehouse (Iceberg) {lake}\n")
    sys.stderr.write(f"  query it: fraudstream query --lakehouse {lake} alert-rate\n")
    sys.stderr.write(f"decision store (SQLite) {store}\n")
    sys.stderr.write(f"  look up: fraudstream decisions list --store {store} --decision decline\n")
    if picture is not None:
        err.save_svg(str(picture), title="fraudstream demo")
    if serve is None:  # scripts, CI and tests (no terminal) get the batch demo only
        serve = sys.stdin.isatty() and sys.stderr.isatty()
    if serve:
        _serve_demo(
            directory, profiles_path, records, port, serve_seconds, allowed_host or [], store
        )


def _serve_demo(
    directory: Path,
    profiles: Path,
    records: Any,
    port: int,
    seconds: float | None,
    allowed_hosts: list[str],
    store: Path,
) -> None:
    try:
        from fraudstream.web.live import serve_demo
    except ImportError as exc:
        fail(f"serving needs {exc.name or 'fastapi'}: pip install 'fraudstream[web]'")
        return
    try:
        serve_demo(
            directory,
            profiles,
            records,
            port=port,
            seconds=seconds,
            allowed_hosts=allowed_hosts,
            decisions_url=str(store),
        )
    except ConfigError as exc:
        fail(str(exc))


def _print_catch_rate(records: list[dict[str, Any]], decisions_path: Path) -> None:
    """Per injected scenario: how many records alerted, and which rules fired on them."""
    verdicts: dict[str, tuple[str, list[str]]] = {}
    with decisions_path.open("rb") as handle:
        for line in handle:
            decision = msgspec.json.decode(line)
            rules = [reason["rule"] for reason in decision["reasons"]]
            verdicts[decision["transaction_id"]] = (decision["decision"], rules)
    totals: Counter[str] = Counter()
    alerted: Counter[str] = Counter()
    fired: dict[str, Counter[str]] = {}
    for record in records:
        scenario = record.get("scenario", "normal")
        totals[scenario] += 1
        tier, rules = verdicts.get(record["transaction_id"], ("approve", []))
        alerted[scenario] += tier != "approve"
        fired.setdefault(scenario, Counter()).update(rules)
    table = Table(title="injected scenarios vs alerts", title_justify="left")
    table.add_column("scenario")
    table.add_column("records", justify="right")
    table.add_column("alerted", justify="right")
    table.add_column("rules fired on these records (count)")
    for scenario, total in sorted(totals.items()):
        share = alerted[scenario] / total
        shown = ", ".join(f"{rule} {count}" for rule, count in fired[scenario].most_common(3))
        shown_share = f"{share:.1%}" if 0 < share < 0.1 else f"{share:.0%}"  # never "28 (0%)"
        table.add_row(scenario, f"{total:,}", f"{alerted[scenario]:,} ({shown_share})", shown)
    err.print(table)
    err.print(
        "[dim]velocity and new_device are weak signals (score < 0.5): alone they are reasons on "
        "approved decisions, alerting only with another signal. The normal records that alert "
        "are mostly the trip home after an injected impossible_travel (geo_velocity fires on it "
        "too).[/]",
        highlight=False,
        soft_wrap=False,  # a note wraps to the width (the errors stay one line)
    )
