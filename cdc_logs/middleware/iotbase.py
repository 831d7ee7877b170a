"""What the IoT middleware (iot_aggregation, anomaly_detection) share: durations, an event's time,
its numeric values (exact Decimals stay Decimals), its group, and the derived events they emit.

Values in events are the envelope's JSON-ready encodings (docs/envelope.md): a NUMERIC column is a
string ("12.50") whose schema column says NUMERIC/DECIMAL, a timestamp is an integer in the unit its
schema column names (or an ISO-8601 string for zoned ones). These helpers read them back.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import string
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo
from cdc_logs.schema import Column, Semantic, TableSchema
from cdc_logs.transforms.base import table_matches

#: The `source` block field naming the middleware that made an event (an aggregate, an anomaly).
DERIVED = "middleware"


def selected(tables: Sequence[str], event: ChangeEvent) -> bool:
    """Whether an IoT middleware takes `event`: with `tables`, the events of those tables; without,
    every source change but none of the events middleware made (another stage's aggregates or
    anomalies: name their tables in `tables` to take them)."""
    if tables:
        return table_matches(tables, event)
    return DERIVED not in event.source.extra


_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_TO_MS = {"days": 86_400_000, "ms": 1, "us": 0.001, "ns": 0.000001}
_INT_TYPES = {"int8", "int16", "int32", "int64"}
_NON_FINITE = {"nan", "inf", "infinity"}


class BadValue(ValueError):
    """An event cannot be used (its time or a value is not what the config says): dead-letter it."""


#: The longest window, lateness or horizon (a year): beyond it a window never closes in practice.
MAX_DURATION_MS = 366 * 86_400_000


def parse_duration(text: str | int) -> int:
    """ "5m", "30s", "250ms", "1h", "1d" (or milliseconds as an integer) -> milliseconds."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _DURATION.match(str(text))
    if match is None:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit, ms s m h d (e.g. 5m, 30s)")
    ms = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if ms > MAX_DURATION_MS:
        raise ValueError(f"{text!r} is longer than a year (366d), the longest duration taken")
    return ms


def event_time_ms(event: ChangeEvent, field: str | None) -> int:
    """The event's time in epoch milliseconds: the source's commit time (`source.ts_ms`) when `field`
    is None, else the row's field (a timestamp in its schema's unit, ISO-8601 text, epoch ms)."""
    if field is None:
        return int(event.source.ts_ms)
    row = event.row or {}
    value = row.get(field)
    if value is None:
        raise BadValue(f"the row has no value in event-time field {field!r}")
    if isinstance(value, bool):
        raise BadValue(f"event-time field {field!r} is a boolean")
    if isinstance(value, int | float):
        column = event.schema.column(field) if event.schema is not None else None
        unit = column.unit if column is not None else None
        return int(value * _TO_MS[unit]) if unit is not None else int(value)
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadValue(f"event-time field {field!r} is not ISO-8601 text or epoch milliseconds") from None
        moment = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)
    raise BadValue(f"event-time field {field!r} holds a {type(value).__name__}, not a time")


def is_decimal_column(column: Column | None) -> bool:
    return column is not None and (
        column.semantic in (Semantic.DECIMAL, Semantic.VARIABLE_SCALE_DECIMAL)
        or column.source_type in ("NUMERIC", "DECIMAL", "NEWDECIMAL", "MONEY")
    )


def field_kind(event: ChangeEvent, field: str, value: Any) -> str:
    """ "decimal", "int" or "float": the field's kind, from the schema when the source has one (so it is
    the same for every event of a table), else from the value (JSON numbers: float)."""
    column = event.schema.column(field) if event.schema is not None else None
    if column is not None:
        if is_decimal_column(column):
            return "decimal"
        return "int" if column.type in _INT_TYPES else "float"
    return "decimal" if isinstance(value, Decimal | str) else "float"


