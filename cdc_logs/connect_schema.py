"""Kafka Connect JsonConverter schemas for change events: the `schema` half of `{"schema", "payload"}`.

Debezium with `key.converter.schemas.enable=true` / `value.converter.schemas.enable=true` (Kafka
Connect's default) writes every record as `{"schema": <Connect schema as JSON>, "payload": <value>}`.
This module builds exactly that schema JSON from what a reader already knows: the event's
`TableSchema` (cdc_logs.schema: each column's Connect type, semantic name, nullability, default), its
`SourceInfo` (the connector decides the `source` struct) and its transaction block. Pure and sans-IO.

The interface (the Avro encoder converts these dicts as Confluent's AvroData converts Connect
schemas, so the standard JsonConverter JSON is the contract):

  key_schema(event, prefix, columns=None)   the key struct `<base>.Key`, or None for a null key
  envelope_schema(event, prefix)            the value struct `<base>.Envelope` (version 2): `before`
                                            and `after` are the row struct `<base>.Value`, `source`
                                            the connector's source struct, `transaction` the
                                            `event.block` struct, then `op`, `ts_ms`
  value_struct(event, prefix)               the `<base>.Value` row struct alone
  with_schema(payload, schema)              {"schema": schema, "payload": payload}
  key_record(event, prefix, key) / envelope_record(event, prefix)
                                            the serialized JsonConverter records (bytes), the hot path
  name_base(event, prefix)                  `<prefix>.<schema or db>.<table>`, the topic Debezium
                                            would use (its schema names are derived from it)
  source_schema(event), transaction_schema(), column_schema(column)
                                            the parts, for converters that walk them
  require_schema(event)                     the event's TableSchema, or the CdcError with the fix

A schema dict is JSON as Kafka's JsonConverter writes it: `{"type": "struct", "fields": [...],
"optional": false, "name": ..., "version": ...}`; a field is `{"type", "optional", ["name",
"version", "parameters", "default",] "field"}` with Connect's JSON type names (`float`/`double`
for float32/float64). The returned dicts are shared by the cache: treat them as read-only.

What is described, and why (docs/schemas.md has the full table):
- The row struct's fields are the table's columns in table order, each with the type, semantic name
  (`version: 1` as Debezium's semantic types carry), parameters (`allowed` for enums and sets,
  `length` for bits) and the catalog default, as Debezium writes them by default (no
  `__debezium.source.column.*` parameters: that needs `column.propagate.source.type`).
- The schema describes the payload cdc-logs writes, never more: the envelope has no `ts_us`/`ts_ns`
  and the source struct no `sequence`/`ts_us`/`ts_ns`/`origin`/`origin_lsn` (fields Debezium 3.6
  has), because cdc-logs does not write them. A field of the schema that is optional may be absent
  from a payload (JsonConverter reads it as null); a field of the payload is always in the schema.
- A NOT NULL column absent from, or null in, the event's `before` or `after` is optional in that
  event's row struct (both share one `Value` struct, as Debezium's): a column listed in `unchanged`
  (Postgres unchanged TOAST; the envelope then gets the `unchanged` field), a non-key column of the
  `before` of a Postgres delete under REPLICA IDENTITY DEFAULT (only the key is sent), or a null
  written before the column became NOT NULL (the reader reads the catalog when it sees the table, not
  when the row was written). A JsonConverter would refuse a required field without a value.
- An array column whose value is nested (Postgres `int[][]`, which its catalog does not tell from
  `int[]`) gets `items` nested as deep as the value in that event's struct; a JsonConverter reading a
  nested value with a flat schema silently makes zeros of it. An update whose before and after have
  different depths cannot be described (one Value struct): SINK_REJECTED.
  Such events carry a variant of the table version's schema; every other event shares the first.
  Only the required and the array columns are looked at, per event.
- A BIGINT UNSIGNED value above int64's range (the schema says int64, Debezium's default
  bigint.unsigned.handling.mode=long) is refused as SINK_REJECTED: a converter would wrap it.
- Op `m` (a logical decoding message) has no table: its record is Debezium's `MessageValue` shape
  (`op`, `ts_ms`, `source`, `transaction`, `message`) with the `MessageKey` key.
- An event without a TableSchema (the `debezium` source reading a topic written without schemas)
  cannot be described: `require_schema` raises a CdcError naming the fix. Never a guessed schema.

Cost: schemas are cached per (TableSchema fingerprint, name base, connector, source shape, relaxed
NOT NULL columns, nested array depths) together with their serialized JSON, so a steady stream builds
each one once and a record costs a dict lookup and a byte concatenation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from cdc_logs.envelope import ChangeEvent, Op, dumps
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.schema import Column, Semantic, TableSchema

Schema = dict[str, Any]

#: Connect type (cdc_logs.schema.Column.type) -> the JsonConverter's spelling.
JSON_TYPES: Final[dict[str, str]] = {
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "float32": "float",
    "float64": "double",
    "float": "float",  # the JsonConverter's own spellings (schemas read from Debezium topics)
    "double": "double",
    "boolean": "boolean",
    "string": "string",
    "bytes": "bytes",
    "array": "array",
    "map": "map",
    "struct": "struct",
}

#: Debezium's SnapshotRecord values, the `allowed` of the source's `snapshot` enum.
SNAPSHOT_ALLOWED: Final = "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"

ENVELOPE_VERSION: Final = 2  # Debezium 2.x/3.x envelopes (`Envelope.schema()` sets version 2)
TRANSACTION_BLOCK: Final = "event.block"
_ILLEGAL_NAME_CHARS = re.compile(r"[^a-zA-Z0-9._-]")


def _f(field_name: str, kind: str, optional: bool, /, **extra: Any) -> Schema:
    """One struct field in the JsonConverter's key order."""
    out: Schema = {"type": kind, "optional": optional}
    out.update(extra)
    out["field"] = field_name
    return out


