"""Kafka sink against the stack's broker, read back by a plain consumer (the contract suite's fixture,
tests/contract/sinks/kafka.py, reads with the same helpers).

The consumer below knows nothing of cdc_logs: it decodes keys and values with `json.loads`, as a
consumer written for Debezium's JSON converter (schemas disabled) would.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.sinks.kafka import KafkaSink
from cdc_logs.sinks.kafka_avro import AvroEncoder, SchemaRegistry, decode_wire
from tests.helpers import make_event

pytestmark = pytest.mark.integration


def create_topic(bootstrap: str, topic: str, partitions: int = 1, **config: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, 1, config=config)])
    futures[topic].result(30)


def consume_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of `topic` (partition by partition, in offset order), up to the high watermark."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "contract-reader", "enable.auto.commit": False}
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        records: list[Any] = []
        for partition in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            offset = low
            while offset < high:
                msg = consumer.poll(10)
                assert msg is not None, f"timed out reading {topic}[{partition}] at {offset}/{high}"
                assert msg.error() is None, msg.error()
                records.append(msg)
                offset = msg.offset() + 1
        return records
    finally:
        consumer.close()


@pytest.fixture
def topic(kafka_bootstrap: str, unique_name: str) -> str:
    create_topic(kafka_bootstrap, unique_name, partitions=3)
    return unique_name


def test_key_value_headers_and_tombstone(kafka_bootstrap: str, topic: str) -> None:
    sink = KafkaSink(kafka_bootstrap, topic=topic)
    sink.open()
    sink.write([make_event(1, op="c", key=7), make_event(2, op="d", key=7)])
    sink.close()
    records = consume_all(kafka_bootstrap, topic)
    assert len(records) == 3
    assert len({r.partition() for r in records}) == 1, "one key, one partition"
    create, delete, tombstone = records
    assert json.loads(create.key()) == {"id": 7}
    value = json.loads(create.value())
    assert value["op"] == "c" and value["after"] == {"id": 7, "v": 1} and value["before"] is None
    assert set(value) == {"before", "after", "source", "op", "ts_ms", "transaction"}
    headers = dict(create.headers())
    assert headers["op"] == b"c"
    assert json.loads(headers["position"]) == {"type": "watermark", "server": "test-server", "values": [1]}
    assert json.loads(delete.value())["op"] == "d"
    assert json.loads(tombstone.key()) == {"id": 7} and tombstone.value() is None


def test_no_tombstones_when_disabled(kafka_bootstrap: str, topic: str) -> None:
    sink = KafkaSink(kafka_bootstrap, topic=topic, tombstones_on_delete=False)
    sink.open()
    sink.write([make_event(1, op="d")])
    sink.close()
    assert [r.value() is None for r in consume_all(kafka_bootstrap, topic)] == [False]


def test_debezium_topic_names_and_per_key_partitions(kafka_bootstrap: str, unique_name: str) -> None:
    # Default template {prefix}.{schema}.{table}; make_event's schema is "main".
    for table in ("a", "b"):
        create_topic(kafka_bootstrap, f"{unique_name}.main.{table}", partitions=3)
    sink = KafkaSink(kafka_bootstrap, prefix=unique_name)
    sink.open()
    events = [make_event(n, table="ab"[n % 2], key=n % 4, op="u") for n in range(40)]
    sink.write(events)
    sink.close()
    for table in ("a", "b"):
        records = consume_all(kafka_bootstrap, f"{unique_name}.main.{table}")
        assert len(records) == 20
        partitions: dict[int, set[int]] = {}
        order: dict[int, list[int]] = {}
        for r in records:
            key = json.loads(r.key())["id"]
            partitions.setdefault(key, set()).add(r.partition())
            order.setdefault(key, []).append(json.loads(r.value())["source"]["seq"])
        assert all(len(p) == 1 for p in partitions.values())
        assert all(seqs == sorted(seqs) for seqs in order.values())


@pytest.mark.parametrize("codec", ["gzip", "lz4", "snappy", "zstd"])
def test_compression(kafka_bootstrap: str, topic: str, codec: str) -> None:
    sink = KafkaSink(kafka_bootstrap, topic=topic, compression_type=codec)
    sink.open()
    sink.write([make_event(n, op="u") for n in range(50)])
    sink.close()
    values = [json.loads(r.value())["source"]["seq"] for r in consume_all(kafka_bootstrap, topic)]
    assert sorted(values) == list(range(50))


def test_record_too_large_is_rejected(kafka_bootstrap: str, unique_name: str) -> None:
    create_topic(kafka_bootstrap, unique_name, **{"max.message.bytes": "2000"})
    sink = KafkaSink(kafka_bootstrap, topic=unique_name, config={"batch.size": 100_000})
    sink.open()
    event = make_event(1)
    assert event.after is not None
    event.after["blob"] = "x" * 10_000
    with pytest.raises(CdcError) as err:
        sink.write([event])
    assert err.value.kind is ErrorKind.SINK_REJECTED
    sink.close()


def test_key_field_keys_by_that_column(kafka_bootstrap: str, topic: str) -> None:
    sink = KafkaSink(kafka_bootstrap, topic=topic, key_field="v")
    sink.open()
    sink.write([make_event(5)])
    sink.close()
    (record,) = consume_all(kafka_bootstrap, topic)
    assert json.loads(record.key()) == {"v": 5}


def test_unreachable_broker_is_transient() -> None:
    sink = KafkaSink("127.0.0.1:1", topic="x", open_timeout_s=1)
    with pytest.raises(CdcError) as err:
        sink.open()
    assert err.value.kind is ErrorKind.SINK_TRANSIENT


def test_pinned_settings_cannot_be_weakened() -> None:
    with pytest.raises(CdcError, match="idempotence"):
        KafkaSink("127.0.0.1:9092", config={"acks": "1"})


@contextmanager
def serve_registry_stand_in() -> Iterator[tuple[str, dict[int, Any], list[str]]]:
    """A real HTTP server answering the one registry call the sink makes
    (`POST /subjects/<subject>/versions` -> `{"id": n}`), storing the schemas it was given:
    (its URL, schema id -> schema, the paths requested).

    It is NOT a schema registry (no compatibility rules, no persistence): none can run on these
    machines (docs/sinks.md, "Avro"), so this checks the REST exchange and the wire format only.
    """
    schemas: dict[int, Any] = {}
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            schema = json.loads(body["schema"])
            paths.append(self.path)
            found = [i for i, s in schemas.items() if s == schema]
            schema_id = found[0] if found else len(schemas) + 1
            schemas[schema_id] = schema
            payload = json.dumps({"id": schema_id}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", schemas, paths
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def registry_stand_in() -> Iterator[tuple[str, dict[int, Any], list[str]]]:
    with serve_registry_stand_in() as served:
        yield served


def test_avro_records_in_the_confluent_wire_format(
    kafka_bootstrap: str, topic: str, registry_stand_in: tuple[str, dict[int, Any], list[str]]
) -> None:
    url, schemas, paths = registry_stand_in
    sink = KafkaSink(kafka_bootstrap, topic=topic, encoder=AvroEncoder(SchemaRegistry(url)))
    sink.open()
    sink.write([make_event(1), make_event(2, op="u", key=1)])
    sink.close()
    records = consume_all(kafka_bootstrap, topic)
    assert len(records) == 2
    assert sorted(set(paths)) == [f"/subjects/{topic}-key/versions", f"/subjects/{topic}-value/versions"]
    assert len(paths) == 2, "the second event reuses the cached schema ids"
    (key_id,) = struct.unpack(">I", records[0].key()[1:5])
    (value_id,) = struct.unpack(">I", records[1].value()[1:5])
    assert decode_wire(records[0].key(), schemas[key_id])[1] == {"id": 1}
    update = decode_wire(records[1].value(), schemas[value_id])[1]
    assert (
        update["op"] == "u" and update["before"] == {"id": 1, "v": 1} and update["after"] == {"id": 1, "v": 2}
    )
    assert update["source"]["seq"] == 2


# -- schemas: true (Kafka Connect JsonConverter form) ----------------------------------------------
def _typed(event: Any) -> Any:
    """make_event's event with a table schema, as native readers attach one."""
    from cdc_logs.schema import Column, TableSchema

    event.schema = TableSchema(
        "db",
        "main",
        event.source.table,
        (
            Column("id", "int64", None, "INTEGER", optional=False, key=True),
            Column("v", "int64", None, "INTEGER"),
        ),
    )
    return event