def numeric(value: Any, kind: str, field: str) -> int | float | Decimal:
    """A row's value as the number of its kind; raises BadValue when it is not one."""
    if isinstance(value, bool):
        raise BadValue(f"value field {field!r} is a boolean, not a number")
    try:
        if kind == "decimal":
            number = value if isinstance(value, Decimal) else Decimal(str(value))
            if not number.is_finite():
                raise BadValue(f"value field {field!r} is {number} (NaN/Infinity is not a finite number)")
            return number
        if isinstance(value, str):
            if value.strip().lstrip("+-").lower() in _NON_FINITE:  # how the envelope carries them
                raise BadValue(f"value field {field!r} is {value} (NaN/Infinity is not a finite number)")
            raise BadValue(f"value field {field!r} is text, not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise BadValue(f"value field {field!r} is {value} (NaN/Infinity is not a finite number)")
        return int(value) if kind == "int" else float(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        if isinstance(exc, BadValue):
            raise
        raise BadValue(f"value field {field!r} is not a number") from None


def numeric_fields(event: ChangeEvent, exclude: set[str]) -> list[str]:
    """The row's numeric fields (not booleans, not key or excluded columns), in row order: the
    default value fields."""
    row = event.row or {}
    keys = set(event.key or {})
    out = []
    for name, value in row.items():
        if name in exclude or name in keys:
            continue
        column = event.schema.column(name) if event.schema is not None else None
        if column is not None:
            plain = column.semantic is None and column.type in _INT_TYPES | {"float32", "float64"}
            if plain or is_decimal_column(column):
                out.append(name)
        elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            out.append(name)
    return out


_GROUP_SPEC = re.compile(r"^\$(?:table|topic(?:\.\d+)?)$")


def check_group_spec(spec: str) -> str:
    """A group-by spec as the config gives it: a row field, or one of the `$` names (a misspelled one
    would dead-letter every reading at run time: refused when the config is read)."""
    if spec.startswith("$") and _GROUP_SPEC.match(spec) is None:
        raise ValueError(f"group_by {spec!r}: the $-names are $table, $topic and $topic.N (N from 0)")
    if not spec:
        raise ValueError("group_by: an empty field name")
    return spec


def check_field_name(name: str, what: str) -> str:
    """A value or event-time field: a row column (no `$` names there)."""
    if not name or name.startswith("$"):
        raise ValueError(f"{what} {name!r} is not a row field name (the $-names are for group_by only)")
    return name


def log_point(n: int) -> bool:
    """Whether the n-th occurrence is logged: at 1, 2, 5, 10, 20, 50, 100, ... (never silent, never a
    line per event in a flood)."""
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n in (1, 2, 5)


def time_fields(event: ChangeEvent, event_time_field: str | None) -> set[str]:
    """The row's time columns, never default value fields: `event_time_field`, else the source's
    watermark column (a bus source with `watermark: {column: ts}` makes the numeric `ts` the event's
    source.ts_ms, or an integer watermark its source.watermark; the row keeps the column)."""
    if event_time_field is not None:
        return {event_time_field}
    marks = {event.source.ts_ms, event.source.extra.get("watermark")} - {None}
    return {
        name
        for name, value in (event.row or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool) and value in marks
    }


def group_value(event: ChangeEvent, spec: str) -> Any:
    """One group-by value: a row field, or `$topic` (the MQTT topic) / `$topic.N` (its N-th segment,
    from 0), or `$table`."""
    if spec == "$table":
        return event.source.table
    if spec.startswith("$topic"):
        topic = event.source.extra.get("topic")
        if topic is None:
            raise BadValue(f"group-by {spec!r}: the event has no topic (not from an MQTT/bus source)")
        if spec == "$topic":
            return topic
        parts = str(topic).split("/")
        index = int(spec.split(".", 1)[1])
        if index >= len(parts):
            raise BadValue(f"group-by {spec!r}: topic {topic!r} has only {len(parts)} segments")
        return parts[index]
    row = event.row or {}
    if spec not in row:
        raise BadValue(f"the row has no group-by field {spec!r}")
    if row[spec] is None:
        # The group is part of the derived table's key: a NULL there is refused by keyed sinks.
        raise BadValue(f"group-by field {spec!r} is NULL (a group is a key column of the derived table)")
    return row[spec]


def group_column_name(spec: str) -> str:
    """The output column of a group-by spec: `$topic.1` -> topic_1, `$table` -> source_table."""
    if spec == "$table":
        return "source_table"
    return spec.lstrip("$").replace(".", "_")


def group_column(event: ChangeEvent, spec: str, value: Any) -> Column:
    """The output column of a group-by value (a key column): the source column's type when known."""
    name = group_column_name(spec)
    source = event.schema.column(spec) if event.schema is not None and not spec.startswith("$") else None
    if source is not None:
        return Column(
            name, source.type, source.semantic, source.source_type, source.length, source.scale, False, True
        )
    if isinstance(value, int) and not isinstance(value, bool):
        return Column(name, "int64", None, "BIGINT", optional=False, key=True)
    return Column(name, "string", None, "TEXT", optional=False, key=True)


def number_column(name: str, kind: str) -> Column:
    if kind == "decimal":
        return Column(name, "string", None, "NUMERIC")
    if kind == "int":
        return Column(name, "int64", None, "BIGINT")
    return Column(name, "float64", None, "DOUBLE PRECISION")


def output_value(value: int | float | Decimal | None) -> Any:
    """A number as the envelope carries it (a Decimal as exact text)."""
    return str(value) if isinstance(value, Decimal) else value


_PLACEHOLDERS = ("table", "schema", "db")


def check_output_table(template: str) -> str:
    """An output_table template: only {table} {schema} {db}, and never the source table itself (the
    derived events would be written as changes of the source table)."""
    try:
        names = [name for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"output_table {template!r}: {exc} (write {{table}}, {{schema}}, {{db}})") from None
    unknown = [n for n in names if n not in _PLACEHOLDERS]
    if unknown:
        raise ValueError(
            f"output_table {template!r}: unknown placeholder(s) {unknown}; the allowed ones are "
            "{table} {schema} {db}"
        )
    if template.format(table="\0t", schema="\0s", db="\0d") in ("\0t", "\0s.\0t", "\0d.\0t"):
        raise ValueError(
            f"output_table {template!r} is the source table itself: give the derived table its own "
            "name (e.g. {table}_agg)"
        )
    return template


def derived_table(template: str, event: ChangeEvent) -> str:
    return template.format(table=event.source.table, schema=event.source.schema or "", db=event.source.db)


def derived_event(
    trigger: ChangeEvent,
    table: str,
    columns: Sequence[Column],
    row: dict[str, Any],
    cache: dict[tuple[Any, ...], TableSchema],
    *,
    maker: str,
    op: Op = Op.CREATE,
    before: dict[str, Any] | None = None,
) -> ChangeEvent:
    """An event of a derived table (an aggregate, an anomaly) made by the middleware. It copies the
    triggering event's source block (same server, db and schema; the derived table; `middleware`: the
    name of the stage that made it) and times, so a replay of the trigger makes the very same event.
    It has no position (sinks never take it for a source change to guard: keyed sinks upsert it by its
    key, which is what makes a replay harmless)."""
    src = trigger.source
    shape = (src.db, src.schema, table, tuple(columns))
    schema = cache.get(shape)
    if schema is None:
        schema = cache[shape] = TableSchema(src.db, src.schema, table, tuple(columns))
    key_names = [c.name for c in columns if c.key]
    return ChangeEvent(
        op=op,
        source=SourceInfo(
            src.connector, src.name, src.db, table, src.schema, src.ts_ms, "false", {DERIVED: maker}
        ),
        before=before,
        after=row,
        key={k: row[k] for k in key_names} if key_names else None,
        ts_ms=trigger.ts_ms,
        schema=schema,
    )
