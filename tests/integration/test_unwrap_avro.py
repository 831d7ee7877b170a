"""`unwrap` with the Kafka sink's Avro encoder, through a real schema registry (Apicurio's Confluent API).

- Against Debezium: the Postgres connector with ExtractNewRecordState (rewrite, add.fields) and
  Apicurio's AvroConverter (Confluent wire format) on a Connect worker this module starts (the stack's
  worker has no Avro converter; built as test_connect_reads_avro.py builds it), and the
  native reader + unwrap + the Avro encoder: every record's key and value decode (each with the schema
  the registry holds for its id) to the same values, key by key and in order, and the value schemas
  have the same fields. The Avro schema texts are not compared: two converters (Apicurio's AvroData
  and cdc-logs' port of Confluent's) may differ in properties the values do not depend on.
- The flattened schema's name and fields, and a delete in tombstone mode as a null record.
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
from tests.integration import test_connect_reads_avro as avro_support

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def avro_worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Connect worker with Apicurio's AvroConverter (started by this module, stopped after it)."""
    worker = avro_support.Worker(
        tmp_path_factory.mktemp("connect-avro"),
        kafka_bootstrap,
        [avro_support.converter_plugin(), avro_support.STACK / "lib" / "connect-plugins"],
    )
    try:
        yield worker
    finally:
        worker.stop()


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


# -- against Debezium's connector + SMT with an Avro converter ------------------------------------------
def test_unwrap_as_avro_equals_debezium_with_an_avro_converter(
    pg_dsn: str,
    connect_pg_dsn: str,
    connect_url: str,
    kafka_bootstrap: str,
    schema_registry_url: str,
    avro_worker: Any,
) -> None:
    """The Debezium Postgres connector on a worker with Apicurio's AvroConverter (Confluent wire format)
    and ExtractNewRecordState (rewrite, add.fields=op,source.ts_ms) against the native reader, unwrap and
    the Avro encoder: every record's key and value decode (with the schema the registry holds for its
    id) to the same values, key by key and in order, and the value schemas have the same fields."""
    import json
    import time

    import psycopg
    import requests

    from cdc_logs.build import build_reader
    from cdc_logs.configfile import parse_config
    from tests.integration.debezium_support import UNWRAP, cleanup, pg_connector_config, slot_exists
    from tests.integration.test_debezium_equivalence import Collector

    uid = "unwrapav_" + uuid.uuid4().hex[:8]
    table, native = f"public.{uid}", f"{uid}_native"
    registry_api = schema_registry_url.replace("/apis/ccompat/v7", "/apis/registry/v2")
    converter = {
        "apicurio.registry.url": registry_api,
        "apicurio.registry.as-confluent": "true",
        "apicurio.registry.use-id": "contentId",
        "apicurio.registry.auto-register": "true",  # the connector writes: it registers its schemas
    }
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, qty int, price numeric(10,2))")
        conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    collector = None
    try:
        source = {"type": "postgres", "dsn": pg_dsn, "tables": [table], "slot": native, "publication": native}
        cfg = parse_config(
            {"name": uid, "source": {**source, "snapshot": False}, "destination": {"type": "stdout"}}, {}
        )
        collector = Collector(build_reader(cfg.all_sources()[0], uid)).start()
        assert collector.started.wait(60)
        config = pg_connector_config(
            connect_pg_dsn,
            uid,
            table,
            **{
                "key.converter": avro_support.AVRO_CONVERTER,
                **{f"key.converter.{k}": v for k, v in converter.items()},
                "value.converter": avro_support.AVRO_CONVERTER,
                **{f"value.converter.{k}": v for k, v in converter.items()},
                "provide.transaction.metadata": "false",
                "transforms": "unwrap",
                "transforms.unwrap.type": UNWRAP,
                "transforms.unwrap.delete.tombstone.handling.mode": "rewrite",
                "transforms.unwrap.add.fields": "op,source.ts_ms",
            },
        )
        resp = requests.put(f"{avro_worker.url}/connectors/{uid}/config", json=config, timeout=30)
        assert resp.ok, resp.text
        deadline = time.monotonic() + 90
        while not slot_exists(pg_dsn, uid):
            status = avro_worker.status(uid)
            assert time.monotonic() < deadline, (status, avro_worker.tail())
            time.sleep(0.5)
        time.sleep(2)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            for statement in (
                f"INSERT INTO {table} VALUES (1, 'one', 1, 10.50)",
                f"INSERT INTO {table} VALUES (2, 'two', NULL, 0.01)",
                f"UPDATE {table} SET name = NULL, price = 11.25 WHERE id = 1",
                f"UPDATE {table} SET id = 20 WHERE id = 2",
                f"DELETE FROM {table} WHERE id = 1",
            ):
                conn.execute(statement)
        events = collector.wait_for(6, 60)
        unwrap = build_transform(
            transform_config(
                {
                    "type": "unwrap",
                    "params": {"delete_tombstone_handling_mode": "rewrite", "add_fields": "op,source.ts_ms"},
                }
            )
        )
        ours_topic = f"{uid}_ours"
        sink = KafkaSink(
            kafka_bootstrap,
            topic=ours_topic,
            prefix=uid,
            encoder=AvroEncoder(SchemaRegistry(schema_registry_url), prefix=uid),
        )
        with sink:
            sink.write([e for e in (unwrap.apply(e) for e in events) if e is not None])
        ours = consume_all(kafka_bootstrap, ours_topic)
        theirs_topic = f"{uid}.public.{uid}"
        deadline = time.monotonic() + 90
        theirs: list[Any] = []
        while time.monotonic() < deadline:
            try:
                theirs = consume_all(kafka_bootstrap, theirs_topic)
            except KeyError:  # the topic does not exist yet
                theirs = []
            if len(theirs) >= len(ours):
                break
            time.sleep(1)
        assert len(ours) == len(theirs) == 6, (len(ours), len(theirs), avro_worker.tail())

        def by_key(records: list[Any]) -> dict[str, list[Any]]:
            out: dict[str, list[Any]] = {}
            for r in records:
                key = registry_decode(schema_registry_url, r.key())
                out.setdefault(json.dumps(key, sort_keys=True), []).append(
                    registry_decode(schema_registry_url, r.value())
                )
            return out

        assert by_key(ours) == by_key(theirs)
        import struct

        def fields(record: Any) -> list[str]:
            (schema_id,) = struct.unpack(">I", record.value()[1:5])
            return [f["name"] for f in registry_schema(schema_registry_url, schema_id)["fields"]]

        assert (
            fields(ours[0])
            == fields(theirs[0])
            == ["id", "name", "qty", "price", "__deleted", "__op", "__source_ts_ms"]
        )
    finally:
        if collector is not None:
            collector.close()
        import contextlib

        import requests as rq

        with contextlib.suppress(rq.RequestException):
            rq.delete(f"{avro_worker.url}/connectors/{uid}", timeout=30)
        cleanup(
            connect_url,
            pg_dsn,
            kafka_bootstrap,
            slots=[uid, native],
            publications=[uid, native],
            tables=[table],
            topic_prefixes=[uid, f"{uid}_ours"],
        )