# -- source structs --------------------------------------------------------------------------------
def _common_head() -> list[Schema]:
    return [
        _f("version", "string", False),
        _f("connector", "string", False),
        _f("name", "string", False),
        _f("ts_ms", "int64", False),
        _f(
            "snapshot",
            "string",
            True,
            name=Semantic.ENUM,
            version=1,
            parameters={"allowed": SNAPSHOT_ALLOWED},
            default="false",
        ),
        _f("db", "string", False),
    ]


#: connector -> (source struct name, whether `schema` is always there, the extra fields after `table`).
#: The extras are the fields the readers put in SourceInfo.extra (docs/envelope.md), typed as
#: Debezium types them where Debezium has the field.
_SOURCES: Final[dict[str, tuple[str, bool, tuple[Schema, ...]]]] = {
    "postgresql": (
        "io.debezium.connector.postgresql.Source",
        True,
        (_f("txId", "int64", True), _f("lsn", "int64", True), _f("xmin", "int64", True)),
    ),
    "mysql": (
        "io.debezium.connector.mysql.Source",
        False,
        (
            _f("server_id", "int64", False),
            _f("gtid", "string", True),
            _f("file", "string", False),
            _f("pos", "int64", False),
            _f("row", "int32", False),
        ),
    ),
    "sqlite": ("cdc_logs.connector.sqlite.Source", True, (_f("change_id", "int64", True),)),
    "polling": ("cdc_logs.connector.polling.Source", False, ()),
    "oracle": (
        "io.debezium.connector.oracle.Source",
        True,
        (
            _f("txId", "string", True),
            _f("scn", "string", True),
            _f("commit_scn", "string", True),
            _f("rs_id", "string", True),
            _f("ssn", "int64", True),
        ),
    ),
}
_SOURCES["mariadb"] = ("io.debezium.connector.mariadb.Source", *_SOURCES["mysql"][1:])
_SOURCES["mongodb"] = (
    "io.debezium.connector.mongo.Source",
    False,
    (
        _f("rs", "string", True),
        _f("collection", "string", False),
        _f("ord", "int32", False),
        _f("lsid", "string", True),
        _f("txnNumber", "int64", True),
        _f("wallTime", "int64", True),
    ),
)


#: Debezium source fields cdc-logs' readers do not write, typed as Debezium types them, for events
#: that carry them anyway (a `debezium` source passes Debezium's source block through).
_DEBEZIUM_EXTRAS: Final[dict[str, str]] = {
    "sequence": "string",
    "ts_us": "int64",
    "ts_ns": "int64",
    "origin": "string",
    "origin_lsn": "int64",
    "thread": "int64",
    "query": "string",
}


