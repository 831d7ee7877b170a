"""`unwrap` with the Kafka sink's Avro encoder, through a real schema registry (Apicurio's Confluent API).

The flattened row is written under its Connect schema (the one tests/integration/
test_unwrap_equivalence.py proves equal to Debezium's with the JsonConverter), converted to Avro by the
same rules as the envelope: decoded with the schema the registry holds for the record's id, every
value is the JSON flattened row's, the schema is Debezium's `<prefix>.<schema>.<table>.Value` with
`__deleted` and the added fields, and a delete in tombstone mode is a null record. This is not
compared with Debezium's AvroConverter output: no worker with an Avro converter runs here for it
(test_connect_reads_avro.py starts one for another purpose).
"""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cdc_logs.build import build_transform
from cdc_logs.config import transform_config
from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.sinks.kafka import KafkaSink
from cdc_logs.sinks.kafka_avro import AvroEncoder, SchemaRegistry
from tests.contract.test_kafka_sink import (
    ORDERS,
    consume_all,
    create_topic,
    registry_decode,
    registry_schema,
    typed_event,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(kafka_bootstrap: str) -> Iterator[str]:
    from confluent_kafka.admin import AdminClient

    name = "unwrapavro_" + uuid.uuid4().hex[:8]
    create_topic(kafka_bootstrap, name)
    yield name
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_topics([name]).values():
        future.result(30)


def _events() -> list[ChangeEvent]:
    created = typed_event(1, ORDERS)
    updated = typed_event(1, ORDERS, note="changed")
    updated.op, updated.before = Op.UPDATE, dict(created.after or {})
    deleted = typed_event(1, ORDERS, note="changed")
    deleted.op, deleted.before, deleted.after = Op.DELETE, deleted.after, None
    return [created, updated, deleted]


def _sink(kafka_bootstrap: str, topic: str, url: str) -> KafkaSink:
    return KafkaSink(kafka_bootstrap, topic=topic, encoder=AvroEncoder(SchemaRegistry(url)))


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: decimal.Decimal(v) if k == "price" and v is not None else v for k, v in row.items()}


def test_rewrite_with_added_fields_as_avro(
    kafka_bootstrap: str, topic: str, schema_registry_url: str
) -> None:
    unwrap = build_transform(
        transform_config(
            {
                "type": "unwrap",
                "params": {"delete_tombstone_handling_mode": "rewrite", "add_fields": "op,source.ts_ms"},
            }
        )
    )
    events = [unwrap.apply(e) for e in _events()]
    expected = [_comparable(e.flat.value(e)) for e in events if e is not None]
    with _sink(kafka_bootstrap, topic, schema_registry_url) as sink:
        sink.write([e for e in events if e is not None])
    records = consume_all(kafka_bootstrap, topic)
    assert len(records) == 3  # rewrite: the delete is a row, its tombstone dropped
    assert [registry_decode(schema_registry_url, r.value()) for r in records] == expected
    assert [v["__op"] for v in expected] == ["c", "u", "d"]
    assert [v["__deleted"] for v in expected] == ["false", "false", "true"]
    import struct

    (schema_id,) = struct.unpack(">I", records[0].value()[1:5])
    stored = registry_schema(schema_registry_url, schema_id)
    assert (stored["namespace"], stored["name"]) == ("app.public.orders", "Value")
    assert [f["name"] for f in stored["fields"]][-3:] == ["__deleted", "__op", "__source_ts_ms"]


def test_tombstone_mode_as_avro_is_a_null_record(
    kafka_bootstrap: str, topic: str, schema_registry_url: str
) -> None:
    unwrap = build_transform(transform_config({"type": "unwrap", "params": {}}))
    events = [unwrap.apply(e) for e in _events()]
    with _sink(kafka_bootstrap, topic, schema_registry_url) as sink:
        sink.write([e for e in events if e is not None])
    records = consume_all(kafka_bootstrap, topic)
    assert [r.value() is None for r in records] == [False, False, True]  # no second tombstone
    import io
    import struct

    import fastavro

    data = records[1].value()
    (schema_id,) = struct.unpack(">I", data[1:5])
    stored = registry_schema(schema_registry_url, schema_id)
    # Without added fields the row struct stays optional (Debezium's after field): AvroData makes an
    # optional top-level schema a union with null.
    assert stored[0] == "null" and (stored[1]["namespace"], stored[1]["name"]) == (
        "app.public.orders",
        "Value",
    )
    decoded = fastavro.schemaless_reader(io.BytesIO(data[5:]), fastavro.parse_schema(stored))
    assert decoded == _comparable(dict(events[1].after or {}))  # type: ignore[union-attr]
