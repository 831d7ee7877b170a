"""Incremental snapshots for the Postgres reader: the I/O around readers/incremental.py.

Watermarks are transactional logical messages (`pg_logical_emit_message(true, 'cdc-logs-isnap',
'{"id": chunk, "open": bool}')`), each in a transaction of its own: they reach the stream in commit
order like any change, need no write access to a user table, and leave no rows behind. The signal
table (Debezium's shape) is only where snapshots are requested: its inserts are read from the log
(it must be in the publication) and never emitted as changes.

A chunk is one autocommit SELECT (its own statement snapshot, taken after the low watermark
committed) in primary-key order: `WHERE (pk) > (last) AND (pk) <= (largest key when the table's
snapshot began) [AND (additional condition)] ORDER BY pk LIMIT chunk_size`, on the reader's normal
connection. Rows are read as the server's text, converted like the initial snapshot's.

`IncrementalFilter.process()` sits between the change stream and the pipeline: it takes signal rows
and watermarks out, lets stream changes remove rows from an open window, emits a closed window's
rows (op "r", source.snapshot "incremental") at positions just past the high watermark's message and
before its transaction's end, and stamps every resume point with the snapshot state and the captured
tables (positions' `incremental` / `captured`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import psycopg
from psycopg import sql

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import Position
from cdc_logs.readers.base import SnapshotProgress, StreamItem
from cdc_logs.readers.checks import Check
from cdc_logs.readers.incremental import (
    IncrementalSnapshots,
    TableProgress,
    Window,
    key_id,
    on_signal,
    parse_signal,
    warn_without_captured,
)
from cdc_logs.readers.postgres import catalog
from cdc_logs.readers.postgres.catalog import TableInfo
from cdc_logs.readers.postgres.changes import WATERMARK_PREFIX, WindowMark
from cdc_logs.readers.postgres.connection import map_error
from cdc_logs.readers.postgres.convert import EventBuilder
from cdc_logs.readers.postgres.schema import table_schema
from cdc_logs.schema import TableSchema

log = get_logger(__name__)


class IncrementalFilter:
    """See the module docstring. `meta`/`lock`: the reader's normal connection and its lock."""

    def __init__(
        self,
        meta: Callable[[], psycopg.Connection[Any]],
        lock: threading.RLock,
        tables: list[TableInfo],
        builder: EventBuilder,
        *,
        signal_table: str | None,
        chunk_size: int,
        parallel: int,
        record_captured: bool,
        lsn: Callable[[], int],
    ) -> None:
        self._meta = meta
        self._lock = lock
        self.tables = {t.qualified: t for t in tables}
        self.builder = builder
        self.signal_table = signal_table
        self._signal_space, _, self._signal_name = (signal_table or "").rpartition(".")
        self.snapshots: IncrementalSnapshots[ChangeEvent] = IncrementalSnapshots(
            chunk_size=chunk_size, parallel=parallel, captured=self.tables
        )
        self.captured = tuple(sorted(self.tables)) if record_captured else ()
        self._lsn = lsn
        self._converters: dict[int, tuple[Any, TableSchema]] = {}
        self.superseded = 0  # chunk rows dropped because the stream changed them in the window

    # -- start -------------------------------------------------------------------------------------
    def resume(self, start: Position | None) -> None:
        """Continue the snapshot the resume point carries, and queue the tables it did not capture."""
        if start is None:
            return
        self.snapshots.resume(start.incremental)
        warn_without_captured(self.captured, start.captured)
        if self.captured and start.captured:
            new = [t for t in self.captured if t not in set(start.captured)]
            if new:
                log.info("tables added to the source since the last run: snapshotting them", tables=new)
                self.snapshots.execute(f"new-tables-{int(time.time())}", new)

    def progress(self) -> list[SnapshotProgress]:
        return [
            SnapshotProgress(t.table, rows=t.rows)
            for t in (self.snapshots.state.tables if self.snapshots.state else [])
        ]

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

    def process(self, item: StreamItem | WindowMark) -> Iterator[StreamItem]:
        snapshots = self.snapshots
        if isinstance(item, WindowMark):
            rows = snapshots.watermark(item.chunk, item.opening)
            if rows:
                for i, row in enumerate(rows, start=item.at.event + 1):
                    row.position = item.at.at_event(i)
                    row.boundary = False
                    yield row
            if item.boundary:
                yield Heartbeat(self._stamp(item.position))
        elif isinstance(item, ChangeEvent):
            table = item.source.qualified_table
            if table == self.signal_table:
                if item.op is Op.CREATE and item.after is not None:
                    try:
                        on_signal(snapshots, parse_signal(item.after))
                    except CdcError as exc:
                        log.error("signal refused", error=exc.message, fix=exc.hint)
                if item.boundary and item.position is not None:
                    yield Heartbeat(self._stamp(item.position))
            else:
                if snapshots.window is not None:
                    if item.op is Op.TRUNCATE:
                        snapshots.truncated(table)
                    else:
                        before = self._buffered(table)
                        snapshots.changed(table, key_id(item.key))
                        self.superseded += before - self._buffered(table)
                if item.boundary and item.position is not None:
                    item.position = self._stamp(item.position)
                yield item
        elif isinstance(item, Heartbeat | Undecodable):
            if item.boundary:
                item.position = self._stamp(item.position)
            yield item
        else:
            yield item
        if snapshots.chunk_due():
            self.read_chunk()

    def _buffered(self, table: str) -> int:
        window = self.snapshots.window
        return len(window.rows.get(table, ())) if window is not None else 0

    def _stamp(self, position: Position) -> Position:
        return position.with_state(self.snapshots.encoded(), self.captured)

    # -- chunks ------------------------------------------------------------------------------------
    def read_chunk(self) -> None:
        """Low watermark, the next chunk of every active table, high watermark (module docstring)."""
        window = self.snapshots.begin()
        try:
            with self._lock:
                conn = self._meta()
                self._watermark(conn, window.id, opening=True)
                for progress in self.snapshots.active():
                    self._read_table(conn, window, progress)
                self._watermark(conn, window.id, opening=False)
        except BaseException:
            self.snapshots.abandon()
            raise

    def _watermark(self, conn: psycopg.Connection[Any], chunk: str, *, opening: bool) -> None:
        content = orjson.dumps({"id": chunk, "open": opening}).decode()
        try:
            conn.execute("SELECT pg_logical_emit_message(true, %s, %s)", (WATERMARK_PREFIX, content))
        except psycopg.Error as exc:
            raise map_error(exc, "writing an incremental snapshot watermark") from exc

    def _read_table(
        self, conn: psycopg.Connection[Any], window: Window[ChangeEvent], progress: TableProgress
    ) -> None:
        table = self.tables[progress.table]
        if not table.primary_key:
            log.error(
                "incremental snapshot: table has no primary key to read it in chunks; left out",
                table=table.qualified,
                fix="add a primary key, or snapshot it with a new slot (initial snapshot)",
            )
            window.end(progress.table, None, True)
            return
        catalog.learn_types(conn, self.builder.registry, table.relation())
        key_sql = sql.SQL(", ").join(sql.Identifier(k) for k in table.primary_key)
        types = {c.name: c.type_sql for c in table.columns}
        params_sql = sql.SQL(", ").join(sql.SQL("%s::" + types[k]) for k in table.primary_key)
        name = sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name))
        # The condition is the user's SQL text inside a query with parameters: a `%` in it (LIKE
        # 'a%', id % 2) must reach the server as itself, not be read as a placeholder.
        where_text = (progress.where or "").replace("%", "%%")
        extra = sql.SQL(" AND ({})").format(sql.SQL(where_text)) if progress.where else sql.SQL("")
        try:
            if not progress.started:
                descending = sql.SQL(", ").join(
                    sql.SQL("{} DESC").format(sql.Identifier(k)) for k in table.primary_key
                )
                query = sql.SQL("SELECT {} FROM {} WHERE true{} ORDER BY {} LIMIT 1").format(
                    key_sql, name, extra, descending
                )
                found = _text_rows(conn, query, [])  # [] not None: `%%` is unescaped like below
                progress.maximum = list(found[0]) if found else None
                progress.started = True
            if progress.maximum is None:
                window.end(progress.table, None, True)  # the table was empty when its snapshot began
                return
            select = sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)
            where = sql.SQL("({}) <= ({})").format(key_sql, params_sql)
            params: list[Any] = list(progress.maximum)
            if progress.last is not None:
                where = sql.SQL("({}) > ({}) AND ").format(key_sql, params_sql) + where
                params = list(progress.last) + params
            query = sql.SQL("SELECT {} FROM {} WHERE {}{} ORDER BY {} LIMIT {}").format(
                select, name, where, extra, key_sql, sql.Literal(self.snapshots.chunk_size)
            )
            rows = _text_rows(conn, query, params)
        except psycopg.Error as exc:
            # The condition or a key cast (the user's SQL): the table is left out, the stream goes on.
            # With a condition, any error but a lost connection is put on it (a subquery returning
            # two rows, a client-side parse error...): the state is committed with the condition, so
            # failing the pipeline would fail every restart the same way.
            users = (exc.sqlstate or "").startswith(("42", "22")) or (
                progress.where is not None
                and not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
            )
            if users:
                log.error(
                    "incremental snapshot: cannot read the table; left out",
                    table=table.qualified,
                    error=str(exc).strip(),
                    fix="fix the filter (the signal's additional-conditions, `cdc-logs snapshot --where`), "
                    "then snapshot the table again (`cdc-logs snapshot TABLE`)",
                )
                window.end(progress.table, None, True)
                return
            raise map_error(exc, f"reading a chunk of {table.qualified} for an incremental snapshot") from exc
        conv, schema = self._converter(table)
        index = [next(i for i, c in enumerate(table.columns) if c.name == k) for k in table.primary_key]
        ts_ms = int(time.time() * 1000)
        lsn = self._lsn()
        for values in rows:
            event = self.builder.snapshot_row(
                conv.relation,
                conv,
                table.primary_key,
                values,
                lsn=lsn,
                ts_ms=ts_ms,
                marker="incremental",
                position=None,
                boundary=False,
                schema=schema,
            )
            window.add(progress.table, key_id(event.key) or b"", event)
        last = [rows[-1][j] for j in index] if rows else progress.last
        window.end(progress.table, last, len(rows) < self.snapshots.chunk_size)

    def _converter(self, table: TableInfo) -> tuple[Any, TableSchema]:
        cached = self._converters.get(table.oid)
        if cached is None:
            registry = self.builder.registry
            conv = registry.row_converter(table.relation(), binary=False)
            schema = table_schema(registry, conv.relation, table.primary_key, self.builder.db, table.facts())
            cached = self._converters[table.oid] = (conv, schema)
        return cached


