"""SqliteReader against real SQLite files: triggers, change table, snapshot, resume, trim, cleanup.

Writers are separate connections, and in the concurrency tests separate processes, as in production.
"""

from __future__ import annotations

import math
import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Watermark, decode
from cdc_logs.readers.sqlite.reader import SqliteReader
from cdc_logs.readers.sqlite.triggers import cleanup, trigger_names

FAST = {"poll_interval_s": 0.01, "idle_tick_s": 0.05}


def writer(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=10)


def make_db(tmp_path: Path, ddl: str = "") -> Path:
    path = tmp_path / "app.db"
    with writer(path) as conn:
        conn.executescript(
            ddl
            or """
            CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB, extra);
            CREATE TABLE other (k TEXT PRIMARY KEY, v INTEGER);
            """
        )
    return path


def collect(
    reader: SqliteReader, start: Any = None, *, count: int | None = None, timeout: float = 10
) -> list:
    """Events (and heartbeats) until `count` events, or the first idle tick when count is None."""
    out: list = []
    deadline = time.monotonic() + timeout
    for item in reader.stream(start):
        if item is None:
            if count is None or time.monotonic() > deadline:
                break
            continue
        out.append(item)
        if count is not None and sum(isinstance(i, ChangeEvent) for i in out) >= count:
            break
    return out


def drain(stream: Iterator[Any]) -> list:
    """Pull from a live stream up to its next idle tick (the generator stays usable)."""
    out = []
    for item in stream:
        if item is None:
            break
        out.append(item)
    return out


def events(items: list) -> list[ChangeEvent]:
    return [i for i in items if isinstance(i, ChangeEvent)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path)


@pytest.fixture
def reader(db: Path) -> Iterator[SqliteReader]:
    r = SqliteReader(str(db), ["t"], pipeline_name="pipe", **FAST)
    r.open()
    yield r
    r.close()


def test_insert_update_delete_with_types(db: Path, reader: SqliteReader) -> None:
    w = writer(db)
    tricky = 'it\'s "quoted" ünïcødé ☃ \\ back'
    w.execute("INSERT INTO t VALUES (1, ?, ?, ?, NULL)", (tricky, 0.1 + 0.2, b"\x00\xff\x10"))
    w.execute("UPDATE t SET score = ?, data = NULL, extra = ? WHERE id = 1", (float("inf"), '["x","00"]'))
    w.execute("DELETE FROM t WHERE id = 1")
    got = events(collect(reader))
    assert [e.op for e in got] == [Op.CREATE, Op.UPDATE, Op.DELETE]
    c, u, d = got
    row1 = {"id": 1, "name": tricky, "score": 0.1 + 0.2, "data": b"\x00\xff\x10", "extra": None}
    # JSON-looking text stays text; an infinity is the string every reader writes for it
    row2 = {**row1, "score": "Infinity", "data": None, "extra": '["x","00"]'}
    assert (c.before, c.after, c.key) == (None, row1, {"id": 1})
    assert (u.before, u.after) == (row1, row2)
    assert (d.before, d.after, d.key) == (row2, None, {"id": 1})
    src = c.source.to_dict()
    assert src["connector"] == "sqlite" and src["name"] == "pipe" and src["db"] == "app.db"
    assert src["schema"] == "main" and src["table"] == "t" and src["snapshot"] == "false"
    ids = [e.source.extra["change_id"] for e in got]
    assert ids == sorted(ids) and all(e.boundary for e in got)
    assert [e.position for e in got] == [Watermark(server=reader.server_identity(), values=(i,)) for i in ids]
    assert b'"data":"AP8Q"' in c.to_json()  # bytes -> base64 in the envelope


def test_reals_round_trip_exactly(db: Path, reader: SqliteReader) -> None:
    rng = random.Random(7)
    values = [rng.uniform(-1e6, 1e6) for _ in range(150)] + [
        rng.random() * 10 ** rng.randint(-300, 300) for _ in range(150)
    ]
    values += [5e-324, 1.7976931348623157e308, -0.0, 1e16, 123456789.123456789]
    w = writer(db)
    w.executemany("INSERT INTO t (id, score) VALUES (?, ?)", list(enumerate(values)))
    got = events(collect(reader, count=len(values)))
    assert [e.after["score"] for e in got] == values  # type: ignore[index]


