"""`fraudstream flink run`'s decision store, alert hooks and lakehouse: what `run`'s options
ask for.

:class:`Hooks` is the configuration, checked on the client as `run` checks it; the job adds
operators per hook (:mod:`fraudstream.flink.sinks`) on the deciding operator's side outputs.
No PyFlink here: the CLI reads this before it knows PyFlink is installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudstream.config import ConfigError

DEFAULT_RETRY_DB = "fraudstream-alerts.db"

__all__ = ["Hooks"]


@dataclass(frozen=True)
class Hooks:
    """The hooks of `fraudstream flink run` (the options of `fraudstream run`).

    >>> Hooks(store="decisions.db", alert_command=("cat",)).wanted == {"decisions", "alerts"}
    True
    >>> Hooks(webhook="http://hooks.test/alerts").wanted
    frozenset({'alerts'})
    """

    store: str | None = None  # a SQLite path, an SQLAlchemy URL or dynamodb://TABLE
    webhook: str | None = None
    webhook_secret_env: str | None = None  # the environment variable holding the secret
    alert_command: tuple[str, ...] | None = None
    retry_store: str | None = None  # undeliverable alerts (default: the store, or a file)
    lakehouse: str | None = None  # Iceberg: a directory, a catalog file or catalog:NAME
    lakehouse_staging: str | None = None  # where rows wait for their commit (a directory)
    lakehouse_commit_ms: int = 10_000  # how often the job's committer sweeps the staging

    @property
    def wanted(self) -> frozenset[str]:
        """The side outputs the hooks read: "decisions" (the store), "alerts" (webhook and
        command), "lakehouse" (the lakehouse's staged rows)."""
        names = {"decisions"} if self.store else set()
        if self.webhook or self.alert_command:
            names.add("alerts")
        if self.lakehouse:
            names.add("lakehouse")
        return frozenset(names)

    @property
    def staging(self) -> str:
        """The lakehouse's staging directory (see :mod:`fraudstream.io.lakehouse_staging`)."""
        from fraudstream.io.lakehouse_staging import staging_dir

        assert self.lakehouse is not None
        return staging_dir(self.lakehouse, self.lakehouse_staging)

    @property
    def dynamodb(self) -> bool:
        """Whether the store is a DynamoDB table."""
        return bool(self.store) and str(self.store).lower().startswith("dynamodb://")

    @property
    def retry_db(self) -> str:
        """Where undeliverable alerts wait, as `run`: the SQL store if any, else a file here
        (made absolute: the same file wherever a subtask runs on this machine)."""
        sql_store = None if self.dynamodb else self.store
        target = self.retry_store or sql_store or DEFAULT_RETRY_DB
        return target if "://" in target else str(Path(target).resolve())

    def check(self) -> None:
        """Fails (ConfigError, one line) where `run` would before its first record: the
        secret's variable unset, the SQL store out of reach (its table is created here once,
        not by every subtask at once), the lakehouse's catalog unreadable or its staging
        directory not makeable."""
        if self.webhook_secret_env and not os.environ.get(self.webhook_secret_env):
            raise ConfigError(f"--webhook-secret-env: {self.webhook_secret_env} is not set")
        if self.store and not self.dynamodb:
            from fraudstream.io.sqlstore import DecisionStore

            DecisionStore(self.store).close()
        if self.lakehouse:
            from fraudstream.io.lakehouse import open_catalog

            open_catalog(self.lakehouse)
            if "://" in self.staging:
                raise ConfigError(
                    f"--lakehouse-staging {self.staging}: give a directory path (on a mount "
                    "every TaskManager and the client share), not a URI"
                )
            os.makedirs(self.staging, exist_ok=True)

    def add_to(self, side_output: Callable[[str], Any]) -> None:
        """Adds an operator per hook on the deciding operator's ``side_output(name)``."""
        from fraudstream.flink.sinks import AlertDelivery, StoreWriter, add_lakehouse, add_writer

        if self.store:
            add_writer(side_output("decisions"), "store", StoreWriter(self.store))
        if self.webhook:
            webhook = AlertDelivery(
                self.retry_db, url=self.webhook, secret_env=self.webhook_secret_env
            )
            add_writer(side_output("alerts"), "webhook", webhook)
        if self.alert_command:
            command = AlertDelivery(self.retry_db, command=list(self.alert_command))
            add_writer(side_output("alerts"), "command", command)
        if self.lakehouse:
            add_lakehouse(
                side_output("lakehouse"), self.lakehouse, self.staging, self.lakehouse_commit_ms
            )
