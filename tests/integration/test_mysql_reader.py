"""The MySQL/MariaDB binlog reader against the stack's real MariaDB (tables prefixed `mr_`, dropped after).

Covers the issue's done criteria: `tail` prints c/u/d envelopes made by another session with
`source.gtid`; a multi-statement transaction shares one transaction id and only its last event is a
boundary; ALTER TABLE mid-stream gives the right column names; every documented type maps to its
documented value (binlog and snapshot alike); snapshot + concurrent writes rebuilds exactly SELECT *;
resume by GTID; a lost position is a POSITION_LOST error, not a loop; a duplicate server_id is a
clear CONFIG error.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pymysql
import pytest

from cdc_logs.envelope import ChangeEvent, Heartbeat, dumps
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import BinlogPosition
from cdc_logs.readers.mysql.connection import BinlogStream, parse_dsn
from cdc_logs.readers.mysql.convert import BinlogConverter
from cdc_logs.readers.mysql.reader import MysqlReader

pytestmark = pytest.mark.integration


@pytest.fixture
def db(mariadb_dsn: str) -> Iterator[pymysql.connections.Connection]:
    s = parse_dsn(mariadb_dsn)
    conn = pymysql.connect(**s.kwargs(), autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def table(db: pymysql.connections.Connection) -> Iterator[str]:
    name = "mr_" + uuid.uuid4().hex[:10]
    yield name
    with db.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")


def sql(db: pymysql.connections.Connection, *statements: str) -> None:
    with db.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


@pytest.fixture(params=["off", "on"])
def decode(request: pytest.FixtureRequest) -> str:
    """decode_process: the binlog stream on a thread of the reader's process, or in a second process."""
    return str(request.param)


def make_reader(dsn: str, tables: list[str], **kw: Any) -> MysqlReader:
    kw.setdefault("pipeline_name", "mr-test")
    kw.setdefault("heartbeat_s", 1.0)
    kw.setdefault("temporary", True)
    reader = MysqlReader(parse_dsn(dsn), tables, **kw)
    reader.open()
    return reader


def collect(
    reader: MysqlReader,
    start: Any,
    until: Callable[[list[ChangeEvent]], bool],
    *,
    action: Callable[[], None] | None = None,
    timeout: float = 20,
) -> tuple[list[ChangeEvent], list[Heartbeat]]:
    """Stream until `until(events)` holds; `action` runs (once) after the stream's first item."""
    events: list[ChangeEvent] = []
    beats: list[Heartbeat] = []
    deadline = time.monotonic() + timeout
    acted = action is None
    try:
        for item in reader.stream(start):
            if isinstance(item, ChangeEvent):
                events.append(item)
            elif isinstance(item, Heartbeat):
                beats.append(item)
            if not acted:
                acted = True
                assert action is not None
                action()
            if until(events):
                break
            assert time.monotonic() < deadline, f"timed out with {len(events)} events"
    finally:
        reader.stop()
        reader.close()
    return events, beats