def test_a_json_function_result_is_recorded_as_the_text_it_stores(db: Path, reader: SqliteReader) -> None:
    """SQLite's JSON functions give TEXT with a JSON subtype, still attached to NEW in the trigger:
    json_object embedded it as JSON (a dict, or the tagged blob ["x", hex] read back as bytes)."""
    w = writer(db)
    w.execute("INSERT INTO t (id, name, extra) VALUES (1, json_object('k', 'v'), json_array('x', '00'))")
    w.execute("UPDATE t SET name = json_quote('q'), extra = json_array('f', '1.5') WHERE id = 1")
    c, u = events(collect(reader, count=2))
    assert c.after == {"id": 1, "name": '{"k":"v"}', "score": None, "data": None, "extra": '["x","00"]'}
    assert u.after == {**c.after, "name": '"q"', "extra": '["f","1.5"]'}
    assert u.before == c.after


def test_infinities_and_negative_zero_read_the_same_in_changes_and_snapshot(tmp_path: Path) -> None:
    """JSON has no infinity (the envelope would write null): "Infinity" / "-Infinity", as every reader
    writes them. SQLite prints -0.0 as 0.0, so the triggers see 0.0: the snapshot must agree."""
    path = make_db(tmp_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v);")
    stream_reader = SqliteReader(str(path), ["t"], pipeline_name="p", **FAST)
    stream_reader.open()
    w = writer(path)
    w.execute("INSERT INTO t VALUES (1, 9e999), (2, -9e999), (3, -0.0)")
    streamed = [e.after["v"] for e in events(collect(stream_reader, count=3))]  # type: ignore[index]
    stream_reader.close()
    snapshot_reader = SqliteReader(str(path), ["t"], pipeline_name="p", snapshot=True, consumer="s", **FAST)
    snapshot_reader.open()
    snapshot = [e.after["v"] for e in events(collect(snapshot_reader, count=3))]  # type: ignore[index]
    snapshot_reader.close()
    assert streamed == snapshot == ["Infinity", "-Infinity", 0.0]
    assert math.copysign(1, snapshot[2]) == 1.0


def test_multi_row_transaction_in_order(db: Path, reader: SqliteReader) -> None:
    w = writer(db)
    w.execute("BEGIN")
    w.executemany("INSERT INTO t (id, name) VALUES (?, ?)", [(i, f"n{i}") for i in range(5)])
    w.execute("UPDATE t SET name = 'all'")
    w.execute("COMMIT")
    w.execute("BEGIN")
    w.execute("INSERT INTO t (id) VALUES (99)")
    w.execute("ROLLBACK")  # never visible
    got = events(collect(reader))
    assert [(e.op, e.key) for e in got] == [(Op.CREATE, {"id": i}) for i in range(5)] + [
        (Op.UPDATE, {"id": i}) for i in range(5)
    ]
    ids = [e.source.extra["change_id"] for e in got]
    assert ids == list(range(ids[0], ids[0] + 10))


def test_rowid_key_and_primary_key_change(tmp_path: Path) -> None:
    path = make_db(tmp_path, "CREATE TABLE nokey (a, b); CREATE TABLE t (id INTEGER PRIMARY KEY, v);")
    r = SqliteReader(str(path), ["nokey", "main.t"], pipeline_name="p", **FAST)
    r.open()
    w = writer(path)
    w.execute("INSERT INTO nokey VALUES ('x', 1)")
    w.execute("INSERT INTO t VALUES (1, 'a')")
    w.execute("UPDATE t SET id = 2 WHERE id = 1")
    got = events(collect(r))
    r.close()
    assert got[0].key == {"rowid": 1} and got[0].after == {"a": "x", "b": 1}
    assert got[0].schema is not None and got[0].schema.key == ("rowid",)
    # A key change is a delete of the old key then a create of the new one (Debezium does the same).
    assert [(e.op, e.key, e.boundary) for e in got[2:]] == [
        (Op.DELETE, {"id": 1}, False),
        (Op.CREATE, {"id": 2}, True),
    ]
    assert got[2].before == {"id": 1, "v": "a"} and got[3].after == {"id": 2, "v": "a"}


def test_a_column_named_rowid_does_not_become_the_key(tmp_path: Path) -> None:
    """Without a primary key the key is the rowid; with a column of that name it is `_rowid_`, so the
    key never contradicts the row (it was {"rowid": 1} next to the row's "rowid": "r1")."""
    path = make_db(tmp_path, "CREATE TABLE nokey (rowid TEXT, b);")
    r = SqliteReader(str(path), ["nokey"], pipeline_name="p", **FAST)
    r.open()
    writer(path).execute("INSERT INTO nokey VALUES ('r1', 1)")
    (event,) = events(collect(r))
    r.close()
    assert event.key == {"_rowid_": 1} and event.after == {"rowid": "r1", "b": 1}
    assert event.schema is not None and [c.name for c in event.schema.columns] == ["rowid", "b", "_rowid_"]
    assert event.schema.key == ("_rowid_",)


