"""``fraudstream serve``: the analyst's app and the decision API on 127.0.0.1:8888.

The pipeline is built exactly as ``fraudstream run`` builds it (same options, same defaults).
Every mutating request needs ``Authorization: Bearer $FRAUDSTREAM_TOKEN``; when the variable
is unset a token is generated and printed once to stderr, with the page's URL carrying it in
the fragment (``/#token=...``: kept by the browser, never sent to the server). With
``--read-token`` / ``$FRAUDSTREAM_READ_TOKEN`` the ``/v1`` GETs need a token too (that one or
the write token). Only requests whose ``Host`` is a loopback name, the bound address or an
``--allowed-host`` are answered (400 otherwise: the DNS-rebinding defence). Reviews,
labels, the audit logs of rule and profile changes and the rule versions go to ``--data-dir``
(in memory without it); ``--reviews-db`` puts reviews and labels in another database
(PostgreSQL). ``--history`` (with ``--history-labels``) is what the Rules tab backtests
edited rules on before they are applied.

``python -m fraudstream.web.serve --port 8899`` runs it without the ``fraudstream`` command.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer

from fraudstream.cli_options import (
    DEFAULT_STATE_TTL_HOURS,
    AnonymousNetworksOption,
    IdleTimeoutOption,
    IpCountriesOption,
    LatenessOption,
    MaxNestingDepthOption,
    MaxRecordBytesOption,
    OutOfOrdernessOption,
    ProfilesOption,
    RulesOption,
    TimeMode,
    TimeOption,
)
from fraudstream.engine.tuning import settle_garbage_collector
from fraudstream.schema import MAX_NESTING_DEPTH, MAX_RECORD_BYTES

TOKEN_VARIABLE = "FRAUDSTREAM_TOKEN"
DEFAULT_BATCH_WAIT_MS = 0.0  # measured: docs/web.md#latency
DEFAULT_BATCH_MAX_RECORDS = 512
READ_TOKEN_VARIABLE = "FRAUDSTREAM_READ_TOKEN"


def api_token(environ: dict[str, str] | None = None) -> tuple[str, bool]:
    """The bearer token from FRAUDSTREAM_TOKEN, or a new one; and whether it was generated."""
    value = (os.environ if environ is None else environ).get(TOKEN_VARIABLE, "")
    if value:
        return value, False
    return secrets.token_urlsafe(32), True


def serve(
    host: str = "127.0.0.1",
    port: int = 8888,
    rules: Path | None = None,
    profiles: Path | None = None,
    time: TimeMode = TimeMode.event,
    out_of_orderness_ms: int = 0,
    allowed_lateness_ms: int = 300_000,
    idle_timeout_ms: int = 1_000,
    ip_countries: Path | None = None,
    anonymous_networks: Path | None = None,
    token: str | None = None,
    log_level: str = "warning",
    data_dir: Path | None = None,
    reviews_db: str | None = None,
    read_token: str | None = None,
    allowed_hosts: list[str] | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
    max_nesting_depth: int = MAX_NESTING_DEPTH,
    history: Path | None = None,
    history_labels: Path | None = None,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    batch_max_records: int = DEFAULT_BATCH_MAX_RECORDS,
) -> None:
    """Builds the pipeline like ``fraudstream run`` and serves the decision API (blocks)."""
    import uvicorn

    from fraudstream.assembly import build_pipeline, state_ttl_ms
    from fraudstream.config import ConfigError
    from fraudstream.io.limits import RecordLimits
    from fraudstream.schema import CardTokenizer
    from fraudstream.web.app import create_app
    from fraudstream.web.batching import Batching
    from fraudstream.web.guard import trusted_hosts

    try:
        hosts = trusted_hosts(host, allowed_hosts or ())
    except ValueError as exc:
        raise ConfigError(f"--allowed-host: {exc}") from None
    try:
        batching = Batching(batch_wait_ms, batch_max_records)
    except ValueError as exc:
        raise ConfigError(f"--batch-wait-ms / --batch-max-records: {exc}") from None

    pipeline = build_pipeline(
        rules, profiles, time, out_of_orderness_ms, allowed_lateness_ms,
        idle_timeout_ms, ip_countries, anonymous_networks, state_ttl_ms(DEFAULT_STATE_TTL_HOURS),
    )  # fmt: skip
    if not token:
        token, generated = api_token()
        if generated:
            sys.stderr.write(
                f"{TOKEN_VARIABLE} is not set; changes need this bearer token:\n  {token}\n"
            )
    app = create_app(
        pipeline,
        token,
        CardTokenizer.from_environment(),
        data_dir=data_dir,
        reviews_url=reviews_db,
        read_token=read_token or None,
        allowed_hosts=hosts,
        limits=RecordLimits(max_record_bytes, max_nesting_depth),
        history=history,
        history_labels=history_labels,
        batching=batching,
    )
    settle_garbage_collector()
    if host not in ("127.0.0.1", "localhost", "::1") and not read_token:
        sys.stderr.write(
            f"warning: reads (the page, every GET) are open to anyone who reaches {host}:{port}; "
            f"changes still need the token. Set {READ_TOKEN_VARIABLE} (or --read-token) to "
            "close them, or put it behind an authenticating proxy.\n"
        )
    kept = f"in {data_dir}" if data_dir is not None else "in memory only (see --data-dir)"
    if reviews_db is not None:
        kept = f"reviews and labels in {_without_password(reviews_db)}"
    sys.stderr.write(
        f"fraudstream on http://{host}:{port} (API docs: /docs; reviews and audit logs {kept})\n"
        f"  answers Host: {', '.join(hosts)} (more with --allowed-host)\n"
        f"  {server_stack()}\n"
        f"  the analyst app: http://{host}:{port}/#token={token}\n"
    )
    sys.stderr.flush()
    # No proxy-header rewriting: the app never reads the client's address.
    uvicorn.run(
        app.state.served,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
    )


def server_stack() -> str:
    """Which event loop and HTTP parser uvicorn takes ("auto": uvloop and httptools when
    installed); the pure-Python pair costs about twice the CPU a request in the HTTP layer
    (docs/web.md#latency), said once at start."""
    from importlib.util import find_spec

    if find_spec("uvloop") is not None and find_spec("httptools") is not None:
        return "server: uvicorn with uvloop and httptools"
    return "server: uvicorn with asyncio and h11 (pip install uvloop httptools: less CPU a request)"


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def serve_command(
    host: Annotated[str, typer.Option(help="Address to bind (localhost by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8888,
    rules: RulesOption = None,
    profiles: ProfilesOption = None,
    time: TimeOption = TimeMode.event,
    out_of_orderness_ms: OutOfOrdernessOption = 0,
    allowed_lateness_ms: LatenessOption = 300_000,
    idle_timeout_ms: IdleTimeoutOption = 1_000,
    ip_countries: IpCountriesOption = None,
    anonymous_networks: AnonymousNetworksOption = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Keep reviews, labels and audit logs here (default: in memory)."),
    ] = None,
    reviews_db: Annotated[
        str | None,
        typer.Option(help="Reviews and labels in this database (SQLAlchemy URL or SQLite path)."),
    ] = None,
    read_token: Annotated[
        str | None,
        typer.Option(
            envvar=READ_TOKEN_VARIABLE,
            help="GETs under /v1 (decisions, dead letters, profiles, reviews, the live feed) "
            "need this bearer token or the write token (default: reads are open).",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Also answer requests for this Host name (repeatable; '*.example.com'); "
            "loopback names and the bound address are always answered, others get 400.",
        ),
    ] = None,
    max_record_bytes: MaxRecordBytesOption = MAX_RECORD_BYTES,
    max_nesting_depth: MaxNestingDepthOption = MAX_NESTING_DEPTH,
    history: Annotated[
        Path | None,
        typer.Option(help="Transactions the Rules tab backtests edited rules on."),
    ] = None,
    history_labels: Annotated[
        Path | None,
        typer.Option(help="The history's labels (transaction_id, is_fraud, label_time)."),
    ] = None,
    batch_wait_ms: Annotated[
        float,
        typer.Option(
            help="Concurrent decision requests are decided together: the first of a batch "
            "waits at most this long for others (0: only those ready at once).",
        ),
    ] = DEFAULT_BATCH_WAIT_MS,
    batch_max_records: Annotated[
        int, typer.Option(help="A batch holding this many records is decided at once.")
    ] = DEFAULT_BATCH_MAX_RECORDS,
) -> None:
    """Serve the analyst's app and the decision API with the embedded pipeline in this process."""
    from fraudstream.startup import skip_import_probes

    skip_import_probes()  # first: the probes for pandas and SciPy take a quarter of start-up
    from sqlalchemy.exc import SQLAlchemyError

    from fraudstream.config import ConfigError

    if not 0 <= port <= 65535:
        _fail(f"--port must be within 0..65535, got {port}")
    try:
        serve(
            host, port, rules, profiles, time, out_of_orderness_ms, allowed_lateness_ms,
            idle_timeout_ms, ip_countries, anonymous_networks, log_level=log_level,
            data_dir=data_dir, reviews_db=reviews_db, read_token=read_token,
            allowed_hosts=allowed_host, max_record_bytes=max_record_bytes,
            max_nesting_depth=max_nesting_depth, history=history,
            history_labels=history_labels, batch_wait_ms=batch_wait_ms,
            batch_max_records=batch_max_records,
        )  # fmt: skip
    except ConfigError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _fail(f"--reviews-db / --data-dir: {str(exc).splitlines()[0]}")
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}")


def _fail(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(2)


if __name__ == "__main__":
    typer.run(serve_command)
