"""The `kafka` source without a broker: its config (the seed's shape), the record decoder (json rows,
keys, op_field, watermark, tombstones, poison) over the shared consumer with a scripted Kafka consumer,
and Avro decoding against a stand-in registry (tests/schema_registry_stand_in.py: real HTTP, not a
real registry; what is and is not tested live is in docs/sources/kafka.md).

The consumer's own behaviour (commits after the sinks, resume, rebalances, broker down) is the one the
debezium source has: tests/unit/test_debezium_consumer.py covers it for both."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import struct
import uuid
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest

from cdc_logs.build import build_reader
from cdc_logs.configfile import parse_config
from cdc_logs.debezium.deadletter import FileDeadLetter
from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, SourceInfo
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.kafka import avro
from cdc_logs.readers.kafka.config import KafkaSourceConfig
from cdc_logs.readers.kafka.consumer import KafkaReader
from cdc_logs.readers.kafka.decode import KafkaMessageDecoder
from cdc_logs.readers.messages import MessageFormatConfig
from cdc_logs.schema import Column, TableSchema
from cdc_logs.sinks.kafka_avro import AvroEncoder, SchemaRegistry
from tests.schema_registry_stand_in import schema_registry_stand_in
from tests.unit.test_debezium_consumer import TOPIC, FakeConsumer, Message

SEED = {
    "type": "kafka",
    "bootstrap_servers": "localhost:9092",
    "topic": "user_events",
    "group_id": "cdc_consumer",
    "auto_offset_reset": "earliest",
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "PLAIN",
    "sasl_username": "user",
    "sasl_password": "password",
    "watermark": {"column": "event_timestamp", "type": "timestamp"},
    "message_format": "json",
    "schema_registry_url": "http://localhost:8081",
}


def _source(**source: Any) -> Any:
    cfg = parse_config({"source": source, "destination": {"type": "stdout"}}, {})
    return cfg.all_sources()[0]


# -- config ----------------------------------------------------------------------------------------
def test_the_seed_example_validates_and_builds_the_shared_consumer() -> None:
    source = _source(**SEED)
    assert isinstance(source, KafkaSourceConfig) and source.topics == ["user_events"]
    assert "'password'" not in repr(source) and "**********" in repr(source)
    reader = build_reader(source, "events")
    assert isinstance(reader, KafkaReader) and reader.connector == "kafka"
    settings = reader.consumer_config
    assert settings["group.id"] == "cdc_consumer" and settings["auto.offset.reset"] == "earliest"
    assert settings["security.protocol"] == "SASL_SSL" and settings["sasl.mechanism"] == "PLAIN"
    assert settings["sasl.username"] == "user" and settings["sasl.password"] == "password"
    assert settings["enable.auto.commit"] is False and reader.commit_offsets
    assert isinstance(reader.dead_letter, FileDeadLetter) and reader.dead_letter.source == "kafka"
    tail = build_reader(source, "tail", temporary=True)
    assert isinstance(tail, KafkaReader) and not tail.commit_offsets and tail.dead_letter is None


def test_the_multi_source_seeds_bare_kafka_source_validates() -> None:
    source = _source(name="event_stream", type="kafka", topic="real_time_events")
    assert source.bootstrap_servers == "localhost:9092" and source.topics == ["real_time_events"]
    reader = build_reader(source, "p")
    assert isinstance(reader, KafkaReader)
    assert reader.consumer_config["group.id"] == "cdc-logs.p.event_stream"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"topic": "t", "message_format": "protobuf"}, "protobuf is not supported"),
        ({"topic": "t", "message_format": "avro"}, "needs schema_registry_url"),
        ({"topics": []}, "topics"),
        ({"topic": "t", "bootstrap_servers": "u:p@k:9092"}, "without credentials"),
        ({"topic": "t", "message_format": "debezium", "op_field": "x"}, "remove op_field"),
        ({"topic": "t", "dead_letter": {"type": "file", "topic": "x"}}, "dead_letter.topic"),
    ],
)
def test_config_errors(source: dict[str, Any], message: str) -> None:
    with pytest.raises(CdcError) as info:
        _source(type="kafka", **source)
    assert info.value.kind is ErrorKind.CONFIG and message in info.value.message


# -- json records through the shared consumer ------------------------------------------------------
class Timestamped(Message):
    """A record with the broker's timestamp and a chosen partition."""

    def __init__(self, offset: int, value: bytes | None, key: bytes | None, ts: int = 1_700_000_000_000):
        super().__init__(offset, value, key)
        self._ts = ts

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)


