"""The Postgres offset store against the real Postgres, and a pipeline keeping its offsets there."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.postgres import PostgresOffsetStore
from cdc_logs.position import BinlogPosition, Lsn, Watermark


@pytest.fixture
def table(pg_dsn: str) -> Iterator[str]:
    name = f"offsets_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def test_save_load_list_delete_and_refuse_another_server(pg_dsn: str, table: str) -> None:
    store = PostgresOffsetStore(pg_dsn, table)
    try:
        assert store.load("p", "src") is None
        store.save("p", "src", Lsn("sys-1", 100))
        store.save("p", "src", Lsn("sys-1", 250))  # an update, not a second row
        store.save("p", "other", BinlogPosition("srv", "mysql-bin.000003", 4, "0-1-7", "mariadb"))
        store.save("q", "src", Watermark("w", (1, "a")))
        assert [(o.pipeline, o.source) for o in store.list()] == [("p", "other"), ("p", "src"), ("q", "src")]
        assert store.resume_position("p", "src", "sys-1") == Lsn("sys-1", 250)
        with pytest.raises(CdcError) as err:
            store.resume_position("p", "src", "sys-2")
        assert err.value.kind is ErrorKind.SERVER_MISMATCH
        assert store.delete("p", "other") == 1
        assert store.delete("q") == 1
    finally:
        store.close()
    # Durable: a new connection (a restarted process) sees the committed position.
    again = PostgresOffsetStore(pg_dsn, table)
    try:
        stored = again.load("p", "src")
        assert stored is not None and stored.decoded() == Lsn("sys-1", 250)
    finally:
        again.close()


def test_concurrent_saves_keep_one_valid_row(pg_dsn: str, table: str) -> None:
    store = PostgresOffsetStore(pg_dsn, table)
    try:
        threads = [
            threading.Thread(
                target=lambda n=n: [store.save("p", "s", Lsn("x", n * 100 + i)) for i in range(50)]
            )
            for n in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows = store.list("p")
        assert len(rows) == 1 and isinstance(rows[0].decoded(), Lsn)
    finally:
        store.close()


def test_unreachable_database_is_a_connection_error_without_the_password(table: str) -> None:
    with pytest.raises(CdcError) as err:
        PostgresOffsetStore("postgresql://cdc:hunter2@127.0.0.1:1/none", table)
    assert err.value.kind is ErrorKind.CONNECTION
    assert "hunter2" not in str(err.value)


def test_pipeline_keeps_its_offsets_in_postgres(pg_dsn: str, table: str, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    config = tmp_path / "p.yaml"
    config.write_text(f"""
name: pg-offsets
source: {{type: sqlite, path: {db}, tables: [t]}}
destination: {{type: file, path: {tmp_path / "out.jsonl"}}}
offsets: {{type: postgres, dsn: "{pg_dsn}", table: {table}}}
sync: {{mode: one_time}}
""")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cdc_logs", *args], capture_output=True, text=True, timeout=60
        )

    assert cli("run", "-c", str(config)).returncode == 0
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO t (v) VALUES (?)", [("a",), ("b",)])
    result = cli("run", "-c", str(config))
    assert result.returncode == 0, result.stderr
    shown = orjson.loads(cli("offsets", "show", "-c", str(config), "--json").stdout)
    assert shown[0]["position"]["values"] == [2]
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(f"SELECT pipeline, source FROM {table}").fetchone()
    assert row == ("pg-offsets", "sqlite")
