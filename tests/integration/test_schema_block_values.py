"""Values the catalog's schema alone does not describe, read by Kafka Connect's own JsonConverter.

A reader describes a table when it sees it (Postgres: at the Relation message, from the live
catalog), so a row written before `SET NOT NULL` arrives with a null in a column the schema says is
required; Postgres' catalog does not tell `int[]` from `int[][]`; a MariaDB BIGINT UNSIGNED can hold
more than int64. Each case runs through the native reader, the Kafka sink with `schemas: true`, and
Kafka's FileStreamSink (JsonConverter, errors.tolerance none) on the stack's Connect worker: a record
the converter refuses fails its task and the test, a value it misreads shows in the line it writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pymysql
import pytest

from cdc_logs import connect_schema
from cdc_logs.build import build_reader
from cdc_logs.configfile import parse_config
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.mysql.connection import parse_dsn
from cdc_logs.readers.mysql.reader import MysqlReader
from cdc_logs.sinks.kafka import KafkaSink
from tests.integration.debezium_support import cleanup
from tests.integration.test_debezium_equivalence import Collector
from tests.integration.test_debezium_schema_block import written_and_read
from tests.jsonconverter import conforms_record

pytestmark = pytest.mark.integration


@pytest.fixture
def race_events(pg_dsn: str, connect_url: str, kafka_bootstrap: str) -> Iterator[list[ChangeEvent]]:
    """The review's repro: a null written, then the column made NOT NULL, in one transaction (the
    reader sees the Relation after the commit, so it reads the newer catalog), and a 2-D array."""
    uid = "sbv_" + uuid.uuid4().hex[:10]
    table = f"public.{uid}"
    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text, w int, nest int[])")
    source = {"type": "postgres", "dsn": pg_dsn, "tables": [table], "slot": uid, "publication": uid}
    config = {"name": "sbv", "source": {**source, "snapshot": False}, "destination": {"type": "stdout"}}
    (cfg,) = parse_config(config, {}).all_sources()
    collector = Collector(build_reader(cfg, "sbv")).start()
    try:
        assert collector.started.wait(60), "the reader did not start"
        with psycopg.connect(pg_dsn, connect_timeout=5) as conn:  # one transaction
            conn.execute(f"INSERT INTO {table} VALUES (1, NULL, 1, '{{{{1,2}},{{3,4}}}}')")
            conn.execute(f"UPDATE {table} SET v = 'x' WHERE id = 1")
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN v SET NOT NULL")
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN w SET DEFAULT 42")
            conn.execute(f"INSERT INTO {table} VALUES (2, 'y', 2, '{{5,6}}')")
        yield collector.wait_for(3, 60)
    finally:
        collector.close()
        cleanup(connect_url, pg_dsn, kafka_bootstrap, slots=[uid], publications=[uid], tables=[table])


def test_a_null_written_before_set_not_null_and_a_2d_array_are_read_exactly(
    race_events: list[ChangeEvent], kafka_bootstrap: str, connect_url: str
) -> None:
    events = race_events
    assert [e.op.value for e in events] == ["c", "u", "c"]
    assert events[0].after == {"id": 1, "v": None, "w": 1, "nest": [[1, 2], [3, 4]]}
    column = events[0].schema.column("v") if events[0].schema else None
    assert column is not None and column.optional is False  # described with the newer catalog
    for event in events:
        conforms_record(connect_schema.envelope_record(event, "sb"))
    lines = written_and_read(events, kafka_bootstrap, connect_url)  # the task fails on a refused record
    assert len(lines) == 3
    assert "after=Struct{id=1,w=1,nest=[[1, 2], [3, 4]]}" in lines[0], lines[0]  # v null: left out
    assert "after=Struct{id=1,v=x,w=1,nest=[[1, 2], [3, 4]]}" in lines[1], lines[1]
    assert "after=Struct{id=2,v=y,w=2,nest=[5, 6]}" in lines[2], lines[2]


@pytest.fixture
def unsigned_events(mariadb_dsn: str) -> Iterator[list[ChangeEvent]]:
    name = "sbv_" + uuid.uuid4().hex[:10]
    settings = parse_dsn(mariadb_dsn)
    conn = pymysql.connect(**settings.kwargs(), autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, big BIGINT UNSIGNED)")
    reader = MysqlReader(settings, [name], pipeline_name="sbv", heartbeat_s=1.0, temporary=True)
    collector = Collector(reader).start()
    try:
        assert collector.started.wait(30)
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {name} VALUES (1, 9223372036854775807), (2, 18446744073709551615)")
        yield collector.wait_for(2, 30)
    finally:
        collector.close()
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        conn.close()


def test_a_bigint_unsigned_above_int64_is_refused_never_wrapped(
    unsigned_events: list[ChangeEvent], kafka_bootstrap: str, connect_url: str
) -> None:
    fits, wraps = unsigned_events
    assert wraps.after == {"id": 2, "big": 18446744073709551615}
    lines = written_and_read([fits], kafka_bootstrap, connect_url)
    assert "big=9223372036854775807" in lines[0], lines[0]
    sink = KafkaSink(kafka_bootstrap, topic="sbv_unused_" + uuid.uuid4().hex[:6], schemas=True)
    with pytest.raises(CdcError, match="above int64's maximum") as err:
        sink.value_for(wraps)  # before anything is produced: the batch's rejection isolates it
    assert err.value.kind is ErrorKind.SINK_REJECTED