def _text_rows(
    conn: psycopg.Connection[Any], query: sql.Composed, params: list[Any] | None
) -> list[list[str | None]]:
    """Rows as the server's text output (what pgoutput sends), not Python values."""
    cur = conn.execute(query, params)
    res = cur.pgresult
    if res is None:
        return []
    out: list[list[str | None]] = []
    get = res.get_value
    for r in range(res.ntuples):
        row: list[str | None] = []
        for c in range(res.nfields):
            value = get(r, c)
            row.append(None if value is None else bytes(value).decode())
        out.append(row)
    return out


def send_signal(
    dsn: str, signal_table: str, signal_id: str, kind: str, data: str, publication: str | None = None
) -> None:
    """Insert one signal row (what `cdc-logs snapshot` does; a running reader reads it from the log).

    Refused first (CONFIG, exit 2) when the doctor's signal checks fail: a missing table (the fix is
    its DDL), or a user's publication without it (the row could never be read)."""
    from cdc_logs.readers.postgres.connection import connect

    conn = connect(dsn, application_name="cdc-logs snapshot")
    try:
        failed = [c for c in signal_checks(conn, signal_table, publication) if not c.ok]
        if failed:
            raise CdcError(ErrorKind.CONFIG, f"signal table: {failed[0].detail}", failed[0].fix)
        table = catalog.resolve_tables(conn, [signal_table])[0]
        conn.execute(
            sql.SQL("INSERT INTO {} (id, type, data) VALUES (%s, %s, %s)").format(sql.SQL(table.sql_name)),
            (signal_id, kind, data),
        )
    except psycopg.Error as exc:
        raise map_error(exc, f"writing the signal to {signal_table}") from exc
    finally:
        conn.close()


