"""Postgres offset store: offsets kept in a table of a Postgres database (for stateless deployments)."""

from __future__ import annotations

import threading
import time
from typing import Any

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact
from cdc_logs.offsets.base import OffsetStore, StoredOffset
from cdc_logs.position import Position


def connect_offsets_db(dsn: str, *, application_name: str = "cdc-logs offsets", options: str = "") -> Any:
    """An autocommit connection to the offsets database; a bad DSN is CONFIG, a wrong password AUTH,
    an unreachable server CONNECTION (never with the DSN in the message)."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on extras
        raise CdcError(
            ErrorKind.CONFIG, "the postgres offset store needs psycopg", "pip install 'cdc-logs[pg]'"
        ) from exc
    from cdc_logs.pg_conninfo import check_pg_conninfo, libpq_option, option_message
    from cdc_logs.readers.postgres.connection import parse_conninfo

    try:
        parse_conninfo(dsn)  # libpq's parse errors quote the DSN: this says what is wrong instead
    except CdcError as exc:
        raise CdcError(exc.kind, f"offsets.dsn: {exc.message}", exc.hint) from None
    check_pg_conninfo(dsn, "offsets.dsn")
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    kwargs: dict[str, Any] = {"autocommit": True, "application_name": application_name}
    if "connect_timeout" not in params:
        kwargs["connect_timeout"] = 10
    if options:  # added to the DSN's own options, which a keyword argument would replace
        kwargs["options"] = " ".join(o for o in (str(params.get("options") or ""), options) if o)
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.Error as exc:
        text = redact(str(exc).strip().replace("\n", " "))
        state = getattr(exc, "sqlstate", None) or ""
        option = libpq_option(text)
        if option is not None:
            raise CdcError(
                ErrorKind.CONFIG, f"offsets.dsn: {option_message(option)}", "fix offsets.dsn"
            ) from exc
        if state in ("28P01", "28000") or "password authentication failed" in text:
            raise CdcError(
                ErrorKind.AUTH,
                f"cannot log in to the offsets database: {text}",
                "check the user and password of offsets.dsn (and pg_hba.conf)",
            ) from exc
        raise CdcError(
            ErrorKind.CONNECTION,
            f"cannot connect to the offsets database: {text}",
            "check offsets.dsn and that the server is up",
        ) from exc


class PostgresOffsetStore(OffsetStore):
    def __init__(self, dsn: str, table: str = "cdc_offsets") -> None:
        if not table.replace("_", "").replace(".", "").isalnum():
            raise CdcError(
                ErrorKind.CONFIG, f"bad offsets table name {table!r}", "use letters, digits, _ and ."
            )
        self.table = table
        self._conn: Any = connect_offsets_db(dsn)
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
