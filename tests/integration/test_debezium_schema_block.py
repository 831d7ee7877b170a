"""Schema blocks: cdc-logs' Kafka sink (`schemas: true`) against the Debezium Postgres connector.

One Postgres table with many types (composite primary key, NOT NULL, defaults, an enum, arrays) and
one workload (insert, insert of defaults, update, delete) are captured twice (the key has a
serial column: Debezium writes its `default` 0 in the key schema too): by the Debezium
Postgres connector on the stack's Connect worker (JsonConverter with schemas.enable=true for key and
value, decimal.handling.mode=string, provide.transaction.metadata=true) and by the native reader,
whose events the Kafka sink writes with `schemas: true` to a topic of its own. Both topics are read
back and compared record by record:

- the key schemas and the `before`/`after` Value structs are equal, except the defaults listed in
  VALUE_DIFFERENCES (asserted to differ exactly so);
- the envelope and `source` structs are equal except the fields Debezium writes and cdc-logs does not
  (ENVELOPE_ONLY_DEBEZIUM, SOURCE_ONLY_DEBEZIUM, asserted);
- every record's payload conforms to its schema as Kafka's JsonConverter reads it (`conforms`), and
  Kafka's own JsonConverter reads every record: Kafka's FileStreamSink on the stack's Connect worker,
  with `errors.tolerance=none`, consumes the topics (snapshot rows, unchanged TOAST and a
  REPLICA IDENTITY DEFAULT delete included).

The stack has no Debezium MariaDB connector (only the Postgres and MySQL connectors, and the MySQL
one refuses MariaDB), so the MariaDB table is checked on its own: its schema block is well-formed,
describes every payload and carries the binlog's NOT NULL and key facts. docs/schemas.md lists the
differences asserted here.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from cdc_logs import connect_schema
from cdc_logs.build import build_reader
from cdc_logs.configfile import parse_config
from cdc_logs.debezium.connect import ConnectClient, ConnectError
from cdc_logs.debezium.schema import table_schema
from cdc_logs.envelope import ChangeEvent
from cdc_logs.readers.mysql.connection import parse_dsn
from cdc_logs.readers.mysql.reader import MysqlReader
from cdc_logs.sinks.kafka import KafkaSink
from tests.contract.test_kafka_sink import consume_all
from tests.integration.debezium_support import cleanup, pg_connector_config, slot_exists, wait_running
from tests.integration.test_debezium_equivalence import Collector
from tests.jsonconverter import conforms, conforms_record

pytestmark = pytest.mark.integration

COLUMNS = """
  k1 int2, k2 bigserial, i4 int4, n_ps numeric(10,2), n numeric, t text, vc varchar(20), ch char(3),
  b bool, f4 float4, f8 float8, d date, tm time, tm3 time(3), ts timestamp, ts3 timestamp(3),
  tstz timestamptz, tz timetz, iv interval, u uuid, j json, jb jsonb, by bytea, e {enum}, arr int[],
  tarr text[], req text NOT NULL, di int DEFAULT 7, dneg int DEFAULT -3, dn numeric(6,2) DEFAULT 1.5,
  dt varchar(9) DEFAULT 'plain', db bool DEFAULT true, dd date DEFAULT '2024-01-02',
  dts timestamp DEFAULT '2024-01-02 03:04:05', de {enum} DEFAULT 'ok', du uuid DEFAULT
  '12345678-1234-5678-1234-567812345678', dq text DEFAULT 'it''s', dnow timestamptz DEFAULT now(),
  ser serial, PRIMARY KEY (k1, k2)