def _inferred(name: str, value: Any) -> Schema:
    """A source field no connector table lists (e.g. added by a transform): typed from its value."""
    if name in _DEBEZIUM_EXTRAS:
        return _f(name, _DEBEZIUM_EXTRAS[name], True)
    if isinstance(value, bool):
        return _f(name, "boolean", True)
    if isinstance(value, int):
        return _f(name, "int64", True)
    if isinstance(value, float):
        return _f(name, "double", True)
    if value is None or isinstance(value, str):
        return _f(name, "string", True)
    raise CdcError(
        ErrorKind.CONFIG,
        f"source field {name!r} holds a {type(value).__name__}, which has no Connect schema here",
        "keep source fields to strings and numbers (check the transforms), or set schemas: false",
    )


def source_schema(event: ChangeEvent) -> Schema:
    """The `source` struct for the event's connector (cached per connector and source shape)."""
    src = event.source
    cache_key = ("source", src.connector, src.schema is None, tuple(src.extra))
    cached = _cache.get(cache_key)
    if cached is not None:
        return cached[0]
    name, always_schema, extras = _SOURCES.get(
        src.connector, (f"cdc_logs.connector.{_ILLEGAL_NAME_CHARS.sub('_', src.connector)}.Source", False, ())
    )
    fields = _common_head()
    if src.schema is not None:
        fields.append(_f("schema", "string", not always_schema))
    fields.append(_f("table", "string", src.connector in ("mysql", "mariadb")))
    known = {f["field"] for f in extras}
    fields.extend(dict(f) for f in extras)
    fields.extend(_inferred(k, v) for k, v in src.extra.items() if k not in known)
    schema: Schema = {"type": "struct", "fields": fields, "optional": False, "name": name, "version": 1}
    _remember(cache_key, schema)
    return schema


def transaction_schema() -> Schema:
    """Debezium's transaction block (`provide.transaction.metadata=true`), as an optional field."""
    return {
        "type": "struct",
        "fields": [
            _f("id", "string", False),
            _f("total_order", "int64", False),
            _f("data_collection_order", "int64", False),
        ],
        "optional": True,
        "name": TRANSACTION_BLOCK,
        "version": 1,
        "field": "transaction",
    }


# -- columns ---------------------------------------------------------------------------------------
def column_schema(column: Column, *, optional: bool | None = None) -> Schema:
    """A column as a Connect schema (no `field`): type, optional, semantic name/version, parameters,
    default; arrays with `items`, geometry as Debezium's struct."""
    kind = JSON_TYPES.get(column.type)
    if kind is None:
        raise CdcError(
            ErrorKind.INTERNAL,
            f"column {column.name!r} has Connect type {column.type!r}, which the JsonConverter does not know",
        )
    out: Schema = {"type": kind}
    if kind == "array":
        element = column.element or Column(column.name, "string")
        out["items"] = column_schema(element, optional=True)
    elif kind == "struct":
        out["fields"] = _struct_fields(column)
    out["optional"] = column.optional if optional is None else optional
    semantic = column.semantic
    if semantic:
        out["name"] = semantic
        out["version"] = 1
        params = _parameters(column)
        if params:
            out["parameters"] = params
        if semantic == Semantic.GEOMETRY:
            out["doc"] = "Geometry"
    if column.default is not None:
        out["default"] = column.default
    return out


def _struct_fields(column: Column) -> list[Schema]:
    if column.semantic == Semantic.GEOMETRY:
        return [_f("wkb", "bytes", False), _f("srid", "int32", True)]
    if column.semantic == Semantic.VARIABLE_SCALE_DECIMAL:
        return [_f("scale", "int32", False), _f("value", "bytes", False)]
    raise CdcError(
        ErrorKind.INTERNAL,
        f"column {column.name!r}: a struct column without a known layout ({column.semantic})",
    )


def _parameters(column: Column) -> dict[str, str]:
    semantic = column.semantic
    if semantic in (Semantic.ENUM, Semantic.ENUM_SET):
        return {"allowed": ",".join(column.enum_values)} if column.enum_values else {}
    if semantic == Semantic.BITS and column.length is not None:
        return {"length": str(column.length)}
    if semantic == Semantic.DECIMAL:
        params = {"scale": str(column.scale or 0)}
        if column.length is not None:
            params["connect.decimal.precision"] = str(column.length)
        return params
    return {}


def _field(column: Column, optional: bool | None = None) -> Schema:
    out = column_schema(column, optional=optional)
    out["field"] = column.name
    return out


