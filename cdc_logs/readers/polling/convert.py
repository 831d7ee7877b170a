"""Polled rows -> ChangeEvents, and the watermark <-> position encoding (pure: no I/O).

What polling can and cannot see:
  * the row's current state only: `before` is always null (a soft delete carries the row as `before`);
  * hard deletes are invisible; a soft-delete column turns a flagged row into op "d";
  * insert vs update is a guess: `incrementing` -> "c"; `timestamp` -> "c"; `timestamp+incrementing`
    -> "u" when the row's id is at or below the highest id already seen (an older row that changed),
    else "c". Several updates between two polls collapse into one event with the last state.

The position holds every table's watermark, flat, so it stays readable in `cdc-logs offsets show`:
(table, ts, id, table, ts, id, ...) in configured order, for the tables with a watermark yet; the
part a table's mode does not use is null.
Values that are not JSON numbers are tagged text, so they decode back to the same Python type and
bind exactly as read: "s:" str, "dt:" datetime (ISO-8601), "d:" date, "t:" time, "n:" Decimal,
"u:" UUID, "b:" bytes (hex).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, now_ms
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Watermark
from cdc_logs.readers.polling.query import RAW_ID, RAW_TS, Plan
from cdc_logs.schema import TableSchema
from cdc_logs.tagged import decode_mark, encode_mark


@dataclass(slots=True)
class Mark:
    """A table's watermark: the last row delivered, and the highest id seen (for the c/u guess)."""

    ts: Any = None
    inc: Any = None
    max_id: Any = None
    seen: bool = False


def position_values(plans: list[Plan], marks: dict[str, Mark]) -> tuple[Any, ...]:
    """(table, ts, id) per table with a watermark, in configured order; an unused part is null."""
    out: list[Any] = []
    for plan in plans:
        mark = marks[plan.label]
        if mark.seen:
            out += [plan.label, encode_mark(mark.ts), encode_mark(mark.inc)]
    return tuple(out)


def parse_position(values: tuple[Any, ...]) -> dict[str, tuple[Any, Any]]:
    """{table: (ts, id)} from a position's values (the inverse of `position_values`)."""
    if len(values) % 3:
        raise CdcError(
            ErrorKind.DECODE,
            f"stored polling position {values!r} is not a list of (table, timestamp, id) triples",
            "fix it with `cdc-logs offsets set` or start over with `cdc-logs offsets reset`",
        )
    return {
        str(values[i]): (decode_mark(values[i + 1]), decode_mark(values[i + 2]))
        for i in range(0, len(values), 3)
    }


def soft_deleted(value: Any) -> bool:
    """A soft-delete flag is set unless NULL, false or 0 (covers booleans and `deleted_at` columns)."""
    return value is not None and value is not False and value != 0


def watermark_of(plan: Plan, row: dict[str, Any]) -> tuple[Any, Any]:
    """The row's (ts, id), raw when the plan reads them raw; pops the raw helper columns."""
    raw_ts, raw_id = row.pop(RAW_TS, None), row.pop(RAW_ID, None)
    ts = (raw_ts if plan.raw else row.get(plan.ts_name)) if plan.ts_name else None
    inc = (raw_id if plan.raw else row.get(plan.inc_name)) if plan.inc_name else None
    return ts, inc


def _ts_ms(value: Any) -> int:
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(value, dt.date):
        return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp() * 1000)
    return now_ms()


@dataclass(frozen=True, slots=True)
class EventFactory:
    server: str
    pipeline_name: str
    db: str

    def event(
        self,
        plan: Plan,
        row: dict[str, Any],
        op: Op,
        values: tuple[Any, ...],
        boundary: bool,
        event: int = 0,
        *,
        ts: Any = None,
        schema: TableSchema | None = None,
    ) -> ChangeEvent:
        """`values`/`event`: the watermarks after the row, or (inside a timestamp group, which is not
        a boundary) the watermarks before the group and the row's place in it (event contract)."""
        source = SourceInfo(
            connector="polling",
            name=self.pipeline_name,
            db=self.db,
            schema=plan.schema,
            table=plan.table,
            ts_ms=_ts_ms(ts) if plan.ts_name else now_ms(),
        )
        key = {k: row.get(k) for k in plan.key} if plan.key else None
        before, after = (row, None) if op is Op.DELETE else (None, row)
        return ChangeEvent(
            op,
            source,
            before,
            after,
            key,
            now_ms(),
            position=Watermark(server=self.server, values=values, table=plan.label, event=event),
            boundary=boundary,
            schema=schema,
        )
