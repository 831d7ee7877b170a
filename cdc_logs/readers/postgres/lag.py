"""Slot lag of a Postgres source, measured from pg_replication_slots on a connection of its own.

`pg_current_wal_lsn() - confirmed_flush_lsn` is the WAL the slot has not confirmed (what `max_lag`
in bytes is compared with); `pg_current_wal_lsn() - restart_lsn` is the WAL the server keeps for the
slot (what fills the disk). The monitor (observability/lag.py) turns the confirmed LSN into seconds.
The replication connection is never used: it is busy streaming, and libpq is not thread-safe per
connection.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg

from cdc_logs.position import Position
from cdc_logs.readers.base import LagProbe, LogLag
from cdc_logs.readers.postgres.connection import connect, map_error, parse_lsn_text

_QUERY = """
SELECT pg_current_wal_lsn()::text, s.confirmed_flush_lsn::text,
       (pg_current_wal_lsn() - s.confirmed_flush_lsn)::bigint,
       (pg_current_wal_lsn() - s.restart_lsn)::bigint,
       s.wal_status, s.active, s.slot_name IS NOT NULL
FROM (SELECT 1) AS one
LEFT JOIN pg_replication_slots AS s ON s.slot_name = %s
"""


class SlotLagProbe(LagProbe):
    def __init__(self, dsn: str, slot: str, pipeline: str) -> None:
        self.dsn = dsn
        self.slot = slot
        self.pipeline = pipeline
        self._conn: psycopg.Connection[Any] | None = None

    def measure(self, committed: Position | None) -> LogLag:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            conn = self._conn = connect(self.dsn, application_name=f"cdc-logs {self.pipeline} lag")
        try:
            row = conn.execute(_QUERY, (self.slot,)).fetchone()
        except psycopg.Error as exc:
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = None
            raise map_error(exc, f"measuring the lag of slot {self.slot!r}") from exc
        assert row is not None
        head, confirmed, lag, retained, wal_status, active, exists = row
        return LogLag(
            head=parse_lsn_text(head),
            consumed=parse_lsn_text(confirmed) if confirmed else None,
            lag_bytes=None if lag is None else max(0, int(lag)),
            retained_bytes=None if retained is None else max(0, int(retained)),
            slot=self.slot,
            extra={"wal_status": wal_status, "slot_active": active, "slot_exists": bool(exists)},
        )

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
