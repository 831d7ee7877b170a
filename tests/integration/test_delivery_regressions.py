"""The cases that lost data before the event contract, as a user reported them (issue: no change lost
or altered on any path). The reader x sink matrix (tests/matrix) covers them in general; these keep
the exact reports."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pymysql


def _mariadb(dsn: str) -> pymysql.connections.Connection:
    parts = urlsplit(dsn)
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/"),
        autocommit=True,
    )


def _count(db: Path, table: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_mariadb_into_sqlite_apply_keeps_every_row_of_multi_row_transactions(
    mariadb_dsn: str, tmp_path: Path
) -> None:
    """150 rows in 50 transactions of 3 rows: the target used to keep 52 (rows that were not the last
    of their transaction carried the previous transaction's position and were skipped as replays)."""
    table = "reg_" + uuid.uuid4().hex[:8]
    db = _mariadb(mariadb_dsn)
    with db.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(40), at DATETIME(3))")
    target = tmp_path / "target.db"
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
name: reg-{table}
source: {{type: mariadb, dsn: "{mariadb_dsn}", tables: [test.{table}], snapshot: false}}
destination: {{type: sqlite, url: "sqlite:///{target}", auto_create: true}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
"""
    )
    log = tmp_path / "run.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "cdc_logs", "run", "-c", str(config)], stderr=err)
    try:
        deadline = time.monotonic() + 30
        while "binlog streaming" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        with db.cursor() as cur:
            for tx in range(50):
                cur.execute("BEGIN")
                for n in range(3):
                    row = tx * 3 + n
                    cur.execute(
                        f"INSERT INTO {table} VALUES (%s, %s, '2024-01-02 03:04:05.678')", (row, f"r{row}")
                    )
                cur.execute("COMMIT")
        deadline = time.monotonic() + 60
        while _count(target, table) < 150 and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        with db.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
    assert _count(target, table) == 150
    with sqlite3.connect(target) as conn:
        at = conn.execute(f"SELECT at FROM {table} WHERE id = 7").fetchone()[0]
    # DATETIME(3) travels as epoch milliseconds: written back as 2024-01-02, not 1970-01-20.
    assert str(at).startswith("2024-01-02 03:04:05.678")