"""
FULL_ROW = (
    "1, 2, 3, 1.5, 2.25, 'text', 'varchar', 'abc', true, 1.5, 2.5, '2024-01-02', '01:02:03.456789', "
    "'01:02:03.456', '2024-01-02 03:04:05.678901', '2024-01-02 03:04:05.678', '2024-01-02 03:04:05+00', "
    "'01:02:03+02', '1 day 2 hours', '12345678-1234-5678-1234-567812345678', '{\"a\": 1}', '{\"b\": 2}', "
    "'\\x0102', 'happy', '{1,2}', '{x,y}', 'required'"
)

#: Defaults Debezium writes differently (column -> (cdc-logs, Debezium)). Debezium 3.6 cuts a quoted
#: default at its first doubled quote; it writes the epoch placeholder of `now()` with six fraction
#: digits, cdc-logs as it writes every timestamptz value (docs/envelope.md: digits only when non-zero).
VALUE_DIFFERENCES = {
    "dq": ("it's", "it"),
    "dnow": ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000000Z"),
}
#: Fields of Debezium 3.6's structs that cdc-logs does not write (so its schema does not list them).
ENVELOPE_ONLY_DEBEZIUM = ["ts_us", "ts_ns"]
SOURCE_ONLY_DEBEZIUM = ["sequence", "ts_us", "ts_ns", "origin", "origin_lsn"]
RECORDS = 5  # insert, insert of defaults, update, delete, tombstone


def test_conforms_rejects_what_a_jsonconverter_rejects() -> None:
    schema = {
        "type": "struct",
        "optional": False,
        "fields": [{"type": "int32", "optional": False, "field": "a"}],
    }
    conforms(schema, {"a": 1})
    for bad in ({"a": None}, {"a": "1"}, {"a": 1, "b": 2}, {"a": True}, None):
        with pytest.raises(AssertionError):
            conforms(schema, bad)


# -- Postgres: cdc-logs against the Debezium connector ---------------------------------------------
def _read(kafka_bootstrap: str, topic: str, count: int, timeout: float = 90) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = consume_all(kafka_bootstrap, topic)
        except KeyError:  # the topic does not exist yet
            records = []
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(1)


@pytest.fixture(scope="module")
def pg_records(
    pg_dsn: str, connect_pg_dsn: str, connect_url: str, kafka_bootstrap: str
) -> Iterator[tuple[list[Any], list[Any]]]:
    uid = "dbzsb_" + uuid.uuid4().hex[:10]
    table, enum = f"public.{uid}_t", f"public.{uid}_mood"
    native_slot = f"{uid}_native"
    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"CREATE TYPE {enum} AS ENUM ('sad', 'ok', 'happy')")
        conn.execute(f"CREATE TABLE {table} ({COLUMNS.format(enum=enum)})")
        conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    collector: Collector | None = None
    try:
        pipeline = parse_config(
            {
                "name": "schema-block",
                "source": {
                    "type": "postgres",
                    "dsn": pg_dsn,
                    "tables": [table],
                    "slot": native_slot,
                    "publication": native_slot,
                    "snapshot": False,
                },
                "destination": {"type": "stdout"},
            },
            {},
        )
        (source_cfg,) = pipeline.all_sources()
        collector = Collector(build_reader(source_cfg, "schema-block")).start()
        assert collector.started.wait(60), "the native reader did not start"
        if collector.error:
            raise collector.error
        config = pg_connector_config(
            connect_pg_dsn,
            uid,
            table,
            **{"key.converter.schemas.enable": "true", "value.converter.schemas.enable": "true"},
        )
        with ConnectClient(connect_url) as client:
            client.put_config(uid, config)
        wait_running(connect_url, uid)
        deadline = time.monotonic() + 30
        while not slot_exists(pg_dsn, uid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert slot_exists(pg_dsn, uid), "Debezium's slot was not created"

        with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
            names = "k1, k2, i4, n_ps, n, t, vc, ch, b, f4, f8, d, tm, tm3, ts, ts3, tstz, tz, iv, u, j, jb, "
            conn.execute(f"INSERT INTO {table} ({names}by, e, arr, tarr, req) VALUES ({FULL_ROW})")
            conn.execute(f"INSERT INTO {table} (k1, k2, req) VALUES (5, 6, 'defaults')")
            conn.execute(f"UPDATE {table} SET t = 'changed', arr = NULL WHERE k1 = 1")
            conn.execute(f"DELETE FROM {table} WHERE k1 = 5")

        events: list[ChangeEvent] = collector.wait_for(4, 60)
        assert len(events) == 4, [e.to_dict() for e in events]
        sink = KafkaSink(kafka_bootstrap, topic=f"{uid}.native", prefix=uid, schemas=True)
        sink.open()
        sink.write(events)
        sink.close()
        native = _read(kafka_bootstrap, f"{uid}.native", RECORDS)
        debezium = _read(kafka_bootstrap, f"{uid}.public.{uid}_t", RECORDS)
        assert len(native) == RECORDS and len(debezium) == RECORDS, (len(native), len(debezium))
        yield native, debezium
    finally:
        if collector is not None:
            collector.close()
        cleanup(
            connect_url,
            pg_dsn,
            kafka_bootstrap,
            connectors=[uid],
            slots=[uid, native_slot],
            publications=[uid, native_slot],
            tables=[table],
            topic_prefixes=[uid],
        )
        with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f"DROP TYPE IF EXISTS {enum}")


def _pairs(pg_records: tuple[list[Any], list[Any]]) -> list[tuple[Any, Any]]:
    native, debezium = pg_records
    return list(zip(native, debezium, strict=True))


def _by_field(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["field"]: f for f in schema["fields"]}


def test_every_record_is_the_jsonconverter_form_and_describes_its_payload(pg_records: Any) -> None:
    for ours, theirs in _pairs(pg_records):
        for mine, debeziums in ((ours.key(), theirs.key()), (ours.value(), theirs.value())):
            conforms_record(mine)
            conforms_record(debeziums)  # the checker accepts what Debezium writes
        assert (ours.value() is None) == (theirs.value() is None), "tombstones at the same place"


def test_key_schemas_are_equal(pg_records: Any) -> None:
    for ours, theirs in _pairs(pg_records):
        mine, debeziums = json.loads(ours.key()), json.loads(theirs.key())
        assert mine["schema"] == debeziums["schema"]
        assert mine["schema"]["fields"][1]["default"] == 0  # k2 bigserial: nextval(...) is 0
        assert mine["payload"] == debeziums["payload"]


def test_value_structs_are_equal_but_for_the_documented_defaults(pg_records: Any) -> None:
    for ours, theirs in _pairs(pg_records):
        if ours.value() is None:
            continue
        mine = _by_field(json.loads(ours.value())["schema"])
        debeziums = _by_field(json.loads(theirs.value())["schema"])
        for part in ("before", "after"):
            my_struct, their_struct = dict(mine[part]), dict(debeziums[part])
            my_fields, their_fields = _by_field(my_struct), _by_field(their_struct)
            assert list(my_fields) == list(their_fields)
            for column, (my_default, their_default) in VALUE_DIFFERENCES.items():
                assert my_fields[column].pop("default") == my_default
                assert their_fields[column].pop("default") == their_default
            for column in my_fields:
                assert my_fields[column] == their_fields[column], column
            my_struct.pop("fields"), their_struct.pop("fields")
            assert my_struct == their_struct  # name <prefix>.public.<table>.Value, optional


def test_envelope_and_source_differ_only_by_the_documented_fields(pg_records: Any) -> None:
    for ours, theirs in _pairs(pg_records):
        if ours.value() is None:
            continue
        mine, debeziums = json.loads(ours.value())["schema"], json.loads(theirs.value())["schema"]
        assert {k: v for k, v in mine.items() if k != "fields"} == {
            k: v for k, v in debeziums.items() if k != "fields"
        }  # name <prefix>.public.<table>.Envelope, version 2
        my_fields, their_fields = _by_field(mine), _by_field(debeziums)
        assert [f for f in their_fields if f not in my_fields] == ENVELOPE_ONLY_DEBEZIUM
        assert list(my_fields) == [f for f in their_fields if f not in ENVELOPE_ONLY_DEBEZIUM]
        for name in ("op", "ts_ms", "transaction"):
            assert my_fields[name] == their_fields[name], name

        my_source, their_source = dict(my_fields["source"]), dict(their_fields["source"])
        my_src, their_src = _by_field(my_source), _by_field(their_source)
        assert [f for f in their_src if f not in my_src] == SOURCE_ONLY_DEBEZIUM
        assert list(my_src) == [f for f in their_src if f not in SOURCE_ONLY_DEBEZIUM]
        for name in my_src:
            assert my_src[name] == their_src[name], name
        my_source.pop("fields"), their_source.pop("fields")
        assert my_source == their_source  # io.debezium.connector.postgresql.Source, version 1


def test_debeziums_own_records_written_again_give_its_schema_back(pg_records: Any) -> None:
    """The `debezium` source reads the block into a TableSchema (cdc_logs.debezium.schema); writing
    such events with `schemas: true` gives Debezium's key and Value structs back."""
    _, debezium = pg_records
    for record in debezium:
        if record.value() is None:
            continue
        key, value = json.loads(record.key()), json.loads(record.value())
        payload = value["payload"]
        event = ChangeEvent.from_dict(payload, key["payload"])
        src = payload["source"]
        event.schema = table_schema(value["schema"], key["schema"], src["db"], src["schema"], src["table"])
        assert connect_schema.key_schema(event) == key["schema"]
        theirs = _by_field(value["schema"])["after"]
        assert connect_schema.value_struct(event) == {k: v for k, v in theirs.items() if k != "field"}
        # Debezium's whole source block passes through: every field typed as Debezium types it
        their_source = _by_field(value["schema"])["source"]
        my_source = connect_schema.source_schema(event)
        assert _by_field(my_source) == _by_field(their_source)
        assert my_source["name"] == their_source["name"]


