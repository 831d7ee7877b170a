"""Kafka sink against the stack's broker, read back by a plain consumer (the contract suite's fixture,
tests/contract/sinks/kafka.py, reads with the same helpers).

The consumer below knows nothing of cdc_logs: it decodes keys and values with `json.loads`, as a
consumer written for Debezium's JSON converter (schemas disabled) would; Avro records are decoded with
the schema a real schema registry (Apicurio Registry, Confluent API) returns for their id.
"""

from __future__ import annotations

import decimal
import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.schema import Column, Semantic, TableSchema
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


# -- Avro, against a real schema registry ---------------------------------------------------------
# Apicurio Registry's Confluent API (the `schema_registry_url` fixture, tests/conftest.py): the sink
# registers schemas there, the registry's compatibility rule judges each new version, and the records
# are decoded with the schema the registry hands back for the id in their header.
def registry_schema(url: str, schema_id: int) -> Any:
    """The schema the registry stores under `schema_id` (GET /schemas/ids/<id>)."""
    resp = requests.get(f"{url}/schemas/ids/{schema_id}", timeout=10)
    resp.raise_for_status()
    return json.loads(resp.json()["schema"])


def registry_decode(url: str, data: bytes) -> Any:
    """A Confluent-framed Avro message decoded with the schema its id names in the registry."""
    (schema_id,) = struct.unpack(">I", data[1:5])
    return decode_wire(data, registry_schema(url, schema_id))[1]


def set_compatibility(url: str, subject: str, level: str) -> None:
    resp = requests.put(
        f"{url}/config/{subject}",
        json={"compatibility": level},
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        timeout=10,
    )
    resp.raise_for_status()


def versions(url: str, subject: str) -> list[int]:
    resp = requests.get(f"{url}/subjects/{subject}/versions", timeout=10)
    resp.raise_for_status()
    return list(resp.json())


COLUMNS = (
    Column("id", "int32", source_type="INT4", optional=False, key=True),
    Column("price", "bytes", Semantic.DECIMAL, "NUMERIC", length=10, scale=2),
    Column("created", "int64", Semantic.MICRO_TIMESTAMP, "TIMESTAMP", length=6),
    Column("note", "string", source_type="TEXT"),
    Column("n", "int64", source_type="INT8"),
)
ORDERS = TableSchema("shop", "public", "orders", COLUMNS)
#: After ALTER TABLE orders ADD COLUMN added varchar(20): a backward-compatible change.
ORDERS_ADDED = TableSchema(
    "shop", "public", "orders", (*COLUMNS, Column("added", "string", source_type="VARCHAR")), version=2
)
#: After ALTER TABLE orders ALTER COLUMN n TYPE text: not backward compatible (long -> string).
ORDERS_RETYPED = TableSchema(
    "shop",
    "public",
    "orders",
    (*COLUMNS[:-1], Column("n", "string", source_type="TEXT"), Column("added", "string")),
    version=3,
)


def typed_event(i: int, schema: TableSchema, **row: Any) -> ChangeEvent:
    after = {"id": i, "price": f"{i}.50", "created": 1709210096789012 + i, "note": None, "n": i, **row}
    return ChangeEvent(
        op=Op.CREATE,
        source=SourceInfo("postgresql", "app", "shop", "orders", schema="public", ts_ms=i, extra={"lsn": i}),
        after=after,
        key={"id": i},
        ts_ms=i,
        schema=schema,
    )


@pytest.fixture
def avro_topic(kafka_bootstrap: str, unique_name: str) -> Iterator[str]:
    """A one-partition topic (records read back in write order), deleted afterwards."""
    from confluent_kafka.admin import AdminClient

    create_topic(kafka_bootstrap, unique_name)
    yield unique_name
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})  # kept alive until the deletion is done
    for future in admin.delete_topics([unique_name]).values():
        future.result(30)


