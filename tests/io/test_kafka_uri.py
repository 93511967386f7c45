"""kafka:// URIs, bad addresses and delivery errors: one readable line, nothing swallowed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_kafka_support import MockCluster, mock_cluster
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.config import ConfigError
from fraudstream.io.files import open_sink
from fraudstream.io.kafka import KafkaError, KafkaURI, is_kafka_uri
from fraudstream.io.kafka_sink import KafkaSink, record_key
from fraudstream.io.kafka_source import KafkaSource


@pytest.fixture
def kafka_cluster() -> Iterator[MockCluster]:
    yield from mock_cluster()


hosts = st.lists(
    st.tuples(
        st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z0-9]{1,5}){0,2}", fullmatch=True),
        st.integers(1, 65535),
    ),
    min_size=1,
    max_size=3,
)
topics = st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True).filter(lambda t: t.strip("."))
settings = st.dictionaries(
    st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){0,2}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_-]{0,8}", fullmatch=True),
    max_size=3,
)


@given(hosts, topics, settings)
def test_a_uri_round_trips(
    servers: list[tuple[str, int]], topic: str, extra: dict[str, str]
) -> None:
    uri = KafkaURI(",".join(f"{h}:{p}" for h, p in servers), topic, extra)
    assert KafkaURI.parse(uri.text) == uri
    assert is_kafka_uri(uri.text)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("kafka://", "no broker address"),
        ("kafka://broker/topic", "is not host:port"),
        ("kafka://broker:99999/topic", "is not host:port"),
        ("kafka://broker:9092", "no topic"),
        ("kafka://broker:9092/", "no topic"),
        ("kafka://broker:9092/bad topic", "is not a topic name"),
        ("kafka://broker:9092/a/b", "is not a topic name"),
        ("kafka://user:pw@broker:9092/t", "credentials do not belong"),
        ("kafka://broker:9092/t?novalue", "settings must be"),
        ("alerts.jsonl", "not a Kafka URI"),
    ],
)
def test_bad_uris_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        KafkaURI.parse(text)


def test_record_keys_never_hold_a_card_number() -> None:
    assert record_key({"card_id": "tok_0123abcd"}) == b"tok_0123abcd"
    late = {"position": 4, "reason": "late", "record": {"card_id": "card-9"}}
    assert record_key(late) == b"card-9"
    assert record_key({"source": "t[1]", "position": 8, "raw": "4111111111111111"}) == b"t[1]:8"


def test_an_unreachable_broker_is_one_line_from_every_command(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot reach any Kafka broker"):
        KafkaSink(KafkaURI.parse("kafka://127.0.0.1:1/fraud-alerts"))
    tx = tmp_path / "tx.jsonl"
    tx.write_text('{"transaction_id": "t", "card_id": "c", "timestamp": 0, "amount": 1}\n')
    for command in (
        ["run", "--input", "kafka://127.0.0.1:1/card-transactions"],
        ["run", "--input", str(tx), "--alerts", "kafka://127.0.0.1:1/fraud-alerts"],
        ["run", "--input", "kafka://nowhere/card-transactions"],
        ["run", "--input", str(tx), "--profiles-topic", "users-config"],
        ["produce", "--to", "kafka://127.0.0.1:1/card-transactions", "--count", "1"],
        ["produce", "--bootstrap", "127.0.0.1:1", "--to", "kafka://127.0.0.1:1/t"],
    ):
        done = CliRunner().invoke(app, [*command, "--quiet"] if command[0] == "run" else command)
        assert done.exit_code == 2, (command, done.output)
        assert done.stderr.startswith("error: "), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_missing_input_topic_is_named(kafka_cluster: MockCluster) -> None:
    kafka_cluster.produce("card-transactions", [b"{}"], [None])
    with pytest.raises(ConfigError, match="no topic 'card-transaction' .*card-transactions"):
        KafkaSource(KafkaURI.parse(kafka_cluster.uri("card-transaction")))


def test_undelivered_messages_fail_the_flush() -> None:
    # Something listens on the port but it is no Kafka broker: the messages cannot be
    # delivered and time out, and the flush must say so rather than return as if sent.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        sink = open_sink(f"kafka://127.0.0.1:{port}/fraud-alerts?message.timeout.ms=300")
        assert isinstance(sink, KafkaSink)
        sink.write_dicts([{"transaction_id": f"t{i}", "card_id": "c"} for i in range(5)])
        sink.flush()  # does not wait: nothing known to have failed yet
        with pytest.raises(KafkaError, match="5 messages not delivered .*timed out"):
            sink.checkpoint()  # waits for every acknowledgement


def test_a_message_the_client_refuses_is_an_error_not_a_drop(kafka_cluster: MockCluster) -> None:
    sink = KafkaSink(KafkaURI.parse(kafka_cluster.uri("fraud-alerts", "message.max.bytes=1000")))
    with pytest.raises(KafkaError, match="refused.*too large"):
        sink.write_dicts([{"transaction_id": "big", "card_id": "c", "raw": "x" * 5000}])


def test_a_sink_checkpoint_waits_for_every_acknowledgement(kafka_cluster: MockCluster) -> None:
    sink = KafkaSink(KafkaURI.parse(kafka_cluster.uri("fraud-alerts")))
    sink.write_dicts([{"transaction_id": f"t{i}", "card_id": f"c{i % 3}"} for i in range(300)])
    marker = sink.checkpoint()
    assert marker == {"topic": "fraud-alerts", "delivered": 300}
    sink.close()


def test_produce_paces_and_keys_by_card(kafka_cluster: MockCluster) -> None:
    from test_kafka_support import read_topic

    result = CliRunner().invoke(
        app,
        [
            "produce", "--bootstrap", kafka_cluster.bootstrap, "--topic", "walk",
            "--scenario", "flink-walkthrough", "--count", "30", "--rate", "300",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    messages = read_topic(kafka_cluster.bootstrap, "walk")
    assert len(messages) == 30
    for key, value, _, _ in messages:
        assert key == str(value["card_id"]).encode()
    assert msgspec.json.encode(messages[0][1])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_produce_sends_table_rows_as_json_keyed_by_card_token(
    kafka_cluster: MockCluster, tmp_path: Path, suffix: str
) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from test_kafka_support import read_topic

    table = pa.table(
        {
            "transaction_id": ["a", "b", "c"],
            "card_number": ["4111111111111111", "4111111111111111", "5500005555555559"],
            "timestamp": [1, 2, 3],
            "amount": [1.5, 2.5, 900.0],
            "zipcode": ["01234", "01234", None],
        }
    )
    path = tmp_path / f"tx{suffix}"
    if suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    result = CliRunner().invoke(
        app, ["produce", "--to", kafka_cluster.uri("rows"), "--input", str(path), "-q"]
    )
    assert result.exit_code == 0, result.output
    messages = sorted(read_topic(kafka_cluster.bootstrap, "rows"), key=lambda m: m[1]["amount"])
    assert [m[1]["transaction_id"] for m in messages] == ["a", "b", "c"]
    assert messages[0][1]["zipcode"] == "01234"  # text stays text (leading zero kept)
    keys = [m[0] for m in messages]
    assert keys[0] == keys[1] != keys[2] and all(k and k.startswith(b"tok_") for k in keys)
