"""Turn change-table rows and snapshot rows into ChangeEvents (pure: no I/O).

Row values keep SQLite's storage classes: INTEGER -> int, REAL -> float, TEXT -> str, BLOB -> bytes,
NULL -> None, both for trigger-recorded changes (decoded from the triggers' JSON, see triggers.py)
and for snapshot rows (read directly), so a row reads the same whichever way it arrived. Two REALs
are not JSON numbers: the infinities become the strings "Infinity" / "-Infinity", as every reader
writes them (Jackson's spelling), and a negative zero is 0.0 (the triggers see the value as SQLite
prints it, and SQLite prints no sign on a zero). SQLite stores no NaN (it becomes NULL).

The key is the primary key; tables without one are keyed by rowid (`{"rowid": n}`; `_rowid_` or `oid`
when the table has a column named "rowid", so the key never contradicts the row). An UPDATE that
changes the key is emitted as a delete of the old key followed by a create of the new one, as
Debezium does, so sinks that apply rows by key do not keep the old row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, now_ms
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Watermark
from cdc_logs.readers.sqlite.connection import InvalidText, TableInfo
from cdc_logs.readers.sqlite.schema import table_schema
from cdc_logs.readers.sqlite.triggers import ROWID_MEMBER
from cdc_logs.schema import TableSchema

_OPS = {"c": Op.CREATE, "u": Op.UPDATE, "d": Op.DELETE}


_INFINITIES = {"Inf": "Infinity", "-Inf": "-Infinity"}


def decode_value(value: Any) -> Any:
    """Undo the triggers' tagged encodings: ["x", hex] -> bytes, ["f", text] -> float."""
    if isinstance(value, list) and len(value) == 2:
        tag, text = value
        if tag == "x":
            return bytes.fromhex(text)
        if tag == "f":
            return _INFINITIES.get(text) or float(text)
    return value


def real_value(value: float) -> float | str:
    """A REAL read directly (snapshot), as the triggers record it: infinities as strings, no -0.0."""
    if value == 0.0:
        return 0.0
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_row(text: str | bytes | None) -> tuple[dict[str, Any] | None, int | None]:
    """Parse a recorded row; returns the column values and, for rowid-keyed tables, the rowid.
    Errors name the problem, never the row's data (it may hold personal data)."""
    if text is None:
        return None, None
    if isinstance(text, InvalidText):
        raise CdcError(ErrorKind.DECODE, "a TEXT value of the row is not valid UTF-8")
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CdcError(
            ErrorKind.DECODE,
            f"the recorded row is not valid JSON (at character {exc.pos})",
            "the triggers may have been edited by hand: run the reader's cleanup and start over",
        ) from exc
    rowid = raw.pop(ROWID_MEMBER, None)
    return {name: decode_value(v) for name, v in raw.items()}, rowid


def key_of(info: TableInfo | None, row: dict[str, Any] | None, rowid: int | None) -> dict[str, Any] | None:
    if row is None:
        return None
    if info is not None and info.key:
        return {col: row.get(col) for col in info.key}
    if rowid is None:
        return None
    return {info.rowid if info is not None and info.rowid else "rowid": rowid}


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One row of `_cdc_changes`."""

    id: int
    table: str
    op: str
    before: str | None
    after: str | None
    ts_ms: int


@dataclass(frozen=True, slots=True)
class EventFactory:
    """Builds events for one reader: the parts of `source` and `position` that never change."""

    server: str
    pipeline_name: str
    db: str  # the database file name
    schemas: dict[TableInfo, TableSchema] = field(default_factory=dict)  # one per table version

    def schema(self, info: TableInfo | None) -> TableSchema | None:
        if info is None:
            return None
        schema = self.schemas.get(info)
        if schema is None:
            schema = self.schemas[info] = table_schema(info, self.db)
        return schema

    def _source(self, table: str, ts_ms: int, snapshot: str, extra: dict[str, Any]) -> SourceInfo:
        return SourceInfo(
            connector="sqlite",
            name=self.pipeline_name,
            db=self.db,
            schema="main",
            table=table,
            ts_ms=ts_ms,
            snapshot=snapshot,
            extra=extra,
        )

    def position(self, change_id: int) -> Watermark:
        return Watermark(server=self.server, values=(change_id,))

    def change(self, row: ChangeRow, info: TableInfo | None) -> list[ChangeEvent]:
        """Events for one recorded change; every change id is a safe resume point (boundary)."""
        op = _OPS.get(row.op)
        if op is None:
            raise CdcError(ErrorKind.DECODE, f"change {row.id} has unknown op {row.op!r}")
        before, before_rowid = decode_row(row.before)
        after, after_rowid = decode_row(row.after)
        source = self._source(row.table, row.ts_ms, "false", {"change_id": row.id})
        position = self.position(row.id)
        old_key = key_of(info, before, before_rowid)
        new_key = key_of(info, after, after_rowid)
        now = now_ms()
        schema = self.schema(info)
        if op is Op.UPDATE and old_key != new_key:
            # The delete comes first, one event past the previous change id: its own position,
            # below the boundary of this change (event contract).
            moved = self.position(row.id - 1).at_event(1)
            return [
                ChangeEvent(
                    Op.DELETE,
                    source,
                    before,
                    None,
                    old_key,
                    now,
                    position=moved,
                    boundary=False,
                    schema=schema,
                    key_change=True,
                ),
                ChangeEvent(
                    Op.CREATE,
                    source,
                    None,
                    after,
                    new_key,
                    now,
                    position=position,
                    boundary=True,
                    schema=schema,
                    key_change=True,
                ),
            ]
        key = old_key if op is Op.DELETE else new_key
        return [
            ChangeEvent(op, source, before, after, key, now, position=position, boundary=True, schema=schema)
        ]

    def snapshot(
        self,
        info: TableInfo,
        row: dict[str, Any],
        rowid: int | None,
        marker: str,
        position: Watermark,
        last: bool,
    ) -> ChangeEvent:
        """A snapshot row (op "r"). Only the last one is a boundary: resuming from a position taken
        mid-snapshot would skip the rest of the snapshot, so the pipeline must not commit one."""
        source = self._source(info.name, now_ms(), marker, {})
        row = {k: real_value(v) if isinstance(v, float) else v for k, v in row.items()}
        return ChangeEvent(
            Op.READ,
            source,
            None,
            row,
            key_of(info, row, rowid),
            now_ms(),
            position=position,
            boundary=last,
            schema=self.schema(info),
        )
