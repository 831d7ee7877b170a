"""SQLite offset store (the default): WAL mode, synchronous=FULL, one row per (pipeline, source)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from cdc_logs.offsets.base import OffsetStore, StoredOffset
from cdc_logs.position import Position

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cdc_offsets (
    pipeline TEXT NOT NULL,
    source TEXT NOT NULL,
    position TEXT NOT NULL,
    server TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (pipeline, source)
)
"""


class SqliteOffsetStore(OffsetStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared under a lock: saves come from the pipeline's commit step only.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # a committed offset survives power loss
        self._conn.execute(_SCHEMA)
        self._lock = threading.Lock()

    def load(self, pipeline: str, source: str) -> StoredOffset | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT pipeline, source, position, server, updated_ms FROM cdc_offsets "
                "WHERE pipeline = ? AND source = ?",
                (pipeline, source),
            ).fetchone()
        return StoredOffset(*row) if row else None

    def save(self, pipeline: str, source: str, position: Position) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO cdc_offsets (pipeline, source, position, server, updated_ms) VALUES (?,?,?,?,?) "
                "ON CONFLICT (pipeline, source) DO UPDATE SET position = excluded.position, "
                "server = excluded.server, updated_ms = excluded.updated_ms",
                (pipeline, source, position.encode(), position.server, int(time.time() * 1000)),
            )

    def delete(self, pipeline: str, source: str | None = None) -> int:
        with self._lock:
            if source is None:
                cur = self._conn.execute("DELETE FROM cdc_offsets WHERE pipeline = ?", (pipeline,))
            else:
                cur = self._conn.execute(
                    "DELETE FROM cdc_offsets WHERE pipeline = ? AND source = ?", (pipeline, source)
                )
            return cur.rowcount

    def list(self, pipeline: str | None = None) -> list[StoredOffset]:
        sql = "SELECT pipeline, source, position, server, updated_ms FROM cdc_offsets"
        args: tuple[str, ...] = ()
        if pipeline is not None:
            sql += " WHERE pipeline = ?"
            args = (pipeline,)
        with self._lock:
            return [
                StoredOffset(*row) for row in self._conn.execute(sql + " ORDER BY pipeline, source", args)
            ]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
