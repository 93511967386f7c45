"""The decision store (seed 000's ``FraudDetectionResults``): one row per transaction id.

SQLAlchemy Core, so the same table works on SQLite (the embedded default, a file in WAL
mode) and PostgreSQL (``postgresql+psycopg://...``). Writes are upserts keyed by
``transaction_id``: replaying a stream writes each decision once, the last one winning.

Times are stored as epoch milliseconds (BIGINT): they sort and compare the same way on
every database, and read back as the ISO strings of DESIGN.md's decision record.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Index,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from fraudstream.config import ConfigError
from fraudstream.io.records import iso_ms

metadata = MetaData()


class StoreUnavailable(ConfigError):
    """The database cannot be reached or refuses us: one line, password hidden."""


def shown_url(target: str) -> str:
    """A database URL or path as it may be shown: the password replaced by ``***``.

    >>> shown_url("postgresql+psycopg://fraud:s3cret@db:5432/fraud")
    'postgresql+psycopg://fraud:***@db:5432/fraud'
    """
    if "://" not in target:
        return target
    try:
        return make_url(target).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def unavailable(target: str, exc: DBAPIError) -> StoreUnavailable:
    """The error to raise when connecting to ``target`` failed with ``exc``."""
    cause = str(exc.orig) if exc.orig is not None else str(exc)
    lines = [line.strip() for line in cause.splitlines() if line.strip()]
    detail = " ".join(lines[:2]) or type(exc).__name__
    return StoreUnavailable(f"decision store {shown_url(target)}: {detail}")


decisions_table = Table(
    "fraud_detection_results",
    metadata,
    Column("transaction_id", String(128), primary_key=True),
    Column("card_id", String(128), nullable=True),
    Column("user_id", String(128), nullable=True),
    Column("event_time", BigInteger, nullable=True),  # epoch ms
    Column("decision", String(16), nullable=False),
    Column("score", Float, nullable=True),
    Column("reasons", Text, nullable=False),  # JSON text
    Column("features", Text, nullable=False),  # JSON text
    Column("model", Text, nullable=True),  # JSON text
    Column("processed_at", BigInteger, nullable=True),  # epoch ms
    Column("latency_ms", Float, nullable=True),
    Index("ix_fraud_detection_results_decision_time", "decision", "event_time"),
    Index("ix_fraud_detection_results_card_time", "card_id", "event_time"),
    Index("ix_fraud_detection_results_time", "event_time"),
)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


# --- engines ---------------------------------------------------------------------------------


def database_url(target: str) -> URL:
    """A SQLAlchemy URL from a URL or a plain file path (a plain path is a SQLite file).

    >>> database_url("sqlite:///tmp/x.db").get_backend_name()
    'sqlite'
    >>> database_url("decisions.db").database.endswith("decisions.db")
    True
    """
    if "://" in target:
        try:
            return make_url(target)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {target!r}") from exc
    return URL.create("sqlite", database=str(Path(target).expanduser().resolve()))


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(target: str) -> Engine:
    """An engine for a URL or path: a SQLite file (parent created, WAL) or any SQLAlchemy URL."""
    url = database_url(target)
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if path is not None:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
        finally:
            cursor.close()

    return engine


def create_tables(engine: Engine, tables: Sequence[Table], attempts: int = 3) -> None:
    """Creates missing tables; another process creating them at the same time is fine.

    Two writers opening a new store at once both see no table and both create it: the loser
    gets "already exists" (a unique violation on PostgreSQL) and simply checks again.
    """
    for attempt in range(attempts):
        try:
            metadata.create_all(engine, tables=list(tables))
            return
        except DBAPIError as exc:
            raced = "already exists" in str(exc) or "duplicate key" in str(exc)
            if not raced or attempt == attempts - 1:
                raise


def upsert(
    connection: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
) -> None:
    """Inserts rows, replacing those whose ``keys`` already exist (one executemany).

    SQLite and PostgreSQL use ``INSERT ... ON CONFLICT DO UPDATE``; other databases a delete
    of the existing keys then an insert, in the caller's transaction.
    """
    if not rows:
        return
    # Later rows for the same key win, as they would one statement at a time; a single
    # ON CONFLICT statement must not touch the same row twice (PostgreSQL refuses).
    unique = list({tuple(row[k] for k in keys): row for row in rows}.values())
    dialect = connection.dialect.name
    if dialect == "sqlite":
        lite = sqlite_insert(table)
        lite_updates = {c.name: lite.excluded[c.name] for c in table.columns if c.name not in keys}
        connection.execute(
            lite.on_conflict_do_update(index_elements=list(keys), set_=lite_updates), unique
        )
        return
    if dialect == "postgresql":
        pg = postgresql_insert(table)
        pg_updates = {c.name: pg.excluded[c.name] for c in table.columns if c.name not in keys}
        connection.execute(
            pg.on_conflict_do_update(index_elements=list(keys), set_=pg_updates), unique
        )
        return
    key_columns = [table.c[k] for k in keys]
    key_values = [tuple(row[k] for k in keys) for row in unique]
    for start in range(0, len(key_values), 500):
        chunk = key_values[start : start + 500]
        connection.execute(delete(table).where(tuple_(*key_columns).in_(chunk)))
    connection.execute(table.insert(), unique)


def new_rows_inserter(
    engine: Engine, table: Table, key: str
) -> Callable[[list[dict[str, Any]]], int] | None:
    """A function that inserts rows whose ``key`` is not in ``table`` yet (``INSERT ... ON
    CONFLICT DO NOTHING``, one executemany on the driver's cursor) and returns how many it
    inserted; None where the database has no such statement (neither SQLite nor PostgreSQL).

    For the authorization path's writes (an alert into the review queue): the statement is
    compiled once, and a call skips SQLAlchemy's per-statement machinery, a few hundred
    Python calls (about 3 ms on a server's cold caches, against ~0.1 ms here). Of rows with
    the same key in one call, the last is kept.
    """
    dialect = engine.dialect
    if dialect.name == "sqlite":
        statement: Any = sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])
    elif dialect.name == "postgresql":
        statement = postgresql_insert(table).on_conflict_do_nothing(index_elements=[key])
    else:
        return None
    compiled = statement.compile(dialect=dialect, column_keys=[c.name for c in table.columns])
    sql = compiled.string
    names = compiled.positiontup  # the parameters' order (None: they go by name)

    def insert_new(rows: list[dict[str, Any]]) -> int:
        unique = list({row[key]: row for row in rows}.values())
        if not unique:
            return 0
        params: list[Any] = (
            unique if names is None else [tuple(row[name] for name in names) for row in unique]
        )
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.executemany(sql, params)
            inserted = int(cursor.rowcount)
            cursor.close()
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()  # (back to the pool)
        return inserted

    return insert_new


# --- conversions -----------------------------------------------------------------------------


def epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds from an ISO-8601 string, a number of ms, a datetime, or None.

    >>> epoch_ms("2019-01-01T00:06:00.000Z")
    1546301160000
    >>> epoch_ms(1546301160000.0)
    1546301160000
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return round(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return round(moment.timestamp() * 1000)
    if isinstance(value, str):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return round(moment.timestamp() * 1000)
    raise TypeError(f"not a time: {value!r}")


def _row(record: dict[str, Any]) -> dict[str, Any]:
    model = record.get("model")
    return {
        "transaction_id": str(record["transaction_id"]),
        "card_id": record.get("card_id"),
        "user_id": record.get("user_id"),
        "event_time": epoch_ms(record.get("event_time")),
        "decision": record["decision"],
        "score": record.get("score"),
        "reasons": _encode(record.get("reasons") or []).decode(),
        "features": _encode(record.get("features") or {}).decode(),
        "model": None if model is None else _encode(model).decode(),
        "processed_at": epoch_ms(record.get("processed_at")),
        "latency_ms": record.get("latency_ms"),
    }


def _record(row: Any) -> dict[str, Any]:
    values = row._mapping
    event_time = values["event_time"]
    processed_at = values["processed_at"]
    model = values["model"]
    return {
        "transaction_id": values["transaction_id"],
        "card_id": values["card_id"],
        "user_id": values["user_id"],
        "event_time": None if event_time is None else iso_ms(event_time),
        "decision": values["decision"],
        "score": values["score"],
        "reasons": _decode(values["reasons"]),
        "model": None if model is None else _decode(model),
        "features": _decode(values["features"]),
        "processed_at": None if processed_at is None else iso_ms(processed_at),
        "latency_ms": values["latency_ms"],
    }


# --- the store -------------------------------------------------------------------------------


class DecisionStore:
    """Decisions in a SQL table, upserted by transaction id; a sink and a reader.

    ``url`` is a SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://...``) or a plain
    file path (a SQLite file, its directory created). The table is created if missing.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        try:
            create_tables(self.engine, [decisions_table])
        except DBAPIError as exc:
            self.engine.dispose()
            raise unavailable(url, exc) from None
        self.count = 0

    # sink interface

    def write_dicts(self, records: builtins.list[dict[str, Any]]) -> None:
        """Upserts a batch of decision records in one transaction."""
        if not records:
            return
        rows = [_row(r) for r in records]
        try:
            with self.engine.begin() as connection:
                upsert(connection, decisions_table, rows, ["transaction_id"])
        except (OperationalError, InterfaceError) as exc:  # the database went away
            raise unavailable(self.url, exc) from None
        self.count += len(records)

    def flush(self) -> None:
        """Every batch is committed when written; nothing to push."""

    def close(self) -> None:
        """Releases the database connections."""
        self.engine.dispose()

    # reading

    def get(self, transaction_id: str) -> dict[str, Any] | None:
        """The decision record for a transaction, or None."""
        query = select(decisions_table).where(decisions_table.c.transaction_id == transaction_id)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else _record(row)

    def list(
        self,
        decision: str | None = None,
        limit: int = 20,
        card_id: str | None = None,
        user_id: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Decision records, newest event first, optionally of one tier, card and/or user."""
        table = decisions_table
        query = select(table)
        if decision is not None:
            query = query.where(table.c.decision == decision)
        if card_id is not None:
            query = query.where(table.c.card_id == card_id)
        if user_id is not None:
            query = query.where(table.c.user_id == user_id)
        query = query.order_by(
            table.c.event_time.desc(), table.c.processed_at.desc(), table.c.transaction_id.desc()
        ).limit(limit)
        with self.engine.connect() as connection:
            return [_record(row) for row in connection.execute(query)]

    def __len__(self) -> int:
        with self.engine.connect() as connection:
            count = connection.execute(select(func.count()).select_from(decisions_table)).scalar()
        return int(count or 0)

    def __enter__(self) -> DecisionStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