def test_the_schemas_carry_the_catalog_facts(pg_records: Any) -> None:
    """Not only equal to Debezium's: right (so the equality above is not of two empty blocks)."""
    native, _ = pg_records
    after = _by_field(_by_field(json.loads(native[0].value())["schema"])["after"])
    assert after["k1"]["optional"] is False and after["req"]["optional"] is False
    assert after["t"]["optional"] is True
    assert after["e"]["parameters"] == {"allowed": "sad,ok,happy"}
    assert after["di"]["default"] == 7 and after["dn"]["default"] == "1.50" and after["ser"]["default"] == 0
    assert after["ts3"]["name"] == "io.debezium.time.Timestamp"
    assert after["ts"]["name"] == "io.debezium.time.MicroTimestamp"
    assert after["f4"]["type"] == "float" and after["n_ps"]["type"] == "string"


# -- Postgres: snapshot, REPLICA IDENTITY DEFAULT and unchanged TOAST ------------------------------
@pytest.fixture
def default_identity_events(
    pg_dsn: str, connect_url: str, kafka_bootstrap: str
) -> Iterator[list[ChangeEvent]]:
    uid = "dbzsd_" + uuid.uuid4().hex[:10]
    table = f"public.{uid}"
    big = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g)"  # ~13 kB: TOASTed
    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id int PRIMARY KEY, req text NOT NULL, big text NOT NULL, n int)"
        )
        conn.execute(f"INSERT INTO {table} VALUES (1, 'snap', {big}, 1)")
    source = {"type": "postgres", "dsn": pg_dsn, "tables": [table], "slot": uid, "publication": uid}
    config = {"name": "sb", "source": {**source, "snapshot": True}, "destination": {"type": "stdout"}}
    (cfg,) = parse_config(config, {}).all_sources()
    collector = Collector(build_reader(cfg, "sb")).start()
    try:
        assert collector.wait_for(1, 60), "no snapshot row"
        with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {table} VALUES (2, 'stream', {big}, 2)")
            conn.execute(f"UPDATE {table} SET n = 3 WHERE id = 2")  # big unchanged: not sent
            conn.execute(f"DELETE FROM {table} WHERE id = 2")  # only the key is sent
        yield collector.wait_for(4, 60)
    finally:
        collector.close()
        cleanup(connect_url, pg_dsn, kafka_bootstrap, slots=[uid], publications=[uid], tables=[table])


