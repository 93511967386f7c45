"""``fraudstream produce``: simulated or file transactions to a Kafka topic (seed 001's producer).

Each transaction is one message, its value the JSON record, its key the card (the card id,
or the keyed token of a card number: a key never holds a full card number), so a card's
transactions stay in one partition and in order. ``--rate`` paces the stream (records per
second, steady, no drift); without it records go as fast as the cluster takes them.

JSON-lines input is sent line by line unchanged, malformed lines included (the run sends them
to its dead letters). CSV and Parquet rows are sent as JSON objects. ``--profiles`` sends a
profiles file (YAML/JSON/CSV/Parquet) to ``--profiles-topic`` keyed by user id, and with the demo
scenario ``--profiles-topic`` alone sends the demo users' profiles. Other simulations
(``fraudstream simulate --scenario handbook -o tx.parquet``) are sent with ``--input``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console

from fraudstream.config import ConfigError

__all__ = ["ProduceScenario", "produce_command", "records_to_send"]

_err = Console(stderr=True, soft_wrap=True)
_CARD_FIELDS = ("card_id", "account_id", "card_number")


class ProduceScenario(StrEnum):
    """Simulated streams."""

    demo = "demo"
    flink_walkthrough = "flink-walkthrough"


def card_key(record: Any, tokenize: Any) -> bytes | None:
    """The message key of a transaction: its card (tokenized if it is a card number)."""
    if not isinstance(record, dict):
        return None
    for name in _CARD_FIELDS:
        value = record.get(name)
        if value is not None and not isinstance(value, bool | dict | list):
            return str(tokenize(str(value))).encode()
    return None


def records_to_send(
    scenario: ProduceScenario | None,
    input_path: Path | None,
    count: int | None,
    seed: int,
    users: int,
) -> Iterator[tuple[bytes, Any]]:
    """(value, decoded record or None) pairs: the file's lines or rows, or simulated records."""
    encode = msgspec.json.Encoder().encode
    if input_path is not None:
        yield from _file_records(input_path, count)
        return
    records: Iterable[dict[str, Any]]
    if scenario is ProduceScenario.flink_walkthrough:
        from fraudstream.simulate.walkthrough import walkthrough_records

        records = walkthrough_records(count)
    else:
        from fraudstream.simulate.demo import demo_records

        records = demo_records(count=20_000 if count is None else count, users=users, seed=seed)
    for record in records:
        yield encode(record), record


def _file_records(path: Path, count: int | None) -> Iterator[tuple[bytes, Any]]:
    from fraudstream.io.files import guess_format

    if not path.is_file():
        raise ConfigError(f"--input {path}: no such file")
    fmt = guess_format(str(path))
    limit = float("inf") if count is None else count
    sent = 0
    if fmt == "jsonl":
        decode = msgspec.json.Decoder().decode
        with path.open("rb") as handle:
            for line in handle:
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                if sent >= limit:
                    return
                try:
                    record = decode(line)
                except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                    record = None  # sent as is: the run's dead letters say why
                sent += 1
                yield line, record
        return
    if fmt == "csv":
        import csv

        with path.open(newline="", encoding="utf-8-sig", errors="replace") as text:
            for row in csv.DictReader(text):  # strings, as `run` reads them
                if sent >= limit:
                    return
                record = {k: v for k, v in row.items() if k and v not in (None, "")}
                sent += 1
                yield _encode_row(record), record
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            if sent >= limit:
                return
            record = {k: v for k, v in row.items() if v is not None}
            sent += 1
            yield _encode_row(record), record


def _encode_row(record: dict[str, Any]) -> bytes:
    """JSON of a row; values JSON has no type for (decimals, ...) as text."""
    return msgspec.json.encode(record, enc_hook=str)


