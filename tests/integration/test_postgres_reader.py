"""PostgresReader against the stack's real Postgres (CDC_PG_DSN): tail, identities, TOAST, transactions,
snapshot hand-off under writes, streamed large transactions, heartbeats, slot errors, reconnect.

Every test uses unique table, slot and publication names and removes them; temporary slots vanish
with their connection. A missing server fails under CI (see conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

psycopg = pytest.importorskip("psycopg")

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op  # noqa: E402
from cdc_logs.errors import CdcError, ErrorKind  # noqa: E402
from cdc_logs.offsets.sqlite import SqliteOffsetStore  # noqa: E402
from cdc_logs.pipeline import BatchPolicy, Pipeline, RetryPolicy  # noqa: E402
from cdc_logs.position import Lsn, PgSnapshot  # noqa: E402
from cdc_logs.readers.postgres.reader import PostgresReader  # noqa: E402
from cdc_logs.sinks.base import Sink  # noqa: E402

pytestmark = pytest.mark.integration
Item = ChangeEvent | Heartbeat


@pytest.fixture
def db(pg_dsn: str) -> Iterator[Any]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def cleanup(db: Any, unique_name: str) -> Iterator[list[str]]:
    """Tables to drop; every slot and publication whose name contains the test's unique name goes too."""
    tables: list[str] = []
    yield tables
    like = f"%{unique_name}%"
    for slot, pid in db.execute(
        "SELECT slot_name, active_pid FROM pg_replication_slots WHERE slot_name LIKE %s", (like,)
    ).fetchall():
        if pid:
            db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            time.sleep(0.3)
        with contextlib.suppress(psycopg.Error):
            db.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    for (pub,) in db.execute("SELECT pubname FROM pg_publication WHERE pubname LIKE %s", (like,)).fetchall():
        db.execute(f'DROP PUBLICATION "{pub}"')
    for table in tables:
        db.execute(f"DROP TABLE IF EXISTS {table} CASCADE")


def make_table(db: Any, cleanup: list[str], name: str, ddl: str) -> str:
    db.execute(f"DROP TABLE IF EXISTS {name}")
    db.execute(f"CREATE TABLE {name} ({ddl})")
    cleanup.append(name)
    return f"public.{name}"


def reader_for(dsn: str, tables: list[str], **kw: Any) -> PostgresReader:
    kw.setdefault("pipeline_name", "test")
    kw.setdefault("temporary", kw.get("slot") is None)
    kw.setdefault("heartbeat_interval_s", 0)
    return PostgresReader(dsn, tables, **kw)


def pull(
    stream: Iterator[Any],
    done: Callable[[Item], bool],
    *,
    timeout: float = 30,
    reader: PostgresReader | None = None,
) -> list[Item]:
    """Items from a reader's stream until `done(item)`; commits boundaries like the pipeline would."""
    items: list[Item] = []
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"timed out; got {len(items)} items: {items[-3:]}"
        item = next(stream)
        if item is None:
            continue
        items.append(item)
        if reader is not None and item.boundary and item.position is not None:
            reader.commit(item.position)
        if done(item):
            return items


def events(items: list[Item]) -> list[ChangeEvent]:
    return [i for i in items if isinstance(i, ChangeEvent) and i.op is not Op.MESSAGE]


def counting(n: int, what: Callable[[Item], bool]) -> Callable[[Item], bool]:
    seen = [0]

    def done(item: Item) -> bool:
        seen[0] += bool(what(item))
        return seen[0] >= n

    return done


def count(n: int) -> Callable[[Item], bool]:
    return counting(n, lambda i: isinstance(i, ChangeEvent) and i.op is not Op.MESSAGE)


def sentinel_id(key: int) -> Callable[[Item], bool]:
    return lambda item: (
        isinstance(item, ChangeEvent) and item.after is not None and item.after.get("id") == key
    )


def sentinel(item: Item) -> bool:
    return isinstance(item, ChangeEvent) and item.after is not None and item.after.get("id") == -1