def test_snapshot_default_identity_and_toast_records_describe_their_payload(
    default_identity_events: list[ChangeEvent],
) -> None:
    events = default_identity_events
    assert [e.op.value for e in events] == ["r", "c", "u", "d"]
    structs = []
    for event in events:
        record = conforms_record(connect_schema.envelope_record(event, "sb"))
        conforms_record(connect_schema.key_record(event, "sb", event.key))
        structs.append(_by_field(_by_field(record["schema"])["after"]))
    snapshot, insert, update, delete = structs
    assert snapshot == insert, "the snapshot's catalog facts are the stream's"
    assert insert["req"]["optional"] is False and insert["big"]["optional"] is False
    assert events[2].unchanged == ("big",) and update["big"]["optional"] is True
    assert update["req"]["optional"] is False
    assert events[3].before == {"id": 2}
    assert delete["req"]["optional"] is True and delete["id"]["optional"] is False


# -- Kafka Connect's own JsonConverter reads every record ------------------------------------------
def connect_reads(connect_url: str, kafka_bootstrap: str, topic: str, count: int) -> list[str]:
    """Kafka's FileStreamSink on the stack's Connect worker, with the JsonConverter (schemas enabled,
    errors.tolerance none) for keys and values, reads `topic`: the lines it writes (one per record,
    the converted value's Struct). A record the converter refuses fails the task: its trace fails
    the test."""
    name = f"{topic}-connect-reads"
    path = Path(tempfile.gettempdir()) / f"{name}.txt"
    config = {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "file": str(path),
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "true",
        "errors.tolerance": "none",
    }
    with ConnectClient(connect_url) as client:
        client.put_config(name, config)
        try:
            deadline = time.monotonic() + 90
            lines: list[str] = []
            while time.monotonic() < deadline:
                try:
                    tasks = client.status(name).get("tasks") or []
                except ConnectError:  # 404 until the worker has started it
                    tasks = []
                failed = [t for t in tasks if t.get("state") == "FAILED"]
                assert not failed, failed[0].get("trace", "")[:3000]
                lines = path.read_text().splitlines() if path.exists() else []
                if len(lines) >= count:
                    return lines
                time.sleep(1)
            raise AssertionError(f"FileStreamSink wrote {len(lines)} of {count} lines")
        finally:
            with contextlib.suppress(Exception):
                client.delete(name)
            path.unlink(missing_ok=True)
            _drop_group(kafka_bootstrap, f"connect-{name}")


