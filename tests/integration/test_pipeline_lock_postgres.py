"""The pipeline lock of the postgres offset store: a session advisory lock in the offsets database.
A second `run` is refused naming the first's pid; after `kill -9` the server drops the dead session's
lock and a new run starts."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.lock import PostgresLock, advisory_key


@pytest.fixture
def table(pg_dsn: str) -> Iterator[str]:
    name = f"offsets_lock_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def test_advisory_lock_refuses_a_second_holder(pg_dsn: str, table: str) -> None:
    first = PostgresLock(pg_dsn, table, "shop").acquire()
    try:
        with pytest.raises(CdcError) as info:
            PostgresLock(pg_dsn, table, "shop").acquire()
        assert info.value.kind is ErrorKind.LOCKED and info.value.exit_code == 3
        assert f"pipeline 'shop' is already running: pid {os.getpid()} on " in info.value.message
        PostgresLock(pg_dsn, table, "other").acquire().release()  # another name: its own lock
        PostgresLock(pg_dsn, f"{table}_b", "shop").acquire().release()  # another store: its own lock
    finally:
        first.release()
    PostgresLock(pg_dsn, table, "shop").acquire().release()  # released


def _held_by_backend(pg_dsn: str, key: int) -> bool:
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
            (unsigned >> 32, unsigned & 0xFFFFFFFF),
        ).fetchone()
    return bool(row and row[0])


def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_held(pg_dsn: str, key: int, proc: subprocess.Popen[str], held: bool = True) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if held:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        if _held_by_backend(pg_dsn, key) is held:
            return
        time.sleep(0.1)
    raise AssertionError(f"the advisory lock was never {'taken' if held else 'released'}")


def test_two_runs_with_postgres_offsets_and_a_takeover_after_kill_9(
    pg_dsn: str, table: str, tmp_path: Path
) -> None:
    name = f"lock-{uuid.uuid4().hex[:6]}"
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    config = tmp_path / "p.yaml"
    config.write_text(
        f"name: {name}\n"
        f"source: {{type: sqlite, path: {db}, tables: [users]}}\n"
        f"destination: {{type: file, path: {tmp_path / 'out.jsonl'}}}\n"
        f"offsets: {{type: postgres, dsn: '{pg_dsn}', table: {table}}}\n"
    )
    key = advisory_key(table, name)
    first = _start(config)
    try:
        _wait_held(pg_dsn, key, first)
        second = subprocess.run(
            [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 3, second.stderr
        assert second.stderr.startswith(
            f"error: locked: pipeline {name!r} is already running: pid {first.pid} on "
        ), second.stderr
        assert "holds its lock in the offsets database" in second.stderr
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        _wait_held(pg_dsn, key, first, held=False)  # the server ended the dead session
        third = _start(config)
        try:
            _wait_held(pg_dsn, key, third)
            third.send_signal(signal.SIGTERM)
            _, err = third.communicate(timeout=30)
            assert third.returncode == 0, err
        finally:
            if third.poll() is None:
                third.kill()
                third.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
