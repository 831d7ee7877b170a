"""Incremental snapshots for the MySQL/MariaDB reader: the I/O around readers/incremental.py.

The binlog has no logical messages, so the watermarks are rows of the signal table, as Debezium
writes them: `(<chunk>-open, snapshot-window-open, {...})` and `(<chunk>-close,
snapshot-window-close, {...})`, each insert its own autocommit transaction. Both rows are deleted once
the window closed (Debezium's insert_delete strategy, so the table does not grow); the deletes pass
through the binlog and are ignored like every other signal-table change that is not an insert.

A chunk is one autocommit SELECT (InnoDB's consistent read at that statement, after the low
watermark committed) in primary-key order, `WHERE (pk) > (last) AND (pk) <= (largest key when the
table's snapshot began) [AND (additional condition)] ORDER BY pk LIMIT chunk_size`, converted like the
initial snapshot's rows (snapshot.py).

The rows of a closed window are emitted just before the high watermark's transaction ends: at its
end position minus one byte (inside its XID event, after every row event of it and after the previous
transaction's end), numbered `event` 1, 2, ...; that transaction's end is then a Heartbeat carrying
the new state. Key values are stored in the state as JSON (ints, else text) and sent back as
parameters, which MySQL compares with the column's type.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson
import pymysql
import pymysql.cursors

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, SourceInfo, Undecodable, now_ms
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import BinlogPosition, Position
from cdc_logs.readers.base import SnapshotProgress, StreamItem
from cdc_logs.readers.checks import Check
from cdc_logs.readers.incremental import (
    WINDOW_CLOSE,
    WINDOW_OPEN,
    IncrementalSnapshots,
    TableProgress,
    Window,
    key_id,
    key_text,
    on_signal,
    parse_signal,
    warn_without_captured,
)
from cdc_logs.readers.mysql.connection import _LOST, _UNREACHABLE, MysqlSettings, classify, connect
from cdc_logs.readers.mysql.schema import SNAPSHOT_COLUMNS_QUERY, snapshot_schema
from cdc_logs.readers.mysql.snapshot import SnapshotTable, _convert, describe_table, quote

log = get_logger(__name__)


class IncrementalFilter:
    """Between the binlog converter and the pipeline (see the module docstring)."""

    def __init__(
        self,
        settings: MysqlSettings,
        tables: list[tuple[str, str]],
        *,
        flavor: str,
        connector: str,
        pipeline_name: str,
        signal_table: tuple[str, str] | None,
        chunk_size: int,
        parallel: int,
        record_captured: bool,
    ) -> None:
        self.settings = settings
        self.flavor = flavor
        self.connector = connector
        self.pipeline_name = pipeline_name
        self.names = {f"{db}.{t}": (db, t) for db, t in tables}
        self.signal_table = f"{signal_table[0]}.{signal_table[1]}" if signal_table else None
        self._signal_space, self._signal_name = signal_table or ("", "")
        self._signal_sql = f"{quote(signal_table[0])}.{quote(signal_table[1])}" if signal_table else ""
        self.snapshots: IncrementalSnapshots[ChangeEvent] = IncrementalSnapshots(
            chunk_size=chunk_size, parallel=parallel, captured=self.names
        )
        self.captured = tuple(sorted(self.names)) if record_captured else ()
        self._conn: pymysql.connections.Connection | None = None
        self._info: dict[str, SnapshotTable] = {}
        self._last_boundary: BinlogPosition | None = None
        self.superseded = 0

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # -- start -------------------------------------------------------------------------------------
    def resume(self, start: Position | None) -> None:
        if start is None:
            return
        self.snapshots.resume(start.incremental)
        if self.snapshots.running and self.signal_table is None:
            log.error(
                "the stored position carries an incremental snapshot, but no signal table is configured "
                "for its watermarks: it is dropped",
                fix="set `signal_data_collection` again and send execute-snapshot (`cdc-logs snapshot`)",
            )
            self.snapshots.stop(None)
        warn_without_captured(self.captured, start.captured)
        if self.captured and start.captured:
            new = [t for t in self.captured if t not in set(start.captured)]
            if new and self.signal_table is None:
                log.error(
                    "tables were added to the source since the last run, but no signal table is "
                    "configured for the watermarks of their incremental snapshot: not snapshotted",
                    tables=new,
                    fix="set `signal_data_collection` (db.table, Debezium's shape), then run "
                    "`cdc-logs snapshot` for them",
                )
            elif new:
                log.info("tables added to the source since the last run: snapshotting them", tables=new)
                self.snapshots.execute(f"new-tables-{int(time.time())}", new)

    def progress(self) -> list[SnapshotProgress]:
        state = self.snapshots.state
        return [SnapshotProgress(t.table, rows=t.rows) for t in (state.tables if state else [])]

    # -- the stream --------------------------------------------------------------------------------
    def passthrough(self, item: object) -> bool:
        """The hot path: a change of a captured table while no window is open goes out as it is (its
        resume point stamped in place); False: give it to `process()`."""
        if type(item) is not ChangeEvent or self.snapshots.window is not None:
            return False
        source = item.source
        if source.table == self._signal_name and (source.schema or source.db) == self._signal_space:
            return False
        if item.boundary and item.position is not None and (self.captured or self.snapshots.state):
            item.position = self._stamp(item.position)
        return True

    def process(self, item: StreamItem) -> Iterator[StreamItem]:
        snapshots = self.snapshots
        if isinstance(item, ChangeEvent):
            table = item.source.qualified_table
            if table == self.signal_table:
                rows = None
                if item.op is Op.CREATE and item.after is not None:
                    try:
                        signal = parse_signal(item.after)
                    except CdcError as exc:
                        log.error("signal refused", error=exc.message, fix=exc.hint)
                    else:
                        rows = on_signal(snapshots, signal)
                        if signal.type == WINDOW_CLOSE and rows is not None:
                            # Housekeeping first: the rows are in the binlog already, and a consumer
                            # that stops after this chunk never resumes this generator.
                            self._forget_watermark(signal.id.removesuffix("-close"))
                if rows and item.position is not None:
                    assert isinstance(item.position, BinlogPosition)
                    yield from self._place(rows, item.position)
                if item.boundary and item.position is not None:
                    yield Heartbeat(self._stamp(item.position))
            else:
                if snapshots.window is not None:
                    rows_before = self._buffered(table)
                    snapshots.changed(table, key_id(item.key))
                    self.superseded += rows_before - self._buffered(table)
                if item.boundary and item.position is not None:
                    item.position = self._stamp(item.position)
                yield item
        elif isinstance(item, Heartbeat | Undecodable):
            if item.boundary:
                item.position = self._stamp(item.position)
            yield item
        else:
            yield item
        if snapshots.chunk_due() and self.signal_table is not None:
            self.read_chunk()

    def _place(self, rows: list[ChangeEvent], hw: BinlogPosition) -> Iterator[ChangeEvent]:
        # Just before the high watermark's transaction ends (module docstring); not resume points.
        base = replace(hw, pos=max(hw.pos - 1, 0), event=0, incremental="", captured=())
        for i, row in enumerate(rows, start=1):
            row.position = base.at_event(i)
            row.boundary = False
            row.source.extra.update({"file": hw.file, "pos": hw.pos})
            yield row

    def _buffered(self, table: str) -> int:
        window = self.snapshots.window
        return len(window.rows.get(table, ())) if window is not None else 0

    def _stamp(self, position: Position) -> Position:
        return position.with_state(self.snapshots.encoded(), self.captured)

    # -- chunks ------------------------------------------------------------------------------------
    def _connection(self) -> pymysql.connections.Connection:
        if self._conn is None or not self._conn.open:
            self._conn = connect(self.settings)
        return self._conn

    def read_chunk(self) -> None:
        window = self.snapshots.begin()
        try:
            conn = self._connection()
            self._watermark(conn, window.id, opening=True)
            for progress in self.snapshots.active():
                self._read_table(conn, window, progress)
            self._watermark(conn, window.id, opening=False)
        except pymysql.MySQLError as exc:
            self.snapshots.abandon()
            self.close()
            raise classify(exc, "reading a chunk of an incremental snapshot") from exc
        except BaseException:
            self.snapshots.abandon()
            raise

    def _watermark(self, conn: pymysql.connections.Connection, chunk: str, *, opening: bool) -> None:
        kind, suffix, field = (
            (WINDOW_OPEN, "open", "openWindowTimestamp")
            if opening
            else (WINDOW_CLOSE, "close", "closeWindowTimestamp")
        )
        data = orjson.dumps({field: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).decode()
        with conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {self._signal_sql} (id, type, data) VALUES (%s, %s, %s)",
                (f"{chunk}-{suffix}", kind, data),
            )

    def _forget_watermark(self, chunk: str) -> None:
        ids = [f"{chunk}-open", f"{chunk}-close"]
        try:
            with self._connection().cursor() as cur:
                cur.execute(
                    f"DELETE FROM {self._signal_sql} WHERE id IN ({', '.join(['%s'] * len(ids))})", ids
                )
        except pymysql.MySQLError as exc:  # only housekeeping: the rows are ignored if they stay
            log.warning("could not delete incremental snapshot watermark rows", error=str(exc))
            self.close()

    def _table(self, conn: pymysql.connections.Connection, name: str) -> SnapshotTable:
        info = self._info.get(name)
        if info is None:
            db, table = self.names[name]
            info = describe_table(conn, db, table, self.flavor)
            with conn.cursor() as cur:
                cur.execute(SNAPSHOT_COLUMNS_QUERY, (db, table))
                info.table_schema = snapshot_schema(cur.fetchall(), db, table, info.key, self.flavor)
            self._info[name] = info
        return info

    def _read_table(
        self, conn: pymysql.connections.Connection, window: Window[ChangeEvent], progress: TableProgress
    ) -> None:
        info = self._table(conn, progress.table)
        if not info.key:
            log.error(
                "incremental snapshot: table has no primary key to read it in chunks; left out",
                table=progress.table,
                fix="add a primary key",
            )
            window.end(progress.table, None, True)
            return
        keys = ", ".join(quote(k) for k in info.key)
        marks = ", ".join(["%s"] * len(info.key))
        # The condition is the user's SQL text; PyMySQL formats a query with args by `%`, so a `%`
        # in it (LIKE 'a%', id % 2) is doubled there (the first query has no args: as it is).
        extra = f" AND ({progress.where})" if progress.where else ""
        extra_args = extra.replace("%", "%%")
        try:
            with conn.cursor() as cur:
                if not progress.started:
                    descending = ", ".join(f"{quote(k)} DESC" for k in info.key)
                    cur.execute(
                        f"SELECT {keys} FROM {info.sql_name} WHERE TRUE{extra} ORDER BY {descending} LIMIT 1"
                    )
                    found = cur.fetchone()
                    progress.maximum = key_text(found) if found else None
                    progress.started = True
            if progress.maximum is None:
                window.end(progress.table, None, True)
                return
            where = f"({keys}) <= ({marks})"
            params: list[Any] = list(progress.maximum)
            if progress.last is not None:
                where = f"({keys}) > ({marks}) AND {where}"
                params = list(progress.last) + params
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                query = f"SELECT {info.select_list} FROM {info.sql_name} WHERE {where}{extra_args}"
                query += f" ORDER BY {keys}"
                cur.execute(query + " LIMIT %s", (*params, self.snapshots.chunk_size))
                batch = cur.fetchall()
        except (pymysql.MySQLError, ValueError, TypeError) as exc:
            # The signal's condition (the user's SQL): the table is left out, the stream goes on.
            # With a condition any error but a lost connection is put on it: the state is committed
            # with the condition, so failing the pipeline would fail every restart the same way.
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            users = isinstance(exc, pymysql.err.ProgrammingError) or (
                progress.where is not None and code not in _LOST + _UNREACHABLE
            )
            if not users:
                raise
            log.error(
                "incremental snapshot: cannot read the table; left out",
                table=progress.table,
                error=str(exc),
                fix="fix the filter (the signal's additional-conditions, `cdc-logs snapshot --where`), "
                "then snapshot the table again (`cdc-logs snapshot TABLE`)",
            )
            window.end(progress.table, None, True)
            return
        db, table = self.names[progress.table]
        for raw in batch:
            row = _convert(raw, info)
            source = SourceInfo(
                self.connector,
                self.pipeline_name,
                db,
                table,
                ts_ms=now_ms(),
                snapshot="incremental",
                extra={"server_id": 0, "gtid": None, "file": "", "pos": 0, "row": 0},
            )
            key = {k: row.get(k) for k in info.key}
            event = ChangeEvent(
                Op.READ, source, None, row, key, now_ms(), schema=info.table_schema, boundary=False
            )
            window.add(progress.table, key_id(key) or b"", event)
        last = key_text(batch[-1][k] for k in info.key) if batch else progress.last
        window.end(progress.table, last, len(batch) < self.snapshots.chunk_size)


def send_signal(
    settings: MysqlSettings, signal_table: tuple[str, str], signal_id: str, kind: str, data: str
) -> None:
    """Insert one signal row (what `cdc-logs snapshot` does; a running reader reads it from the binlog).
    Refused first (CONFIG, exit 2) when the doctor's signal check fails (a missing table: its DDL)."""
    failed = [c for c in signal_checks(settings, signal_table) if not c.ok]
    if failed:
        raise CdcError(ErrorKind.CONFIG, f"signal table: {failed[0].detail}", failed[0].fix)
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            name = f"{quote(signal_table[0])}.{quote(signal_table[1])}"
            cur.execute(f"INSERT INTO {name} (id, type, data) VALUES (%s, %s, %s)", (signal_id, kind, data))
    except pymysql.MySQLError as exc:
        raise classify(exc, f"writing the signal to {signal_table[0]}.{signal_table[1]}") from exc
    finally:
        conn.close()


