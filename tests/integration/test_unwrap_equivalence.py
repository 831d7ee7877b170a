"""Unwrap equivalence: cdc-logs' `unwrap` writes what Debezium's ExtractNewRecordState writes.

One Postgres workload (inserts, updates, a NULL, a primary-key change, deletes) is captured twice:
  - by Debezium's Postgres connector with `io.debezium.transforms.ExtractNewRecordState` on the
    connector (JsonConverter, schemas on for key and value), once per `delete.tombstone.handling.mode`
    (drop, tombstone, rewrite, rewrite-with-tombstone, delete-to-tombstone), each connector with its
    own slot and topic, `add.fields=op,table,lsn,source.ts_ms,txId` and `add.headers=op,source.ts_ms`;
  - by the native Postgres reader (built from config, as `cdc-logs run` builds it), each mode's
    `unwrap` transform (built from config too) and the Kafka sink with `schemas: true` and the
    connector's topic.prefix as its `prefix`, into a topic of its own.

Every record must then be the same, key by key and in order: the key (schema and payload), the value
(schema and payload, `null` records included) and the `__`-headers the SMT adds. The connector's
other headers (`__debezium.oldkey` / `newkey` on a primary-key change) are not compared: the Kafka
sink does not write them.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from cdc_logs.build import build_reader, build_sink, build_transform
from cdc_logs.config import transform_config
from cdc_logs.configfile import parse_config
from cdc_logs.debezium.connect import ConnectClient
from cdc_logs.envelope import ChangeEvent
from tests.integration.debezium_support import UNWRAP, cleanup, pg_connector_config, slot_exists, wait_running
from tests.integration.test_debezium_equivalence import Collector

pytestmark = pytest.mark.integration

MODES = ("drop", "tombstone", "rewrite", "rewrite-with-tombstone", "delete-to-tombstone")
ADD_FIELDS = "op,table,lsn,source.ts_ms,txId"
ADD_HEADERS = "op,source.ts_ms"
COLUMNS = "id int PRIMARY KEY, name text, qty int, price numeric(10,2), seen_at timestamptz"


def _workload(table: str) -> list[str]:
    return [
        f"INSERT INTO {table} VALUES (1, 'one', 1, 10.50, '2024-05-06 07:08:09.123456+00')",
        f"INSERT INTO {table} VALUES (2, 'two', 2, 20.00, NULL)",
        f"INSERT INTO {table} VALUES (3, 'three', 3, 0.01, '2024-01-01 00:00:00+00')",
        f"UPDATE {table} SET name = 'TWO', price = 21.25 WHERE id = 2",
        f"UPDATE {table} SET name = NULL WHERE id = 1",
        f"UPDATE {table} SET id = 30 WHERE id = 3",  # a primary-key change: delete + create
        f"DELETE FROM {table} WHERE id = 1",
        f"INSERT INTO {table} (id) VALUES (4)",
        f"DELETE FROM {table} WHERE id = 30",
    ]


EVENTS = 10  # 9 statements, the key change counting twice; 3 of them deletes


def _records(bootstrap: str, topic: str) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"unwrap-{uuid.uuid4().hex}"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        out: list[Any] = []
        for partition in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            offset = low
            while offset < high:
                msg = consumer.poll(10)
                assert msg is not None and msg.error() is None, f"reading {topic}: {msg and msg.error()}"
                out.append(msg)
                offset = msg.offset() + 1
        return out
    finally:
        consumer.close()


def _by_key(records: list[Any]) -> dict[str, list[tuple[Any, dict[str, str]]]]:
    """key payload (JSON text) -> [(value as parsed JSON or None, the `__` headers but Debezium's own)]."""
    out: dict[str, list[tuple[Any, dict[str, str]]]] = defaultdict(list)
    for msg in records:
        key = json.loads(msg.key())
        value = None if msg.value() is None else json.loads(msg.value())
        headers = {
            name: raw.decode() if isinstance(raw, bytes) else raw
            for name, raw in (msg.headers() or [])
            if name.startswith("__") and not name.startswith("__debezium")
        }
        out[json.dumps(key["payload"], sort_keys=True)].append(({"key": key, "value": value}, headers))
    return dict(out)


def _wait_stable(bootstrap: str, topic: str, at_least: int, timeout: float = 120) -> list[Any]:
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        records = _records(bootstrap, topic)
        if len(records) != last:
            last, since = len(records), time.monotonic()
        elif len(records) >= at_least and time.monotonic() - since > 3:
            return records
        time.sleep(0.5)
    raise AssertionError(f"{topic}: {last} records after {timeout}s, expected at least {at_least}")


@pytest.fixture(scope="module", params=["full", "default"], ids=["identity-full", "identity-default"])
def outputs(
    request: pytest.FixtureRequest, pg_dsn: str, connect_pg_dsn: str, connect_url: str, kafka_bootstrap: str
) -> Iterator[dict[str, tuple[list[Any], list[Any]]]]:
    """Once with REPLICA IDENTITY FULL (deletes carry the whole old row) and once with the default
    identity (deletes carry the key only; a rewritten delete has the other columns as nulls)."""
    uid = "unwrapeq_" + uuid.uuid4().hex[:8]
    table = f"public.{uid}"
    native_slot = f"{uid}_native"
    names = {mode: f"{uid}_{i}" for i, mode in enumerate(MODES)}
    collector: Collector | None = None
    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} ({COLUMNS})")
        if request.param == "full":
            conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    try:
        source = {
            "type": "postgres",
            "dsn": pg_dsn,
            "tables": [table],
            "slot": native_slot,
            "publication": native_slot,
            "snapshot": False,
        }
        pipeline = parse_config({"name": uid, "source": source, "destination": {"type": "stdout"}}, {})
        collector = Collector(build_reader(pipeline.all_sources()[0], uid)).start()
        assert collector.started.wait(60), "the native reader did not start"
        with ConnectClient(connect_url) as client:
            for mode, name in names.items():
                client.put_config(
                    name,
                    pg_connector_config(
                        connect_pg_dsn,
                        name,
                        table,
                        **{
                            "key.converter.schemas.enable": "true",
                            "value.converter.schemas.enable": "true",
                            "provide.transaction.metadata": "false",
                            "transforms": "unwrap",
                            "transforms.unwrap.type": UNWRAP,
                            "transforms.unwrap.delete.tombstone.handling.mode": mode,
                            "transforms.unwrap.add.fields": ADD_FIELDS,
                            "transforms.unwrap.add.headers": ADD_HEADERS,
                        },
                    ),
                )
        for name in names.values():
            wait_running(connect_url, name)
            deadline = time.monotonic() + 60
            while not slot_exists(pg_dsn, name) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert slot_exists(pg_dsn, name), f"Debezium's slot {name} was not created"
        time.sleep(2)  # the connectors stream from their slots' creation: let them settle
        with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
            for statement in _workload(table):
                conn.execute(statement)
        events = collector.wait_for(EVENTS, 60)
        assert len(events) == EVENTS, [e.to_dict() for e in events]

        result: dict[str, tuple[list[Any], list[Any]]] = {}
        for mode, name in names.items():
            transform = build_transform(
                transform_config(
                    {
                        "type": "unwrap",
                        "params": {
                            "delete_tombstone_handling_mode": mode,
                            "add_fields": ADD_FIELDS,
                            "add_headers": ADD_HEADERS,
                        },
                    }
                )
            )
            ours_topic = f"{name}_ours"
            sink_cfg = parse_config(
                {
                    "name": uid,
                    "source": source,
                    "destination": {
                        "type": "kafka",
                        "bootstrap_servers": kafka_bootstrap,
                        "topic": ours_topic,
                        "prefix": name,
                        "schemas": True,
                    },
                },
                {},
            ).all_sinks()[0]
            sink = build_sink(sink_cfg, uid)
            batch = []
            for event in events:
                flattened = transform.apply(_copy(event))
                if flattened is not None:
                    batch.append(flattened)
            with sink:
                sink.write(batch)
            ours = _records(kafka_bootstrap, ours_topic)
            theirs = _wait_stable(kafka_bootstrap, f"{name}.public.{uid}", len(ours))
            result[mode] = (ours, theirs)
        yield result
    finally:
        if collector is not None:
            collector.close()
        cleanup(
            connect_url,
            pg_dsn,
            kafka_bootstrap,
            connectors=list(names.values()),
            slots=[*names.values(), native_slot],
            publications=[*names.values(), native_slot],
            tables=[table],
            topic_prefixes=[*names.values(), *(f"{name}_ours" for name in names.values())],
        )


def _copy(event: ChangeEvent) -> ChangeEvent:
    return dataclasses.replace(event, encoded=None, flat=None)


@pytest.mark.parametrize("mode", MODES)
def test_unwrap_equals_extract_new_record_state(
    outputs: dict[str, tuple[list[Any], list[Any]]], mode: str
) -> None:
    ours, theirs = outputs[mode]
    assert len(ours) == len(theirs), (mode, len(ours), len(theirs))
    mine, debezium = _by_key(ours), _by_key(theirs)
    assert sorted(mine) == sorted(debezium)
    for key, records in debezium.items():
        assert len(mine[key]) == len(records), (mode, key, mine[key], records)
        for (our_record, our_headers), (their_record, their_headers) in zip(mine[key], records, strict=True):
            assert our_record["key"] == their_record["key"], (mode, key)
            if their_record["value"] is None or our_record["value"] is None:
                assert our_record["value"] == their_record["value"], (mode, key, our_record, their_record)
            else:
                for part in ("schema", "payload"):
                    assert our_record["value"][part] == their_record["value"][part], (
                        mode,
                        key,
                        part,
                        our_record["value"][part],
                        their_record["value"][part],
                    )
            assert our_headers == their_headers, (mode, key)


def test_the_modes_differ_as_documented(outputs: dict[str, tuple[list[Any], list[Any]]]) -> None:
    """Guards the comparison itself: the five modes really wrote five different streams."""
    counts = {mode: len(theirs) for mode, (_ours, theirs) in outputs.items()}
    # 3 deletes (one the key change's): dropped, nulled, rewritten, or rewritten plus a tombstone
    assert counts["drop"] == EVENTS - 3
    assert counts["tombstone"] == counts["delete-to-tombstone"] == counts["rewrite"] == EVENTS
    assert counts["rewrite-with-tombstone"] == EVENTS + 3
