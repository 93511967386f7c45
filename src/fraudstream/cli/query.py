"""`fraudstream query`: DuckDB SQL over the Iceberg lakehouse.

The table is read with pyiceberg (only the columns and rows the query can need are not
known in advance, so the whole current snapshot is scanned into Arrow) and registered in
DuckDB as the view ``decisions``. DuckDB's own iceberg extension would have to be
downloaded; this works offline.

Example (alert rate by rule by day)::

    fraudstream query --lakehouse fraudstream-demo/lakehouse "
      SELECT event_date AS day, rule,
             count(*) AS alerts
      FROM decisions, unnest(rules) AS r(rule)
      WHERE decision <> 'approve'
      GROUP BY ALL ORDER BY day, alerts DESC"
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ALERT_RATE_BY_RULE_BY_DAY", "OutputFormat", "query_command", "run_query"]

ALERT_RATE_BY_RULE_BY_DAY = """
WITH days AS (
  SELECT event_date AS day, count(*) AS transactions
  FROM decisions GROUP BY ALL
), fired AS (
  SELECT event_date AS day, rule, count(*) AS alerts
  FROM decisions, unnest(rules) AS r(rule)
  WHERE decision <> 'approve'
  GROUP BY ALL
)
SELECT day, rule, alerts, transactions,
       round(100.0 * alerts / transactions, 3) AS alert_rate_pct
FROM fired JOIN days USING (day)
ORDER BY day, alerts DESC, rule
"""


class OutputFormat(StrEnum):
    """How results are printed."""

    table = "table"
    jsonl = "jsonl"
    csv = "csv"


def run_query(location: str, sql: str, view: str = "decisions") -> pa.Table:
    """Runs DuckDB ``sql`` with the lakehouse table registered as ``view``; Arrow result.

    >>> import tempfile
    >>> run_query(tempfile.mkdtemp(), "SELECT 1")
    Traceback (most recent call last):
    ...
    fraudstream.config.ConfigError: ...: no table fraudstream.decisions yet (run with --lakehouse)
    """
    import duckdb

    from fraudstream.io.lakehouse import open_table

    table = open_table(location)
    data = table.scan().to_arrow()
    with duckdb.connect() as connection:
        connection.register(view, data)
        result: pa.Table = connection.sql(sql).to_arrow_table()
    return result


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def query_command(
    sql: Annotated[
        str,
        typer.Argument(help="DuckDB SQL over the view `decisions`; `alert-rate` for the example."),
    ],
    lakehouse: Annotated[
        str, typer.Option(help="The lakehouse: a directory, or a pyiceberg catalog YAML/JSON.")
    ] = "fraudstream-demo/lakehouse",
    output: Annotated[OutputFormat, typer.Option("--format", help="table, jsonl or csv.")] = (
        OutputFormat.table
    ),
    limit: Annotated[int, typer.Option(help="Print at most this many rows (table).")] = 100,
) -> None:
    """Run SQL (DuckDB) over the Iceberg table of decided transactions."""
    import duckdb

    from fraudstream.cli.common import fail

    statement = ALERT_RATE_BY_RULE_BY_DAY if sql.strip() == "alert-rate" else sql
    problem = None
    try:
        result = run_query(lakehouse, statement)
    except ValueError as exc:
        problem = str(exc)
    except duckdb.Error as exc:
        problem = f"query: {str(exc).splitlines()[0]}"
    if problem is not None:  # outside the except: no DuckDB object kept alive by the context
        fail(problem)
        return
    console = Console(soft_wrap=True)
    rows = result.to_pylist()
    if output is OutputFormat.jsonl:
        for row in rows:
            typer.echo(json.dumps(row, default=str))
        return
    if output is OutputFormat.csv:
        import csv
        import sys

        writer = csv.writer(sys.stdout)
        writer.writerow(result.column_names)
        for row in rows:
            writer.writerow([_text(row[name]) for name in result.column_names])
        return
    table = Table(show_lines=False)
    for name in result.column_names:
        table.add_column(name)
    for row in rows[:limit]:
        table.add_row(*(_text(row[name]) for name in result.column_names))
    console.print(table)
    if len(rows) > limit:
        console.print(f"({len(rows):,} rows; {limit} shown, --limit to see more)")
