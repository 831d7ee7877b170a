"""Initial snapshot: every row of the captured tables (op "r"), consistent with the slot's start.

Exact hand-off (first run): the slot is created on the replication connection with an exported
snapshot; a second, normal connection reads the tables inside that very snapshot
(`SET TRANSACTION SNAPSHOT`), so a transaction is either in the rows read or streamed from the slot's
consistent point, never both, never neither. The replication connection must run no command until
the snapshot is read (the export ends with its next command), so streaming starts after it.

Chunks: a table with a primary key is read in key order, `chunk_rows` at a time (keyset pagination:
`WHERE (pk) > (last) ORDER BY pk LIMIT n`), and the last row of each chunk is a boundary whose
position (`position.PgSnapshot`) records the tables done and the last key, as Postgres text. The
pipeline commits it like any position, so after a crash the snapshot resumes at the next chunk.
A table without a primary key is read through a cursor in one pass; a resume re-reads it whole.

A resumed snapshot cannot re-enter the exported snapshot (it died with the crashed process): its
remaining chunks are read in a fresh REPEATABLE READ snapshot, taken after the slot's consistent
point, and streaming still starts at that point. Rows changed in between are then read newer than
the consistent point and their changes are streamed again afterwards: replaying those changes in
order ends in the same row states (at-least-once, as after any crash), but a consumer may briefly
see a row go back to an older state before the stream catches up. docs/sources/postgres.md says so.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cdc_logs.envelope import ChangeEvent
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import Lsn, PgSnapshot, Position, format_lsn
from cdc_logs.readers.base import SnapshotProgress
from cdc_logs.readers.postgres.catalog import TableInfo
from cdc_logs.readers.postgres.connection import map_error, quote_literal
from cdc_logs.readers.postgres.convert import EventBuilder
from cdc_logs.readers.postgres.schema import table_schema
from cdc_logs.readers.postgres.types import TypeRegistry
from cdc_logs.schema import TableSchema

log = get_logger(__name__)


@dataclass(slots=True)
class _Row:
    table: TableInfo
    values: list[str | None]
    position: Position | None  # set on the last row of a chunk (its resume point)


class Snapshot:
    """Reads the captured tables; `events()` yields the snapshot's ChangeEvents in order."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        tables: list[TableInfo],
        builder: EventBuilder,
        *,
        server: str,
        lsn: int,
        snapshot_name: str | None,
        resume: PgSnapshot | None = None,
        chunk_rows: int = 10_000,
        learn_types: Callable[[TableInfo], None] | None = None,
        stopped: Callable[[], bool] = lambda: False,
    ) -> None:
        self.conn = conn
        self.tables = tables
        self.builder = builder
        self.server = server
        self.lsn = lsn
        self.snapshot_name = snapshot_name
        self.resume = resume
        self.chunk_rows = chunk_rows
        self._learn_types = learn_types
        self._stopped = stopped
        self.rows_read = 0
        self.complete = False
        # Rows delivered since the snapshot began (across resumes): orders the chunk positions.
        self._delivered = resume.rows if resume else 0
        # Rows inside a chunk are `event`s past the previous chunk's end (event contract).
        self._base: Position = resume.at_event(0) if resume else PgSnapshot(server, lsn)
        self._since_base = 0
        self._schemas: dict[int, TableSchema] = {}
        # Shared with the progress display (another thread): entries are only added and bumped.
        self.progress = [SnapshotProgress(t.qualified) for t in tables]

    def events(self) -> Iterator[ChangeEvent]:
        """Every row as op "r": markers first/true/last; the last row's position is Lsn(lsn)."""
        ts_ms = int(time.time() * 1000)
        converters: dict[int, Any] = {}
        first = True
        held: _Row | None = None
        try:
            for row in self._rows():
                if held is not None:
                    yield self._event(held, "first" if first else "true", ts_ms, converters, final=False)
                    first = False
                held = row
            if held is not None and not self._stopped():
                self.complete = True
                yield self._event(held, "last", ts_ms, converters, final=True)
            elif held is None:
                self.complete = not self._stopped()
        finally:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute("ROLLBACK")  # read-only: nothing to keep; also ends a failed one

    def _event(
        self, row: _Row, marker: str, ts_ms: int, converters: dict[int, Any], *, final: bool
    ) -> ChangeEvent:
        table = row.table
        conv = converters.get(table.oid)
        if conv is None:
            registry: TypeRegistry = self.builder.registry
            conv = converters[table.oid] = registry.row_converter(table.relation(), binary=False)
            self._schemas[table.oid] = table_schema(
                registry, conv.relation, table.primary_key, self.builder.db, table.facts()
            )
        if final:
            position: Position = Lsn(self.server, self.lsn)
        elif row.position is not None:
            position = self._base = row.position
            self._since_base = 0
        else:
            self._since_base += 1
            position = self._base.at_event(self._since_base)
        return self.builder.snapshot_row(
            conv.relation,
            conv,
            table.primary_key,
            row.values,
            lsn=self.lsn,
            ts_ms=ts_ms,
            marker=marker,
            position=position,
            boundary=final or row.position is not None,
            schema=self._schemas[table.oid],
        )

    # -- reading -------------------------------------------------------------------------------------
    def _begin(self) -> None:
        try:
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if self.snapshot_name:
                lit = quote_literal(self.conn, self.snapshot_name)
                self.conn.execute(f"SET TRANSACTION SNAPSHOT {lit}")  # no bind parameters here
        except psycopg.Error as exc:
            raise map_error(exc, "starting the snapshot transaction") from exc

    def _rows(self) -> Iterator[_Row]:
        self._begin()
        done = list(self.resume.done) if self.resume else []
        how = (
            f"exported snapshot {self.snapshot_name}" if self.snapshot_name else "a fresh snapshot (resumed)"
        )
        log.info("postgres snapshot started", tables=len(self.tables), at=format_lsn(self.lsn), using=how)
        for table, progress in zip(self.tables, self.progress, strict=True):
            if table.qualified in done:
                progress.done = True
                continue
            progress.estimate = self._estimate(table)
            if self._learn_types is not None:
                self._learn_types(table)
            start: tuple[str, ...] = ()
            if self.resume and self.resume.table == table.qualified:
                start = self.resume.key
            count = 0
            reader = self._keyset if table.primary_key else self._cursor
            for row in reader(table, start, done):
                if self._stopped():
                    return
                count += 1
                progress.rows = count
                yield row
            done.append(table.qualified)
            progress.done = True
            self.rows_read += count
            log.info("postgres snapshot: table read", table=table.qualified, rows=count)

    def _estimate(self, table: TableInfo) -> int | None:
        """The planner's row estimate (pg_class.reltuples): cheap, good enough for a progress bar."""
        try:
            row = self.conn.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s", (table.oid,)
            ).fetchone()
        except psycopg.Error:
            return None
        return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None

    def _select_list(self, table: TableInfo) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)

    def _keyset(self, table: TableInfo, start: tuple[str, ...], done: list[str]) -> Iterator[_Row]:
        key = table.primary_key
        types = {c.name: c.type_sql for c in table.columns}
        index = [next(i for i, c in enumerate(table.columns) if c.name == k) for k in key]
        cols = sql.SQL(", ").join(sql.Identifier(k) for k in key)
        params_sql = sql.SQL(", ").join(sql.SQL("%s::" + types[k]) for k in key)
        base = sql.SQL("SELECT {} FROM {}.{}").format(
            self._select_list(table), sql.Identifier(table.schema), sql.Identifier(table.name)
        )
        last = start
        while True:
            if last:
                query = sql.SQL("{} WHERE ({}) > ({}) ORDER BY {} LIMIT {}").format(
                    base, cols, params_sql, cols, sql.Literal(self.chunk_rows)
                )
                values = self._fetch(query, list(last), table)
            else:
                query = sql.SQL("{} ORDER BY {} LIMIT {}").format(base, cols, sql.Literal(self.chunk_rows))
                values = self._fetch(query, None, table)
            if not values:
                return
            for i, row in enumerate(values):
                position = None
                self._delivered += 1
                if i == len(values) - 1:
                    last = tuple(str(row[j]) for j in index)
                    position = PgSnapshot(
                        self.server, self.lsn, tuple(done), table.qualified, last, self._delivered
                    )
                yield _Row(table, row, position)
            if len(values) < self.chunk_rows:
                return

    def _cursor(self, table: TableInfo, _start: tuple[str, ...], done: list[str]) -> Iterator[_Row]:
        # No key to resume from: one cursor pass; the chunk positions restart this table on resume.
        name = sql.Identifier(f"cdc_snap_{table.oid}")
        query = sql.SQL("DECLARE {} NO SCROLL CURSOR FOR SELECT {} FROM {}.{}").format(
            name, self._select_list(table), sql.Identifier(table.schema), sql.Identifier(table.name)
        )
        self._execute(query, None, table)
        fetch = sql.SQL("FETCH {} FROM {}").format(sql.Literal(self.chunk_rows), name)
        try:
            while values := self._fetch(fetch, None, table):
                for i, row in enumerate(values):
                    position = None
                    self._delivered += 1
                    if i == len(values) - 1:
                        position = PgSnapshot(
                            self.server, self.lsn, tuple(done), table.qualified, (), self._delivered
                        )
                    yield _Row(table, row, position)
        finally:
            with contextlib.suppress(psycopg.Error):
                self._execute(sql.SQL("CLOSE {}").format(name), None, table)

    def _execute(
        self, query: sql.Composed, params: list[str] | None, table: TableInfo
    ) -> psycopg.Cursor[Any]:
        try:
            return self.conn.execute(query, params)
        except psycopg.Error as exc:
            raise map_error(exc, f"reading {table.qualified} for the snapshot") from exc

    def _fetch(
        self, query: sql.Composed, params: list[str] | None, table: TableInfo
    ) -> list[list[str | None]]:
        """Rows as the server's text output (the same text pgoutput sends), not Python values."""
        cur = self._execute(query, params, table)
        res = cur.pgresult
        if res is None:
            return []
        ncols = res.nfields
        out: list[list[str | None]] = []
        get = res.get_value
        for r in range(res.ntuples):
            row: list[str | None] = []
            for c in range(ncols):
                value = get(r, c)
                row.append(None if value is None else bytes(value).decode())
            out.append(row)
        return out