def _reader(consumer: FakeConsumer, tmp_path: Path, **fmt: Any) -> KafkaReader:
    mapping = MessageFormatConfig(**fmt).mapping()
    reader = KafkaReader(
        {"bootstrap.servers": "k:9092", "group.id": "g", "auto.offset.reset": "earliest"},
        [TOPIC],
        decoder=KafkaMessageDecoder(mapping, "pipe"),
        dead_letter=FileDeadLetter(tmp_path / "dlq.jsonl", "events"),
        consumer_factory=consumer,
        idle_tick_s=0.05,
    )
    reader.open()
    return reader


def _take(reader: KafkaReader, n: int) -> list[Any]:
    out: list[Any] = []
    stream = reader.stream(None)
    while len(out) < n:
        item = next(stream)
        if item is not None:
            out.append(item)
    return out


def test_json_records_become_events_and_poison_goes_to_the_dead_letter_file(tmp_path: Path) -> None:
    consumer = FakeConsumer(
        [
            Timestamped(3, b'{"id": 1, "action": "insert", "event_timestamp": "2024-05-01T10:00:00Z"}', b"7"),
            Timestamped(4, b"not json", b'{"id": 2}'),
            Timestamped(5, b"[1, 2]", b'{"id": 3}'),
            Timestamped(6, b'{"id": 4, "action": "UPDATE"}', b'{"id": 4}', ts=1_700_000_000_123),
            Timestamped(7, None, b'{"id": 4}'),
            Timestamped(8, b'{"id": 5, "action": "frobnicate"}', None),
        ],
        committed=3,
    )
    reader = _reader(
        consumer, tmp_path, op_field="action", watermark={"column": "event_timestamp", "type": "timestamp"}
    )
    start, first, bad_json, bad_array, update, delete, bad_op = _take(reader, 7)
    assert isinstance(start, Heartbeat)
    assert isinstance(first, ChangeEvent) and first.op is Op.CREATE and first.boundary
    assert first.key == {"key": 7} and first.after == {
        "id": 1,
        "action": "insert",
        "event_timestamp": "2024-05-01T10:00:00Z",
    }
    assert (
        first.source.connector == "kafka" and first.source.db == "cluster-1" and first.source.table == TOPIC
    )
    assert first.source.ts_ms == int(dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC).timestamp() * 1000)
    assert first.source.extra == {"topic": TOPIC, "partition": 0, "offset": 3}
    assert first.position is not None and first.position.describe() == f"{TOPIC}:0@4"
    assert isinstance(update, ChangeEvent) and update.op is Op.UPDATE and update.key == {"id": 4}
    assert update.source.ts_ms == 1_700_000_000_123, "no watermark in the row: the broker's timestamp"
    assert isinstance(delete, ChangeEvent) and delete.op is Op.DELETE and delete.before == {"id": 4}
    assert delete.key == {"id": 4} and delete.after is None
    for poison in (bad_json, bad_array, bad_op):
        assert isinstance(poison, Heartbeat), "dead-lettered: the position moves past it"
    dead = [orjson.loads(line) for line in (tmp_path / "dlq.jsonl").read_bytes().splitlines()]
    assert [d["origin"]["offset"] for d in dead] == [4, 5, 8]
    assert "not JSON" in dead[0]["reason"] and dead[0]["raw"]["data"] == "not json"
    assert "JSON list, not an object" in dead[1]["reason"]
    assert "op_field 'action'" in dead[2]["reason"] and "op_values" in dead[2]["hint"]
    assert {d["component"] for d in dead} == {"events"} and dead[0]["origin"]["topic"] == TOPIC
    assert dead[0]["origin"]["partition"] == 0 and dead[0]["position"]["offsets"] == [[f"{TOPIC}:0", 5]]
    reader.close()