SIGNAL_DDL = "CREATE TABLE {} (id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048))"


def signal_checks(conn: psycopg.Connection[Any], signal_table: str, publication: str | None) -> list[Check]:
    """Doctor: the signal table exists with Debezium's columns, and the publication carries it."""
    try:
        table = catalog.resolve_tables(conn, [signal_table])[0]
    except CdcError as exc:
        return [Check("signal table", False, exc.message, SIGNAL_DDL.format(signal_table))]
    names = {c.name for c in table.columns}
    if not {"id", "type", "data"} <= names:
        return [
            Check(
                "signal table",
                False,
                f"{table.qualified} has columns {sorted(names)}, not Debezium's (id, type, data)",
                SIGNAL_DDL.format(signal_table + "_new") + " (and point signal_data_collection at it)",
            )
        ]
    out = [Check("signal table", True, f"{table.qualified} (id, type, data)")]
    if publication is None:
        out.append(Check("signal table published", True, "the pipeline's own publication: added at start"))
        return out
    from cdc_logs.readers.postgres import slots

    pub = slots.get_publication(conn, publication)
    if pub is None or pub.all_tables or table.sql_name in pub.tables:
        detail = "publication created at start" if pub is None else f"in publication {publication}"
        out.append(Check("signal table published", True, detail))
    elif pub.owner == "cdc-logs":
        out.append(Check("signal table published", True, f"cdc-logs adds it to {publication} at start"))
    else:
        out.append(
            Check(
                "signal table published",
                False,
                f"publication {publication} (the user's) does not publish {table.qualified}: signals would "
                "never be read",
                f"ALTER PUBLICATION {publication} ADD TABLE {table.sql_name}; (as its owner)",
            )
        )
    return out
