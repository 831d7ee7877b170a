"""Binlog lag of a MariaDB/MySQL source, measured on a control connection of its own.

The server keeps no per-consumer position, so the consumed point is the pipeline's committed
position (its binlog file:pos). `SHOW BINARY LOGS` gives every file's size and `SHOW MASTER STATUS`
(`SHOW BINARY LOG STATUS` on MySQL 8.4) the current end: the lag in bytes is what was written after
the committed file:pos. A committed position in a file the server has purged has no byte count
(None), and the time lag still comes from the event times (observability/lag.py).

The server also writes events that are no transaction (a rotation's Rotate, Format_desc, Gtid_list,
Binlog_checkpoint at the head of the next file): the pipeline never gets a position after those, so
on an idle server the committed point stays just behind the end. When `SHOW BINLOG EVENTS` after the
committed point shows only such events, the consumer is caught up: consumed = the end, lag 0.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pymysql

from cdc_logs.position import BinlogPosition, Position
from cdc_logs.readers.base import LagProbe, LogLag
from cdc_logs.readers.mysql.connection import MysqlSettings, classify, connect


def file_number(name: str) -> int:
    """mysql-bin.000042 -> 42 (the order of the binlog files)."""
    _, _, seq = name.rpartition(".")
    return int(seq) if seq.isdigit() else 0


# Events that carry no transaction: a consumer has nothing to read in them.
HOUSEKEEPING = frozenset(
    {"Format_desc", "Rotate", "Gtid_list", "Binlog_checkpoint", "Previous_gtids", "Stop", "Heartbeat",
     "Start_encryption"}
)  # fmt: skip
_PEEK = 20  # events looked at per file after the committed point


def only_housekeeping(event_types: list[str]) -> bool:
    """True when none of these binlog events (SHOW BINLOG EVENTS' Event_type) is part of a transaction."""
    return all(t in HOUSEKEEPING for t in event_types)


def binlog_lag_bytes(files: list[tuple[str, int]], head: tuple[str, int], at: tuple[str, int]) -> int | None:
    """Bytes written after `at` (file, pos) up to `head`, given `files` (name, size) as SHOW BINARY LOGS
    lists them; None when `at`'s file is no longer there."""
    sizes = {name: size for name, size in files}
    sizes[head[0]] = head[1]  # the current file's size is the head position
    at_file, at_pos = at
    if at_file not in sizes:
        return None
    total = 0
    for name in sorted(sizes, key=file_number):
        if file_number(name) < file_number(at_file) or file_number(name) > file_number(head[0]):
            continue
        size = sizes[name]
        total += max(0, size - at_pos) if name == at_file else size
    return total


class BinlogLagProbe(LagProbe):
    def __init__(self, settings: MysqlSettings) -> None:
        self.settings = settings
        self._conn: pymysql.connections.Connection | None = None

    def _status(self, conn: pymysql.connections.Connection) -> tuple[str, int]:
        with conn.cursor() as cur:
            try:
                cur.execute("SHOW BINARY LOG STATUS")  # MySQL 8.4 removed SHOW MASTER STATUS
            except pymysql.err.ProgrammingError:
                cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
        return (str(row[0]), int(row[1])) if row else ("", 0)

    def measure(self, committed: Position | None) -> LogLag:
        if self._conn is None:
            self._conn = connect(self.settings)
        conn = self._conn
        try:
            head = self._status(conn)
            with conn.cursor() as cur:
                cur.execute("SHOW BINARY LOGS")
                files = [(str(r[0]), int(r[1])) for r in cur.fetchall()]
        except pymysql.MySQLError as exc:
            self.close()
            raise classify(exc, "measuring the binlog lag") from exc
        consumed: Any = None
        lag: int | None = None
        end = (file_number(head[0]), head[1])
        if isinstance(committed, BinlogPosition) and committed.file:
            consumed = (file_number(committed.file), committed.pos)
            lag = binlog_lag_bytes(files, head, (committed.file, committed.pos))
            if consumed < end and lag is not None and self._caught_up(conn, files, committed, head):
                consumed, lag = end, 0
        return LogLag(
            head=end,
            consumed=consumed,
            lag_bytes=lag,
            extra={"binlog_file": head[0], "binlog_pos": head[1], "binlog_files": len(files)},
        )

    def _caught_up(
        self,
        conn: pymysql.connections.Connection,
        files: list[tuple[str, int]],
        committed: BinlogPosition,
        head: tuple[str, int],
    ) -> bool:
        """Only housekeeping events between the committed point and the end (see the module doc)."""
        first, last = file_number(committed.file), file_number(head[0])
        names = [n for n, _ in files if first <= file_number(n) <= last]
        try:
            with conn.cursor() as cur:
                for name in names:
                    start = committed.pos if name == committed.file else 4
                    cur.execute(f"SHOW BINLOG EVENTS IN %s FROM {int(start)} LIMIT {_PEEK}", (name,))
                    rows = cur.fetchall()
                    if len(rows) >= _PEEK or not only_housekeeping([str(r[2]) for r in rows]):
                        return False
        except pymysql.MySQLError:
            return False  # cannot tell: count it as behind
        return True

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
