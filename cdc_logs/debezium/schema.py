"""Debezium's JSON converter schema block -> `TableSchema`, so events read from Debezium topics are as
fully described as native ones (the SQL sink then knows epoch milliseconds from microseconds).

With `value.converter.schemas.enable=true` (Kafka Connect's default) each record carries
`{"schema": {...}, "payload": {...}}`; the envelope struct's `after`/`before` field is the row's
struct, one field per column: `type` (Connect type), `name` (the semantic, e.g.
`io.debezium.time.MicroTimestamp`), `optional`, and `parameters` (a decimal's `scale` and
`connect.decimal.precision`; `allowed` of an enum, `length` of bits; with
`column.propagate.source.type`, the source type, length and scale) and `default`, so that writing
the events again with `schemas: true` (cdc_logs.connect_schema) gives Debezium's block back.
The key schema names the key columns. Without schemas, events have no schema and sinks fall back on
the target's column types (docs/debezium.md).

Schemas are cached by their JSON text: every record of a table version shares one object.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from cdc_logs.schema import Column, TableSchema

_CACHE_LIMIT = 1024
_cache: dict[bytes, TableSchema] = {}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def column(field: dict[str, Any], *, key: bool = False) -> Column:
    params = field.get("parameters") or {}
    kind = str(field.get("type", "string"))
    name = str(field.get("field", ""))
    source = str(params.get("__debezium.source.column.type", ""))
    length = _int(
        params.get("connect.decimal.precision")
        or params.get("__debezium.source.column.length")
        or params.get("length")  # io.debezium.data.Bits
    )
    scale = _int(params.get("scale") or params.get("__debezium.source.column.scale"))
    element = None
    if kind == "array" and isinstance(field.get("items"), dict):
        element = column({**field["items"], "field": name})
    allowed = params.get("allowed")  # io.debezium.data.Enum / EnumSet members
    default = field.get("default")
    return Column(
        name,
        kind,
        field.get("name") or None,
        source.upper(),
        length,
        scale,
        optional=bool(field.get("optional", True)),
        key=key,
        element=element,
        enum_values=tuple(str(allowed).split(",")) if allowed else (),
        default=default if isinstance(default, str | int | float | bool) else None,
    )


def _struct(schema: dict[str, Any], part: str) -> dict[str, Any] | None:
    for field in schema.get("fields") or ():
        if field.get("field") == part and field.get("type") == "struct":
            return field
    return None


def table_schema(
    value_schema: Any, key_schema: Any, db: str, schema_name: str | None, table: str
) -> TableSchema | None:
    """The row schema of a Debezium envelope's value schema (None when there is none)."""
    if not isinstance(value_schema, dict):
        return None
    row = _struct(value_schema, "after") or _struct(value_schema, "before")
    if row is None:
        return None
    keys = (
        {f.get("field") for f in (key_schema or {}).get("fields") or ()}
        if isinstance(key_schema, dict)
        else set()
    )
    cache_key = orjson.dumps([row, sorted(k for k in keys if k), db, schema_name, table])
    cached = _cache.get(cache_key)
    if cached is not None:
        return cached
    columns = tuple(column(f, key=f.get("field") in keys) for f in row.get("fields") or ())
    result = TableSchema(db, schema_name, table, columns, version=zlib.crc32(cache_key))
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[cache_key] = result
    return result