# -- names -----------------------------------------------------------------------------------------
def name_base(event: ChangeEvent, prefix: str | None = None) -> str:
    """`<prefix>.<schema or db>.<table>`: Debezium's topic for the table, which its schema names
    (`.Key`, `.Value`, `.Envelope`) extend. `prefix` defaults to source.name (the pipeline name)."""
    src = event.source
    namespace = src.schema if src.schema is not None else src.db
    return _ILLEGAL_NAME_CHARS.sub("_", f"{prefix or src.name}.{namespace}.{src.table}")


# -- events ----------------------------------------------------------------------------------------
def require_schema(event: ChangeEvent) -> TableSchema:
    """The event's TableSchema, or a CdcError saying why there is none and what to do."""
    if event.schema is None:
        raise CdcError(
            ErrorKind.CONFIG,
            f"{event.source.connector} event for {event.source.qualified_table} carries no table schema, "
            "so it cannot be written with a Connect schema (schemas: true)",
            "set schemas: false on this destination; for a `debezium` source, make the connector write "
            "schemas (value.converter.schemas.enable=true and key.converter.schemas.enable=true)",
        )
    return event.schema


def value_struct(event: ChangeEvent, prefix: str | None = None) -> Schema:
    """The row struct `<base>.Value` (as the envelope's `before`/`after` carry it, without `field`)."""
    table = require_schema(event)
    return _row_struct(table, name_base(event, prefix), *_variant(event, table))


def _row_struct(
    table: TableSchema, base: str, relaxed: tuple[str, ...], nested: tuple[tuple[str, int], ...]
) -> Schema:
    cache_key = ("value", table.fingerprint, base, relaxed, nested)
    cached = _cache.get(cache_key)
    if cached is not None:
        return cached[0]
    depths = dict(nested)
    fields = []
    for column in table.columns:
        field = _field(column, True if column.name in relaxed else None)
        if column.name in depths:
            _nest(field, depths[column.name])
        fields.append(field)
    schema: Schema = {"type": "struct", "fields": fields, "optional": True, "name": f"{base}.Value"}
    _remember(cache_key, schema)
    return schema


def _nest(field: Schema, depth: int) -> None:
    """Make an array field's `items` an array `depth - 1` times over (a multidimensional value)."""
    items = field["items"]
    for _ in range(depth - 1):
        items = {"type": "array", "items": items, "optional": True}
    field["items"] = items


class _Plan:
    """Which columns of a table version an event's values can make need a schema variant: the
    required ones (a null or missing value), the arrays (a nested value) and the int64 columns of an
    unsigned source type (a value above int64's range). Computed once per table version."""

    __slots__ = ("arrays", "required", "unsigned")

    def __init__(self, table: TableSchema) -> None:
        self.required = tuple(c.name for c in table.columns if not c.optional)
        self.arrays = tuple(c.name for c in table.columns if c.type == "array")
        self.unsigned = tuple(
            c.name for c in table.columns if c.type == "int64" and "UNSIGNED" in c.source_type.upper()
        )


_INT64_MAX: Final = 2**63 - 1
_plans: dict[int, _Plan] = {}


def _plan(table: TableSchema) -> _Plan:
    plan = _plans.get(table.fingerprint)
    if plan is None:
        if len(_plans) >= _CACHE_LIMIT:
            _plans.clear()
        plan = _plans[table.fingerprint] = _Plan(table)
    return plan


def _variant(event: ChangeEvent, table: TableSchema) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    """What this event's values need of the row struct beyond the table's schema, as
    (required columns to make optional, ((array column, depth), ...) for nested arrays); ((), ()) for
    almost every event. Raises SINK_REJECTED for a value no Connect schema of the column can hold."""
    plan = _plan(table)
    rows = [r for r in (event.before, event.after) if r is not None]
    relaxed: tuple[str, ...] = ()
    if plan.required:
        # A NOT NULL column without a value: unchanged TOAST, a key-only `before`, or a null written
        # before the column became NOT NULL (the catalog is read when the reader sees the table, so a
        # lagging reader or a replay describes older rows with the newer catalog).
        unchanged = event.unchanged
        relaxed = tuple(n for n in plan.required if n in unchanged or any(r.get(n) is None for r in rows))
    nested: tuple[tuple[str, int], ...] = ()
    if plan.arrays:
        nested = _nested_arrays(event, plan.arrays, rows)
    if plan.unsigned:
        _check_unsigned(event, plan.unsigned, rows)
    return relaxed, nested