SIGNAL_DDL = "CREATE TABLE {} (id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048))"


def signal_checks(settings: MysqlSettings, signal_table: tuple[str, str]) -> list[Check]:
    """Doctor: the signal table exists with Debezium's columns (the binlog filter includes it)."""
    name = f"{signal_table[0]}.{signal_table[1]}"
    try:
        conn = connect(settings)
    except CdcError as exc:
        return [Check("signal table", False, exc.message, exc.hint)]
    try:
        with conn.cursor() as cur:
            query = "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
            cur.execute(query + " AND TABLE_NAME = %s", signal_table)
            names = {str(r[0]).lower() for r in cur.fetchall()}
    except pymysql.MySQLError as exc:
        error = classify(exc, "checking the signal table")
        return [Check("signal table", False, error.message, error.hint)]
    finally:
        conn.close()
    if not names:
        return [Check("signal table", False, f"{name} does not exist", SIGNAL_DDL.format(name))]
    if not {"id", "type", "data"} <= names:
        return [
            Check(
                "signal table",
                False,
                f"{name} has columns {sorted(names)}, not Debezium's (id, type, data)",
                SIGNAL_DDL.format(name + "_new") + " (and point signal_data_collection at it)",
            )
        ]
    return [Check("signal table", True, f"{name} (id, type, data); the reader writes watermarks there")]
