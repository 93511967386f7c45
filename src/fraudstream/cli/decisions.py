"""``fraudstream decisions``: look up decisions in the decision store.

``show TX_ID`` prints one decision record as JSON; ``list`` a table of the newest ones,
optionally of one tier and/or one card.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

DEFAULT_STORE = "fraudstream-decisions.db"
DEMO_STORE = "fraudstream-demo/decisions.db"  # `fraudstream demo`'s, read when no other is

decisions_app = typer.Typer(
    name="decisions",
    help="Look up decisions in the decision store (SQLite file or database URL).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_err = Console(stderr=True, soft_wrap=True)


class Tier(StrEnum):
    """Decision tiers."""

    approve = "approve"
    review = "review"
    decline = "decline"


StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        help="Decision store: a SQLite file path, a SQLAlchemy URL or dynamodb://TABLE.",
        envvar="FRAUDSTREAM_STORE",
    ),
]
AwsEndpointOption = Annotated[
    str | None,
    typer.Option(
        "--aws-endpoint-url",
        help="A dynamodb:// store at this endpoint (LocalStack, moto); default AWS_ENDPOINT_URL.",
    ),
]


def _fail(message: str) -> NoReturn:
    _err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(1)


def resolved_store(store: str) -> str:
    """``store``; for the default when it does not exist, the demo's store if that does
    (so ``fraudstream decisions list`` works right after ``fraudstream demo``)."""
    if store == DEFAULT_STORE and not Path(store).exists() and Path(DEMO_STORE).is_file():
        _err.print(f"[dim]reading the demo's store {DEMO_STORE}[/]", highlight=False)
        return DEMO_STORE
    return store


def _open(store: str, aws_endpoint_url: str | None = None) -> Any:
    if store.lower().startswith("dynamodb://"):
        from fraudstream.config import ConfigError
        from fraudstream.io.aws.clients import set_endpoint_url
        from fraudstream.io.aws.dynamodb_store import DynamoDecisionStore

        try:
            if aws_endpoint_url is not None:
                set_endpoint_url(aws_endpoint_url)
            return DynamoDecisionStore(store)
        except ConfigError as exc:
            _fail(str(exc))
    try:  # the store extra; a dynamodb:// store needs only the aws extra
        from fraudstream.io.sqlstore import DecisionStore, database_url, shown_url, sqlite_file
    except ImportError as exc:
        _fail(f"a SQL decision store needs {exc.name}: pip install 'fraudstream[store]'")
    try:
        path = sqlite_file(database_url(store))
    except ValueError as exc:
        _fail(str(exc))
    if path is not None and not path.exists():
        _fail(
            f"no decision store at {path}: `fraudstream run --store {path}` or "
            f"`fraudstream demo` ({DEMO_STORE}) writes one; or give --store"
        )
    try:
        return DecisionStore(store)
    except Exception as exc:  # a bad URL, a missing driver, a database that is down
        _fail(f"cannot open decision store {shown_url(store)}: {type(exc).__name__}: {exc}")


@decisions_app.command(
    "show",
    epilog="Example: fraudstream decisions show tx-000088 --store fraudstream-demo/decisions.db",
)
def show(
    transaction_id: Annotated[str, typer.Argument(help="Transaction id.")],
    store: StoreOption = DEFAULT_STORE,
    aws_endpoint_url: AwsEndpointOption = None,
) -> None:
    """Prints the decision for one transaction as JSON."""
    store = resolved_store(store)
    decisions = _open(store, aws_endpoint_url)
    try:
        record = decisions.get(transaction_id)
    finally:
        decisions.close()
    if record is None:
        _fail(f"no decision for transaction {transaction_id!r} in {store}")
    typer.echo(json.dumps(record, indent=2, ensure_ascii=False))


def _short_time(iso: str | None) -> str:
    """``2019-01-01 00:06:00`` from ``2019-01-01T00:06:00.000Z`` (a table cell)."""
    if not iso:
        return ""
    return iso.replace("T", " ").removesuffix("Z").split(".")[0]


@decisions_app.command(
    "list", epilog="Example: fraudstream decisions list --decision decline --limit 50"
)
def list_decisions(
    decision: Annotated[
        Tier | None, typer.Option("--decision", help="Only this tier.", case_sensitive=False)
    ] = None,
    card: Annotated[str | None, typer.Option("--card", help="Only this card id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many (newest first).")] = 20,
    store: StoreOption = DEFAULT_STORE,
    aws_endpoint_url: AwsEndpointOption = None,
) -> None:
    """Lists the newest decisions as a table."""
    store = resolved_store(store)
    decisions = _open(store, aws_endpoint_url)
    try:
        records = decisions.list(
            decision=None if decision is None else decision.value, limit=limit, card_id=card
        )
    finally:
        decisions.close()
    table = Table(title=f"decisions in {store}", title_justify="left")
    # Ids wrap rather than being cut: a shortened id finds nothing with `decisions show`.
    table.add_column("time (UTC)", overflow="fold")
    table.add_column("transaction", overflow="fold")
    table.add_column("card", overflow="fold")
    table.add_column("decision", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("first reason", overflow="fold")
    console = Console()
    # The reason takes what the other columns leave (rich would squeeze them all instead).
    fixed = 19 + 8 + 5 + 3 * 6 + 1 + 4
    fixed += max([11] + [len(str(r["transaction_id"])) for r in records])
    fixed += max([4] + [len(str(r["card_id"] or "")) for r in records])
    room = max(console.width - fixed, 12)
    style = {"decline": "bold red", "review": "yellow", "approve": "green"}
    for record in records:
        reasons = record["reasons"]
        first = ""
        if reasons:
            reason = reasons[0]
            rule = reason.get("rule", "")
            message = reason.get("message", "")
            first = f"{rule}: {message}" if message else str(rule)
        score = record["score"]
        table.add_row(
            escape(_short_time(record["event_time"])),
            escape(str(record["transaction_id"])),
            escape(str(record["card_id"] or "")),
            f"[{style.get(record['decision'], '')}]{escape(record['decision'])}[/]"
            if record["decision"] in style
            else escape(record["decision"]),
            "" if score is None else f"{score:.3f}",
            escape(first if len(first) <= room else first[: room - 1] + "…"),
        )
    if not records:
        console.print("no decisions match", highlight=False)
        return
    console.print(table)