def test_wide_table(tmp_path: Path) -> None:
    cols = [f"c{i}" for i in range(150)]
    path = make_db(tmp_path, f"CREATE TABLE wide (id INTEGER PRIMARY KEY, {', '.join(cols)});")
    r = SqliteReader(str(path), ["wide"], pipeline_name="p", **FAST)
    r.open()
    w = writer(path)
    w.execute(
        f"INSERT INTO wide (id, {', '.join(cols)}) VALUES (1, {', '.join('?' * len(cols))})",
        [None, *range(149)],
    )
    (event,) = events(collect(r))
    r.close()
    assert event.after == {"id": 1, "c0": None, **{f"c{i}": i - 1 for i in range(1, 150)}}


def test_only_captured_tables_and_heartbeat(db: Path, reader: SqliteReader) -> None:
    w = writer(db)
    other = SqliteReader(str(db), ["other"], pipeline_name="p", consumer="o", **FAST)
    other.open()  # installs triggers on `other`, whose changes share the change table
    w.execute("INSERT INTO other VALUES ('a', 1)")
    items = collect(reader)
    other.close()
    assert events(items) == []
    assert isinstance(items[-1], Heartbeat) and items[-1].position.values[0] > 0


def _run_writer(path: Path, script: str) -> subprocess.Popen[bytes]:
    code = "import sqlite3, random, time\n"
    code += f"conn = sqlite3.connect({str(path)!r}, isolation_level=None, timeout=30)\n"
    return subprocess.Popen([sys.executable, "-c", code + textwrap.dedent(script)])


def test_another_process_writes_while_streaming(db: Path, reader: SqliteReader) -> None:
    proc = _run_writer(
        db,
        """
        for i in range(200):
            conn.execute("INSERT INTO t (id, name) VALUES (?, ?)", (i, "p%d" % i))
            if i % 50 == 0:
                time.sleep(0.02)
        """,
    )
    got = events(collect(reader, count=200, timeout=15))
    assert proc.wait(timeout=15) == 0
    assert [e.after["id"] for e in got] == list(range(200))  # type: ignore[index]


def test_snapshot_with_concurrent_writes_no_gap_no_duplicate(db: Path) -> None:
    w = writer(db)
    w.executemany(
        "INSERT INTO t (id, name, score) VALUES (?, ?, ?)", [(i, f"r{i}", i / 3) for i in range(400)]
    )
    go = db.with_suffix(".go")
    r = SqliteReader(str(db), ["t"], pipeline_name="p", snapshot=True, **FAST)
    r.open()  # triggers installed: every change of the writer below is captured
    proc = _run_writer(
        db,
        f"""
        import os
        rng = random.Random(3)
        for n in range(400):
            if n == 200:  # the second half waits until the snapshot has started
                while not os.path.exists({str(go)!r}):
                    time.sleep(0.002)
            conn.execute("BEGIN IMMEDIATE")
            for _ in range(rng.randint(1, 3)):
                k = rng.randrange(600)
                op = rng.random()
                if op < 0.4:
                    conn.execute("INSERT OR IGNORE INTO t (id, name) VALUES (?, ?)", (k, "new%d" % n))
                elif op < 0.8:
                    conn.execute(
                        "UPDATE t SET name = ?, score = ? WHERE id = ?", ("upd%d" % n, rng.random(), k)
                    )
                else:
                    conn.execute("DELETE FROM t WHERE id = ?", (k,))
            conn.execute("COMMIT")
            if n % 10 == 0:
                time.sleep(0.002)
        """,
    )
    # Changes captured before the snapshot starts are in it and must not be streamed again.
    deadline = time.monotonic() + 10
    while w.execute("SELECT count(*) FROM _cdc_changes").fetchone()[0] < 50 and time.monotonic() < deadline:
        time.sleep(0.005)
    state: dict[int, dict[str, Any]] = {}
    snapshot_keys: list[int] = []
    change_ids: list[int] = []
    snapshot_at = 0
    stream = r.stream(None)
    for item in stream:
        if item is None:
            if proc.poll() is not None:
                break
            continue
        assert isinstance(item, ChangeEvent)
        key = item.key["id"]  # type: ignore[index]
        if item.op is Op.READ:
            snapshot_keys.append(key)
            snapshot_at = item.position.values[0]  # type: ignore[union-attr]
            go.touch()
            time.sleep(0.0005)  # a slow snapshot, so the writer runs during it
        else:
            change_ids.append(item.source.extra["change_id"])
        if item.op is Op.DELETE:
            state.pop(key)
        else:
            # A create for a key the snapshot already had would be a duplicate; an update needs it.
            assert (key in state) == (item.op is Op.UPDATE) or item.op is Op.READ
            state[key] = item.after  # type: ignore[assignment]
    # Catch up on whatever the writer did between the last poll and its exit.
    for item in drain(stream):
        if isinstance(item, ChangeEvent):
            change_ids.append(item.source.extra["change_id"])
            if item.op is Op.DELETE:
                state.pop(item.key["id"])  # type: ignore[index]
            else:
                state[item.key["id"]] = item.after  # type: ignore[index]
    r.close()
    assert proc.wait(timeout=15) == 0
    assert len(snapshot_keys) == len(set(snapshot_keys)) > 0
    # The writer ran on both sides of the snapshot: changes before it (in it) and after it (streamed).
    assert snapshot_at > 0 and change_ids[0] == snapshot_at + 1
    assert change_ids == list(range(change_ids[0], change_ids[0] + len(change_ids)))  # no gap, no repeat
    cur = w.execute("SELECT * FROM t")
    names = [d[0] for d in cur.description]
    assert state == {row[0]: dict(zip(names, row, strict=True)) for row in cur}