def _drop_group(kafka_bootstrap: str, group: str) -> None:
    """The sink connector's consumer group (gone once its members have left)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            admin.delete_consumer_groups([group])[group].result(10)
            return
        except Exception as exc:  # non-empty for a moment after the connector is deleted
            if "GROUP_ID_NOT_FOUND" in str(exc):
                return
            time.sleep(1)


def test_kafka_connects_jsonconverter_reads_the_typed_table(
    pg_records: Any, connect_url: str, kafka_bootstrap: str
) -> None:
    native, _ = pg_records
    topic = native[0].topic()
    lines = connect_reads(connect_url, kafka_bootstrap, topic, RECORDS)
    assert len(lines) == RECORDS and lines[-1] == "null"  # the tombstone
    assert lines[0].startswith("Struct{after=Struct{k1=1,k2=2,i4=3,n_ps=1.50,")


def written_and_read(events: list[ChangeEvent], kafka_bootstrap: str, connect_url: str) -> list[str]:
    """`events` through the Kafka sink (`schemas: true`) to a topic of their own, read back by
    `connect_reads`; one line per record, tombstones included."""
    from confluent_kafka.admin import AdminClient

    topic = "dbzsc_" + uuid.uuid4().hex[:10]
    sink = KafkaSink(kafka_bootstrap, topic=topic, prefix="sb", schemas=True)
    sink.open()
    try:
        sink.write(events)
        sink.close()
        deletes = sum(e.op.value == "d" and e.key is not None for e in events)
        return connect_reads(connect_url, kafka_bootstrap, topic, len(events) + deletes)
    finally:
        sink.close()
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})  # kept: its futures need it alive
        for future in admin.delete_topics([topic]).values():
            future.result(15)


def test_kafka_connects_jsonconverter_reads_snapshot_toast_and_default_identity_records(
    default_identity_events: list[ChangeEvent], kafka_bootstrap: str, connect_url: str
) -> None:
    lines = written_and_read(default_identity_events, kafka_bootstrap, connect_url)
    assert [line.split(",op=")[1][0] for line in lines[:-1]] == ["r", "c", "u", "d"]
    assert "before=Struct{id=2}" in lines[3]  # the default-identity delete: only the key
    assert lines[-1] == "null"


# -- MariaDB: no Debezium connector to compare with; the block must describe the payload ----------
@pytest.fixture
def mariadb_events(mariadb_dsn: str) -> Iterator[list[ChangeEvent]]:
    name = "sb_" + uuid.uuid4().hex[:10]
    settings = parse_dsn(mariadb_dsn)
    conn = pymysql.connect(**settings.kwargs(), autocommit=True)
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE {name} (id INT NOT NULL, k2 VARCHAR(10) NOT NULL, tiny TINYINT, "
            "big BIGINT UNSIGNED, dec1 DECIMAL(10,3), fl FLOAT, db DOUBLE, dt3 DATETIME(3), dt6 DATETIME(6), "
            "ts TIMESTAMP NULL, d DATE, tm TIME(3), y YEAR, js JSON, e ENUM('a','b'), s SET('x','y'), "
            "bl BLOB, bt BIT(1), b5 BIT(5), req TEXT NOT NULL, PRIMARY KEY (id, k2))"
        )
    reader = MysqlReader(settings, [name], pipeline_name="schema-block", heartbeat_s=1.0, temporary=True)
    collector = Collector(reader).start()
    try:
        assert collector.started.wait(30)
        with conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {name} VALUES (1, 'a', -1, 9223372036854775807, 12.345, 1.5, 2.5, "
                "'2024-01-02 03:04:05.678', '2024-01-02 03:04:05.678901', '2024-01-02 03:04:05', "
                "'2024-01-02', '01:02:03.456', 2024, '{\"a\": 1}', 'b', 'x,y', x'00ff', b'1', b'10101', 'r')"
            )
            cur.execute(f"UPDATE {name} SET tiny = NULL, req = 'q' WHERE id = 1")
            cur.execute(f"DELETE FROM {name} WHERE id = 1")
        yield collector.wait_for(3, 30)
    finally:
        collector.close()
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        conn.close()


def test_mariadb_schema_block_describes_its_payload(mariadb_events: list[ChangeEvent]) -> None:
    assert [e.op.value for e in mariadb_events] == ["c", "u", "d"]
    for event in mariadb_events:
        value = conforms_record(connect_schema.envelope_record(event, "shop"))
        key = conforms_record(connect_schema.key_record(event, "shop", event.key))
        assert key["payload"] == {"id": 1, "k2": "a"}
    table = mariadb_events[0].source.table
    assert key["schema"]["name"] == f"shop.{mariadb_events[0].source.db}.{table}.Key"
    assert [f["optional"] for f in key["schema"]["fields"]] == [False, False]
    fields = _by_field(value["schema"])
    assert fields["source"]["name"] == "io.debezium.connector.mariadb.Source"
    assert value["schema"]["name"].endswith(f".{table}.Envelope")
    row = _by_field(fields["before"])
    assert row["req"]["optional"] is False and row["tiny"]["optional"] is True  # the binlog's NULL bitmap
    assert row["e"]["parameters"] == {"allowed": "a,b"} and row["s"]["name"] == "io.debezium.data.EnumSet"
    assert row["dt3"]["name"] == "io.debezium.time.Timestamp"
    assert row["dt6"]["name"] == "io.debezium.time.MicroTimestamp"
    assert row["b5"] == {
        "type": "bytes",
        "optional": True,
        "name": "io.debezium.data.Bits",
        "version": 1,
        "parameters": {"length": "5"},
        "field": "b5",
    }
    assert row["fl"]["type"] == "float" and row["db"]["type"] == "double"


def test_kafka_connects_jsonconverter_reads_the_mariadb_records(
    mariadb_events: list[ChangeEvent], kafka_bootstrap: str, connect_url: str
) -> None:
    lines = written_and_read(mariadb_events, kafka_bootstrap, connect_url)
    assert len(lines) == 4 and lines[-1] == "null"
    # BIGINT UNSIGNED up to int64's maximum is int64 (Debezium's default bigint.unsigned.handling.mode
    # =long); above it the event is refused (tests/integration/test_schema_block_values.py)
    assert "big=9223372036854775807," in lines[0]
