"""Alert handlers (seed 000's Lambda): a webhook and a command hook, with a retry table.

Each alert is delivered as its JSON decision record: POSTed to a URL (``WebhookSink``) or fed
on standard input to a command (``CommandHook``). A failed delivery is retried with
exponential backoff; an alert that still cannot be delivered is kept in the
``webhook_retries`` table (SQLite file or any SQLAlchemy URL) and retried on later
``flush()`` calls until it is delivered: alerts are never dropped.

Delivery is at least once. Every delivery carries the transaction id as its delivery id
(``X-Fraudstream-Delivery`` header, ``FRAUDSTREAM_DELIVERY_ID`` for commands) so a receiver
can ignore repeats; a redelivery sends the same bytes, so the same signature.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shlex
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    select,
    update,
)

from fraudstream.io.sqlstore import create_tables, make_engine, upsert

SIGNATURE_HEADER = "X-Fraudstream-Signature"
DELIVERY_HEADER = "X-Fraudstream-Delivery"
ATTEMPT_HEADER = "X-Fraudstream-Attempt"
DELIVERY_ENV = "FRAUDSTREAM_DELIVERY_ID"

metadata = MetaData()

retries_table = Table(
    "webhook_retries",
    metadata,
    Column("target", String(512), primary_key=True),  # "webhook:URL" or "command:CMD"
    Column("delivery_id", String(128), primary_key=True),  # the transaction id
    Column("body", LargeBinary, nullable=False),  # the exact bytes to deliver
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("first_failed_at", BigInteger, nullable=False),  # epoch ms
    Column("position", Integer, nullable=False),  # order within its batch
    Column("next_attempt_at", BigInteger, nullable=False),  # epoch ms
    Index("ix_webhook_retries_due", "target", "next_attempt_at"),
)

_encode = msgspec.json.Encoder().encode


class DeliveryError(Exception):
    """One delivery attempt failed (the message says why, in one line)."""


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of the body.

    >>> sign(b"key", b"{}")
    'sha256=a777724d943eb48dc69bca8a4a6d57a04db3f9ec7e1de4e581e860265bdf3032'
    """
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _now_ms() -> int:
    return int(time.time() * 1000)