def started(reader: PostgresReader, start: Any = None) -> Iterator[Any]:
    reader.open()
    stream = reader.stream(start)
    # the first item is the start heartbeat (or the snapshot): the slot exists once it arrived
    first = next(stream)
    while first is None:
        first = next(stream)
    return stream


def xact(db: Any, *statements: str) -> tuple[int, int, int]:
    """Run statements in one transaction: (xid, WAL insert LSN before, WAL LSN after the commit)."""
    lsn = lambda: int(db.execute("SELECT pg_current_wal_insert_lsn() - '0/0'").fetchone()[0])  # noqa: E731
    before = lsn()
    with db.transaction():
        xid = int(db.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
        for stmt in statements:
            db.execute(stmt)
    return xid, before, lsn()


# -- tail, end to end --------------------------------------------------------------------------------


def test_tail_prints_insert_update_delete_truncate_and_leaves_nothing(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str
) -> None:
    table = make_table(db, cleanup, unique_name, "id int PRIMARY KEY, v text")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", "tail", "--source", "pg", "--dsn", pg_dsn, "--table", table,
         "--format", "json", "--limit", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    pattern = f"cdc_logs_tail_{proc.pid}_%"
    try:
        deadline = time.monotonic() + 30
        while not db.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE %s AND active", (pattern,)
        ).fetchone():
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "tail never started streaming"
            time.sleep(0.1)
        time.sleep(0.3)  # START_REPLICATION follows the slot creation
        txs = [
            xact(db, f"INSERT INTO {table} VALUES (1, 'a')"),
            xact(db, f"UPDATE {table} SET v = 'b' WHERE id = 1"),
            xact(db, f"DELETE FROM {table} WHERE id = 1"),
            xact(db, f"TRUNCATE {table}"),
        ]
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert [e["op"] for e in lines] == ["c", "u", "d", "t"]
    assert lines[0]["before"] is None and lines[0]["after"] == {"id": 1, "v": "a"}
    assert lines[1]["after"] == {"id": 1, "v": "b"}
    assert lines[2]["before"] == {"id": 1} and lines[2]["after"] is None
    assert lines[3]["before"] is None and lines[3]["after"] is None
    for event, (xid, lo, hi) in zip(lines, txs, strict=True):
        source = event["source"]
        assert source["connector"] == "postgresql" and source["table"] == unique_name
        assert source["txId"] == xid
        assert lo <= source["lsn"] <= hi, "source.lsn is not the change's WAL position"
        assert event["transaction"]["id"].startswith(f"{xid}:")
    # nothing left behind: the temporary slot died with the connection, the publication was dropped
    assert not db.execute(
        "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s", (pattern,)
    ).fetchall()
    assert not db.execute("SELECT pubname FROM pg_publication WHERE pubname LIKE %s", (pattern,)).fetchall()


# -- envelope details ----------------------------------------------------------------------------------


def test_replica_identity_default_full_and_using_index_give_the_right_before(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str
) -> None:
    d = make_table(db, cleanup, f"{unique_name}_d", "id int PRIMARY KEY, v text")
    f = make_table(db, cleanup, f"{unique_name}_f", "id int, v text")
    db.execute(f"ALTER TABLE {unique_name}_f REPLICA IDENTITY FULL")
    i = make_table(db, cleanup, f"{unique_name}_i", "id int PRIMARY KEY, code text NOT NULL, v text")
    db.execute(f"CREATE UNIQUE INDEX {unique_name}_code ON {unique_name}_i (code)")
    db.execute(f"ALTER TABLE {unique_name}_i REPLICA IDENTITY USING INDEX {unique_name}_code")
    for t in (d, f, i):
        db.execute(f"INSERT INTO {t} SELECT 1, 'x'" + (", 'a'" if t == i else ""))
    reader = reader_for(pg_dsn, [d, f, i])
    try:
        stream = started(reader)
        xact(db, f"UPDATE {d} SET v = 'y'", f"UPDATE {d} SET id = 2", f"DELETE FROM {d}")
        xact(db, f"UPDATE {f} SET v = 'y'", f"DELETE FROM {f}")
        xact(db, f"UPDATE {i} SET v = 'y'", f"UPDATE {i} SET code = 'b'", f"DELETE FROM {i}")
        got = events(pull(stream, count(9)))
    finally:
        reader.close()
    by = [(e.source.table.rsplit("_", 1)[1], e.op.value, e.before, e.key) for e in got]
    assert by == [
        ("d", "u", None, {"id": 1}),  # DEFAULT, key unchanged: no old row
        ("d", "d", {"id": 1}, {"id": 1}),  # key changed: a delete of the old key, as Debezium
        ("d", "c", None, {"id": 2}),  # ... and a create of the new one
        ("d", "d", {"id": 2}, {"id": 2}),
        ("f", "u", {"id": 1, "v": "x"}, None),  # FULL: the whole old row; no primary key, no key
        ("f", "d", {"id": 1, "v": "y"}, None),
        ("i", "u", None, {"id": 1}),
        ("i", "u", {"code": "x"}, {"id": 1}),  # USING INDEX: the index columns only
        ("i", "d", {"code": "b"}, {"code": "b"}),  # the primary key is not in the old row
    ]