def _nested_arrays(
    event: ChangeEvent, arrays: tuple[str, ...], rows: list[dict[str, Any]]
) -> tuple[tuple[str, int], ...]:
    """(column, depth) of array values nested deeper than one level. Postgres arrays are rectangular
    (no ragged or mixed values) and its catalog does not tell `int[]` from `int[][]`: the depth comes
    from the value, down its first elements."""
    out: list[tuple[str, int]] = []
    for name in arrays:
        depths = set()
        for row in rows:
            value = row.get(name)
            if not isinstance(value, list):
                continue
            depth = 1
            while value and isinstance(value[0], list):
                depth += 1
                value = value[0]
            depths.add(depth)
        if len(depths) > 1:
            # `before` and `after` share one Value struct: it cannot say two depths at once.
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"{event.source.qualified_table}: column {name!r} changed from a {min(depths)}- to a "
                f"{max(depths)}-dimensional array (or back) in one update, which one Connect schema "
                "cannot describe (before and after share the Value struct)",
                "write this table with schemas: false, or keep the column's arrays of one dimension",
            )
        if depths and (depth := depths.pop()) > 1:
            out.append((name, depth))
    return tuple(out)


def _check_unsigned(event: ChangeEvent, unsigned: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Refuse a BIGINT UNSIGNED value above int64's range: the schema says int64 (Debezium's default
    bigint.unsigned.handling.mode=long), so a JsonConverter would read it wrapped (2^64-1 as -1)."""
    for row in rows:
        for name in unsigned:
            value = row.get(name)
            if isinstance(value, int) and value > _INT64_MAX:
                raise CdcError(
                    ErrorKind.SINK_REJECTED,
                    f"{event.source.qualified_table}: BIGINT UNSIGNED column {name!r} holds {value}, above "
                    "int64's maximum, which its Connect/Avro schema (int64, as Debezium's default "
                    "bigint.unsigned.handling.mode=long) would wrap to a negative number",
                    "the plain envelope carries the exact value: write this table with schemas: false (or "
                    "without Avro); the dead letter keeps the event",
                )


def envelope_schema(event: ChangeEvent, prefix: str | None = None) -> Schema:
    """The record value's schema: Debezium's `<base>.Envelope` (or `MessageValue` for op m)."""
    if event.op is Op.MESSAGE:
        return _message_schema(event)
    if event.text_documents:
        return _document_envelope_schema(event, prefix)
    table = require_schema(event)
    base = name_base(event, prefix)
    src = event.source
    variant = _variant(event, table)
    cache_key = (
        "envelope",
        table.fingerprint,
        base,
        *variant,
        bool(event.unchanged),
        event.update_description is not None,
        src.connector,
        src.schema is None,
        tuple(src.extra),
    )
    cached = _cache.get(cache_key)
    if cached is not None:
        return cached[0]
    row = _row_struct(table, base, *variant)
    fields = [
        {**row, "field": "before"},
        {**row, "field": "after"},
        {**source_schema(event), "field": "source"},
        transaction_schema(),
        _f("op", "string", False),
        _f("ts_ms", "int64", True),
    ]
    if event.unchanged:
        fields.append(_f("unchanged", "array", True, items={"type": "string", "optional": False}))
    if event.update_description is not None:
        fields.append(UPDATE_DESCRIPTION)
    schema: Schema = {
        "type": "struct",
        "fields": fields,
        "optional": False,
        "name": f"{base}.Envelope",
        "version": ENVELOPE_VERSION,
    }
    _remember(cache_key, schema)
    return schema


#: MongoDB's `updateDescription` (Debezium's MongoDB connector): on update events only.
UPDATE_DESCRIPTION: Final[Schema] = {
    "type": "struct",
    "fields": [
        _f("removedFields", "array", True, items={"type": "string", "optional": False}),
        _f("updatedFields", "string", True, name=Semantic.JSON, version=1),
        _f(
            "truncatedArrays",
            "array",
            True,
            items={
                "type": "struct",
                "fields": [_f("field", "string", False), _f("size", "int32", False)],
                "optional": False,
            },
        ),
    ],
    "optional": True,
    "name": "io.debezium.connector.mongodb.changestream.updatedescription",
    "version": 1,
    "field": "updateDescription",
}


def _document_envelope_schema(event: ChangeEvent, prefix: str | None) -> Schema:
    """Debezium's MongoDB envelope: `before`/`after` as JSON text (io.debezium.data.Json) and
    `updateDescription`; no row struct (a collection has no fixed columns)."""
    base = name_base(event, prefix)
    src = event.source
    cache_key = ("documents", base, src.connector, src.schema is None, tuple(src.extra))
    cached = _cache.get(cache_key)
    if cached is not None:
        return cached[0]
    document = {"type": "string", "optional": True, "name": Semantic.JSON, "version": 1}
    schema: Schema = {
        "type": "struct",
        "fields": [
            {**document, "field": "before"},
            {**document, "field": "after"},
            UPDATE_DESCRIPTION,
            {**source_schema(event), "field": "source"},
            transaction_schema(),
            _f("op", "string", False),
            _f("ts_ms", "int64", True),
        ],
        "optional": False,
        "name": f"{base}.Envelope",
        "version": ENVELOPE_VERSION,
    }
    _remember(cache_key, schema)
    return schema


def _message_schema(event: ChangeEvent) -> Schema:
    cache_key = ("message", event.source.connector, event.source.schema is None, tuple(event.source.extra))
    cached = _cache.get(cache_key)
    if cached is not None:
        return cached[0]
    message = {
        "type": "struct",
        "fields": [_f("prefix", "string", True), _f("content", "bytes", True)],
        "optional": True,
        "name": f"io.debezium.connector.{event.source.connector}.Message",
        "field": "message",
    }
    schema: Schema = {
        "type": "struct",
        "fields": [
            _f("op", "string", False),
            _f("ts_ms", "int64", True),
            {**source_schema(event), "field": "source"},
            transaction_schema(),
            message,
        ],
        "optional": False,
        "name": f"io.debezium.connector.{event.source.connector}.MessageValue",
    }
    _remember(cache_key, schema)
    return schema


def key_schema(
    event: ChangeEvent, prefix: str | None = None, columns: Iterable[str] | None = None
) -> Schema | None:
    """The key struct `<base>.Key` for the event key's columns (or `columns`, e.g. the Kafka sink's
    key_field); None when the event has no key (Debezium writes a null key and no schema)."""
    if event.op is Op.MESSAGE:
        return _MESSAGE_KEY if event.key is not None else None
    names = tuple(columns) if columns is not None else tuple(event.key or ())
    if columns is None and event.key is None:
        return None
    if event.text_documents and names == ("id",):  # Debezium's MongoDB key: {"id": "<_id as JSON>"}
        return {"type": "struct", "fields": [_f("id", "string", False)], "optional": False,
                "name": f"{name_base(event, prefix)}.Key"}  # fmt: skip
    table = require_schema(event)
    base = name_base(event, prefix)
    cache_key = ("key", table.fingerprint, base, names)
    cached = _cache.get(cache_key)
    if cached is not None:
        return cached[0]
    fields = []
    for name in names:
        column = table.column(name)
        if column is None:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"key column {name!r} of {event.source.qualified_table} is not in its table schema",
                "key by columns of the table (key_field), or set schemas: false",
            )
        fields.append(_field(column))
    schema: Schema = {"type": "struct", "fields": fields, "optional": False, "name": f"{base}.Key"}
    _remember(cache_key, schema)
    return schema


_MESSAGE_KEY: Final[Schema] = {
    "type": "struct",
    "fields": [_f("prefix", "string", True)],
    "optional": False,
    "name": "io.debezium.connector.postgresql.MessageKey",
}


# -- records ---------------------------------------------------------------------------------------
def with_schema(payload: Any, schema: Schema | None) -> dict[str, Any]:
    """The JsonConverter form of one key or value: `{"schema": schema, "payload": payload}`."""
    return {"schema": schema, "payload": payload}


def envelope_payload(event: ChangeEvent) -> bytes:
    """The value payload as JSON: the envelope (for op m, Debezium's MessageValue fields)."""
    if event.op is Op.MESSAGE:
        data = event.to_dict()
        return dumps({k: data.get(k) for k in ("op", "ts_ms", "source", "transaction", "message")})
    return event.to_json()


def envelope_record(event: ChangeEvent, prefix: str | None = None) -> bytes:
    """`{"schema": <envelope schema>, "payload": <envelope>}` as bytes (the schema serialized once).
    An unwrapped event is its flattened record (`flat_record`; `null` for a null record)."""
    if event.flat is not None:
        return flat_record(event, prefix) or b"null"
    return (
        b'{"schema":'
        + _json(envelope_schema(event, prefix))
        + b',"payload":'
        + envelope_payload(event)
        + b"}"
    )


def key_record(
    event: ChangeEvent,
    prefix: str | None,
    key: Mapping[str, Any] | None,
    columns: Iterable[str] | None = None,
) -> bytes | None:
    """`{"schema": <key schema>, "payload": key}` as bytes; None for a null key (a key without a
    schema would not be Debezium's: the key stays null)."""
    if key is None:
        return None
    schema = key_schema(event, prefix, columns if columns is not None else tuple(key))
    if event.schema is not None and any(type(v) is int and v > _INT64_MAX for v in key.values()):
        _check_unsigned(event, _plan(event.schema).unsigned, [dict(key)])  # an int64 key would wrap too
    return b'{"schema":' + _json(schema) + b',"payload":' + dumps(key) + b"}"


# -- unwrapped events (transforms/unwrap.py) -----------------------------------------------------------
def flat_schema(event: ChangeEvent, prefix: str | None = None) -> Schema:
    """The value schema of an unwrapped event, as ExtractNewRecordState builds it: the row struct
    `<base>.Value`, then `__deleted` (rewrite modes: an optional string) and each added field with its
    envelope field's schema made optional (without its default, as Connect's copySchemaBasics copies
    none). With fields added the struct is no longer optional (copySchemaBasics does not copy that)."""
    flat = event.flat
    row = value_struct(event, prefix)
    if not flat.rewrite and not flat.fields:
        return row
    src = event.source
    cache_key = ("flat", id(row), flat, src.connector, src.schema is None, tuple(src.extra))
    cached = _cache.get(cache_key)
    if cached is not None and cached[0].get("_row") is row:
        return cached[0]["schema"]
    fields = [dict(f) for f in row["fields"]]
    if flat.rewrite:
        fields.append(_f("__deleted", "string", True))
    for ref in flat.fields:
        found = _envelope_field(event, ref.struct, ref.field)
        if found is not None:
            added = {k: v for k, v in found.items() if k not in ("default", "field")}
            fields.append({**added, "optional": True, "field": ref.name})
    schema: Schema = {"type": "struct", "fields": fields, "optional": False, "name": row["name"]}
    _remember(cache_key, {"_row": row, "schema": schema})
    return schema


def _envelope_field(event: ChangeEvent, struct: str | None, name: str) -> Schema | None:
    if struct is None:
        return {"op": _f("op", "string", False), "ts_ms": _f("ts_ms", "int64", True)}.get(name)
    block = transaction_schema() if struct == "transaction" else source_schema(event)
    return next((f for f in block["fields"] if f["field"] == name), None)


def flat_record(event: ChangeEvent, prefix: str | None = None) -> bytes | None:
    """An unwrapped event as `{"schema", "payload"}` bytes; None for a true null record. Debezium's
    tombstone mode nulls the payload but keeps the row schema, delete-to-tombstone nulls both (and
    the JsonConverter writes no bytes for a null schema and value)."""
    payload = event.to_json()
    if payload == b"null":
        if not event.flat.null_has_schema():
            return None
        return b'{"schema":' + _json(value_struct(event, prefix)) + b',"payload":null}'
    return b'{"schema":' + _json(flat_schema(event, prefix)) + b',"payload":' + payload + b"}"


# -- cache -----------------------------------------------------------------------------------------
_CACHE_LIMIT = 4096
_cache: dict[tuple[Any, ...], tuple[Schema]] = {}
# id(schema dict) -> (the dict, its JSON): holding the dict keeps its id from being reused.
_bytes: dict[int, tuple[Schema, bytes]] = {}


def _remember(key: tuple[Any, ...], schema: Schema) -> None:
    if len(_cache) >= _CACHE_LIMIT:  # many tables or versions: start again rather than grow forever
        _cache.clear()
        _bytes.clear()
    _cache[key] = (schema,)


def _json(schema: Schema | None) -> bytes:
    if schema is None:
        return b"null"
    cached = _bytes.get(id(schema))
    if cached is None:
        if len(_bytes) >= _CACHE_LIMIT:
            _bytes.clear()
        cached = _bytes[id(schema)] = (schema, orjson.dumps(schema))
    return cached[1]


def clear_cache() -> None:
    """Forget every cached schema (tests)."""
    _cache.clear()
    _bytes.clear()
    _plans.clear()
