"""Initial snapshot: every row of the captured tables, consistent with a change-table position.

The rows and the highest committed change id are read in ONE read transaction. In WAL mode that is
a fixed snapshot of the database: a writer's transaction is either entirely in it (its rows in the
tables and its changes at or below the id) or entirely after it (its changes above the id), so no
change is in neither (no gap), however busy the writers are. A new consumer streams after that id
(no change both in the snapshot and streamed). A consumer registered before (a snapshot started again
after a kill) streams after the id it is pinned at, at or below this one (SqliteReader._snapshot), so
the deletes of rows an earlier attempt delivered follow; changes the snapshot already shows are then
streamed again (replays, at-least-once).

The read transaction stays open while the snapshot is consumed (the pipeline's backpressure may
pause it); that delays WAL checkpoints for that long but blocks no writer.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

from cdc_logs.readers.sqlite import state
from cdc_logs.readers.sqlite.connection import TableInfo, quote_ident
from cdc_logs.readers.sqlite.triggers import ROWID_MEMBER

#: Rows fetched from SQLite at a time (memory bound while the snapshot is paused).
FETCH = 500


class Snapshot:
    """`with Snapshot(conn, tables) as snap:` then `snap.change_id` and `snap.rows()`."""

    def __init__(self, conn: sqlite3.Connection, tables: list[TableInfo]) -> None:
        self._conn = conn
        self._tables = tables
        self.change_id = 0

    def __enter__(self) -> Snapshot:
        self._conn.execute("BEGIN DEFERRED")
        # The first SELECT fixes the transaction's snapshot; everything below reads that same state.
        self.change_id = state.last_change_id(self._conn)
        return self

    def __exit__(self, *exc: object) -> None:
        # The connection may have been closed meanwhile (reader stopping): nothing left to end.
        with contextlib.suppress(sqlite3.ProgrammingError):
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")

    def rows(self) -> Iterator[tuple[TableInfo, dict[str, Any], int | None]]:
        """(table, row, rowid) for every row; rowid only for tables keyed by rowid."""
        for info in self._tables:
            by_rowid = not info.key and info.rowid is not None
            # `*`, not the column list known at open: the snapshot must show the columns as of its
            # own read transaction (an ALTER TABLE may have run since).
            select = f"{info.rowid} AS {ROWID_MEMBER}, *" if by_rowid else "*"
            cur = self._conn.execute(f"SELECT {select} FROM {quote_ident(info.name)}")
            names = [d[0] for d in cur.description]
            while batch := cur.fetchmany(FETCH):
                for values in batch:
                    row = dict(zip(names, values, strict=True))
                    rowid = row.pop(ROWID_MEMBER) if by_rowid else None
                    yield info, row, rowid