def test_snapshot_markers_and_boundary(db: Path) -> None:
    w = writer(db)
    w.executemany("INSERT INTO t (id) VALUES (?)", [(1,), (2,), (3,)])
    r = SqliteReader(str(db), ["t"], pipeline_name="p", snapshot=True, **FAST)
    r.open()
    got = events(collect(r))
    r.close()
    assert [(e.op, e.source.snapshot, e.boundary) for e in got] == [
        (Op.READ, "first", False),
        (Op.READ, "true", False),
        (Op.READ, "last", True),
    ]


def test_resume_from_position(db: Path, reader: SqliteReader) -> None:
    w = writer(db)
    w.executemany("INSERT INTO t (id) VALUES (?)", [(i,) for i in range(6)])
    got = events(collect(reader))
    mid = got[2].position
    assert mid is not None
    reader.close()
    again = SqliteReader(str(db), ["t"], pipeline_name="pipe", **FAST)
    again.open()
    resumed = events(collect(again, decode(mid.encode())))
    again.close()
    assert [e.key for e in resumed] == [{"id": i} for i in range(3, 6)]


def test_known_consumer_without_position_continues_where_it_stopped(db: Path) -> None:
    first = SqliteReader(str(db), ["t"], pipeline_name="p", consumer="svc", **FAST)
    first.open()
    # A first run yields the position it starts from (so the pipeline commits it), then nothing.
    assert [type(i).__name__ for i in collect(first)] == ["Heartbeat"]
    first.close()
    writer(db).execute("INSERT INTO t (id) VALUES (1)")  # while no reader runs: kept for "svc"
    again = SqliteReader(str(db), ["t"], pipeline_name="p", consumer="svc", **FAST)
    again.open()
    assert [e.key for e in events(collect(again))] == [{"id": 1}]
    again.close()
    fresh = SqliteReader(str(db), ["t"], pipeline_name="p", consumer="new", **FAST)
    fresh.open()
    assert events(collect(fresh)) == []  # a new consumer starts with the changes after open()
    fresh.close()


def _changes(path: Path) -> list[int]:
    return [r[0] for r in writer(path).execute("SELECT id FROM _cdc_changes ORDER BY id")]


def test_commit_trims_up_to_slowest_consumer(db: Path) -> None:
    a = SqliteReader(str(db), ["t"], pipeline_name="p", consumer="a", **FAST)
    b = SqliteReader(str(db), ["t"], pipeline_name="p", consumer="b", **FAST)
    a.open()
    b.open()
    w = writer(db)
    w.executemany("INSERT INTO t (id) VALUES (?)", [(i,) for i in range(6)])
    stream_a, stream_b = a.stream(None), b.stream(None)
    got_a, got_b = events(drain(stream_a)), events(drain(stream_b))
    ids = [e.source.extra["change_id"] for e in got_a]
    a.commit(got_a[-1].position)  # type: ignore[arg-type]
    b.commit(got_b[1].position)  # type: ignore[arg-type]
    drain(stream_a)  # commits are applied by the stream loop, on the reader's own connection
    drain(stream_b)
    assert _changes(db) == ids[2:]  # b still needs ids[2:]
    b.close()  # the final commit is applied on close
    a.close()
    # A reader whose position was trimmed away is refused rather than silently skipping changes.
    late = SqliteReader(str(db), ["t"], pipeline_name="p", consumer="c", **FAST)
    late.open()
    with pytest.raises(CdcError) as err:
        collect(late, got_b[0].position)
    late.close()
    assert err.value.kind is ErrorKind.POSITION_LOST and "consumer" in (err.value.hint or "")