def test_tail_prints_insert_update_delete_with_gtid(
    mariadb_dsn: str, db: Any, table: str, decode: str
) -> None:
    sql(db, f"CREATE TABLE {table} (id INT PRIMARY KEY, email VARCHAR(50))")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "cdc_logs", "tail", "--source", "mariadb", "--dsn", mariadb_dsn),
            *("--table", f"test.{table}", "--format", "json", "--limit", "3"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The first log line on stderr comes once the reader has its start position.
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while "binlog streaming" not in proc.stderr.readline():
            assert time.monotonic() < deadline and proc.poll() is None
        sql(
            db,
            f"INSERT INTO {table} VALUES (1, 'a@x')",
            f"UPDATE {table} SET email = 'b@x' WHERE id = 1",
            f"DELETE FROM {table} WHERE id = 1",
        )
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert [e["op"] for e in lines] == ["c", "u", "d"]
    assert lines[0]["after"] == {"id": 1, "email": "a@x"}
    assert lines[1]["before"] == {"id": 1, "email": "a@x"} and lines[1]["after"] == {"id": 1, "email": "b@x"}
    assert lines[2]["before"] == {"id": 1, "email": "b@x"} and lines[2]["after"] is None
    for e in lines:
        src = e["source"]
        assert src["connector"] == "mariadb" and src["db"] == "test" and src["table"] == table
        assert src["gtid"] and src["gtid"].count("-") == 2
        assert e["transaction"]["id"] == src["gtid"]
        assert src["file"].startswith("mariadb-bin.") and src["pos"] > 0 and src["ts_ms"] > 0
    assert len({e["source"]["gtid"] for e in lines}) == 3


def test_multi_statement_transaction_shares_one_id(mariadb_dsn: str, db: Any, table: str) -> None:
    sql(db, f"CREATE TABLE {table} (id INT PRIMARY KEY, v INT)")
    reader = make_reader(mariadb_dsn, [f"test.{table}"])

    def work() -> None:
        sql(
            db,
            "BEGIN",
            f"INSERT INTO {table} VALUES (1, 1), (2, 2)",
            f"UPDATE {table} SET v = 10 WHERE id = 1",
            f"UPDATE {table} SET id = 3 WHERE id = 2",  # key change: d + c
            f"DELETE FROM {table} WHERE id = 1",
            "COMMIT",
        )

    events, beats = collect(reader, None, lambda ev: len(ev) >= 6, action=work)
    assert beats, "a reader started without a position yields its start position first"
    assert [e.op.value for e in events] == ["c", "c", "u", "d", "c", "d"]
    ids = {e.transaction.id for e in events if e.transaction}
    assert len(ids) == 1 and len(events) == 6
    assert [e.transaction.total_order for e in events if e.transaction] == [1, 2, 3, 4, 5, 6]
    assert [e.boundary for e in events] == [False] * 5 + [True]
    last = events[-1].position
    assert isinstance(last, BinlogPosition) and last.gtid and ids.pop().split("-")[2] in last.gtid
    assert events[3].key == {"id": 2} and events[4].key == {"id": 3}


def test_alter_table_mid_stream_column_names(mariadb_dsn: str, db: Any, table: str, decode: str) -> None:
    sql(db, f"CREATE TABLE {table} (id INT PRIMARY KEY, a INT, b VARCHAR(5))")
    reader = make_reader(mariadb_dsn, [f"test.{table}"], decode_process=decode)

    def work() -> None:
        sql(
            db,
            f"INSERT INTO {table} VALUES (1, 10, 'x')",
            f"ALTER TABLE {table} ADD COLUMN c INT DEFAULT 7",
            f"INSERT INTO {table} (id, a, b) VALUES (2, 20, 'y')",
            f"ALTER TABLE {table} DROP COLUMN a",
            f"INSERT INTO {table} VALUES (3, 'z', 30)",
            f"ALTER TABLE {table} RENAME COLUMN b TO bee",
            f"INSERT INTO {table} VALUES (4, 'w', 40)",
            f"ALTER TABLE {table} MODIFY COLUMN c INT AFTER id",
            f"INSERT INTO {table} VALUES (5, 50, 'v')",
            f"UPDATE {table} SET c = 51 WHERE id = 5",
        )

    events, _ = collect(reader, None, lambda ev: len(ev) >= 6, action=work)
    assert [e.after for e in events] == [
        {"id": 1, "a": 10, "b": "x"},
        {"id": 2, "a": 20, "b": "y", "c": 7},
        {"id": 3, "b": "z", "c": 30},
        {"id": 4, "bee": "w", "c": 40},
        {"id": 5, "c": 50, "bee": "v"},
        {"id": 5, "c": 51, "bee": "v"},
    ]
    assert list(events[4].after or {}) == ["id", "c", "bee"], "column order follows the table"


TYPES_DDL = """(
  id INT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT UNSIGNED, i INT,
  bi BIGINT, bu BIGINT UNSIGNED, d DECIMAL(10,2), dz DECIMAL(20,10), f FLOAT, db DOUBLE,
  b1 BIT(1), b12 BIT(12), e ENUM('x','y'), s SET('a','b','c'), s0 SET('a','b'), c CHAR(3),
  vc VARCHAR(10), tx TEXT, bl BLOB, bn BINARY(3), vb VARBINARY(5), j JSON, dt DATE, dtm DATETIME,
  dtm3 DATETIME(3), dtm6 DATETIME(6), ts TIMESTAMP NULL, ts3 TIMESTAMP(3) NULL, tm TIME, tm6 TIME(6),
  y YEAR, g GEOMETRY, n INT)"""
TYPES_ROW = """(1, -128, 255, -32768, 16777215, -2147483648, -9223372036854775808, 18446744073709551615,
  -12.34, 0.0000000001, 1.1, 2.2, b'1', b'101000000001', 'y', 'c,a', '', 'ab', 'héllo', 'text',
  x'00ff', x'0102', x'0a', '{"k": [1, 2]}', '2024-02-29', '2024-01-02 03:04:05', '2024-01-02 03:04:05.123',
  '1969-12-31 23:59:59.999999', '2024-01-02 03:04:05', '2024-01-02 03:04:05.5', '-838:59:59',
  '12:00:00.000001', 2024, ST_GeomFromText('POINT(1 2)', 4326), NULL)"""
# The documented mapping (docs/sources/mysql.md), as JSON values in the envelope.
TYPES_EXPECTED = {
    "id": 1,
    "ti": -128,
    "tu": 255,
    "si": -32768,
    "mi": 16777215,
    "i": -2147483648,
    "bi": -9223372036854775808,
    "bu": 18446744073709551615,
    "d": "-12.34",
    "dz": "0.0000000001",
    "f": 1.1,
    "db": 2.2,
    "b1": True,
    "b12": base64.b64encode(bytes([0x01, 0x0A])).decode(),  # 0xA01, little-endian
    "e": "y",
    "s": "a,c",
    "s0": "",
    "c": "ab",
    "vc": "héllo",
    "tx": "text",
    "bl": base64.b64encode(b"\x00\xff").decode(),
    "bn": base64.b64encode(b"\x01\x02\x00").decode(),
    "vb": base64.b64encode(b"\x0a").decode(),
    "j": '{"k": [1, 2]}',
    "dt": 19782,
    "dtm": 1704164645000,
    "dtm3": 1704164645123,
    "dtm6": -1,
    "ts": "2024-01-02T03:04:05Z",
    "ts3": "2024-01-02T03:04:05.500Z",
    "tm": -(838 * 3600 + 59 * 60 + 59) * 1_000_000,
    "tm6": 12 * 3600 * 1_000_000 + 1,
    "y": 2024,
    "g": {
        "wkb": base64.b64encode(bytes.fromhex("0101000000000000000000f03f0000000000000040")).decode(),
        "srid": 4326,
    },
    "n": None,
}


def test_types_round_trip_binlog_and_snapshot(mariadb_dsn: str, db: Any, table: str, decode: str) -> None:
    sql(
        db,
        "SET time_zone = '+00:00'",
        f"CREATE TABLE {table} {TYPES_DDL}",
        f"INSERT INTO {table} VALUES {TYPES_ROW}",
    )
    # Snapshot path (text protocol) first: the row is there already.
    reader = make_reader(mariadb_dsn, [f"test.{table}"], decode_process=decode, snapshot=True)
    snap, _ = collect(reader, None, lambda ev: len(ev) >= 1)
    assert orjson.loads(dumps(snap[0].after)) == TYPES_EXPECTED
    assert snap[0].op.value == "r" and snap[0].source.snapshot == "last" and snap[0].boundary
    # Binlog path: insert the same values again under another id.
    reader = make_reader(mariadb_dsn, [f"test.{table}"], decode_process=decode)
    row2 = TYPES_ROW.replace("(1, -128", "(2, -128", 1)
    events, _ = collect(
        reader,
        None,
        lambda ev: len(ev) >= 1,
        action=lambda: sql(db, "SET time_zone = '+00:00'", f"INSERT INTO {table} VALUES {row2}"),
    )
    assert orjson.loads(dumps(events[0].after)) == {**TYPES_EXPECTED, "id": 2}


def test_snapshot_with_concurrent_writes_rebuilds_select_star(mariadb_dsn: str, db: Any, table: str) -> None:
    sql(db, f"CREATE TABLE {table} (id INT PRIMARY KEY, v INT)")
    with db.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(i, i) for i in range(1, 1201)])
    stop = threading.Event()
    writer_db = pymysql.connect(**parse_dsn(mariadb_dsn).kwargs(), autocommit=True)

    def writer() -> None:
        n = 2000
        with writer_db.cursor() as cur:
            while not stop.is_set():
                cur.execute(f"INSERT INTO {table} VALUES (%s, 0)", (n,))
                cur.execute(f"UPDATE {table} SET v = v + 1 WHERE id = %s", (n % 1200 + 1,))
                cur.execute(f"DELETE FROM {table} WHERE id = %s", (n - 1000,))
                n += 1
                time.sleep(0.002)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    reader = make_reader(mariadb_dsn, [f"test.{table}"], snapshot=True, snapshot_chunk_size=100)
    state: dict[int, dict[str, Any]] = {}
    applied = 0
    sentinel = 10**6

    def apply(events: list[ChangeEvent]) -> bool:
        nonlocal applied
        for e in events[applied:]:
            key = (e.key or {})["id"]
            if e.op.value == "d":
                state.pop(key, None)
            else:
                state[key] = dict(e.after or {})
        applied = len(events)
        if not stop.is_set() and applied > 1500:
            stop.set()  # enough concurrent traffic: stop the writer, then a last row marks the end
            thread.join(10)
            sql(db, f"INSERT INTO {table} VALUES ({sentinel}, 0)")
        return sentinel in state

    events, _ = collect(reader, None, apply, timeout=60)
    writer_db.close()
    assert any(e.op.value == "r" for e in events) and any(e.op.value != "r" for e in events)
    with db.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM {table}")
        truth = {r["id"]: r for r in cur.fetchall()}
    assert state == truth


