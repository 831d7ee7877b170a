"""MariaDB -> Kafka through `cdc-logs run`, next to python-mysql-replication parsing the same binlog.

`mysql_rows` small rows (INSERTs of 10 rows per transaction) are written first; then the raw library
(BinLogStreamReader, every row decoded: `event.rows`) reads them from the GTID before the first insert,
timed from its first row event to its last (connect excluded); then `cdc-logs run` (source mariadb,
`binlog_config.gtid_set` = that GTID, no snapshot, Kafka sink) with `--limit`, timed by the broker's
LogAppendTime of the first and last record.
"""

from __future__ import annotations

import time

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import MariadbGtidEvent, XidEvent
from pymysqlreplication.row_event import WriteRowsEvent

from benchkit import stack as st
from benchkit.context import Context
from benchkit.proc import CdcRun
from benchkit.report import Result, Target
from benchkit.stats import rate_between
from benchkit.throughput import _kafka_window, kafka_sink
from cdc_logs.readers.mysql.connection import parse_dsn


def _load(dsn: str, table: str, rows: int) -> str:
    """Create and fill the table; the GTID position before the first insert."""
    conn = pymysql.connect(**parse_dsn(dsn).kwargs(), autocommit=True)
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(32), qty INT, price DECIMAL(8,2))"
        )
        cur.execute("SELECT @@gtid_binlog_pos")
        (start,) = cur.fetchone()
        for base in range(1, rows + 1, 10):
            values = [
                (i, f"item-{i}", i % 100, f"{i % 1000}.25") for i in range(base, min(base + 10, rows + 1))
            ]
            cur.execute(
                f"INSERT INTO {table} VALUES " + ",".join(["(%s,%s,%s,%s)"] * len(values)),
                [v for row in values for v in row],
            )
    conn.close()
    return str(start)


def _drop(dsn: str, table: str) -> None:
    conn = pymysql.connect(**parse_dsn(dsn).kwargs(), autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    conn.close()


def _raw(dsn: str, table: str, start: str, rows: int) -> float:
    stream = BinLogStreamReader(
        parse_dsn(dsn).kwargs(database=False),
        server_id=3_999_000_000 + int(time.time()) % 100_000,
        blocking=True,  # non-blocking: MariaDB closes at the binlog's end and the library replays
        auto_position=start,
        is_mariadb=True,
        only_events=[MariadbGtidEvent, WriteRowsEvent, XidEvent],
        only_tables=[table],
        enable_logging=False,
    )
    count, first = 0, 0.0
    try:
        for event in stream:
            if isinstance(event, WriteRowsEvent):
                if not count:
                    first = time.perf_counter()
                count += len(event.rows)
                if count >= rows:
                    break
    finally:
        stream.close()
    return rate_between(count, first, time.perf_counter())


def mariadb_kafka(ctx: Context) -> list[Result]:
    s, n = ctx.stack, ctx.sizes.mysql_rows
    database = parse_dsn(s.mariadb_dsn).database
    table = ctx.name("my_t")
    ctx.say(f"MariaDB: writing {n:,} rows (10 per transaction)")
    ctx.cleanup.add(f"table {database}.{table}", lambda: _drop(s.mariadb_dsn, table))
    start = _load(s.mariadb_dsn, table, n)
    ctx.say("MariaDB: raw python-mysql-replication")
    raw = max(_raw(s.mariadb_dsn, table, start, n) for _ in range(ctx.sizes.repeat))
    topic = ctx.name("my_kafka")
    st.make_topic(s.bootstrap, ctx.cleanup, topic)
    ctx.say("MariaDB: cdc-logs run -> Kafka")
    config = {
        "name": ctx.name("my"),
        "source": {
            "type": "mariadb",
            "dsn": "${CDC_MARIADB_DSN}",
            "tables": [f"{database}.{table}"],
            "snapshot": False,
            "binlog_config": {"gtid_set": start},
        },
        "destination": kafka_sink(topic),
    }
    run = CdcRun(ctx.cleanup, ctx.workdir / "mysql", config, limit=n)
    fin = run.check(run.wait(timeout=60 + n / 500), "MariaDB -> Kafka")
    first, last = _kafka_window(ctx, topic, n)
    return [
        Result(
            "mariadb_kafka_rate",
            "MariaDB -> Kafka",
            rate_between(n, first, last),
            "rows/s",
            "raw python-mysql-replication",
            raw,
            Target(">=", 0.8),
            f"{n:,} rows already in the binlog; start-up {first - fin.spawned_at:.2f} s",
        )
    ]