def test_avro_from_the_table_schema_through_a_real_registry(
    kafka_bootstrap: str, avro_topic: str, schema_registry_url: str
) -> None:
    url, topic = schema_registry_url, avro_topic
    set_compatibility(url, f"{topic}-value", "BACKWARD")  # Confluent's default; Apicurio's is NONE
    registry = SchemaRegistry(url)
    calls: list[str] = []
    registry._session.hooks["response"].append(lambda resp, *args, **kwargs: calls.append(resp.url))
    sink = KafkaSink(kafka_bootstrap, topic=topic, encoder=AvroEncoder(registry))
    sink.open()
    sink.write([typed_event(1, ORDERS), typed_event(2, ORDERS, note="x")])
    assert len(calls) == 2, "one registration per subject; the second event reuses the cached ids"
    # ALTER TABLE ... ADD COLUMN: a new version the registry's BACKWARD rule accepts.
    sink.write([typed_event(3, ORDERS_ADDED, added="new")])
    assert versions(url, f"{topic}-value") == [1, 2]
    # A column changing type is refused by the registry: the batch fails, nothing is written.
    with pytest.raises(CdcError) as err:
        sink.write([typed_event(4, ORDERS_RETYPED, n="four", added=None)])
    assert err.value.kind is ErrorKind.SINK_REJECTED
    assert versions(url, f"{topic}-value") == [1, 2]
    sink.close()

    records = consume_all(kafka_bootstrap, topic)
    assert len(records) == 3
    values = [registry_decode(url, r.value()) for r in records]
    assert [v["after"]["id"] for v in values] == [1, 2, 3]
    first = values[0]["after"]
    assert first["price"] == decimal.Decimal("1.50") and first["note"] is None and first["n"] == 1
    assert values[1]["after"]["note"] == "x" and values[2]["after"]["added"] == "new"
    assert {r.value()[1:5] for r in records[:2]} != {records[2].value()[1:5]}, "the ALTER has its own id"
    # What the registry stores is Debezium's shape: <prefix>.<schema>.<table>.Envelope of .Value rows.
    (schema_id,) = struct.unpack(">I", records[0].value()[1:5])
    stored = registry_schema(url, schema_id)
    assert (stored["namespace"], stored["name"]) == ("app.public.orders", "Envelope")
    assert registry_decode(url, records[0].key()) == {"id": 1}


#: A Postgres int[] column: its catalog does not tell int[] from int[][].
ARRAYS = TableSchema(
    "shop",
    "public",
    "orders",
    (COLUMNS[0], Column("nest", "array", None, "INT4[]", element=Column("nest", "int32", None, "INT4"))),
)


def test_avro_a_multidimensional_array_is_a_new_version_backward_refuses(
    kafka_bootstrap: str, avro_topic: str, schema_registry_url: str
) -> None:
    url, topic = schema_registry_url, avro_topic
    set_compatibility(url, f"{topic}-value", "BACKWARD")
    sink = KafkaSink(kafka_bootstrap, topic=topic, encoder=AvroEncoder(SchemaRegistry(url)))
    sink.open()

    def event(i: int, nest: Any) -> ChangeEvent:
        source = SourceInfo("postgresql", "app", "shop", "orders", schema="public", ts_ms=i, extra={"lsn": i})
        return ChangeEvent(
            op=Op.CREATE, source=source, after={"id": i, "nest": nest}, key={"id": i}, ts_ms=i, schema=ARRAYS
        )

    sink.write([event(1, [1, 2])])
    # [[1,2],[3,4]] under the flat schema would be a silent loss; the nested variant is a new version
    # that BACKWARD refuses: the batch is rejected explicitly.
    with pytest.raises(CdcError) as err:
        sink.write([event(2, [[1, 2], [3, 4]])])
    assert err.value.kind is ErrorKind.SINK_REJECTED and "refused a new schema" in str(err.value)
    set_compatibility(url, f"{topic}-value", "NONE")  # the documented way out
    sink.write([event(3, [[1, 2], [3, 4]])])
    sink.close()
    values = [registry_decode(url, r.value()) for r in consume_all(kafka_bootstrap, topic)]
    assert [v["after"]["nest"] for v in values] == [[1, 2], [[1, 2], [3, 4]]]


def test_avro_fallback_without_a_table_schema(
    kafka_bootstrap: str, avro_topic: str, schema_registry_url: str
) -> None:
    """Events without a TableSchema (make_event's) get schemas inferred from their values."""
    url, topic = schema_registry_url, avro_topic
    sink = KafkaSink(kafka_bootstrap, topic=topic, encoder=AvroEncoder(SchemaRegistry(url)))
    sink.open()
    sink.write([make_event(1), make_event(2, op="u", key=1)])
    sink.close()
    records = consume_all(kafka_bootstrap, topic)
    assert len(records) == 2
    assert registry_decode(url, records[0].key()) == {"id": 1}
    update = registry_decode(url, records[1].value())
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


def test_logical_decoding_messages_go_to_the_message_topic(kafka_bootstrap: str, unique_name: str) -> None:
    # Op m has no table: Debezium writes it to <prefix>.message; the default template would give
    # `<prefix>..` (empty schema and table).
    create_topic(kafka_bootstrap, f"{unique_name}.message")
    message = ChangeEvent(
        op=Op.MESSAGE,
        source=SourceInfo("postgresql", "p", "db", "", schema="", ts_ms=1, extra={"txId": None, "lsn": 5}),
        key={"prefix": "audit"},
        ts_ms=2,
        content={"prefix": "audit", "content": "aGk="},
    )
    sink = KafkaSink(kafka_bootstrap, prefix=unique_name, schemas=True)
    sink.open()
    sink.write([message])
    sink.close()
    (record,) = consume_all(kafka_bootstrap, f"{unique_name}.message")
    value = json.loads(record.value())
    assert value["payload"]["message"] == {"prefix": "audit", "content": "aGk="}
    assert value["schema"]["name"] == "io.debezium.connector.postgresql.MessageValue"