def test_resume_by_gtid_after_restart(mariadb_dsn: str, db: Any, table: str, decode: str) -> None:
    sql(db, f"CREATE TABLE {table} (id INT PRIMARY KEY)")
    reader = make_reader(
        mariadb_dsn, [f"test.{table}"], decode_process=decode, temporary=False, pipeline_name="mr-resume"
    )
    first, _ = collect(
        reader,
        None,
        lambda ev: len(ev) >= 2,
        action=lambda: sql(db, f"INSERT INTO {table} VALUES (1)", f"INSERT INTO {table} VALUES (2)"),
    )
    committed = first[-1].position
    assert isinstance(committed, BinlogPosition) and committed.gtid
    # While "down": more changes. The restarted reader resumes by GTID and sees exactly those.
    sql(
        db,
        f"INSERT INTO {table} VALUES (3)",
        "BEGIN",
        f"INSERT INTO {table} VALUES (4)",
        f"DELETE FROM {table} WHERE id = 1",
        "COMMIT",
    )
    reader = make_reader(
        mariadb_dsn, [f"test.{table}"], decode_process=decode, temporary=False, pipeline_name="mr-resume"
    )
    assert reader.server_identity() == committed.server
    again, _ = collect(reader, committed, lambda ev: len(ev) >= 3)
    assert [(e.op.value, (e.key or {})["id"]) for e in again] == [("c", 3), ("c", 4), ("d", 1)]