def test_key_fields_win_over_the_record_key(tmp_path: Path) -> None:
    consumer = FakeConsumer(
        [Timestamped(0, b'{"user_id": 9, "x": 1}', b"ignored"), Timestamped(1, b"{}", b"k")]
    )
    reader = _reader(consumer, tmp_path, key_fields=["user_id"], table="users")
    _start, event, missing = _take(reader, 3)
    assert event.key == {"user_id": 9} and event.source.table == "users"
    assert isinstance(missing, Heartbeat)
    (dead,) = [orjson.loads(line) for line in (tmp_path / "dlq.jsonl").read_bytes().splitlines()]
    assert "key field(s) ['user_id']" in dead["reason"]
    reader.close()


def test_a_null_value_without_a_key_is_poison(tmp_path: Path) -> None:
    reader = _reader(FakeConsumer([Timestamped(0, None, None)]), tmp_path)
    _start, item = _take(reader, 2)
    assert isinstance(item, Heartbeat)
    (dead,) = [orjson.loads(line) for line in (tmp_path / "dlq.jsonl").read_bytes().splitlines()]
    assert dead["reason"] == "the message has no body"
    reader.close()


# -- avro ------------------------------------------------------------------------------------------
ROW_SCHEMA = {
    "type": "record",
    "name": "UserEvent",
    "namespace": "app",
    "fields": [
        {"name": "user_id", "type": "long"},
        {"name": "action", "type": "string"},
        {"name": "event_timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "token", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "blob", "type": ["null", "bytes"], "default": None},
    ],
}
KEY_SCHEMA = {
    "type": "record",
    "name": "Key",
    "namespace": "app",
    "fields": [{"name": "user_id", "type": "long"}],
}


def frame(schema_id: int, schema: Any, record: Any) -> bytes:
    """Confluent wire format, as a Confluent serializer writes it."""
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">I", schema_id))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def _avro_decoder(url: str, **fmt: Any) -> KafkaMessageDecoder:
    mapping = MessageFormatConfig(message_format="avro", **fmt).mapping()
    return KafkaMessageDecoder(
        mapping, "pipe", avro.SchemaRegistryClient(url, username="u", password="s3cret")
    )


def _decode(decoder: KafkaMessageDecoder, value: bytes | None, key: bytes | None = None) -> Any:
    from cdc_logs.position import KafkaOffsets

    return decoder(Timestamped(11, value, key), KafkaOffsets("c", ((f"{TOPIC}:0", 12),), f"{TOPIC}:0"), "c")


def test_avro_rows_are_read_with_the_writer_schema_from_the_registry() -> None:
    with schema_registry_stand_in(user="u", password="s3cret") as registry:
        value_id, key_id = registry.add(ROW_SCHEMA), registry.add(KEY_SCHEMA)
        token = uuid.uuid4()
        row = {
            "user_id": 42,
            "action": "update",
            "event_timestamp": dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=dt.UTC),
            "amount": decimal.Decimal("12.50"),
            "token": str(token),
            "blob": b"\x00\xff",
        }
        decoder = _avro_decoder(
            registry.url, op_field="action", watermark={"column": "event_timestamp", "type": "timestamp"}
        )
        key = frame(key_id, KEY_SCHEMA, {"user_id": 42})
        event = _decode(decoder, frame(value_id, ROW_SCHEMA, row), key)
        again = _decode(decoder, frame(value_id, ROW_SCHEMA, row), key)
        assert isinstance(event, ChangeEvent) and event.op is Op.UPDATE and event.key == {"user_id": 42}
        assert event.after == {
            "user_id": 42,
            "action": "update",
            "event_timestamp": "2024-05-01T10:00:00+00:00",
            "amount": "12.50",
            "token": str(token),
            "blob": "AP8=",
        }
        assert event.source.ts_ms == 1714557600000 and event.source.extra["offset"] == 11
        assert isinstance(again, ChangeEvent)
        gets = [path for method, path in registry.requests if method == "GET"]
        assert sorted(gets) == sorted([f"/schemas/ids/{key_id}", f"/schemas/ids/{value_id}"]), "cached per id"
        assert all(h and h.startswith("Basic ") for h in registry.auth_headers)


