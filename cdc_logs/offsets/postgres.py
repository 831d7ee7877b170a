"""Postgres offset store: offsets kept in a table of a Postgres database (for stateless deployments)."""

from __future__ import annotations

import threading
import time
from typing import Any

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact
from cdc_logs.offsets.base import OffsetStore, StoredOffset
from cdc_logs.position import Position


class PostgresOffsetStore(OffsetStore):
    def __init__(self, dsn: str, table: str = "cdc_offsets") -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on extras
            raise CdcError(
                ErrorKind.CONFIG, "the postgres offset store needs psycopg", "pip install 'cdc-logs[pg]'"
            ) from exc
        if not table.replace("_", "").replace(".", "").isalnum():
            raise CdcError(
                ErrorKind.CONFIG, f"bad offsets table name {table!r}", "use letters, digits, _ and ."
            )
        self.table = table
        from cdc_logs.readers.postgres.connection import parse_conninfo

        try:
            parse_conninfo(dsn)  # libpq's parse errors quote the DSN: this says what is wrong instead
        except CdcError as exc:
            raise CdcError(exc.kind, f"offsets.dsn: {exc.message}", exc.hint) from None
        try:
            self._conn: Any = psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise CdcError(
                ErrorKind.CONNECTION,
                redact(f"cannot connect to the offsets database: {exc}".strip()),
                "check offsets.dsn and that the server is up",
            ) from exc
        self._lock = threading.Lock()
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (pipeline text NOT NULL, source text NOT NULL, "
            "position text NOT NULL, server text NOT NULL, updated_ms bigint NOT NULL, "
            "PRIMARY KEY (pipeline, source))"
        )

    def load(self, pipeline: str, source: str) -> StoredOffset | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT pipeline, source, position, server, updated_ms FROM {self.table} "
                "WHERE pipeline = %s AND source = %s",
                (pipeline, source),
            ).fetchone()
        return StoredOffset(*row) if row else None

    def save(self, pipeline: str, source: str, position: Position) -> None:
        with self._lock:  # autocommit: the statement is durable when execute returns
            self._conn.execute(
                f"INSERT INTO {self.table} (pipeline, source, position, server, updated_ms) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (pipeline, source) DO UPDATE SET "
                "position = excluded.position, server = excluded.server, updated_ms = excluded.updated_ms",
                (pipeline, source, position.encode(), position.server, int(time.time() * 1000)),
            )

    def delete(self, pipeline: str, source: str | None = None) -> int:
        with self._lock:
            if source is None:
                cur = self._conn.execute(f"DELETE FROM {self.table} WHERE pipeline = %s", (pipeline,))
            else:
                cur = self._conn.execute(
                    f"DELETE FROM {self.table} WHERE pipeline = %s AND source = %s", (pipeline, source)
                )
            return int(cur.rowcount)

    def list(self, pipeline: str | None = None) -> list[StoredOffset]:
        sql = f"SELECT pipeline, source, position, server, updated_ms FROM {self.table}"
        with self._lock:
            if pipeline is None:
                rows = self._conn.execute(sql + " ORDER BY 1, 2").fetchall()
            else:
                rows = self._conn.execute(sql + " WHERE pipeline = %s ORDER BY 1, 2", (pipeline,)).fetchall()
        return [StoredOffset(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