def test_temporary_consumer_leaves_nothing_pinned(db: Path) -> None:
    r = SqliteReader(str(db), ["t"], pipeline_name="p", consumer="tail", temporary=True, **FAST)
    r.open()
    writer(db).execute("INSERT INTO t (id) VALUES (1)")
    assert len(events(collect(r))) == 1
    r.close()
    conn = writer(db)
    assert conn.execute("SELECT count(*) FROM _cdc_state WHERE kind = 'consumer'").fetchone()[0] == 0
    assert _changes(db) == []


def test_schema_change_reinstalls_triggers(db: Path, reader: SqliteReader) -> None:
    w = writer(db)
    w.execute("INSERT INTO t (id) VALUES (1)")
    first = events(collect(reader))
    w.execute("ALTER TABLE t ADD COLUMN added TEXT DEFAULT 'dflt'")
    collect(reader, first[-1].position)  # the reader notices the DDL on its next poll
    w.execute("INSERT INTO t (id, added) VALUES (2, 'yes')")
    w.execute("UPDATE t SET name = 'n' WHERE id = 1")
    later = events(collect(reader, first[-1].position))
    assert later[0].after == {
        "id": 2,
        "name": None,
        "score": None,
        "data": None,
        "extra": None,
        "added": "yes",
    }
    assert later[1].before["added"] == "dflt"  # type: ignore[index]


def test_cleanup_removes_triggers_and_tables(tmp_path: Path) -> None:
    path = make_db(tmp_path)
    r = SqliteReader(str(path), ["t", "other"], pipeline_name="p", **FAST)
    r.open()
    r.close()
    conn = writer(path)

    def triggers() -> set[str]:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}

    assert triggers() == set(trigger_names("t")) | set(trigger_names("other"))
    result = cleanup(f"sqlite:///{path}", ["T"])  # names are case-insensitive, like SQLite's
    assert result.tables == ["t"] and not result.dropped_change_table
    assert triggers() == set(trigger_names("other"))
    result = cleanup(str(path))
    assert result.dropped_change_table and triggers() == set()
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not {"_cdc_changes", "_cdc_state"} & tables
    conn.execute("INSERT INTO t (id) VALUES (1)")  # writes work without the triggers
    assert cleanup(str(path)).tables == []  # idempotent


def test_recreated_database_is_a_different_server(db: Path, reader: SqliteReader) -> None:
    writer(db).execute("INSERT INTO t (id) VALUES (1)")
    (event,) = events(collect(reader))
    reader.close()
    cleanup(str(db))
    fresh = SqliteReader(str(db), ["t"], pipeline_name="pipe", **FAST)
    fresh.open()
    assert fresh.server_identity() != event.position.server  # type: ignore[union-attr]
    with pytest.raises(CdcError) as err:
        collect(fresh, event.position)
    fresh.close()
    assert err.value.kind is ErrorKind.SERVER_MISMATCH


def test_missing_table_and_missing_file(tmp_path: Path, db: Path) -> None:
    with pytest.raises(CdcError) as err:
        SqliteReader(str(db), ["nope"], pipeline_name="p").open()
    assert err.value.kind is ErrorKind.NOT_FOUND
    assert "'nope'" in err.value.message and "app.db" in err.value.message
    with pytest.raises(CdcError) as err:
        SqliteReader(str(tmp_path / "absent.db"), ["t"], pipeline_name="p").open()
    assert err.value.kind is ErrorKind.NOT_FOUND
    assert not (tmp_path / "absent.db").exists()


def test_stop_interrupts_a_waiting_stream(db: Path) -> None:
    r = SqliteReader(str(db), ["t"], pipeline_name="p", poll_interval_s=30, idle_tick_s=30)
    r.open()
    done = threading.Event()

    def run() -> None:
        for _ in r.stream(None):
            pass
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.1)
    r.stop()
    assert done.wait(2)
    thread.join()
    r.close()
