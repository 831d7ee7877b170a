"""DebeziumReader over a scripted Kafka consumer: positions, commits, tombstones, dead letters, resume."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition

from cdc_logs import deadletter
from cdc_logs.configfile import parse_config
from cdc_logs.debezium.consumer import DebeziumReader, prefix_regex, subscription
from cdc_logs.debezium.deadletter import MALFORMED_HINT, FileDeadLetter, LogDeadLetter
from cdc_logs.envelope import ChangeEvent, Heartbeat
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline
from cdc_logs.position import KafkaOffsets
from tests.helpers import MemorySink
from tests.unit.test_debezium_decode import VALUE

TOPIC = "app.public.orders"


class Message:
    def __init__(
        self, offset: int, value: bytes | None, key: bytes | None = b'{"id": 1}', topic: str = TOPIC
    ):
        self._offset, self._value, self._key, self._topic = offset, value, key, topic

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1234)


class Metadata:
    cluster_id = "cluster-1"


class FakeConsumer:
    """Assigns TOPIC partition 0 on the first poll, then hands out the scripted messages."""

    def __init__(self, messages: list[Message], committed: int = -1001, low: int = 0, high: int = 10) -> None:
        self.messages = list(messages)
        self.group_offset = committed
        self.low, self.high = low, high
        self.assigned: list[TopicPartition] = []
        self.commits: list[list[tuple[str, int, int]]] = []
        self.settings: dict[str, Any] = {}
        self.closed = False
        self._callbacks: dict[str, Any] = {}

    def __call__(self, settings: dict[str, Any]) -> FakeConsumer:
        self.settings = settings
        return self

    def list_topics(self, timeout: float) -> Metadata:
        return Metadata()

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.topics = topics
        self._callbacks = callbacks

    def poll(self, timeout: float) -> Message | None:
        if not self.assigned and self._callbacks:
            self._callbacks["on_assign"](self, [TopicPartition(TOPIC, 0)])
        if self.messages:
            return self.messages.pop(0)
        time.sleep(0.01)
        return None

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(p.topic, p.partition, self.group_offset) for p in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return self.low, self.high

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = partitions

    def unassign(self) -> None:
        self.assigned = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert asynchronous is False
        self.commits.append([(o.topic, o.partition, o.offset) for o in offsets])

    def close(self) -> None:
        self.closed = True


def _reader(consumer: FakeConsumer, **kw: Any) -> DebeziumReader:
    settings = {"bootstrap.servers": "k:9092", "group.id": "g", "auto.offset.reset": "earliest"}
    reader = DebeziumReader(settings, [TOPIC], consumer_factory=consumer, idle_tick_s=0.05, **kw)
    reader.open()
    return reader


def _take(items: Iterator[Any], n: int) -> list[Any]:
    out: list[Any] = []
    while len(out) < n:
        item = next(items)
        if item is not None:
            out.append(item)
    return out


def _offsets(position: Any) -> dict[str, int]:
    return dict(position.offsets)


def test_stream_positions_tombstones_and_dead_letters(tmp_path: Path) -> None:
    value = orjson.dumps(VALUE)
    consumer = FakeConsumer(
        [Message(3, value), Message(4, None), Message(5, b"garbage"), Message(6, value)], committed=3
    )
    dlq = tmp_path / "dlq.jsonl"
    reader = _reader(consumer, dead_letter=FileDeadLetter(dlq))
    assert reader.server_identity() == "cluster-1"
    assert consumer.settings["enable.auto.commit"] is False
    items = _take(reader.stream(None), 5)
    first, event, tombstone, malformed, last = items
    # Started without a position: the start (the group's committed offset) is announced first.
    assert isinstance(first, Heartbeat) and _offsets(first.position) == {f"{TOPIC}:0": 3}
    assert isinstance(event, ChangeEvent) and event.boundary and event.key == {"id": 1}
    assert event.position == KafkaOffsets("cluster-1", ((f"{TOPIC}:0", 4),))
    assert isinstance(tombstone, Heartbeat) and _offsets(tombstone.position) == {f"{TOPIC}:0": 5}
    assert isinstance(malformed, Heartbeat) and _offsets(malformed.position) == {f"{TOPIC}:0": 6}
    assert isinstance(last, ChangeEvent) and _offsets(last.position) == {f"{TOPIC}:0": 7}
    record = orjson.loads(dlq.read_bytes().splitlines()[0])
    assert record["stage"] == "source" and record["component"] == "debezium" and record["kind"] == "decode"
    assert record["origin"]["offset"] == 5 and record["origin"]["topic"] == TOPIC
    assert record["raw"] == {"encoding": "utf-8", "data": "garbage"} and "not JSON" in record["reason"]
    assert record["origin"]["key"] == {"encoding": "utf-8", "data": '{"id": 1}'}
    assert record["position"]["offsets"] == [[f"{TOPIC}:0", 6]], "the position moves past it"
    reader.close()
    assert consumer.closed


@pytest.mark.parametrize("park", [False, True], ids=["stops", "dead-letter-dir"])
def test_without_a_destination_a_malformed_record_is_the_pipelines_to_park_or_stop_at(
    tmp_path: Path, park: bool
) -> None:
    """`tail` (no dead-letter destination) treats a malformed record as the native readers' tail treats
    an undecodable change: it stops there, or parks it with --dead-letter-dir and goes on."""
    value = orjson.dumps(VALUE)
    consumer = FakeConsumer([Message(3, value), Message(4, b"\xffgarbage", key=b"k"), Message(5, value)])
    reader = _reader(consumer)
    assert reader.dead_letter is None
    sink = MemorySink("out")
    pipeline = Pipeline(
        "tail",
        {"debezium": reader},
        [sink],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=10, max_wait_s=0.01),
        limit=2,
        dead_letter_dir=str(tmp_path / "dl") if park else None,
    )
    if not park:
        with pytest.raises(CdcError) as info:
            pipeline.run()
        assert info.value.kind is ErrorKind.DECODE and TOPIC in info.value.message
        assert "--dead-letter-dir" in (info.value.hint or "")
        assert [e.key for e in sink.events] == [{"id": 1}], "delivered up to it, not past it"
        return
    pipeline.run()
    assert len(sink.events) == 2, "the records around it are delivered"
    (record,) = deadletter.read(tmp_path / "dl" / "debezium.undecodable.jsonl")
    assert record.stage == "source" and record.table == TOPIC and record.raw == b"\xffgarbage"
    assert record.origin == {"topic": TOPIC, "partition": 0, "offset": 4, "timestamp_ms": 1234, "key": b"k"}
    assert record.hint == MALFORMED_HINT


def test_commit_goes_to_the_group_from_the_polling_loop() -> None:
    consumer = FakeConsumer([Message(0, orjson.dumps(VALUE))])
    reader = _reader(consumer)
    stream = reader.stream(None)
    _hb, event = _take(stream, 2)
    assert consumer.commits == []  # nothing is committed before the pipeline says the sinks hold it
    reader.commit(event.position)
    next(stream)  # the next loop turn applies it
    assert consumer.commits == [[(TOPIC, 0, 1)]]
    reader.commit(event.position)
    next(stream)
    assert len(consumer.commits) == 1  # the same position is not committed twice
    reader.close()


def test_tail_commits_nothing() -> None:
    consumer = FakeConsumer([Message(0, orjson.dumps(VALUE))])
    reader = _reader(consumer, commit_offsets=False)
    stream = reader.stream(None)
    _hb, event = _take(stream, 2)
    reader.commit(event.position)
    next(stream)
    reader.close()
    assert consumer.commits == []


def test_a_stored_position_wins_over_the_group_offset() -> None:
    consumer = FakeConsumer([Message(8, orjson.dumps(VALUE))], committed=2)
    reader = _reader(consumer)
    start = KafkaOffsets("cluster-1", ((f"{TOPIC}:0", 8),))
    (event,) = _take(reader.stream(start), 1)  # no announcing heartbeat when resuming
    assert isinstance(event, ChangeEvent)
    assert [(tp.topic, tp.offset) for tp in consumer.assigned] == [(TOPIC, 8)]
    reader.close()


def test_a_resume_offset_deleted_by_retention_is_refused() -> None:
    consumer = FakeConsumer([], committed=2, low=5)
    reader = _reader(consumer)
    with pytest.raises(CdcError) as info:
        _take(reader.stream(None), 2)
    assert info.value.kind is ErrorKind.POSITION_LOST
    reader.close()


def test_revoked_partitions_leave_the_position() -> None:
    consumer = FakeConsumer([Message(0, orjson.dumps(VALUE))])
    reader = _reader(consumer)
    stream = reader.stream(None)
    _take(stream, 2)
    consumer._callbacks["on_revoke"](consumer, [TopicPartition(TOPIC, 0)])
    consumer.messages.append(Message(1, None, topic="other.t"))  # not ours: ignored
    assert _offsets(reader._position()) == {}
    reader.close()


def test_stop_returns_promptly() -> None:
    reader = _reader(FakeConsumer([]))
    done = threading.Event()

    def run() -> None:
        for _ in reader.stream(None):
            pass
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.1)
    reader.stop()
    assert done.wait(2)
    reader.close()


def test_auto_commit_is_refused() -> None:
    with pytest.raises(CdcError, match=r"enable\.auto\.commit"):
        DebeziumReader({"enable.auto.commit": True}, [TOPIC])


def test_subscriptions() -> None:
    assert subscription([], "app", []) == [r"^app\..*"]
    assert subscription([], "app", ["public.a"]) == ["app.public.a"]
    assert subscription(["x", "^y.*"], None, []) == ["x", "^y.*"]
    assert prefix_regex("my-app.v1") == r"^my-app\.v1\..*"
    with pytest.raises(CdcError):
        subscription([], None, [])


# -- config ----------------------------------------------------------------------------------------
def _source(**source: Any) -> Any:
    cfg = parse_config({"source": {"type": "debezium", **source}, "destination": {"type": "stdout"}}, {})
    return cfg.all_sources()[0]


def test_seed_shape_with_connector_config() -> None:
    source = _source(
        bootstrap_servers="k:9092",
        connect_url="http://connect:8083",
        capture_mode="wal",
        slot_name="debezium_slot",
        connector_config={
            "name": "postgres-connector",
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "database.server.name": "dbserver1",
            "database.password": "password",
        },
    )
    assert source.topic_prefix == "dbserver1"
    assert source.connector_config["topic.prefix"] == "dbserver1"
    assert "database.server.name" not in source.connector_config
    assert source.connector_config["slot.name"] == "debezium_slot"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"bootstrap_servers": "k"}, "give `topic_prefix`"),
        ({"bootstrap_servers": "k", "topics": ["a"], "topic_prefix": "p"}, "not both"),
        # connect_url defaults to http://localhost:8083 (the seed's example names none)
        ({"bootstrap_servers": "k", "connector_config": {"name": "x"}}, "needs `connector.class`"),
        ({"bootstrap_servers": "k", "topic_prefix": "p", "capture_mode": "polling"}, "type: poll"),
        ({"bootstrap_servers": "k", "topic_prefix": "p", "message_format": "avro"}, "message_format"),
    ],
)
def test_config_errors(source: dict[str, Any], message: str) -> None:
    with pytest.raises(CdcError) as info:
        _source(**source)
    assert info.value.kind is ErrorKind.CONFIG and message in info.value.message


def test_build_maps_security_settings() -> None:
    from cdc_logs.build import build_reader

    source = _source(
        bootstrap_servers="k:9092",
        topic_prefix="app",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="pw",
        consumer_config={"fetch.min.bytes": 1},
    )
    reader = build_reader(source, "orders")
    assert isinstance(reader, DebeziumReader)
    settings = reader.consumer_config
    assert settings["sasl.password"] == "pw" and settings["security.protocol"] == "SASL_SSL"
    assert settings["group.id"] == "cdc-logs.orders.debezium" and settings["fetch.min.bytes"] == 1
    assert reader.topics == [r"^app\..*"] and reader.commit_offsets
    assert "pw" not in repr(source)  # SecretStr
    tail = build_reader(source, "tail", temporary=True)
    assert isinstance(tail, DebeziumReader) and not tail.commit_offsets
    assert isinstance(reader.dead_letter, FileDeadLetter) and reader.dead_letter.source == "debezium"
    assert tail.dead_letter is None, "tail: the pipeline stops at a malformed record, or parks it"
    logged = build_reader(
        _source(bootstrap_servers="k:9092", topic_prefix="app", dead_letter={"type": "log"}), "o"
    )
    assert isinstance(logged, DebeziumReader) and isinstance(logged.dead_letter, LogDeadLetter)
    assert str(tail.consumer_config["group.id"]).startswith("cdc-logs-tail-")


class DeadBrokers(FakeConsumer):
    """Kafka unreachable: metadata requests time out; poll() serves error_cb as librdkafka does."""

    def __init__(self) -> None:
        super().__init__([])
        self.metadata_calls = 0

    def list_topics(self, timeout: float) -> Metadata:
        from confluent_kafka import KafkaError, KafkaException

        self.metadata_calls += 1
        time.sleep(min(timeout, 0.05))
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata"))

    def poll(self, timeout: float) -> Message | None:
        from confluent_kafka import KafkaError

        on_error = self.settings["error_cb"]
        on_error(
            KafkaError(
                KafkaError._TRANSPORT, "k:9092/bootstrap: Connect to ipv4#k:9092 failed: x (after 0ms)"
            )
        )
        on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        return None


def test_dead_brokers_fail_open_at_once_with_the_broker_error() -> None:
    consumer = DeadBrokers()
    started = time.monotonic()
    with pytest.raises(CdcError) as info:
        _reader(consumer, connect_timeout_s=30)
    assert time.monotonic() - started < 2, "not after the metadata timeout"
    assert consumer.metadata_calls == 1 and consumer.closed
    assert info.value.kind is ErrorKind.CONNECTION  # retried by `run`; `tail` stops at once
    assert (
        info.value.message
        == "cannot reach Kafka at k:9092: k:9092/bootstrap: Connect to ipv4#k:9092 failed: x"
    )
