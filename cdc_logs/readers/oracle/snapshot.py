"""The initial snapshot: each captured table as of one SCN (a flashback query), as op "r" events. Pure.

    SELECT <each column rendered as text> FROM "OWNER"."TABLE" AS OF SCN :scn

One SCN for every table gives one consistent view, and the stream then starts after it (transactions
committed at or before it are in the snapshot, later ones are streamed). The columns are rendered as
text in the mining session's formats (TO_CHAR with the NLS formats of connection.py, RAWTOHEX), then
read by the same conversion as SQL_REDO values (convert.py): a value reads the same in a snapshot row
and in a change. LOB columns are left out of the row and listed in `unchanged`, as in changes (their
content is not mined). Flashback queries need the undo of that SCN: a long snapshot of a busy table
can fail with ORA-01555 (snapshot too old); raise UNDO_RETENTION.

Positions: the rows carry (snapshot SCN, `inside`, their number); the last row is the boundary
(snapshot SCN, restart SCN), so a snapshot interrupted before its end is taken again from the start
(it commits nothing before its last row). Empty tables: a Heartbeat at that position marks the end.
`events()` is driven by the reader with rows from connection.py (or recorded ones in the tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, SourceInfo, Undecodable, now_ms
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import OracleScn
from cdc_logs.readers.base import SnapshotProgress
from cdc_logs.readers.oracle.convert import NLS_DATE_FORMAT, EventBuilder
from cdc_logs.readers.oracle.redo_sql import EmptyLob, Temporal, Value
from cdc_logs.readers.oracle.schema import CatalogColumn, TableInfo, base_type

_FULL_TS = "YYYY-MM-DD HH24:MI:SS.FF9"
_FULL_TSTZ = "YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM"
_LOBS = frozenset({"CLOB", "NCLOB", "BLOB", "BFILE", "LONG", "LONG RAW", "XMLTYPE"})


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def select_expr(col: CatalogColumn) -> str | None:
    """The SELECT expression rendering `col` as text (None: a LOB, not read)."""
    kind = base_type(col.data_type)
    q = _quoted(col.name)
    if kind in _LOBS:
        return None
    if kind == "DATE":
        return f"TO_CHAR({q}, '{NLS_DATE_FORMAT}')"
    if kind == "TIMESTAMP":
        return f"TO_CHAR({q}, '{_FULL_TS}')"
    if kind in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH LOCAL TIME ZONE"):
        return f"TO_CHAR({q}, '{_FULL_TSTZ}')"
    if kind == "RAW":
        return f"RAWTOHEX({q})"
    if kind in ("NUMBER", "FLOAT", "BINARY_FLOAT", "BINARY_DOUBLE"):
        return f"TO_CHAR({q}, 'TM9', 'NLS_NUMERIC_CHARACTERS=''.,''')"
    return q


def select_sql(info: TableInfo) -> str:
    """The flashback query of a table (bind :scn); its columns are `read_columns(info)` in order."""
    exprs = [e for e in (select_expr(c) for c in info.columns) if e is not None] or ["NULL"]
    return f"SELECT {', '.join(exprs)} FROM {_quoted(info.owner)}.{_quoted(info.name)} AS OF SCN :scn"


def read_columns(info: TableInfo) -> list[CatalogColumn]:
    return [c for c in info.columns if select_expr(c) is not None]


def as_value(col: CatalogColumn, text: Any) -> Value:
    """A rendered column as the value SQL_REDO would have carried."""
    if text is None:
        return None
    kind = base_type(col.data_type)
    text = str(text)
    if kind == "DATE":
        return Temporal("TO_DATE", text, NLS_DATE_FORMAT)
    if kind == "TIMESTAMP":
        return Temporal("TO_TIMESTAMP", text, _FULL_TS)
    if "TIME ZONE" in kind:
        return Temporal("TO_TIMESTAMP_TZ", text, _FULL_TSTZ)
    return text  # numbers and RAW as text: convert.py reads both


class SnapshotEvents:
    """Turns the rows of each table's flashback query into events; see the module docstring."""

    def __init__(self, builder: EventBuilder, server: str, scn: int, restart: int) -> None:
        self.builder = builder
        self.server = server
        self.scn = scn
        self.restart = restart
        self.progress: list[SnapshotProgress] = []
        self._count = 0

    def events(
        self,
        tables: list[TableInfo],
        rows_of: Callable[[TableInfo], Iterable[tuple[Any, ...]]],
        stopped: Callable[[], bool] = lambda: False,
    ) -> Iterator[ChangeEvent | Heartbeat | Undecodable]:
        self.progress = [SnapshotProgress(t.qualified) for t in tables]
        held: ChangeEvent | Undecodable | None = None
        first = True
        for info, progress in zip(tables, self.progress, strict=True):
            columns = read_columns(info)
            lobs = tuple(c.name for c in info.columns if select_expr(c) is None)
            for row in rows_of(info):
                if stopped():
                    return  # nothing past the last boundary is committed: the snapshot is taken again
                item = self._item(info, columns, lobs, row, "first" if first else "true")
                first = False
                progress.rows += 1
                if held is not None:
                    yield held
                held = item
            progress.done = True
        end = OracleScn(self.server, scn=self.scn, restart=self.restart)
        if held is None:
            yield Heartbeat(end)
            return
        if isinstance(held, ChangeEvent):
            held.source.snapshot = "last"
        held.position, held.boundary = end, True
        yield held

    def _item(
        self,
        info: TableInfo,
        columns: list[CatalogColumn],
        lobs: tuple[str, ...],
        row: tuple[Any, ...],
        mark: str,
    ) -> ChangeEvent | Undecodable:
        self._count += 1
        position = OracleScn(self.server, scn=self.scn, restart=self.restart, inside=True, event=self._count)
        try:
            if len(row) != len(columns) and columns:
                raise CdcError(ErrorKind.DECODE, f"{len(row)} values for {len(columns)} columns")
            values: dict[str, Value] = {c.name: as_value(c, v) for c, v in zip(columns, row, strict=False)}
            values.update({name: EmptyLob("LOB") for name in lobs})
            after, missing = self.builder.row(info, values)
        except CdcError as exc:
            if exc.kind is not ErrorKind.DECODE:
                raise
            raw = repr(tuple(str(v) if v is not None else None for v in row)).encode()
            return Undecodable(
                position, info.qualified, f"snapshot row: {exc.message}", boundary=False, raw=raw
            )
        key = {k: after[k] for k in info.key if k in after} or None
        source = SourceInfo(
            connector=self.builder.connector,
            name=self.builder.pipeline,
            db=self.builder.db,
            schema=info.owner,
            table=info.name,
            ts_ms=now_ms(),
            snapshot=mark,
            extra={"scn": str(self.scn)},
        )
        return ChangeEvent(
            op=Op.READ,
            source=source,
            ts_ms=source.ts_ms,
            after=after,
            key=key,
            unchanged=tuple(missing),
            position=position,
            boundary=False,
            schema=info.schema,
        )