def _orders_event(typed: bool) -> ChangeEvent:
    event = ChangeEvent(
        op=Op.UPDATE,
        source=SourceInfo(connector="postgresql", name="shop", db="shop", schema="public", table="orders"),
        before={"id": 1, "v": 1, "note": None},
        after={"id": 1, "v": 2, "note": "paid"},
        key={"id": 1},
        ts_ms=1_700_000_000_000,
    )
    if typed:  # as native readers attach it
        event.schema = TableSchema(
            "shop",
            "public",
            "orders",
            (
                Column("id", "int64", None, "BIGINT", optional=False, key=True),
                Column("v", "int32", None, "INTEGER"),
                Column("note", "string", None, "TEXT"),
            ),
        )
    return event


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "inferred"])
def test_the_projects_avro_sink_output_is_read_back_as_the_same_events(typed: bool) -> None:
    """cdc-logs' Avro Kafka sink writes Debezium's Avro envelopes (typed from the table schema, or
    inferred from the values): the source reads them back as the events that were written."""
    original = _orders_event(typed)
    with schema_registry_stand_in() as registry:
        encoder = AvroEncoder(SchemaRegistry(registry.url))
        key, value = encoder(original, "shop.public.orders", orjson.dumps(original.key))
        decoder = KafkaMessageDecoder(
            MessageFormatConfig(message_format="avro").mapping(), "p", avro.SchemaRegistryClient(registry.url)
        )
        event = _decode(decoder, value, key)
    assert isinstance(event, ChangeEvent)
    assert (event.op, event.before, event.after, event.key, event.ts_ms) == (
        original.op,
        original.before,
        original.after,
        original.key,
        original.ts_ms,
    )
    assert (event.source.connector, event.source.db, event.source.schema, event.source.table) == (
        "postgresql",
        "shop",
        "public",
        "orders",
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x01\x00\x00\x00\x01abc", "magic byte 1 is not 0"),
        (b"\x00\x00\x00", "shorter than the Confluent header"),
        (b"\x00\x00\x00\x03\xe7\x02", "has no schema id 999"),
        (b'{"id": 1}', "magic byte 123 is not 0"),
    ],
)
def test_unreadable_avro_is_poison_with_the_reason(value: bytes, reason: str) -> None:
    from cdc_logs.readers.kafka.consumer import Rejected

    with schema_registry_stand_in() as registry:
        registry.add(ROW_SCHEMA)
        rejected = _decode(_avro_decoder(registry.url), value)
    assert isinstance(rejected, Rejected) and reason in rejected.reason, rejected
    assert "Confluent-framed Avro" in rejected.hint


def test_a_body_that_does_not_fit_its_schema_or_a_protobuf_schema_is_poison() -> None:
    from cdc_logs.readers.kafka.consumer import Rejected

    with schema_registry_stand_in() as registry:
        row_id = registry.add(ROW_SCHEMA)
        proto_id = registry.add({"not": "avro"}, schema_type="PROTOBUF")
        decoder = _avro_decoder(registry.url)
        short = _decode(decoder, b"\x00" + struct.pack(">I", row_id) + b"\x02")
        proto = _decode(decoder, b"\x00" + struct.pack(">I", proto_id) + b"\x02")
        key_id = registry.add(KEY_SCHEMA)
        trailing = _decode(decoder, frame(key_id, KEY_SCHEMA, {"user_id": 1}) + b"\x00")
    assert isinstance(short, Rejected) and f"does not match schema id {row_id}" in short.reason
    assert isinstance(proto, Rejected) and "PROTOBUF schema, not Avro" in proto.reason
    assert isinstance(trailing, Rejected) and "longer than schema id" in trailing.reason


def test_a_registry_that_refuses_or_is_down_is_an_error_not_poison() -> None:
    with schema_registry_stand_in(user="u", password="right") as registry:
        schema_id = registry.add(ROW_SCHEMA)
        with pytest.raises(CdcError) as refused:
            _decode(_avro_decoder(registry.url), frame(schema_id, KEY_SCHEMA, {"user_id": 1}))
        url = registry.url
    assert refused.value.kind is ErrorKind.AUTH and "s3cret" not in str(refused.value)
    with pytest.raises(CdcError) as down:
        _decode(_avro_decoder(url), frame(schema_id, KEY_SCHEMA, {"user_id": 1}))
    assert down.value.kind is ErrorKind.CONNECTION
