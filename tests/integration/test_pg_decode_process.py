"""The Postgres reader's decode process (readers/postgres/decode_process.py) against the stack's real
Postgres: the same items as inline decoding, a switch in mid-stream, errors, and its end.

Two slots are created at the same point before a mixed workload; one is read inline, the other
through the decode process, and the two item lists must be equal field by field (the envelope, the
positions, the boundaries, the table schema), so anything the process loses or alters fails here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

from cdc_logs.envelope import ChangeEvent, Heartbeat  # noqa: E402
from cdc_logs.errors import CdcError, ErrorKind  # noqa: E402
from cdc_logs.offsets.sqlite import SqliteOffsetStore  # noqa: E402
from cdc_logs.pipeline import BatchPolicy, Pipeline, RetryPolicy  # noqa: E402
from cdc_logs.position import Lsn  # noqa: E402
from cdc_logs.readers.postgres import reader as reader_module  # noqa: E402
from cdc_logs.readers.postgres.decode_process import DecodeProcess  # noqa: E402
from cdc_logs.readers.postgres.reader import PostgresReader  # noqa: E402
from tests.integration.test_postgres_reader import (  # noqa: E402
    Collect,
    cleanup,  # noqa: F401 - fixture, used by name
    db,  # noqa: F401 - fixture, used by name
    make_table,
    sentinel,
    xact,
)

pytestmark = pytest.mark.integration


def test_auto_keeps_decoding_inline_on_a_machine_with_too_few_cpus(
    pg_dsn: str,
    db: Any,  # noqa: F811
    two_slots: tuple[str, str, str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table, other, slot_a, _ = two_slots
    start = _slot_at_same_point(db, slot_a)
    _workload(db, table.removeprefix("public."), other.removeprefix("public."))
    monkeypatch.setattr(reader_module, "DECODE_PROCESS_AFTER", 50)
    monkeypatch.setattr(reader_module, "DECODE_PROCESS_MIN_CPUS", 10**6)
    items, served = _drain(pg_dsn, slot_a, start, table, "auto", wait=False)
    assert not served and len(items) > 4000


def _slot_at_same_point(db: Any, *slots: str) -> int:  # noqa: F811
    for slot in slots:
        db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    return int(db.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0])


def _workload(db: Any, table: str, other: str) -> None:  # noqa: F811
    """Every kind of message the decoder handles, on real data."""
    big = "z" * 9000  # TOASTed: later updates that leave it alone send it as unchanged
    xact(
        db,
        f"INSERT INTO {table} SELECT g, 'v' || g, {g_amount()}, now(), ARRAY['a', 'b'], 'ok', '{big}' "
        "FROM generate_series(1, 300) g",
    )
    xact(db, f"UPDATE {table} SET v = 'changed' WHERE id <= 20")  # big is unchanged TOAST
    xact(db, f"UPDATE {table} SET id = id + 100000 WHERE id = 21")  # a key change: delete + create
    xact(db, f"DELETE FROM {table} WHERE id BETWEEN 22 AND 30")
    xact(db, f"INSERT INTO {other} VALUES (1)")  # not captured: filtered out, positions unchanged
    xact(db, "SELECT pg_logical_emit_message(true, 'app', 'in a transaction')")
    db.execute("SELECT pg_logical_emit_message(false, 'app', 'on its own')")
    xact(db, f"ALTER TABLE {table} ADD COLUMN extra int DEFAULT 7")  # a new Relation message
    xact(db, f"INSERT INTO {table} (id, v, extra) VALUES (5000, 'after ddl', 8)")
    # Streamed by the server (logical_decoding_work_mem 64kB), with a rolled-back savepoint inside.
    xact(
        db,
        f"INSERT INTO {table} (id, v) SELECT g, repeat('s', 40) FROM generate_series(10001, 14000) g",
        "SAVEPOINT s1",
        f"INSERT INTO {table} (id, v) SELECT g, 'gone' FROM generate_series(20001, 21000) g",
        "ROLLBACK TO SAVEPOINT s1",
        f"UPDATE {table} SET amount = amount * 2 WHERE id BETWEEN 100 AND 200",
    )
    xact(db, f"TRUNCATE {other}, {table}")
    xact(db, f"INSERT INTO {table} (id, v) VALUES (-1, 'sentinel')")


def g_amount() -> str:
    return "(g * 1.25)::numeric(12,2)"


def _drain(
    dsn: str, slot: str, start: int, table: str, decode: str, wait: bool = True
) -> tuple[list[Any], bool]:
    """Every item from `start` up to the sentinel row; and whether the decode process served."""
    reader = PostgresReader(
        dsn,
        [table],
        pipeline_name="decode",
        slot=slot,
        heartbeat_interval_s=0,
        logical_decoding_work_mem="64kB",
        decode_process=decode,
    )
    items: list[Any] = []
    served = False
    reader.open()
    try:
        stream = reader.stream(Lsn(reader.server_identity(), start))
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, f"timed out after {len(items)} items"
            item = next(stream)
            served = served or isinstance(reader._decoding, DecodeProcess)
            if item is None or (isinstance(item, Heartbeat) and not items):
                continue  # the start heartbeat
            items.append(item)
            if len(items) == 500 and decode == "auto" and wait:
                # The process was spawned after 50 changes; the reader decodes inline until it is up,
                # which a drain this short could outrun: wait for it (the stream is paused meanwhile).
                process = reader._spawned
                assert process is not None, "no decode process was started after a backlog"
                while not process.ready:
                    assert time.monotonic() < deadline, "the decode process never came up"
                    time.sleep(0.05)
            if sentinel(item):
                return items, served
    finally:
        reader.close()


def _comparable(item: Any) -> Any:
    if isinstance(item, ChangeEvent):
        data = item.to_dict()
        data["ts_ms"] = None  # the time of reading
        if data["transaction"] is None:
            data["source"]["ts_ms"] = None  # a non-transactional message: also the time of reading
        schema = item.schema
        columns = None if schema is None else (schema.table, schema.version, schema.fingerprint)
        return ("event", data, item.key, item.position, item.boundary, item.key_change, columns)
    return (type(item).__name__, item.position, item.boundary)


@pytest.fixture
def two_slots(db: Any, cleanup: list[str], unique_name: str) -> Iterator[tuple[str, str, str, str]]:  # noqa: F811
    table = make_table(
        db,
        cleanup,
        unique_name,
        "id int PRIMARY KEY, v text, amount numeric(12,2), at timestamptz, tags text[], mood text, big text",
    )
    db.execute(f"ALTER TABLE {table} ALTER COLUMN big SET STORAGE EXTERNAL")  # TOASTed, not compressed
    other = make_table(db, cleanup, f"{unique_name}_o", "id int PRIMARY KEY")
    publication = f"cdc_logs_{unique_name}_a"
    db.execute(f"CREATE PUBLICATION {publication} FOR TABLE {table}, {other}")
    db.execute(f"CREATE PUBLICATION cdc_logs_{unique_name}_b FOR TABLE {table}, {other}")
    yield table, other, f"cdc_logs_{unique_name}_a", f"cdc_logs_{unique_name}_b"


@pytest.mark.parametrize("decode", ["on", "auto"])
def test_the_decode_process_gives_the_same_items_as_inline_decoding(
    pg_dsn: str,
    db: Any,  # noqa: F811
    two_slots: tuple[str, str, str, str],
    decode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table, other, slot_a, slot_b = two_slots
    start = _slot_at_same_point(db, slot_a, slot_b)
    _workload(db, table.removeprefix("public."), other.removeprefix("public."))
    inline, inline_served = _drain(pg_dsn, slot_a, start, table, "off")
    # auto: the switch comes at the first transaction boundary after 50 changes, in mid-stream (given
    # the CPUs: this machine may have fewer than auto asks for).
    monkeypatch.setattr(reader_module, "DECODE_PROCESS_AFTER", 50)
    monkeypatch.setattr(reader_module, "DECODE_PROCESS_MIN_CPUS", 1)
    remote, remote_served = _drain(pg_dsn, slot_b, start, table, decode)
    assert not inline_served and remote_served
    assert len(remote) == len(inline) > 4000
    for n, (a, b) in enumerate(zip(inline, remote, strict=True)):
        assert _comparable(a) == _comparable(b), f"item {n} differs"
    kinds = {item.to_dict()["op"] for item in inline if isinstance(item, ChangeEvent)}
    assert kinds == {"c", "u", "d", "t", "m"}
    assert any(item.unchanged for item in inline if isinstance(item, ChangeEvent))  # TOAST was exercised
    # Sinks compare schemas by identity: the switch must not add objects (inline makes one per Relation
    # message; the process's equal ones are mapped onto the reader's own).
    versions = {id(e.schema) for e in remote if isinstance(e, ChangeEvent) and e.schema is not None}
    assert len(versions) <= len({id(e.schema) for e in inline if isinstance(e, ChangeEvent) and e.schema})


def _settings(dsn: str, **extra: Any) -> dict[str, Any]:
    settings = {
        "dsn": dsn,
        "pipeline": "decode",
        "db": "cdc_test",
        "binary": False,
        "server": "s",
        "tables": None,
        "messages": True,
        "max_tx_memory_bytes": 1 << 20,
    }
    settings.update(extra)
    return settings


def _take_all(process: DecodeProcess, timeout: float = 15) -> list[Any]:
    deadline = time.monotonic() + timeout
    items: list[Any] = []
    while process.in_flight:
        assert time.monotonic() < deadline, "the decode process did not answer"
        items += process.take(0.2)
    return items


def test_a_decode_error_in_the_process_is_raised_as_inline_at_its_place(pg_dsn: str) -> None:
    from cdc_logs.readers.postgres.changes import ChangeStream
    from cdc_logs.readers.postgres.convert import EventBuilder
    from cdc_logs.readers.postgres.txbuffer import StreamBuffers

    commit_without_begin = b"C" + bytes(1) + (1).to_bytes(8, "big") * 2 + bytes(8)
    with pytest.raises(CdcError) as inline:
        stream = ChangeStream(EventBuilder(pipeline="decode", db="cdc_test"), StreamBuffers(1 << 20), "s")
        list(stream.feed(0, b"Y" + (9).to_bytes(4, "big") + b"public\x00t\x00"))  # a Type: fine
        list(stream.feed(1, commit_without_begin))
    process = DecodeProcess(_settings(pg_dsn))
    try:
        process.begin([[], []], 0, ())
        process.submit(0, b"Y" + (9).to_bytes(4, "big") + b"public\x00t\x00")
        process.submit(1, commit_without_begin)
        process.flush()
        with pytest.raises(CdcError) as remote:
            _take_all(process)
    finally:
        process.close()
    assert remote.value.kind is inline.value.kind is ErrorKind.DECODE
    assert remote.value.message == inline.value.message
    assert process._child._proc.returncode == 0  # it reported, then ended by itself


def test_a_killed_decode_process_makes_the_pipeline_resume_without_losing_a_row(
    pg_dsn: str,
    db: Any,  # noqa: F811
    cleanup: list[str],  # noqa: F811
    unique_name: str,
    tmp_path: Path,
) -> None:
    t = make_table(db, cleanup, unique_name, "id int PRIMARY KEY")
    slot = f"cdc_logs_{unique_name}"
    reader = PostgresReader(
        pg_dsn, [t], pipeline_name="p", slot=slot, heartbeat_interval_s=1, decode_process="on"
    )
    sink = Collect()
    pipeline = Pipeline(
        "p",
        {"pg": reader},
        [sink],
        SqliteOffsetStore(tmp_path / "offsets.db"),
        batch=BatchPolicy(max_events=50, max_wait_s=0.05),
        retry=RetryPolicy(max_attempts=20, initial_backoff_s=0.2, max_backoff_s=1),
    )
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()

    def child() -> int | None:
        current = reader._decoding
        return current.pid if isinstance(current, DecodeProcess) else None

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
            db.execute(f"INSERT INTO {t} VALUES ({n})")
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


_PARENT = """
import sys, time
from cdc_logs.readers.postgres.decode_process import DecodeProcess
from tests.integration.test_pg_decode_process import _settings
process = DecodeProcess(_settings(sys.argv[1]))
print("child", process.pid, flush=True)
time.sleep(60)
"""


def test_the_decode_process_ends_when_its_reader_is_killed(pg_dsn: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, pg_dsn],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert parent.stdout is not None
        line = b""
        while not line.startswith(b"child "):  # (an unconfigured logger prints to stdout too)
            line = parent.stdout.readline()
            assert line, "the reader script ended early"
        child = int(line.split()[1])
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, "the decode process outlived its reader"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False
