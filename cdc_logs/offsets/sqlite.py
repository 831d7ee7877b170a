"""SQLite offset store (the default): WAL mode, synchronous=FULL, one row per (pipeline, source)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.base import OffsetStore, StoredOffset, damaged_store
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
        if not self.path.exists():
            self._create()
        elif self.path.is_file() and self.path.stat().st_size == 0:
            # SQLite would take an empty file for a new database: a silent start from the beginning.
            # A store is created whole (_create), so an empty one was truncated.
            raise damaged_store(self.path, "it is empty")
        # One connection shared under a lock: saves come from the pipeline's commit step only.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # a committed offset survives power loss
            self._conn.execute(_SCHEMA)
            self._conn.execute("SELECT count(*) FROM cdc_offsets").fetchone()  # reads the table's pages
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise self._damaged(exc) from exc
        self._lock = threading.Lock()

    def _create(self) -> None:
        """Create the store under a temporary name and link it into place: the file appears whole,
        with its table, so an empty or partial store at `path` is never a run killed while creating
        it, and whoever opens it meanwhile sees no file rather than an empty database."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.new")
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute(_SCHEMA)
        finally:
            conn.close()
        try:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another process created it first: keep theirs
                os.link(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            tmp.unlink(missing_ok=True)

    def _damaged(self, exc: sqlite3.DatabaseError) -> CdcError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return CdcError(ErrorKind.CONNECTION, f"the offset store {self.path} is busy: {exc}", None)
        return damaged_store(self.path, str(exc))

    @contextlib.contextmanager
    def _io(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except sqlite3.DatabaseError as exc:  # e.g. "database disk image is malformed"
                raise self._damaged(exc) from exc

    def load(self, pipeline: str, source: str) -> StoredOffset | None:
        with self._io():
            row = self._conn.execute(
                "SELECT pipeline, source, position, server, updated_ms FROM cdc_offsets "
                "WHERE pipeline = ? AND source = ?",
                (pipeline, source),
            ).fetchone()
        return StoredOffset(*row) if row else None

    def save(self, pipeline: str, source: str, position: Position) -> None:
        with self._io():
            self._conn.execute(
                "INSERT INTO cdc_offsets (pipeline, source, position, server, updated_ms) VALUES (?,?,?,?,?) "
                "ON CONFLICT (pipeline, source) DO UPDATE SET position = excluded.position, "
                "server = excluded.server, updated_ms = excluded.updated_ms",
                (pipeline, source, position.encode(), position.server, int(time.time() * 1000)),
            )

    def delete(self, pipeline: str, source: str | None = None) -> int:
        with self._io():
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
        with self._io():
            return [
                StoredOffset(*row) for row in self._conn.execute(sql + " ORDER BY pipeline, source", args)
            ]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
