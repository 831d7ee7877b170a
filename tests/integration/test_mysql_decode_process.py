"""The MySQL/MariaDB reader's decode process (readers/mysql/decode_process.py) against the stack's
MariaDB: the same items as the binlog thread, its end with the reader, and a killed process.

The same binlog range (from one GTID to a sentinel row) is read with `decode_process: off` and `on`;
the two item lists must be equal field by field (envelope, position, boundary, schema), so anything
the process loses or alters fails here. MySQL 8 has no server here (docs/sources/mysql.md); the
process runs the same classes for both flavours.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cdc_logs.envelope import ChangeEvent, Heartbeat
from cdc_logs.offsets.sqlite import SqliteOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline, RetryPolicy
from cdc_logs.position import BinlogPosition
from cdc_logs.readers.mysql.decode_process import BinlogProcess
from cdc_logs.readers.mysql.reader import MysqlReader
from tests.integration.test_mysql_reader import db, sql  # noqa: F401 - fixture, used by name
from tests.integration.test_postgres_reader import Collect

pytestmark = pytest.mark.integration


@pytest.fixture
def tables(db: Any) -> Any:  # noqa: F811
    names = ["md_" + uuid.uuid4().hex[:10], "md_" + uuid.uuid4().hex[:10]]
    yield names
    for name in names:
        sql(db, f"DROP TABLE IF EXISTS {name}")


def _gtid(db: Any) -> str:  # noqa: F811
    with db.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        return str(cur.fetchone()[0])


def _workload(db: Any, table: str, other: str) -> None:  # noqa: F811
    sql(db, f"INSERT INTO {table} (id, v, d, ts, e) SELECT seq, CONCAT('v', seq), seq * 1.25, "
            "'2026-12-06 10:00:00.123456', 'b' FROM seq_1_to_600")  # fmt: skip
    sql(db, f"UPDATE {table} SET v = 'changed' WHERE id <= 300")  # one event of 300 rows: many frames
    sql(db, "BEGIN", f"UPDATE {table} SET id = 100000 WHERE id = 301", f"DELETE FROM {table} WHERE id < 10",
            f"INSERT INTO {other} VALUES (1)", "COMMIT")  # fmt: skip
    sql(db, f"ALTER TABLE {table} ADD COLUMN extra INT DEFAULT 7")
    sql(db, f"INSERT INTO {table} (id, v, extra) VALUES (5000, 'after ddl', 8)")
    sql(db, f"INSERT INTO {table} (id, v) VALUES (-1, 'sentinel')")


def _drain(dsn: str, table: str, gtid: str, decode: str) -> tuple[list[Any], bool]:
    from cdc_logs.readers.mysql.connection import parse_dsn

    reader = MysqlReader(
        parse_dsn(dsn), [f"test.{table}"], pipeline_name="md", temporary=True, heartbeat_s=1.0,
        decode_process=decode,
    )  # fmt: skip
    reader.open()
    items: list[Any] = []
    served = False
    try:
        start = BinlogPosition(server=reader.server_identity(), gtid=gtid, flavor="mariadb")
        deadline = time.monotonic() + 60
        for item in reader.stream(start):
            served = served or isinstance(reader._stream, BinlogProcess)
            assert time.monotonic() < deadline, f"timed out after {len(items)} items"
            if item is None or isinstance(item, Heartbeat):
                continue  # heartbeats come with the server's timing
            items.append(item)
            if isinstance(item, ChangeEvent) and (item.after or {}).get("id") == -1:
                return items, served
    finally:
        reader.close()
    raise AssertionError("the stream ended before the sentinel")


def _comparable(item: Any) -> Any:
    data = item.to_dict()
    data["ts_ms"] = None  # the time of reading
    schema = item.schema
    columns = None if schema is None else (schema.table, schema.version, schema.columns)
    return (data, item.key, item.position, item.boundary, item.key_change, columns)


def test_the_decode_process_gives_the_same_items_as_the_binlog_thread(
    mariadb_dsn: str,
    db: Any,  # noqa: F811
    tables: list[str],
) -> None:
    table, other = tables
    sql(db, f"CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(20), d DECIMAL(10,2), ts DATETIME(6), "
            "e ENUM('a','b'))", f"CREATE TABLE {other} (id INT PRIMARY KEY)")  # fmt: skip
    gtid = _gtid(db)
    _workload(db, table, other)
    thread, thread_served = _drain(mariadb_dsn, table, gtid, "off")
    process, process_served = _drain(mariadb_dsn, table, gtid, "on")
    assert process_served and not thread_served
    assert len(process) == len(thread) > 900
    for n, (a, b) in enumerate(zip(thread, process, strict=True)):
        assert _comparable(a) == _comparable(b), f"item {n} differs"
    assert {e.to_dict()["op"] for e in thread} == {"c", "u", "d"}
    moved = [
        (e.to_dict()["op"], (e.key or {}).get("id"))
        for e in thread
        if (e.key or {}).get("id") in (301, 100000)
    ]
    assert moved[-2:] == [("d", 301), ("c", 100000)]  # the key change, as Debezium emits it
    # A start at a configured GTID (place in the binlog unknown) is taken as catching up.
    auto, auto_served = _drain(mariadb_dsn, table, gtid, "auto")
    assert auto_served and [_comparable(e) for e in auto] == [_comparable(e) for e in thread]


def test_a_killed_decode_process_makes_the_pipeline_resume_without_losing_a_row(
    mariadb_dsn: str,
    db: Any,  # noqa: F811
    tables: list[str],
    tmp_path: Path,
) -> None:
    from cdc_logs.readers.mysql.connection import parse_dsn

    table = tables[0]
    sql(db, f"CREATE TABLE {table} (id INT PRIMARY KEY)")
    reader = MysqlReader(
        parse_dsn(mariadb_dsn),
        [f"test.{table}"],
        pipeline_name="md-kill",
        heartbeat_s=1.0,
        decode_process="on",
    )
    sink = Collect()
    pipeline = Pipeline(
        "md-kill",
        {"mariadb": reader},
        [sink],
        SqliteOffsetStore(tmp_path / "offsets.db"),
        batch=BatchPolicy(max_events=50, max_wait_s=0.05),
        retry=RetryPolicy(max_attempts=20, initial_backoff_s=0.2, max_backoff_s=1),
    )
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()

    def child() -> int | None:
        stream = reader._stream
        return stream.pid if isinstance(stream, BinlogProcess) else None

    killed: list[int] = []
    try:
        for n in range(1, 301):
            if n in (1, 100, 200):
                deadline = time.monotonic() + 30
                while (pid := child()) is None or pid in killed:  # the (re)started process
                    assert time.monotonic() < deadline and runner.is_alive(), "no decode process"
                    time.sleep(0.05)
                if n > 1:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            sql(db, f"INSERT INTO {table} VALUES ({n})")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with sink.lock:
                ids = {e.after["id"] for e in sink.events if e.after}  # type: ignore[index]
            if ids >= set(range(1, 301)):
                break
            time.sleep(0.1)
    finally:
        pipeline.stop()
        runner.join(30)
    assert ids == set(range(1, 301)), f"lost: {sorted(set(range(1, 301)) - ids)[:20]}"
    assert len(killed) == 2


@pytest.mark.parametrize("level", ["info", "warning"])
def test_the_decode_process_logs_as_the_run_does(
    mariadb_dsn: str,
    db: Any,  # noqa: F811
    tables: list[str],
    tmp_path: Path,
    level: str,
) -> None:
    """Its own lines (the converter logs DDL at info) in the run's format and level, on its stderr."""
    import subprocess
    import sys

    import orjson

    table = tables[0]
    sql(db, f"CREATE TABLE {table} (id INT PRIMARY KEY)")
    gtid = _gtid(db)
    sql(db, f"INSERT INTO {table} VALUES (1)", f"ALTER TABLE {table} ADD COLUMN v INT",
            f"INSERT INTO {table} VALUES (2, 2)")  # fmt: skip
    config = {
        "name": f"md-log-{uuid.uuid4().hex[:6]}",
        "source": {"type": "mariadb", "dsn": mariadb_dsn, "tables": [f"test.{table}"],
                   "binlog_config": {"gtid_set": gtid}, "decode_process": "on"},
        "destination": {"type": "file", "path": str(tmp_path / "out.jsonl")},
        "offsets": {"type": "sqlite", "path": str(tmp_path / "offsets.db")},
    }  # fmt: skip
    path = tmp_path / "p.yaml"
    path.write_bytes(orjson.dumps(config))
    run = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "--log-format", "json", "--log-level", level,
         "run", "-c", str(path), "--limit", "2"],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    lines = [orjson.loads(line) for line in run.stderr.splitlines()]  # every line JSON, the child's too
    ddl = [line for line in lines if "DDL in the binlog" in line.get("event", "")]
    assert (len(ddl) == 1) if level == "info" else not ddl, lines
    assert all(line["level"] != "info" for line in lines) or level == "info"
    # The child's lines never show the password. The stack's is "cdc", which random table names
    # (md_a2e21cdcae) and paths can hold too: looked for as a credential and as a whole value.
    password = parse_dsn_password(mariadb_dsn)
    if password:
        assert f":{password}@".encode() not in run.stderr
        assert not [line for line in lines for value in line.values() if value == password]


def parse_dsn_password(dsn: str) -> str:
    from cdc_logs.readers.mysql.connection import parse_dsn

    return parse_dsn(dsn).password