def test_lost_position_is_an_error_not_a_loop(mariadb_dsn: str, db: Any, table: str, decode: str) -> None:
    sql(db, f"CREATE TABLE {table} (id INT PRIMARY KEY)")
    reader = make_reader(mariadb_dsn, [f"test.{table}"], decode_process=decode)
    server = reader.server_identity()
    with db.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        (current,) = cur.fetchone()
    domain, server_id, seq = current.split(",")[0].split("-")
    cases = [
        f"{domain}-{server_id}-{int(seq) + 1_000_000}",  # far ahead: restored server / another server
        f"{int(domain) + 977}-{server_id}-5",  # a replication domain the server never had
    ]
    for gtid in cases:
        started = time.monotonic()
        with pytest.raises(CdcError) as info:
            list(reader.stream(BinlogPosition(server=server, file="x", pos=4, gtid=gtid, flavor="mariadb")))
        assert info.value.kind is ErrorKind.POSITION_LOST
        assert "offsets reset" in (info.value.hint or "")
        assert time.monotonic() - started < 5
    reader.close()
    # What the server itself answers (bypassing our pre-check): 1236 in strict mode -> POSITION_LOST.
    diverged = f"{domain}-{int(server_id) + 4242}-{max(1, int(seq) - 1)}"
    start = BinlogPosition(server=server, file="", pos=0, gtid=diverged, flavor="mariadb")
    converter = BinlogConverter(flavor="mariadb", connector="mariadb", pipeline_name="t", start=start)
    stream = BinlogStream(parse_dsn(mariadb_dsn), converter, server_id=3_999_000_123, flavor="mariadb")
    stream.start()
    try:
        deadline = time.monotonic() + 10
        with pytest.raises(CdcError) as info:
            while time.monotonic() < deadline:
                stream.poll(0.2)
        assert info.value.kind is ErrorKind.POSITION_LOST and "1236" in info.value.message
    finally:
        stream.close()


