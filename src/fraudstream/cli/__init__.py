"""The ``fraudstream`` command: one module per command or command group (``run``, ``demo``,
``decisions``, ...), registered here in a help panel (decide, data, models, serve,
infrastructure) with an example each.

Every command module imports only typer, rich and the standard library at the top, so
``fraudstream --help`` loads none of the pipeline, numba, pandas, pyiceberg or SQLAlchemy;
a command imports what it needs when it runs. A missing optional dependency ends in one line
naming the extra to install (:data:`EXTRA_OF_MODULE`).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from fraudstream import __version__
from fraudstream.cli.common import err
from fraudstream.cli.help import install_readable_metavars
from fraudstream.config import ConfigError

__all__ = ["EXTRA_OF_COMMAND", "EXTRA_OF_MODULE", "app", "main", "usage_error_line"]

install_readable_metavars()

# the extra (pyproject.toml) that installs each optional top-level module
EXTRA_OF_MODULE = {
    "fastapi": "web",
    "uvicorn": "web",
    "prometheus_client": "web",
    "sqlalchemy": "store",
    "psycopg": "store",
    "httpx": "store",
    "confluent_kafka": "kafka",
    "pyiceberg": "lake",
    "duckdb": "lake",
    "sklearn": "models",
    "xgboost": "models",
    "matplotlib": "models",
    "pandas": "models",
    "pyflink": "flink",
    "boto3": "aws",
    "botocore": "aws",
    "s3fs": "aws",
}

# the extra a command belongs to (other commands: the extra of the missing module)
EXTRA_OF_COMMAND = {
    "serve": "web",
    "serve-model": "web",
    "query": "lake",
    "train": "models",
    "evaluate": "models",
    "produce": "kafka",
}

DECIDE, DATA, MODELS, SERVE, INFRASTRUCTURE = (
    "Decide",
    "Data",
    "Models",
    "Serve",
    "Infrastructure",
)

app = typer.Typer(
    name="fraudstream",  # its help is the callback's docstring
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"fraudstream {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Real-time card-fraud detection: stateful detectors, rules and decisions.

    Start with **fraudstream demo**; every command has an example in its --help.
    """


def _example(*lines: str) -> str:
    """An epilog: the example commands, one per line."""
    return "**Examples**\n\n" + "\n".join(f"    $ {line}" for line in lines)


def _register() -> None:
    from fraudstream.cli.backtest import backtest_command
    from fraudstream.cli.decisions import decisions_app
    from fraudstream.cli.demo import demo_command
    from fraudstream.cli.produce import produce_command
    from fraudstream.cli.query import query_command
    from fraudstream.cli.rules import rules_app
    from fraudstream.cli.run import run_command
    from fraudstream.cli.simulate import simulate_command
    from fraudstream.flink.cli import flink_app
    from fraudstream.model_cli import (
        features_command,
        score_command,
        serve_model_command,
        train_command,
    )
    from fraudstream.models.report import evaluate_command
    from fraudstream.web.serve import serve_command

    app.command(
        "demo",
        rich_help_panel=DECIDE,
        epilog=_example("fraudstream demo", "fraudstream demo --count 5000 --no-serve"),
    )(demo_command)
    app.command(
        "run",
        rich_help_panel=DECIDE,
        epilog=_example(
            "fraudstream run -i fraudstream-demo/transactions.jsonl --decisions out.jsonl",
            "fraudstream run -i kafka://localhost:9092/tx --alerts alerts.jsonl",
        ),
    )(run_command)
    app.command(
        "backtest",
        rich_help_panel=DECIDE,
        epilog=_example(
            "fraudstream backtest -i history.jsonl --labels labels.jsonl --rules candidate.yaml"
        ),
    )(backtest_command)
    app.add_typer(rules_app, rich_help_panel=DECIDE)
    app.command(
        "simulate",
        rich_help_panel=DATA,
        epilog=_example(
            "fraudstream simulate --count 1000 --fast -o tx.jsonl",
            "fraudstream simulate --scenario handbook -o tx.parquet --labels-out labels.parquet",
        ),
    )(simulate_command)
    app.command(
        "query",
        rich_help_panel=DATA,
        epilog=_example("fraudstream query --lakehouse fraudstream-demo/lakehouse alert-rate"),
    )(query_command)
    app.add_typer(decisions_app, rich_help_panel=DATA)
    app.command(
        "produce",
        rich_help_panel=DATA,
        epilog=_example("fraudstream produce --to kafka://localhost:9092/tx --count 1000"),
    )(produce_command)
    app.command(
        "features",
        rich_help_panel=MODELS,
        epilog=_example("fraudstream features -i tx.parquet --labels labels.parquet -o f.parquet"),
    )(features_command)
    app.command(
        "train",
        rich_help_panel=MODELS,
        epilog=_example(
            "fraudstream train --features f.parquet --labels labels.parquet -o models/xgb"
        ),
    )(train_command)
    app.command(
        "evaluate",
        rich_help_panel=MODELS,
        epilog=_example("fraudstream evaluate --features f.parquet --labels labels.parquet"),
    )(evaluate_command)
    app.command(
        "score",
        rich_help_panel=MODELS,
        epilog=_example(
            "fraudstream score -i tx.parquet --model models/recommended -o scores.parquet"
        ),
    )(score_command)
    app.command(
        "serve-model",
        rich_help_panel=MODELS,
        epilog=_example("fraudstream serve-model --model models/xgb --port 8890"),
    )(serve_model_command)
    app.command(
        "serve",
        rich_help_panel=SERVE,
        epilog=_example("fraudstream serve --profiles fraudstream-demo/profiles.yaml --port 8000"),
    )(serve_command)
    app.add_typer(flink_app, rich_help_panel=INFRASTRUCTURE)


_register()


def _command_name() -> str:
    words = [word for word in sys.argv[1:3] if not word.startswith("-")]
    return " ".join(words[:1]) or "fraudstream"


def usage_error_line(exc: typer.TyperException) -> str:
    """A command-line mistake in one line: what, and where to read more.

    >>> usage_error_line(typer.TyperException("Invalid value: Value error, 'x' is not one"))
    "Invalid value: 'x' is not one"
    """
    possibilities = getattr(exc, "possibilities", None)  # an unknown option's near names
    if possibilities:
        message = f"{exc.message} (did you mean {' or '.join(sorted(possibilities))}?)"
    else:
        message = exc.format_message()
    message = " ".join(message.replace("Value error, ", "").split())  # pydantic's prefix
    context = getattr(exc, "ctx", None)  # a usage error's command
    if context is not None and message:
        message = message.rstrip(".")
        message += f"; see {context.command_path} --help"
    return message


def main() -> None:
    """Entry point: readable one-line errors instead of tracebacks."""
    try:
        if sys.argv[1:2] == ["flink"]:
            # apache-flink has a Python environment of its own (fraudstream.flink.python_env)
            from fraudstream.flink.python_env import run_in_flink_python

            run_in_flink_python(sys.argv[1:])
        code = app(standalone_mode=False)
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except typer.TyperException as exc:
        if not exc.format_message():  # no arguments: the help was printed
            sys.exit(exc.exit_code)
        err.print(f"[bold red]error:[/] {escape(usage_error_line(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted", highlight=False)
        sys.exit(1)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_OF_MODULE:
            raise
        command = _command_name()
        # a command's own extra first: `serve` lacking sqlalchemy needs web, not store
        extra = EXTRA_OF_COMMAND.get(command, EXTRA_OF_MODULE[top])
        message = f"{command} needs {top}: pip install 'fraudstream[{extra}]'"
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