def test_schemas_true_writes_the_jsonconverter_form(kafka_bootstrap: str, topic: str) -> None:
    sink = KafkaSink(kafka_bootstrap, topic=topic, prefix="shop", schemas=True)
    sink.open()
    sink.write([_typed(make_event(1, op="c", key=7)), _typed(make_event(2, op="d", key=7))])
    sink.close()
    create, delete, tombstone = consume_all(kafka_bootstrap, topic)
    key = json.loads(create.key())
    assert key["payload"] == {"id": 7}
    assert key["schema"] == {
        "type": "struct",
        "fields": [{"type": "int64", "optional": False, "field": "id"}],
        "optional": False,
        "name": "shop.main.t.Key",
    }
    value = json.loads(create.value())
    assert set(value) == {"schema", "payload"}
    assert value["payload"]["after"] == {"id": 7, "v": 1} and value["payload"]["op"] == "c"
    schema = value["schema"]
    assert schema["name"] == "shop.main.t.Envelope" and schema["version"] == 2
    fields = {f["field"]: f for f in schema["fields"]}
    assert [f["field"] for f in fields["after"]["fields"]] == ["id", "v"]
    assert fields["after"]["name"] == "shop.main.t.Value"
    assert set(value["payload"]) <= set(fields)
    assert set(value["payload"]["source"]) <= {f["field"] for f in fields["source"]["fields"]}
    assert json.loads(delete.value())["payload"]["before"] == {"id": 7, "v": 1}
    # the tombstone keeps the key in its JsonConverter form and a null value
    assert json.loads(tombstone.key()) == key and tombstone.value() is None


def test_schemas_true_with_key_field(kafka_bootstrap: str, topic: str) -> None:
    sink = KafkaSink(kafka_bootstrap, topic=topic, prefix="shop", key_field="v", schemas=True)
    sink.open()
    sink.write([_typed(make_event(3, op="c", key=1))])
    sink.close()
    (record,) = consume_all(kafka_bootstrap, topic)
    key = json.loads(record.key())
    assert key["payload"] == {"v": 3}
    assert key["schema"]["fields"] == [{"type": "int64", "optional": True, "field": "v"}]


def test_schemas_true_refuses_an_event_without_a_table_schema(kafka_bootstrap: str, topic: str) -> None:
    sink = KafkaSink(kafka_bootstrap, topic=topic, schemas=True)
    sink.open()
    with pytest.raises(CdcError) as err:
        sink.write([make_event(1)])
    sink.close()
    assert err.value.kind is ErrorKind.CONFIG and "schemas: false" in (err.value.hint or "")
    assert consume_all(kafka_bootstrap, topic) == [], "nothing half-described was written"