def produce_command(
    to: Annotated[
        str | None,
        typer.Option("--to", help="Topic as kafka://host:port/topic (or --bootstrap + --topic)."),
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers, host:port[,host:port].")
    ] = None,
    topic: Annotated[str, typer.Option(help="Topic (with --bootstrap).")] = "card-transactions",
    scenario: Annotated[
        ProduceScenario, typer.Option(help="Simulated stream (unless --input).")
    ] = ProduceScenario.demo,
    input_path: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="Send this file's records (.jsonl, .csv, .parquet)."),
    ] = None,
    count: Annotated[
        int | None, typer.Option(help="Records to send (demo: 20,000; walkthrough: endless).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Records per second (default: as fast as possible).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (demo).")] = 7,
    users: Annotated[int, typer.Option(help="Generated users besides the seed four (demo).")] = 200,
    profiles: Annotated[
        Path | None, typer.Option(help="Also send this profiles file to --profiles-topic.")
    ] = None,
    profiles_topic: Annotated[
        str | None,
        typer.Option(help="Topic for profiles (demo: sends the demo users' profiles)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary line.")] = False,
) -> None:
    """Send simulated or file transactions to a Kafka topic, keyed by card, at --rate."""
    try:
        sent, seconds, target = _produce(
            to, bootstrap, topic, scenario, input_path, count, rate, seed, users, profiles,
            profiles_topic,
        )  # fmt: skip
    except ConfigError as exc:
        _err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if not quiet:
        per_second = sent / seconds if seconds > 0 else 0.0
        _err.print(
            f"sent {sent:,} records to {target} in {seconds:.2f} s ({per_second:,.0f}/s)",
            highlight=False,
        )


def _produce(
    to: str | None,
    bootstrap: str | None,
    topic: str,
    scenario: ProduceScenario,
    input_path: Path | None,
    count: int | None,
    rate: float | None,
    seed: int,
    users: int,
    profiles: Path | None,
    profiles_topic: str | None,
) -> tuple[int, float, str]:
    from fraudstream.io.kafka import KafkaURI
    from fraudstream.io.kafka_sink import KafkaSink
    from fraudstream.schema import CardTokenizer
    from fraudstream.simulate.pacing import paced

    if to is not None and bootstrap is not None:
        raise ConfigError("give either --to kafka://host:port/topic or --bootstrap, not both")
    if to is None and bootstrap is None:
        raise ConfigError("where to? --to kafka://host:port/topic, or --bootstrap host:port")
    uri = KafkaURI.parse(to if to is not None else f"kafka://{bootstrap}/{topic}")
    if count is not None and count < 0:
        raise ConfigError(f"--count must be >= 0, got {count}")
    if rate is not None and not rate > 0:
        raise ConfigError(f"--rate must be > 0, got {rate}")
    if profiles is not None and profiles_topic is None:
        raise ConfigError("--profiles needs --profiles-topic")
    if scenario is ProduceScenario.flink_walkthrough and count is None and rate is None:
        raise ConfigError("the walkthrough is endless: give --count or --rate")
    if profiles_topic is not None:
        _send_profiles(uri.with_topic(profiles_topic), profiles, scenario, input_path, seed, users)
    tokenize = CardTokenizer.from_environment()
    sink = KafkaSink(uri)
    pairs: Iterable[tuple[bytes, Any]] = records_to_send(scenario, input_path, count, seed, users)
    if rate is not None:
        pairs = paced(pairs, rate)
    started = time.perf_counter()
    sent = 0
    try:
        for value, record in pairs:
            sink.send(value, card_key(record, tokenize))
            sent += 1
    finally:
        sink.close()  # waits for every acknowledgement; raises (one line) if any failed
    return sent, time.perf_counter() - started, str(uri)


def _send_profiles(
    uri: Any,
    path: Path | None,
    scenario: ProduceScenario,
    input_path: Path | None,
    seed: int,
    users: int,
) -> None:
    from fraudstream.config import load_rows
    from fraudstream.io.kafka_sink import KafkaSink
    from fraudstream.profiles import normalise_profile

    if path is not None:
        rows = load_rows(path, "profiles")
    elif scenario is ProduceScenario.demo and input_path is None:
        from fraudstream.simulate.demo import demo_profiles

        rows = demo_profiles(users=users, seed=seed)
    else:
        raise ConfigError("--profiles-topic: which profiles? give --profiles PATH")
    encode = msgspec.json.Encoder().encode
    sink = KafkaSink(uri)
    for index, row in enumerate(rows, 1):
        profile = normalise_profile(row, f"{path or 'demo profiles'}: entry {index}")
        sink.send(encode(row), profile["user_id"].encode())
    sink.close()