def test_duplicate_server_id_is_a_config_error(mariadb_dsn: str, db: Any, table: str, decode: str) -> None:
    sql(db, f"CREATE TABLE {table} (id INT PRIMARY KEY)")
    reader = make_reader(mariadb_dsn, [f"test.{table}"], decode_process=decode, server_id=3_999_000_777)
    other = make_reader(mariadb_dsn, [f"test.{table}"], decode_process=decode, server_id=3_999_000_777)
    # The server keeps the newest client with an id and drops the older one (error 4052). Which of the
    # two registers first is up to the scheduler on a busy machine: the dropped one must fail with a
    # config error naming server_id, whichever it is.
    errors: list[BaseException] = []
    thread = threading.Thread(target=_briefly, args=(other, errors))
    try:
        collect(reader, None, lambda ev: False, action=thread.start, timeout=15)
    except CdcError as exc:
        errors.append(exc)
    except AssertionError:  # reader was the newer client: it timed out without events, never dropped
        pass
    finally:
        reader.close()
    thread.join(timeout=30)
    dropped = [e for e in errors if isinstance(e, CdcError)]
    assert dropped, f"neither client was dropped: {errors!r}"
    assert all(e.kind is ErrorKind.CONFIG and "server_id" in (e.hint or "") for e in dropped), dropped


def _briefly(reader: MysqlReader, errors: list[BaseException]) -> None:
    deadline = time.monotonic() + 8
    try:
        for _ in reader.stream(None):
            if time.monotonic() > deadline:
                break
    except BaseException as exc:  # the dropped client's error, for the test to check
        errors.append(exc)
    finally:
        reader.close()


def test_doctor_passes_on_the_stack_and_names_the_fix_when_it_fails(mariadb_dsn: str) -> None:
    def doctor(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cdc_logs", "doctor", "--dsn", mariadb_dsn, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = doctor("--source", "mariadb")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for check in ("log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata", "gtid_strict_mode"):
        assert f"ok   {check}" in ok.stdout
    assert "ok   privileges" in ok.stdout and "ok   binlog retention" in ok.stdout
    bad = doctor("--source", "mysql", "--gtid", "0-1-999999999")
    assert bad.returncode == 1
    assert "FAIL flavor" in bad.stdout and "use --source mariadb" in bad.stdout
    assert "FAIL stored position" in bad.stdout and "offsets reset" in bad.stdout


@pytest.mark.parametrize("snapshot", [False, True])
def test_a_missing_table_is_not_found_at_start(mariadb_dsn: str, snapshot: bool) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "tail", "--source", "mariadb", "--dsn", mariadb_dsn,
         "--table", "test.no_such_table_xyz", "--limit", "1", *(["--snapshot"] if snapshot else [])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3 and "not_found" in result.stderr and "no_such_table_xyz" in result.stderr


def test_the_reader_is_not_idle_before_it_read_to_the_binlog_end_of_its_start(
    mariadb_dsn: str, db: Any, table: str
) -> None:
    """An idle tick ends a `sync.mode: one_time` run. One came while the server was still seeking the
    resume GTID (or skipping other tables' transactions), and the run ended having delivered nothing
    (tests/integration/test_offsets_seek.py failed so now and then): no idle tick before the binlog's
    end as of the start is read. A 1 ms tick makes the old race certain."""
    sql(db, f"CREATE TABLE {table} (id INT PRIMARY KEY)")
    reader = make_reader(mariadb_dsn, [f"test.{table}"], temporary=False, idle_tick_s=0.001)
    with db.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        (gtid,) = cur.fetchone()
        cur.execute("SHOW MASTER STATUS")
        file, pos = cur.fetchone()[:2]
    start = BinlogPosition(
        server=reader.server_identity(), file=file, pos=int(pos), gtid=gtid, flavor="mariadb"
    )
    sql(db, *(f"INSERT INTO {table} VALUES ({n})" for n in range(1, 4)))
    seen: list[int] = []
    deadline = time.monotonic() + 20
    try:
        for item in reader.stream(start):
            if item is None:
                break
            if isinstance(item, ChangeEvent):
                seen.append((item.key or {})["id"])
            assert time.monotonic() < deadline, "never idle"
    finally:
        reader.stop()
        reader.close()
    assert seen == [1, 2, 3], "idle before the changes written before the start were read"