class RetryingDelivery(ABC):
    """Deliveries with retries and backoff, and a retry table for the undeliverable.

    Subclasses implement ``deliver(body, delivery_id, attempt)``, raising ``DeliveryError``
    on failure. ``write_dicts`` tries each alert up to ``max_attempts`` times, sleeping
    ``backoff_s``, then twice that, ... between tries. An alert that still fails goes to the
    retry table; once one has, the rest of the batch goes there directly, and until a
    delivery succeeds again later alerts get one try each (a receiver that is down does not
    hold up the stream). ``flush`` retries the table's due rows, oldest first, once each,
    stopping at the first failure; a row that fails again is due ``retry_delay_s`` later,
    doubling per failure up to ``max_retry_delay_s``.
    """

    target = ""

    def __init__(
        self,
        retry_db: str,
        max_attempts: int = 5,
        backoff_s: float = 0.2,
        retry_delay_s: float = 30.0,
        max_retry_delay_s: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.retry_delay_s = retry_delay_s
        self.max_retry_delay_s = max_retry_delay_s
        self.sleep = sleep
        self.engine = make_engine(retry_db)
        create_tables(self.engine, [retries_table])
        self.delivered = 0  # alerts delivered (from the stream or the retry table)
        self.attempts = 0  # delivery attempts, failed or not
        self.failures = 0  # failed attempts
        self.parked = 0  # alerts put in the retry table
        self.last_error: str | None = None
        self.failing = False  # the last delivery failed after all its tries

    @abstractmethod
    def deliver(self, body: bytes, delivery_id: str, attempt: int) -> None:
        """Delivers one alert once; raises DeliveryError on failure."""

    # sink interface

    def write_dicts(self, alerts: list[dict[str, Any]]) -> None:
        """Delivers each alert, retrying; the undeliverable go to the retry table."""
        parked: list[dict[str, Any]] = []
        failed_at = 0
        for alert in alerts:
            delivery_id = str(alert["transaction_id"])
            body = _encode(alert)
            if parked:
                row = self._retry_row(delivery_id, body, 0, self.last_error, failed_at)
                parked.append(row | {"position": len(parked)})
                continue
            attempts, error = self._try(body, delivery_id)
            if error is not None:
                failed_at = _now_ms()
                parked.append(self._retry_row(delivery_id, body, attempts, error, failed_at))
        if parked:
            with self.engine.begin() as connection:
                upsert(connection, retries_table, parked, ["target", "delivery_id"])
            self.parked += len(parked)

    def flush(self) -> None:
        """Retries the retry table's due rows once each, deleting those delivered."""
        table = retries_table
        now = _now_ms()
        query = (
            select(table.c.delivery_id, table.c.body, table.c.attempts)
            .where(and_(table.c.target == self.target, table.c.next_attempt_at <= now))
            .order_by(table.c.first_failed_at, table.c.position)
        )
        with self.engine.connect() as connection:
            due = connection.execute(query).all()
        for delivery_id, body, attempts in due:
            key = and_(table.c.target == self.target, table.c.delivery_id == delivery_id)
            try:
                self._attempt(bytes(body), delivery_id, attempts + 1)
            except DeliveryError as exc:
                self.failing = True
                rounds = min(max(attempts - self.max_attempts, 0), 30)
                delay_s = min(self.retry_delay_s * 2**rounds, self.max_retry_delay_s)
                with self.engine.begin() as connection:
                    connection.execute(
                        update(table)
                        .where(key)
                        .values(
                            attempts=attempts + 1,
                            last_error=str(exc),
                            next_attempt_at=_now_ms() + int(delay_s * 1000),
                        )
                    )
                break  # still down: the other rows wait for the next flush
            with self.engine.begin() as connection:
                connection.execute(delete(table).where(key))
            self.failing = False

    def close(self) -> None:
        """Flushes (retries due rows) and releases connections."""
        try:
            self.flush()
        finally:
            self._close_transport()
            self.engine.dispose()

    # the retry table

    def pending(self) -> list[dict[str, Any]]:
        """The retry table's rows for this target (oldest failure first)."""
        table = retries_table
        query = (
            select(table)
            .where(table.c.target == self.target)
            .order_by(table.c.first_failed_at, table.c.position)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def pending_count(self) -> int:
        """How many alerts wait in the retry table for this target."""
        query = (
            select(func.count())
            .select_from(retries_table)
            .where(retries_table.c.target == self.target)
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    # internals

    def _close_transport(self) -> None:  # noqa: B027 - optional hook, nothing by default
        """Releases a delivery transport (an HTTP client); nothing to release by default."""

    def _attempt(self, body: bytes, delivery_id: str, attempt: int) -> None:
        self.attempts += 1
        try:
            self.deliver(body, delivery_id, attempt)
        except DeliveryError as exc:
            self.failures += 1
            self.last_error = str(exc)
            raise
        self.delivered += 1

    def _try(self, body: bytes, delivery_id: str) -> tuple[int, str | None]:
        """Up to max_attempts tries; (attempts made, last error or None if delivered)."""
        error = ""
        tries = 1 if self.failing else self.max_attempts
        for attempt in range(1, tries + 1):
            if attempt > 1:
                self.sleep(self.backoff_s * 2 ** (attempt - 2))
            try:
                self._attempt(body, delivery_id, attempt)
            except DeliveryError as exc:
                error = str(exc)
                continue
            self.failing = False
            return attempt, None
        self.failing = True
        return tries, error

    def _retry_row(
        self, delivery_id: str, body: bytes, attempts: int, error: str | None, now: int
    ) -> dict[str, Any]:
        # Due at once: the next flush tries it (then backs off if it fails again).
        return {
            "target": self.target,
            "delivery_id": delivery_id,
            "body": body,
            "attempts": attempts,
            "last_error": error,
            "first_failed_at": now,
            "position": 0,
            "next_attempt_at": now,
        }

    def __enter__(self) -> RetryingDelivery:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class WebhookSink(RetryingDelivery):
    """Alerts POSTed as JSON to a URL, HMAC-signed when a secret is set.

    Headers: ``Content-Type: application/json``, ``X-Fraudstream-Delivery: <transaction id>``,
    ``X-Fraudstream-Attempt: <n>`` and, with a secret,
    ``X-Fraudstream-Signature: sha256=<hex HMAC-SHA256 of the body>``. Any 2xx response is
    a delivery; anything else (or no response within ``timeout_s``) is a failure.
    """

    def __init__(
        self,
        url: str,
        secret: bytes | None = None,
        retry_db: str = "fraudstream-alerts.db",
        max_attempts: int = 5,
        backoff_s: float = 0.2,
        timeout_s: float = 5.0,
        **options: Any,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http:// or https://: {url!r}")
        self.url = url
        self.secret = secret
        self.target = f"webhook:{url}"[:512]
        self.client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        try:
            super().__init__(retry_db, max_attempts, backoff_s, **options)
        except BaseException:
            self.client.close()
            raise

    def deliver(self, body: bytes, delivery_id: str, attempt: int) -> None:
        """POSTs one alert."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "fraudstream-webhook",
            DELIVERY_HEADER: delivery_id,
            ATTEMPT_HEADER: str(attempt),
        }
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]!r}")

    def _close_transport(self) -> None:
        self.client.close()


class CommandHook(RetryingDelivery):
    """A command run once per alert, the alert JSON on its standard input.

    The delivery id is in the ``FRAUDSTREAM_DELIVERY_ID`` environment variable (and the
    attempt number in ``FRAUDSTREAM_DELIVERY_ATTEMPT``). Exit status 0 is a delivery;
    another status, a failure to start, or running past ``timeout_s`` is a failure.
    """

    def __init__(
        self,
        command: list[str],
        retry_db: str = "fraudstream-alerts.db",
        max_attempts: int = 5,
        backoff_s: float = 0.2,
        timeout_s: float = 30.0,
        **options: Any,
    ) -> None:
        if not command:
            raise ValueError("the alert command is empty")
        self.command = list(command)
        self.timeout_s = timeout_s
        self.target = f"command:{shlex.join(self.command)}"[:512]
        super().__init__(retry_db, max_attempts, backoff_s, **options)

    def deliver(self, body: bytes, delivery_id: str, attempt: int) -> None:
        """Runs the command for one alert."""
        env = dict(os.environ)
        env[DELIVERY_ENV] = delivery_id
        env["FRAUDSTREAM_DELIVERY_ATTEMPT"] = str(attempt)
        try:
            done = subprocess.run(
                self.command,
                input=body,
                capture_output=True,
                timeout=self.timeout_s,
                env=env,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()
            last = tail[-1][:200] if tail else ""
            raise DeliveryError(f"exit status {done.returncode}: {last}".rstrip(": "))