def test_unchanged_toast_is_listed_not_invented(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str
) -> None:
    t = make_table(db, cleanup, unique_name, "id int PRIMARY KEY, big text, note text")
    db.execute(f"ALTER TABLE {unique_name} ALTER COLUMN big SET STORAGE EXTERNAL")
    big = "".join(random.choices("abcdefghij", k=20_000))
    reader = reader_for(pg_dsn, [t])
    try:
        stream = started(reader)
        xact(db, f"INSERT INTO {t} VALUES (1, '{big}', 'a')")
        xact(db, f"UPDATE {t} SET note = 'b'")
        got = events(pull(stream, count(2)))
    finally:
        reader.close()
    assert got[0].after == {"id": 1, "big": big, "note": "a"}
    assert got[1].after == {"id": 1, "note": "b"} and got[1].unchanged == ("big",)
    assert got[1].to_dict()["unchanged"] == ["big"]


def test_a_multi_statement_transaction_shares_one_id_and_ends_in_one_boundary(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str
) -> None:
    t = make_table(db, cleanup, unique_name, "id int PRIMARY KEY, v text")
    reader = reader_for(pg_dsn, [t])
    try:
        stream = started(reader)
        xid, _, _ = xact(db, f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')", f"UPDATE {t} SET v = 'c'")
        got = events(pull(stream, count(4)))
    finally:
        reader.close()
    assert {e.transaction.id for e in got} == {got[0].transaction.id}  # type: ignore[union-attr]
    assert got[0].transaction.id.startswith(f"{xid}:")  # type: ignore[union-attr]
    assert [e.transaction.total_order for e in got] == [1, 2, 3, 4]  # type: ignore[union-attr]
    assert [e.boundary for e in got] == [False, False, False, True]
    assert isinstance(got[-1].position, Lsn)


# -- snapshot -------------------------------------------------------------------------------------------


def apply(state: dict[int, dict[str, Any]], event: ChangeEvent) -> None:
    if event.op in (Op.READ, Op.CREATE, Op.UPDATE):
        assert event.after is not None
        if event.before is not None and event.before.get("id") != event.after["id"]:
            state.pop(event.before["id"], None)
        state[event.after["id"]] = {**state.get(event.after["id"], {}), **event.after}
    elif event.op is Op.DELETE:
        assert event.before is not None
        state.pop(event.before["id"], None)
    elif event.op is Op.TRUNCATE:
        state.clear()


def writer(dsn: str, table: str, rows: int, stop: threading.Event, done: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    upsert = f"INSERT INTO {table} VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET v = excluded.v"
    with psycopg.connect(dsn, autocommit=True) as conn:
        n = 0
        while not stop.is_set() and n < 400:
            n += 1
            with conn.transaction():
                for _ in range(rng.randint(1, 5)):
                    pick = rng.random()
                    key = rng.randint(1, rows + 1000)
                    if pick < 0.4:
                        conn.execute(upsert, (key, f"w{n}"))
                    elif pick < 0.8:
                        conn.execute(f"UPDATE {table} SET v = %s WHERE id = %s", (f"u{n}", key))
                    else:
                        conn.execute(f"DELETE FROM {table} WHERE id = %s", (key,))
            time.sleep(0.002)
        conn.execute(f"INSERT INTO {table} VALUES (-1, 'sentinel')")
    done.set()


def rebuild(
    stream: Iterator[Any], reader: PostgresReader, *, timeout: float = 90
) -> dict[int, dict[str, Any]]:
    state: dict[int, dict[str, Any]] = {}

    def seen_sentinel(item: Item) -> bool:
        if isinstance(item, ChangeEvent):
            apply(state, item)
        return -1 in state

    pull(stream, seen_sentinel, timeout=timeout, reader=reader)
    return state


def select_all(db: Any, table: str) -> dict[int, dict[str, Any]]:
    return {r[0]: {"id": r[0], "v": r[1]} for r in db.execute(f"SELECT id, v FROM {table}").fetchall()}


def test_snapshot_then_stream_under_concurrent_writes_rebuilds_the_table(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str
) -> None:
    rows = 100_000  # the size: snapshot + stream of a 100k-row table
    t = make_table(db, cleanup, unique_name, "id int PRIMARY KEY, v text")
    db.execute(f"INSERT INTO {t} SELECT g, 'v' || g FROM generate_series(1, {rows}) g")
    reader = reader_for(pg_dsn, [t], snapshot=True, snapshot_chunk_rows=1000)
    stop, done = threading.Event(), threading.Event()
    thread = threading.Thread(target=writer, args=(pg_dsn, t, rows, stop, done, 7), daemon=True)
    try:
        reader.open()
        stream = reader.stream(None)
        first = next(stream)
        assert isinstance(first, ChangeEvent) and first.source.snapshot == "first"
        thread.start()  # writes while the snapshot is read, chunk by chunk
        state = {first.after["id"]: first.after}  # type: ignore[index]
        state.update(rebuild(stream, reader))
        progress = reader.snapshot_progress()  # what the --format pretty progress bar draws
    finally:
        stop.set()
        thread.join(30)
        reader.close()
    assert done.is_set()
    assert state == select_all(db, t)
    assert [(p.table, p.rows, p.done) for p in progress] == [(t, rows, True)]


def test_snapshot_resumes_by_chunk_after_a_crash(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str
) -> None:
    t = make_table(db, cleanup, unique_name, "id int PRIMARY KEY, v text")
    db.execute(f"INSERT INTO {t} SELECT g, 'v' || g FROM generate_series(1, 5000) g")
    slot = f"cdc_logs_{unique_name}"
    first = reader_for(pg_dsn, [t], slot=slot, snapshot=True, snapshot_chunk_rows=500)
    first.open()
    got = pull(first.stream(None), counting(3, lambda i: i.boundary))  # 3 chunks, "crash"
    first.close()
    last = [i for i in got if i.boundary][-1]
    assert isinstance(last.position, PgSnapshot) and last.position.key == ("1500",)
    xact(db, f"UPDATE {t} SET v = 'changed' WHERE id IN (10, 4000)", f"DELETE FROM {t} WHERE id = 4001")
    db.execute(f"INSERT INTO {t} VALUES (-1, 'sentinel')")
    second = reader_for(pg_dsn, [t], slot=slot, snapshot=True, snapshot_chunk_rows=500)
    try:
        second.open()
        stream = second.stream(last.position)
        items = pull(
            stream,
            sentinel,
        )
    finally:
        second.close()
    snapshot_ids = [e.after["id"] for e in events(items) if e.op is Op.READ]  # type: ignore[index]
    assert snapshot_ids[0] == 1501 and 1500 not in snapshot_ids  # resumed after the committed chunk
    state: dict[int, dict[str, Any]] = {}
    for event in events(got):
        apply(state, event)
    for event in events(items):
        apply(state, event)
    assert state == select_all(db, t)  # rows 1..1500 from the first run, the rest and the changes after


# -- large transactions --------------------------------------------------------------------------------


@pytest.mark.parametrize("decode_process", ["auto", "on"])  # inline, and the decode process
def test_streamed_large_transactions_come_out_whole_and_aborted_ones_leave_nothing(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str, decode_process: str
) -> None:
    t = make_table(db, cleanup, unique_name, "id int PRIMARY KEY, v text")
    slot = f"cdc_logs_{unique_name}"
    # logical_decoding_work_mem is a session setting of the walsender: 64kB makes the server stream
    # these transactions without touching the server's configuration; 256 kB of our memory spills.
    reader = reader_for(
        pg_dsn,
        [t],
        slot=slot,
        logical_decoding_work_mem="64kB",
        max_tx_memory_bytes=256 * 1024,
        decode_process=decode_process,
    )
    payload = "x" * 50
    try:
        stream = started(reader)
        xact(db, f"INSERT INTO {t} SELECT g, '{payload}' || g FROM generate_series(1, 20000) g")
        with contextlib.suppress(psycopg.errors.RaiseException), db.transaction():
            db.execute(f"INSERT INTO {t} SELECT g, 'aborted' FROM generate_series(100001, 110000) g")
            db.execute("DO $$ BEGIN RAISE EXCEPTION 'roll back' USING ERRCODE = 'P0001'; END $$")
        xid, _, _ = xact(
            db,
            f"INSERT INTO {t} VALUES (200001, 'keep')",
            "SAVEPOINT s1",
            f"INSERT INTO {t} SELECT g, 'dropped' FROM generate_series(300001, 310000) g",
            "ROLLBACK TO SAVEPOINT s1",
            f"INSERT INTO {t} VALUES (200002, 'keep2')",
        )
        xact(db, f"INSERT INTO {t} VALUES (-1, 'sentinel')")
        got = events(pull(stream, sentinel, timeout=120))
        streamed = db.execute(
            "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    finally:
        reader.close()
    ids = [e.after["id"] for e in got]  # type: ignore[index]
    assert ids == [*range(1, 20001), 200001, 200002, -1]  # whole, in order; nothing aborted
    assert {e.transaction.id for e in got[:20000]} == {got[0].transaction.id}  # type: ignore[union-attr]
    assert [e.boundary for e in got[:20000]].count(True) == 1 and got[19999].boundary
    assert got[20000].source.extra["txId"] == xid
    assert streamed is not None and streamed[0] >= 1, "the server did not stream: the test proves nothing"


# -- heartbeats, slots, servers --------------------------------------------------------------------------


@pytest.mark.parametrize("decode_process", ["auto", "on"])  # inline, and the decode process
def test_heartbeats_advance_confirmed_flush_while_only_uncaptured_tables_are_written(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str, decode_process: str
) -> None:
    captured = make_table(db, cleanup, f"{unique_name}_c", "id int PRIMARY KEY")
    other = make_table(db, cleanup, f"{unique_name}_o", "id int PRIMARY KEY, v text")
    slot = f"cdc_logs_{unique_name}"
    reader = reader_for(
        pg_dsn,
        [captured],
        slot=slot,
        heartbeat_interval_s=0.3,
        status_interval_s=0.5,
        decode_process=decode_process,
    )

    def flushed() -> int:
        row = db.execute(
            "SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        return int(row[0])

    try:
        stream = started(reader)
        start = flushed()
        _, _, written = xact(
            db, f"INSERT INTO {other} SELECT g, repeat('y', 100) FROM generate_series(1, 2000) g"
        )
        heartbeats = [
            i
            for i in pull(stream, counting(3, lambda i: isinstance(i, Heartbeat)), reader=reader)
            if isinstance(i, Heartbeat)
        ]
        deadline = time.monotonic() + 15
        while flushed() < written and time.monotonic() < deadline:
            next(stream)
    finally:
        reader.close()
    assert all(isinstance(h.position, Lsn) for h in heartbeats)
    assert heartbeats[-1].position.lsn > written  # type: ignore[attr-defined]
    assert flushed() >= written > start


@pytest.mark.parametrize("decode_process", ["auto", "on"])  # inline, and the decode process
def test_an_idle_slot_is_confirmed_from_keepalives_without_heartbeats(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str, decode_process: str
) -> None:
    captured = make_table(db, cleanup, f"{unique_name}_c", "id int PRIMARY KEY")
    other = make_table(db, cleanup, f"{unique_name}_o", "id int PRIMARY KEY")
    slot = f"cdc_logs_{unique_name}"
    reader = reader_for(
        pg_dsn,
        [captured],
        slot=slot,
        heartbeat_interval_s=0,
        status_interval_s=0.5,
        decode_process=decode_process,
    )
    query = "SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = %s"
    try:
        stream = started(reader)
        xact(db, f"INSERT INTO {captured} VALUES (1)")
        pull(stream, count(1), reader=reader)  # committed: nothing in flight any more
        _, _, written = xact(db, f"INSERT INTO {other} SELECT generate_series(1, 1000)")
        deadline = time.monotonic() + 20
        while int(db.execute(query, (slot,)).fetchone()[0]) < written:
            assert time.monotonic() < deadline, "the idle slot was not confirmed past the uncaptured writes"
            next(stream)
    finally:
        reader.close()


def test_missing_slot_and_lost_slot_are_typed_errors(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str
) -> None:
    t = make_table(db, cleanup, unique_name, "id int PRIMARY KEY")
    reader = reader_for(pg_dsn, [t], slot=f"cdc_logs_{unique_name}")
    try:
        reader.open()
        with pytest.raises(CdcError) as err:
            next(reader.stream(Lsn(reader.server_identity(), 1)))
    finally:
        reader.close()
    assert err.value.kind is ErrorKind.NOT_FOUND
    assert f"cdc-logs slots create cdc_logs_{unique_name}" in (err.value.hint or "")


def test_a_slot_invalidated_by_max_slot_wal_keep_size_stops_with_the_recovery(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str
) -> None:
    t = make_table(db, cleanup, unique_name, "id int PRIMARY KEY, pad text")
    slot = f"cdc_logs_{unique_name}"
    db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    # Let the slot fall behind a tiny max_slot_wal_keep_size: the next checkpoint invalidates it.
    db.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
    db.execute("SELECT pg_reload_conf()")
    try:
        for _ in range(2):
            db.execute(f"INSERT INTO {t} SELECT g, repeat('x', 1000) FROM generate_series(1, 20000) g")
            db.execute(f"DELETE FROM {t}")
            db.execute("SELECT pg_switch_wal()")
        db.execute("CHECKPOINT")
        status = db.execute(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    finally:
        db.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
        db.execute("SELECT pg_reload_conf()")
    assert status == ("lost",)
    reader = reader_for(pg_dsn, [t], slot=slot)
    try:
        with pytest.raises(CdcError) as err:
            reader.open()
            next(reader.stream(Lsn(reader.server_identity(), 1)))
    finally:
        reader.close()
    assert err.value.kind is ErrorKind.SLOT_LOST
    assert f"cdc-logs slots drop {slot}" in (err.value.hint or "")
    listed = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "slots", "list", "--dsn", pg_dsn, "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert {"slot_name": slot, "wal_status": "lost"}.items() <= next(
        row for row in orjson.loads(listed.stdout) if row["slot_name"] == slot
    ).items()


def test_resume_against_another_cluster_is_refused(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str, tmp_path: Path
) -> None:
    t = make_table(db, cleanup, unique_name, "id int PRIMARY KEY")
    slot = f"cdc_logs_{unique_name}"
    store = SqliteOffsetStore(tmp_path / "offsets.db")
    reader = reader_for(pg_dsn, [t], slot=slot)
    sink = Collect()
    Pipeline("p", {"pg": reader}, [sink], store, stop_when_idle=True).run()
    stored = store.load("p", "pg")
    assert stored is not None
    position = stored.decoded()
    assert isinstance(position, Lsn)
    # the offset now claims another cluster, as after pointing the DSN at a restored copy
    store.save("p", "pg", Lsn("6999999999999999999", position.lsn))
    with pytest.raises(CdcError) as err:
        Pipeline(
            "p", {"pg": reader_for(pg_dsn, [t], slot=slot)}, [Collect()], store, stop_when_idle=True
        ).run()
    assert err.value.kind is ErrorKind.SERVER_MISMATCH
    reader = reader_for(pg_dsn, [t], slot=slot)
    try:
        reader.open()
        with pytest.raises(CdcError) as err2:
            next(reader.stream(Lsn("6999999999999999999", position.lsn)))
    finally:
        reader.close()
    assert err2.value.kind is ErrorKind.SERVER_MISMATCH


class Collect(Sink):
    name = "collect"

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []
        self.lock = threading.Lock()

    def open(self) -> None:
        pass

    def write(self, batch: Any) -> None:
        with self.lock:
            self.events.extend(batch)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("decode_process", ["auto", "on"])  # inline, and the decode process
def test_reconnect_after_the_walsender_is_terminated_loses_nothing(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str, decode_process: str, tmp_path: Path
) -> None:
    t = make_table(db, cleanup, unique_name, "id int PRIMARY KEY")
    slot = f"cdc_logs_{unique_name}"
    sink = Collect()
    pipeline = Pipeline(
        "p",
        {"pg": reader_for(pg_dsn, [t], slot=slot, heartbeat_interval_s=1, decode_process=decode_process)},
        [sink],
        SqliteOffsetStore(tmp_path / "offsets.db"),
        batch=BatchPolicy(max_events=50, max_wait_s=0.05),
        retry=RetryPolicy(max_attempts=20, initial_backoff_s=0.2, max_backoff_s=1),
    )
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()

    def walsender() -> int | None:
        row = db.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        return row[0] if row else None

    try:
        deadline = time.monotonic() + 30
        while walsender() is None:
            assert time.monotonic() < deadline and runner.is_alive()
            time.sleep(0.05)
        killed: list[int] = []
        for n in range(1, 301):
            db.execute(f"INSERT INTO {t} VALUES ({n})")
            if n in (100, 200):
                deadline = time.monotonic() + 30
                while (pid := walsender()) is None or pid in killed:  # wait for the reconnected one
                    assert time.monotonic() < deadline, "the reader did not reconnect"
                    time.sleep(0.05)
                assert db.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
                killed.append(pid)
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
    assert len(killed) == 2 and walsender() not in killed


@pytest.fixture(autouse=True)
def _no_env_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDC_DSN", raising=False)
    # Through monkeypatch: a bare os.environ change outlived this module and silenced the info lines
    # that later tests' subprocesses are awaited by ("source started").
    if "CDC_LOG_LEVEL" not in os.environ:
        monkeypatch.setenv("CDC_LOG_LEVEL", "warning")


# -- CLI: slots, publications, doctor ----------------------------------------------------------------------


def cli(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CDC_DSN": dsn}
    return subprocess.run(
        [sys.executable, "-m", "cdc_logs", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_slots_publications_and_doctor_commands(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str
) -> None:
    t = make_table(db, cleanup, unique_name, "id int PRIMARY KEY, v text")
    bad = make_table(db, cleanup, f"{unique_name}_nokey", "v text")
    slot = f"cdc_logs_{unique_name}"
    # The publication first: a change another test writes between the two would otherwise reach the
    # slot before its publication exists, and pgoutput cannot decode it (the fix the error names).
    assert cli("publications", "create", slot, "--table", t, dsn=pg_dsn).returncode == 0
    assert cli("slots", "create", slot, dsn=pg_dsn).returncode == 0
    listed = orjson.loads(cli("slots", "list", "--json", dsn=pg_dsn).stdout)
    mine = next(s for s in listed if s["slot_name"] == slot)
    assert mine["plugin"] == "pgoutput" and mine["active"] is False and mine["wal_status"] == "reserved"
    assert {"restart_lsn", "confirmed_flush_lsn", "lag_bytes", "safe_wal_size", "active_pid"} <= set(mine)
    assert slot in cli("slots", "list", dsn=pg_dsn).stdout  # the rich table
    assert orjson.loads(cli("slots", "inspect", slot, "--json", dsn=pg_dsn).stdout)["slot_name"] == slot
    pubs = orjson.loads(cli("publications", "list", "--json", dsn=pg_dsn).stdout)
    assert next(p for p in pubs if p["name"] == slot)["tables"] == [t]

    # an existing slot with no stored position: a fresh snapshot, then the stream from the slot
    db.execute(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')")
    reader = reader_for(pg_dsn, [t], slot=slot, snapshot=True)
    try:
        reader.open()
        stream = reader.stream(None)
        snap = events(pull(stream, count(2)))
        assert [(e.op, e.after["id"]) for e in snap] == [(Op.READ, 1), (Op.READ, 2)]  # type: ignore[index]
        assert isinstance(snap[-1].position, Lsn) and snap[-1].source.snapshot == "last"
        # the slot is in use now: drop refuses without --force
        deadline = time.monotonic() + 10
        early: list[Any] = []
        while not orjson.loads(cli("slots", "inspect", slot, "--json", dsn=pg_dsn).stdout)["active"]:
            early.append(next(stream))
            assert time.monotonic() < deadline
        refused = cli("slots", "drop", slot, dsn=pg_dsn)
        assert refused.returncode == 2 and "--force" in refused.stderr  # a usage error: the fix is a flag
        xact(db, f"INSERT INTO {t} VALUES (3, 'c')")
        got = [i for i in early if i is not None] + pull(stream, sentinel_id(3))
        streamed = [e.after["id"] for e in events(got)]  # type: ignore[index]
        # the slot predates the rows: their inserts stream again after the fresh snapshot (at-least-once)
        assert streamed == [1, 2, 3]
    finally:
        reader.close()
    assert cli("slots", "drop", slot, dsn=pg_dsn).returncode == 0
    assert cli("publications", "drop", slot, dsn=pg_dsn).returncode == 0

    ok = cli("doctor", "--source", "pg", "--table", t, dsn=pg_dsn)
    # The shared server may hold another test's lost slot: doctor rightly reports it, and that is the
    # only failure it may report here.
    failures = [line for line in ok.stdout.splitlines() if line.startswith("FAIL")]
    others_lost = [f.startswith("FAIL invalidated slots:") and slot not in f for f in failures]
    assert all(others_lost), ok.stdout
    assert ok.returncode == (1 if failures else 0), ok.stdout + ok.stderr
    assert "ok   wal_level" in ok.stdout and "REPLICATION privilege" in ok.stdout
    failing = cli("doctor", "--source", "pg", "--table", bad, dsn=pg_dsn)
    assert failing.returncode == 1
    assert "REPLICA IDENTITY FULL" in failing.stdout


def test_tail_explains_how_to_quote_a_table_name_sql_cannot_read(
    pg_dsn: str, db: Any, cleanup: list[str], unique_name: str
) -> None:
    odd = f"{unique_name} we ird.t"  # a space and a dot in the table's name
    db.execute(f'CREATE TABLE public."{odd}" (id int PRIMARY KEY)')
    cleanup.append(f'public."{odd}"')
    db.execute(f'INSERT INTO public."{odd}" VALUES (1)')
    base = ("tail", "--source", "pg", "--format", "json", "--snapshot", "--limit", "1")
    unquoted = cli(*base, "--table", f"public.{odd}", dsn=pg_dsn)
    assert unquoted.returncode == 2, unquoted.stderr  # a usage error, not an internal one
    assert "internal" not in unquoted.stderr and "--debug" not in unquoted.stderr
    assert "is not a valid SQL name" in unquoted.stderr and "double-quote" in unquoted.stderr
    quoted = cli(*base, "--table", f'public."{odd}"', dsn=pg_dsn)
    assert quoted.returncode == 0, quoted.stderr
    assert orjson.loads(quoted.stdout)["after"] == {"id": 1}
