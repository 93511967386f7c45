"""``fraudstream simulate``: simulated transactions as JSON lines."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from fraudstream.cli.common import fail


class Scenario(StrEnum):
    """Simulated streams."""

    flink_walkthrough = "flink-walkthrough"
    demo = "demo"
    handbook = "handbook"


def simulate_command(
    scenario: Annotated[Scenario, typer.Option(help="Which stream to simulate.")] = Scenario.demo,
    count: Annotated[
        int | None, typer.Option(help="Records (walkthrough: endless if unset).")
    ] = None,
    fast: Annotated[bool, typer.Option("--fast", help="No pacing: as fast as possible.")] = False,
    rate: Annotated[float, typer.Option(help="Records per second when paced.")] = 10.0,
    seed: Annotated[int | None, typer.Option(help="Random seed (demo 7, handbook 4).")] = None,
    users: Annotated[
        int, typer.Option(help="Generated users besides the seed-002 four (demo).")
    ] = 200,
    output: Annotated[str, typer.Option("--output", "-o", help="File, or - for stdout.")] = "-",
    profiles_out: Annotated[
        Path | None,
        typer.Option(help="Write the demo profiles here (.yaml, .json, .csv or .parquet)."),
    ] = None,
    customers: Annotated[int, typer.Option(help="Customers (handbook).")] = 5_000,
    terminals: Annotated[int, typer.Option(help="Terminals (handbook).")] = 10_000,
    days: Annotated[int, typer.Option(help="Days from 2018-04-01 (handbook).")] = 183,
    labels_out: Annotated[
        str | None, typer.Option(help="Handbook: also write its label stream (7-day delay) here.")
    ] = None,
) -> None:
    """Print simulated transactions as JSON lines (paced at --rate unless --fast).

    The handbook scenario writes all its transactions at once (Parquet when --output ends
    in .parquet) and prints its fraud counts next to the book's.
    """
    from fraudstream.simulate.pacing import paced

    if scenario is Scenario.handbook:
        from fraudstream.model_cli import simulate_handbook  # the models extra

        simulate_handbook(
            customers, terminals, days, 4 if seed is None else seed, output, labels_out
        )
        return
    seed = 7 if seed is None else seed

    if count is not None and count < 0:
        fail(f"--count must be >= 0, got {count}")
    if rate <= 0:
        fail(f"--rate must be > 0, got {rate}")
    records: Any
    if scenario is Scenario.flink_walkthrough:
        from fraudstream.simulate.walkthrough import walkthrough_records

        records = walkthrough_records(count)
    else:
        from fraudstream.simulate.demo import demo_profiles, demo_records, write_profiles

        records = demo_records(count=20_000 if count is None else count, users=users, seed=seed)
        if profiles_out:
            write_profiles(profiles_out, demo_profiles(users=users, seed=seed))
    if not fast:
        records = paced(records, rate)
    encoder = msgspec.json.Encoder()
    handle = sys.stdout.buffer if output == "-" else open(output, "wb")  # noqa: SIM115
    try:
        for record in records:
            handle.write(encoder.encode(record) + b"\n")
            if not fast:
                handle.flush()
    except BrokenPipeError:
        pass
    finally:
        if output != "-":
            handle.close()
        else:
            try:
                handle.flush()
            except BrokenPipeError:
                pass
