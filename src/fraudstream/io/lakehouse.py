"""The lakehouse (seed 001): every decided transaction, its features and decision, in Iceberg.

One Apache Iceberg table (``fraudstream.decisions`` by default), written with pyiceberg's
``Table.append`` and partitioned by ``day(event_time)`` (Iceberg's day transform, computed by
pyiceberg-core; the rows carry the UTC date as ``event_date`` too, for queries). The default
catalog is pyiceberg's SQL catalog on a SQLite file with a local warehouse: ``--lakehouse
DIR`` means ``DIR/catalog.db`` and ``DIR/warehouse``. Any other pyiceberg catalog (REST,
Glue, Hive, ...) is chosen with a YAML or JSON file holding ``catalog`` (pyiceberg
properties, plus ``name``) and ``table`` (``namespace.name``), or with ``catalog:NAME`` for a
catalog in pyiceberg's own ``.pyiceberg.yaml``.

Rows are buffered and committed **at checkpoints** (one Iceberg snapshot per checkpoint, its
summary carrying ``fraudstream.run-id`` and ``fraudstream.checkpoint-id``; the rows carry
``run_id`` and ``checkpoint_id`` too), so a transaction is committed once: the commit happens
before the checkpoint is renamed into place, and a run resuming from checkpoint n deletes
whatever its run committed after n (a crash between the Iceberg commit and the rename). An
append writes files of its own rows only, so the delete drops whole files. Without
checkpoints, rows are committed when the buffer fills and at the end of the run.

Columns: the transaction (ids, event_time, amount, currency, place, merchant, channel,
device, ip, country), ``decision``, ``score``, ``rules`` (the rule ids that fired, by name),
``reasons`` (rule + message), ``features`` (a struct of every feature; new features widen the
schema), ``processed_at``, ``latency_ms``, ``run_id``, ``checkpoint_id``.

Read it back with ``fraudstream query "SELECT ..."`` (DuckDB) or pyiceberg itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform

from fraudstream.config import ConfigError, load_yaml
from fraudstream.decide import Decisions
from fraudstream.io.records import decision_table

DEFAULT_TABLE = "fraudstream.decisions"
RUN_PROPERTY = "fraudstream.run-id"
CHECKPOINT_PROPERTY = "fraudstream.checkpoint-id"
MAX_BUFFER_ROWS = 1_000_000
_TX_FIELDS = (
    "amount", "currency", "lat", "lon", "zipcode", "merchant_id", "merchant_category",
    "country", "channel", "device_id", "ip",
)  # fmt: skip
__all__ = [
    "CHECKPOINT_PROPERTY",
    "DEFAULT_TABLE",
    "RUN_PROPERTY",
    "LakehouseSink",
    "append_rows",
    "aws_defaults",
    "lakehouse_rows",
    "open_catalog",
    "open_table",
]


def aws_defaults(properties: dict[str, str]) -> dict[str, str]:
    """Catalog properties with a warehouse on S3 given the AWS endpoint and region of the run.

    pyiceberg's S3 FileIO (pyarrow) does not read ``AWS_ENDPOINT_URL`` (which
    ``--aws-endpoint-url`` sets) nor ``AWS_DEFAULT_REGION``: they become ``s3.endpoint`` and
    ``s3.region`` unless the file sets them.

    >>> import os
    >>> os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:5000"
    >>> aws_defaults({"warehouse": "s3://lake/warehouse"})["s3.endpoint"]
    'http://127.0.0.1:5000'
    >>> del os.environ["AWS_ENDPOINT_URL"]
    """
    if not properties.get("warehouse", "").lower().startswith(("s3://", "s3a://")):
        return properties
    out = dict(properties)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        out.setdefault("s3.endpoint", endpoint)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        out.setdefault("s3.region", region)
    return out


def open_catalog(location: str) -> tuple[Catalog, str]:
    """(catalog, table name) for a lakehouse location: a directory, a config file, or
    ``catalog:NAME``."""
    path = Path(location)
    try:
        if location.startswith("catalog:"):
            return load_catalog(location.split(":", 1)[1]), DEFAULT_TABLE
        if path.suffix.lower() in (".yaml", ".yml", ".json") and path.is_file():
            text = path.read_text()
            config = json.loads(text) if path.suffix.lower() == ".json" else load_yaml(text)
            if not isinstance(config, dict) or not isinstance(config.get("catalog"), dict):
                raise ConfigError("expected a 'catalog' mapping of pyiceberg properties")
            properties = aws_defaults({k: str(v) for k, v in config["catalog"].items()})
            name = properties.pop("name", "fraudstream")
            return load_catalog(name, **properties), str(config.get("table", DEFAULT_TABLE))
    except (ValueError, yaml.YAMLError, ImportError) as exc:  # pyiceberg's config errors too
        raise ConfigError(f"--lakehouse {location}: {exc}") from None
    path.mkdir(parents=True, exist_ok=True)
    warehouse = path.resolve() / "warehouse"
    warehouse.mkdir(exist_ok=True)
    catalog = SqlCatalog(
        "fraudstream",
        uri=f"sqlite:///{path.resolve() / 'catalog.db'}",
        warehouse=warehouse.as_uri(),
        # the current catalog tables, whichever pyiceberg made them (Flink's environment has
        # an older one, which does not know the setting and writes rows the current one reads)
        schema_version="v1",
    )
    return catalog, DEFAULT_TABLE


def open_table(location: str, schema: pa.Schema | None = None) -> Table:
    """The decisions table (created, partitioned by day of event time, if ``schema``)."""
    catalog, name = open_catalog(location)
    try:
        return catalog.load_table(name)
    except NoSuchTableError:
        if schema is None:
            raise ConfigError(f"{location}: no table {name} yet (run with --lakehouse)") from None
    namespace = name.rsplit(".", 1)[0]
    try:
        catalog.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass
    # Full statistics on the lineage columns: a roll-back's delete then drops whole files.
    properties = {f"write.metadata.metrics.column.{c}": "full" for c in ("run_id", "checkpoint_id")}
    table = catalog.create_table_if_not_exists(name, schema=schema, properties=properties)
    if table.spec().is_unpartitioned():
        with table.update_spec() as spec:
            spec.add_field("event_time", DayTransform(), "event_time_day")
    return table


def lakehouse_rows(decisions: Decisions, run_id: str | None, checkpoint_id: int) -> pa.Table:
    """One row per decision: the transaction, features and decision (Iceberg-ready types)."""
    base = decision_table(decisions)
    tx = decisions.tx
    columns: dict[str, Any] = {
        "transaction_id": base["transaction_id"],
        "card_id": base["card_id"],
        "user_id": base["user_id"],
        "event_time": base["event_time"].cast(pa.timestamp("us", "UTC")),
        "event_date": base["event_time"].cast(pa.date32()),
    }
    for name in _TX_FIELDS:
        value = getattr(tx, name)
        columns[name] = value if isinstance(value, pa.Array) else _nan_null(value)
    fired_rows: list[list[str]] = [[] for _ in range(len(decisions))]
    for rule, mask in sorted(decisions.fired.items()):  # by name: the same in every runtime
        for row in np.flatnonzero(mask).tolist():
            fired_rows[row].append(rule)
    columns["decision"] = base["decision"]
    columns["score"] = base["score"]
    columns["rules"] = pa.array(fired_rows, pa.list_(pa.string()))
    columns["reasons"] = base["reasons"]
    features = base["features"].combine_chunks()
    if len(features.type) == 0:  # an empty struct is not an Iceberg type
        features = pa.StructArray.from_arrays([pa.nulls(len(base), pa.string())], names=["none"])
    columns["features"] = features
    columns["processed_at"] = base["processed_at"].cast(pa.timestamp("us", "UTC"))
    columns["latency_ms"] = base["latency_ms"]
    columns["run_id"] = pa.array([run_id] * len(base), pa.string())
    columns["checkpoint_id"] = pa.array(np.full(len(base), checkpoint_id, np.int64))
    return pa.table(columns)


def _nan_null(values: np.ndarray[Any, Any]) -> pa.Array:
    return pa.array(values, mask=np.isnan(values))


class LakehouseSink:
    """Buffers decided transactions and appends them to the Iceberg table at checkpoints."""

    def __init__(self, location: str, run_id: str | None = None) -> None:
        self.location = location
        self.run_id = run_id  # set: the run is checkpointed (commits only at checkpoints)
        self.table: Table | None = None
        self.buffer: list[pa.Table] = []
        self.buffered_rows = 0
        self.committed_rows = 0
        self.commits = 0

    @classmethod
    def open(cls, location: str, run_id: str | None = None, resume_from: int = 0) -> LakehouseSink:
        """A sink; when checkpointed, first deletes this run's commits after ``resume_from``."""
        sink = cls(location, run_id)
        if run_id is not None:
            sink.roll_back(resume_from)
        return sink

    def _table(self, schema: pa.Schema | None) -> Table | None:
        if self.table is None:
            try:
                self.table = open_table(self.location, schema)
            except ValueError:
                if schema is not None:
                    raise
        return self.table

    def roll_back(self, checkpoint_id: int) -> int:
        """Deletes rows this run committed after ``checkpoint_id``; returns snapshots undone."""
        table = self._table(None)
        if table is None:
            return 0
        later = [
            snapshot
            for snapshot in table.snapshots()
            if snapshot.summary is not None
            and snapshot.summary.additional_properties.get(RUN_PROPERTY) == self.run_id
            and int(snapshot.summary.additional_properties.get(CHECKPOINT_PROPERTY, 0))
            > checkpoint_id
        ]
        if later:
            table.delete(
                f"run_id == '{self.run_id}' AND checkpoint_id > {int(checkpoint_id)}",
                snapshot_properties={
                    RUN_PROPERTY: str(self.run_id),
                    "fraudstream.rolled-back-after": str(checkpoint_id),
                },
            )
        return len(later)

    def write_decisions(self, decisions: Decisions) -> None:
        """Buffers a batch of decisions (committed at the next checkpoint)."""
        if len(decisions) == 0:
            return
        self.buffer.append(lakehouse_rows(decisions, self.run_id, 0))
        self.buffered_rows += len(decisions)
        if self.run_id is None and self.buffered_rows >= MAX_BUFFER_ROWS:
            self._commit(0)

    @property
    def wants_commit(self) -> bool:
        """The buffer is full: a checkpoint should come soon."""
        return self.buffered_rows >= MAX_BUFFER_ROWS

    def _commit(self, checkpoint_id: int) -> dict[str, Any]:
        if not self.buffer:
            return {"rows": self.committed_rows}
        rows = pa.concat_tables(self.buffer, promote_options="permissive")
        rows = rows.set_column(
            rows.schema.get_field_index("checkpoint_id"),
            "checkpoint_id",
            pa.array(np.full(rows.num_rows, checkpoint_id, np.int64)),
        )
        table = self._table(rows.schema)
        assert table is not None
        properties = {CHECKPOINT_PROPERTY: str(checkpoint_id)}
        if self.run_id is not None:
            properties[RUN_PROPERTY] = self.run_id
        append_rows(table, rows, properties)
        self.buffer = []
        self.buffered_rows = 0
        self.committed_rows += rows.num_rows
        self.commits += 1
        return {"rows": self.committed_rows}

    def checkpoint(self, checkpoint_id: int) -> dict[str, Any]:
        """Commits the buffer as one snapshot tagged with ``checkpoint_id``; the marker."""
        return self._commit(checkpoint_id)

    def write_dicts(self, records: list[dict[str, Any]]) -> None:
        """Not used: the lakehouse takes whole decision batches (:meth:`write_decisions`)."""
        raise TypeError("LakehouseSink takes decisions via write_decisions()")

    def flush(self) -> None:
        """Nothing: rows are committed at checkpoints (or at close without checkpoints)."""

    def close(self) -> None:
        """Without checkpoints, commits what is buffered; with them, the final checkpoint has
        committed everything (anything left after a failure belongs to no checkpoint)."""
        if self.run_id is None:
            self._commit(0)
        self.buffer = []


def append_rows(table: Table, rows: pa.Table, properties: dict[str, str]) -> None:
    """Appends ``rows`` as one snapshot carrying ``properties``, widening the table's schema
    first when the rows bring new columns (new features)."""
    if not _fits(table, rows.schema):
        with table.update_schema() as update:
            update.union_by_name(rows.schema)
    table.append(rows, snapshot_properties=properties)


def _fits(table: Table, schema: pa.Schema) -> bool:
    """Whether every column (and struct field) of ``schema`` is already in the table."""
    current = table.schema().as_arrow()
    for field in schema:
        if field.name not in current.names:
            return False
        existing = current.field(field.name).type
        if pa.types.is_struct(field.type) and pa.types.is_struct(existing):
            names = {f.name for f in existing}
            if any(f.name not in names for f in field.type):
                return False
    return True
