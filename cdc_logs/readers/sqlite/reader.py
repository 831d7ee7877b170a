"""SqliteReader: trigger-based change capture for an SQLite database file written by other processes.

`open()` installs (or refreshes) the capture triggers and bookkeeping tables (see triggers.py and
state.py); `stream()` reads `_cdc_changes` in id order and yields one ChangeEvent per recorded row
change. Only committed rows are visible to a reader, and SQLite has one writer at a time, so ids are
in commit order and every id is a safe resume point: each event is a boundary.

Everything touching the connection runs on the thread that iterates `stream()` (or in `open`/`close`
while no stream runs): `commit()` only records the position, and the stream loop applies it (trim).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import orjson

from cdc_logs.envelope import Heartbeat, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import Position, Watermark
from cdc_logs.readers.base import Reader, StreamItem, idle_pause
from cdc_logs.readers.sqlite import state
from cdc_logs.readers.sqlite.connection import (
    TableInfo,
    connect,
    invalid_columns,
    normalize_table,
    path_from_dsn,
    schema_version,
    table_info,
)
from cdc_logs.readers.sqlite.convert import ChangeRow, EventFactory
from cdc_logs.readers.sqlite.snapshot import Snapshot
from cdc_logs.readers.sqlite.triggers import ensure_triggers

log = get_logger(__name__)


def _db_error(exc: sqlite3.Error, path: str) -> CdcError:
    # OperationalError covers "database is locked" past the busy timeout and I/O errors: retryable.
    kind = ErrorKind.CONNECTION if isinstance(exc, sqlite3.OperationalError) else ErrorKind.INTERNAL
    return CdcError(kind, f"SQLite database {path!r}: {exc}", "the reader reconnects and resumes")


class SqliteReader(Reader):
    """Capture inserts, updates and deletes of SQLite tables through triggers.

    Args:
        path: database file, as a path or `sqlite:///path` URL. It must exist (it is not created).
        tables: tables to capture (`t` or `main.t`); each must exist (CdcError NOT_FOUND otherwise).
        pipeline_name: written to `source.name`.
        consumer: name under which this reader's progress is kept in `_cdc_state`. Change rows are
            trimmed only once every registered consumer has committed them, so give each pipeline
            reading the same database its own name.
        temporary: forget the consumer on `close()` (for `tail`): nothing keeps changes for it.
        snapshot: when starting without a position, first emit every existing row (op "r"), then the
            changes after it. Otherwise a consumer known from an earlier run continues where it
            stopped (its changes were kept meanwhile), and a new one starts with the changes made
            after `open()`.
        poll_interval_s: wait between polls of the change table when it had nothing new.
        batch_size: change rows read per query.
        idle_tick_s: an idle tick (`None`) is yielded at this interval while nothing changes.
    """

    connector = "sqlite"

    def __init__(
        self,
        path: str,
        tables: list[str],
        *,
        pipeline_name: str,
        consumer: str = "default",
        temporary: bool = False,
        snapshot: bool = False,
        poll_interval_s: float = 0.2,
        batch_size: int = 500,
        idle_tick_s: float = 0.5,
    ) -> None:
        if not tables:
            raise CdcError(ErrorKind.CONFIG, "the sqlite source needs at least one table", "add `--table T`")
        self.path = path_from_dsn(path)
        self.tables = [normalize_table(t) for t in tables]
        self.pipeline_name = pipeline_name
        self.consumer = consumer
        self.temporary = temporary
        self.snapshot = snapshot
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self.idle_tick_s = idle_tick_s
        self._conn: sqlite3.Connection | None = None
        self._server: str | None = None
        self._infos: dict[str, TableInfo] = {}
        self._factory: EventFactory
        self._schema_version = 0
        self._consumer_id = 0  # where this consumer stopped last time (or open() for a new one)
        self._consumer_known = False  # registered before this open (an earlier run or attempt)
        self._stop = threading.Event()
        self._db_lock = threading.RLock()  # one thread at a time on the connection (stream vs close)
        self._commit_lock = threading.Lock()
        self._pending_commit = 0  # highest change id the pipeline has made durable
        self._applied_commit = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        if self._conn is not None:  # reopened without close(): drop the old connection
            self._conn.close()
            self._conn = None
        self._stop.clear()
        conn = connect(self.path)
        try:
            with self._db_lock:
                refuse_own_tables(self.tables)
                # Every table must exist before any trigger goes in: a failed start leaves nothing.
                for table in self.tables:
                    table_info(conn, table, self.path)
                self._server = state.ensure_schema(conn)
                self._infos = {}
                for table in self.tables:
                    info = ensure_triggers(conn, table, self.path)
                    self._infos[info.name] = info
                self._schema_version = schema_version(conn)
                self._consumer_known = state.consumer_known(conn, self.consumer)
                self._consumer_id = state.pin_consumer(conn, self.consumer)
        except sqlite3.Error as exc:
            conn.close()
            raise _db_error(exc, self.path) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._factory = EventFactory(self._server, self.pipeline_name, Path(self.path).name)

    def server_identity(self) -> str:
        if self._server is None:
            raise CdcError(ErrorKind.USAGE, "SqliteReader.server_identity() called before open()")
        return self._server

    def stop(self) -> None:
        self._stop.set()

    def commit(self, position: Position) -> None:
        """Record that everything up to `position` is durable; the stream loop trims (thread-safe)."""
        if not isinstance(position, Watermark) or position.server != self._server or not position.values:
            log.warning("ignoring a commit for another source", position=position.encode())
            return
        with self._commit_lock:
            self._pending_commit = max(self._pending_commit, int(position.values[0]))

    def close(self) -> None:
        self._stop.set()
        with self._db_lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                self._apply_commit(conn)  # the final commit arrives after the stream has ended
                if self.temporary:
                    state.forget_consumer(conn, self.consumer)
            except sqlite3.Error as exc:
                log.warning("sqlite reader: final trim failed", error=str(exc))
            finally:
                conn.close()

    # -- streaming -------------------------------------------------------------------------------
    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        conn = self._conn
        if conn is None:
            raise CdcError(ErrorKind.USAGE, "SqliteReader.stream() called before open()")
        try:
            last = self._start_id(conn, start)
            if start is None and self.snapshot:
                last = yield from self._snapshot(conn, last if self._consumer_known else None)
            elif start is None:
                yield Heartbeat(self._factory.position(last))  # commit where a first run starts
            yield from self._follow(conn, last)
        except sqlite3.Error as exc:
            if self._conn is None:  # closed under us while stopping: not an error
                return
            raise _db_error(exc, self.path) from exc

    def _start_id(self, conn: sqlite3.Connection, start: Position | None) -> int:
        """The change id to read after, validated and registered for this consumer."""
        if start is None:
            last = self._consumer_id
        else:
            if not isinstance(start, Watermark) or len(start.values) != 1:
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"stored position {start.encode()} is not an SQLite change-table position",
                    "reset the offsets of this source (`cdc-logs offsets reset`)",
                )
            if start.server != self._server:
                raise CdcError(
                    ErrorKind.SERVER_MISMATCH,
                    f"position was taken on {start.server}, but {self.path!r} is {self._server} "
                    "(the database file was replaced or its capture tables were dropped)",
                    "start over with `cdc-logs offsets reset` (and a snapshot)",
                )
            last = int(start.values[0])
        with self._db_lock:
            newest = state.last_change_id(conn)
            if last > newest:
                raise CdcError(
                    ErrorKind.POSITION_LOST,
                    f"position {last} is ahead of the newest change ({newest}) in {self.path!r}: "
                    "was the database restored from an older copy?",
                    "start over with `cdc-logs offsets reset` (and a snapshot)",
                )
            if not state.register_consumer(conn, self.consumer, last):
                raise CdcError(
                    ErrorKind.POSITION_LOST,
                    f"changes after id {last} were already trimmed from {self.path!r} "
                    f"(trimmed through {state.trimmed_through(conn)}) by another consumer",
                    "give each pipeline its own `consumer` name; to recover, "
                    "`cdc-logs offsets reset` and take a new snapshot",
                )
        with self._commit_lock:
            self._pending_commit = self._applied_commit = last
        return last

    def _change(self, row: ChangeRow) -> Iterator[StreamItem]:
        """The events of one recorded change, or an Undecodable for the dead-letter file."""
        try:
            yield from self._factory.change(row, self._infos[row.table])
        except CdcError as exc:
            if exc.kind is not ErrorKind.DECODE:
                raise
            raw = row.after if row.after is not None else row.before
            yield Undecodable(
                self._factory.position(row.id),
                f"main.{row.table}",
                f"change {row.id}: {exc.message}",
                raw=bytes(raw.encode() if isinstance(raw, str) else raw) if raw is not None else None,
            )

    def _snapshot(self, conn: sqlite3.Connection, pinned: int | None) -> Generator[StreamItem, None, int]:
        """Emit every row as op "r"; returns the change id to stream after.

        For a new consumer (`pinned` None) that is the snapshot's own id: an exact hand-off. For a
        consumer registered before (a snapshot killed and started again, or `offsets reset`), it is
        the id the consumer is pinned at: the snapshot reads the table as it is now, so a row that an
        earlier attempt delivered and that was deleted since is not in it, and only streaming from
        the earlier point (its changes were kept for this consumer) delivers that delete. Changes the
        snapshot already shows are then streamed again (at-least-once).
        """
        tables = list(self._infos.values())  # configured order
        # No _db_lock here: the read transaction spans yields. close() may close the connection while
        # the snapshot is paused; the next fetch then fails and stream() ends quietly.
        with Snapshot(conn, tables) as snap:
            since = snap.change_id if pinned is None else min(pinned, snap.change_id)
            position = self._factory.position(since)
            rows = snap.rows()
            current = next(rows, None)
            if current is None:
                yield Heartbeat(position)  # nothing to read: the snapshot is done at this position
            first = True
            while current is not None:
                if self._stop.is_set():
                    return since  # incomplete: no boundary was emitted, so nothing commits
                following = next(rows, None)
                last = following is None
                marker = "last" if last else "first" if first else "true"
                info, row, rowid = current
                bad = invalid_columns(row)
                if bad:
                    raw = orjson.dumps({k: v.hex() if isinstance(v, bytes) else v for k, v in row.items()})
                    reason = f"snapshot row: column(s) {bad} hold TEXT that is not valid UTF-8"
                    yield Undecodable(position, f"main.{info.name}", reason, boundary=last, raw=raw)
                else:
                    yield self._factory.snapshot(info, row, rowid, marker, position, last)
                current, first = following, False
        log.info("sqlite snapshot done", path=self.path, change_id=snap.change_id, streaming_after=since)
        return since

    def _follow(self, conn: sqlite3.Connection, last: int) -> Iterator[StreamItem]:
        next_tick = time.monotonic() + self.idle_tick_s
        while not self._stop.is_set():
            with self._db_lock:
                self._apply_commit(conn)
                self._check_schema(conn)
                rows = [
                    ChangeRow(*r)
                    for r in conn.execute(
                        f"SELECT id, tbl, op, before, after, ts_ms FROM {state.CHANGES}"
                        " WHERE id > ? ORDER BY id LIMIT ?",
                        (last, self.batch_size),
                    )
                ]
            emitted = last
            for row in rows:
                if row.table in self._infos:
                    yield from self._change(row)
                    emitted = row.id
                last = row.id
            if last != emitted:
                # Rows of tables other readers capture: move the position anyway, so this consumer's
                # progress (and so trimming) does not stall behind them.
                yield Heartbeat(self._factory.position(last))
            if rows:
                next_tick = time.monotonic() + self.idle_tick_s
                if len(rows) == self.batch_size:
                    continue
            next_tick = yield from self._pause(next_tick)

    def _pause(self, next_tick: float) -> Generator[None, None, float]:
        return idle_pause(self._stop, self.poll_interval_s, self.idle_tick_s, next_tick)

    def _apply_commit(self, conn: sqlite3.Connection) -> None:
        with self._commit_lock:
            target = self._pending_commit
        if target <= self._applied_commit:
            return
        try:
            deleted = state.commit_consumer(conn, self.consumer, target)
        except sqlite3.OperationalError as exc:  # a long write transaction elsewhere: trim next time
            log.debug("sqlite trim postponed", error=str(exc))
            return
        self._applied_commit = target
        if deleted:
            log.debug("sqlite change table trimmed", consumer=self.consumer, through=target, rows=deleted)

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        """After any DDL (by any process), reinstall triggers whose table's columns changed."""
        version = schema_version(conn)
        if version == self._schema_version:
            return
        for table in self.tables:
            try:
                info = ensure_triggers(conn, table, self.path)
            except CdcError as exc:
                if exc.kind is not ErrorKind.NOT_FOUND:
                    raise
                # Dropped (or mid-rebuild): its recorded changes still stream; if it comes back, the
                # next schema change reinstalls the triggers.
                log.warning("captured sqlite table is gone", table=table, path=self.path)
                continue
            self._infos[info.name] = info
        self._schema_version = schema_version(conn)


def refuse_own_tables(tables: list[str]) -> None:
    """cdc-logs' bookkeeping tables (and SQLite's own) are never captured: capturing `_cdc_changes`
    would record every change twice, `_cdc_state` would loop on the reader's own commits."""
    own = {state.CHANGES.lower(), state.STATE.lower()}
    for table in tables:
        name = normalize_table(table).lower()
        if name in own or name.startswith("sqlite_"):
            whose = "cdc-logs" if name in own else "SQLite"
            raise CdcError(
                ErrorKind.CONFIG,
                f"table {table!r} is {whose}'s own bookkeeping, not data to capture",
                "capture your application's tables; cdc-logs keeps its changes and offsets in these",
            )
