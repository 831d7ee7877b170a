"""Postgres catalog -> `TableSchema`: each column's Connect type and Debezium semantic, by type OID.

The same mapping as the value converters in types.py / pgtime.py (Debezium's defaults): e.g.
timestamp(p<=3) -> int64 io.debezium.time.Timestamp (ms), timestamp(4..6) -> MicroTimestamp (µs),
numeric -> string (decimal.handling.mode=string) with its precision and scale, arrays -> array of
the element's description. A Relation message (or the catalog, for the snapshot) gives OIDs and
typmods; domains resolve to their base type.

pgoutput does not send NOT NULL, defaults or enum labels; the reader reads them from the catalog once
per Relation message (catalog.column_facts, `ColumnFacts`) so the schema is Debezium's: NOT NULL
columns are not optional, constant defaults are the schema's `default` in the value encoding
(Debezium's PostgresDefaultValueConverter: `nextval(...)` is 0, `now()` and friends the epoch),
enums list their labels.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import orjson

from cdc_logs.envelope import dumps
from cdc_logs.readers.postgres.pgoutput import Relation
from cdc_logs.readers.postgres.pgtime import precision_of
from cdc_logs.readers.postgres.types import OID, TypeRegistry
from cdc_logs.schema import Column, Semantic, TableSchema


@dataclass(frozen=True, slots=True)
class ColumnFacts:
    """What the catalog says of a column beyond its type (pg_attribute, pg_attrdef, pg_enum)."""

    not_null: bool = False
    default: str | None = None  # pg_get_expr of the default, e.g. "'x'::text", "nextval('s'::regclass)"
    enum_labels: tuple[str, ...] = ()


_LITERAL = re.compile(r"^'((?:[^']|'')*)'(?:::[^']+)?$")  # 'text'::type (quotes doubled inside)
_NUMBER = re.compile(r"^\(?(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\)?(?:::[^']+)?$")
_NOW = {
    "now()",
    "CURRENT_TIMESTAMP",
    "CURRENT_DATE",
    "LOCALTIMESTAMP",
    "transaction_timestamp()",
    "statement_timestamp()",
    "clock_timestamp()",
}
_INTS = ("int8", "int16", "int32", "int64")
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def default_value(registry: TypeRegistry, column: Column, oid: int, typmod: int, expr: str | None) -> Any:
    """The default expression as Debezium's schema `default` (the value encoding), or None when it
    is not a constant Debezium would write (a function other than nextval/now, bytea, arrays)."""
    if expr is None or column.type in ("bytes", "array", "struct"):
        return None
    expr = expr.strip()
    if expr.startswith("nextval("):
        return 0 if column.type in _INTS else None
    if expr in _NOW or expr.startswith(("CURRENT_TIMESTAMP(", "LOCALTIMESTAMP(")):
        if column.semantic == Semantic.ZONED_TIMESTAMP:
            return dumps(_EPOCH_UTC).decode()[1:-1]
        return 0 if column.type in _INTS and column.semantic is not None else None
    if column.type == "boolean" and expr in ("true", "false"):
        return expr == "true"
    literal = _LITERAL.match(expr)
    if literal is not None:
        text = literal.group(1).replace("''", "'")
    else:
        number = _NUMBER.match(expr)
        if number is None:
            return None
        text = number.group(1)
    try:
        value = registry.text_converter(oid, typmod)(text)
        if column.source_type == "NUMERIC" and column.scale is not None and column.scale >= 0:
            value = str(Decimal(value).quantize(Decimal(1).scaleb(-column.scale)))
        return orjson.loads(dumps(value))
    except (ValueError, TypeError, ArithmeticError, InvalidOperation, orjson.JSONDecodeError):
        return None  # not a literal of the column's type after all: no default, as Debezium


# base type OID -> (Connect type, semantic, SQL type name); time-like types depend on the typmod.
_SIMPLE: Final[dict[int, tuple[str, str | None, str]]] = {
    OID.BOOL: ("boolean", None, "BOOLEAN"),
    OID.INT2: ("int16", None, "SMALLINT"),
    OID.INT4: ("int32", None, "INTEGER"),
    OID.INT8: ("int64", None, "BIGINT"),
    OID.OID: ("int64", None, "OID"),
    OID.FLOAT4: ("float32", None, "REAL"),
    OID.FLOAT8: ("float64", None, "DOUBLE PRECISION"),
    OID.MONEY: ("string", None, "MONEY"),
    OID.BYTEA: ("bytes", None, "BYTEA"),
    OID.TEXT: ("string", None, "TEXT"),
    OID.NAME: ("string", None, "NAME"),
    OID.CHAR: ("string", None, "CHAR"),
    OID.DATE: ("int32", Semantic.DATE, "DATE"),
    OID.INTERVAL: ("int64", Semantic.MICRO_DURATION, "INTERVAL"),
    OID.UUID: ("string", Semantic.UUID, "UUID"),
    OID.JSON: ("string", Semantic.JSON, "JSON"),
    OID.JSONB: ("string", Semantic.JSON, "JSONB"),
    OID.XML: ("string", Semantic.XML, "XML"),
    OID.INET: ("string", None, "INET"),
    OID.CIDR: ("string", None, "CIDR"),
    OID.MACADDR: ("string", None, "MACADDR"),
    OID.MACADDR8: ("string", None, "MACADDR8"),
    OID.POINT: ("string", None, "POINT"),
}


def column(registry: TypeRegistry, name: str, oid: int, typmod: int, *, key: bool = False) -> Column:
    """Describe one column (type OID + typmod) as the value converters encode it."""
    base, typmod, element = registry.resolve(oid, typmod)
    if element is not None:
        inner = column(registry, name, element[0], typmod)
        return Column(name, "array", None, inner.source_type + "[]", key=key, element=inner)
    simple = _SIMPLE.get(base)
    if simple is not None:
        return Column(name, simple[0], simple[1], simple[2], key=key)
    if base in (OID.VARCHAR, OID.BPCHAR):
        length = typmod - 4 if typmod >= 4 else None
        return Column(name, "string", None, "VARCHAR" if base == OID.VARCHAR else "CHAR", length, key=key)
    if base == OID.NUMERIC:
        precision = scale = None
        if typmod >= 4:
            precision = ((typmod - 4) >> 16) & 0xFFFF
            scale = (typmod - 4) & 0x7FF  # 11 bits, signed since Postgres 15 (numeric(5, -2))
            scale = scale - 0x800 if scale & 0x400 else scale
        return Column(name, "string", None, "NUMERIC", precision, scale, key=key)
    if base in (OID.TIME, OID.TIMESTAMP):
        digits = precision_of(typmod)
        if base == OID.TIME:
            kind, semantic = ("int32", Semantic.TIME) if digits <= 3 else ("int64", Semantic.MICRO_TIME)
        else:
            kind, semantic = (
                ("int64", Semantic.TIMESTAMP) if digits <= 3 else ("int64", Semantic.MICRO_TIMESTAMP)
            )
        return Column(name, kind, semantic, "TIME" if base == OID.TIME else "TIMESTAMP", digits, key=key)
    if base in (OID.TIMESTAMPTZ, OID.TIMETZ):  # strings in UTC; the length is the fraction digits
        semantic = Semantic.ZONED_TIMESTAMP if base == OID.TIMESTAMPTZ else Semantic.ZONED_TIME
        source = "TIMESTAMPTZ" if base == OID.TIMESTAMPTZ else "TIMETZ"
        return Column(name, "string", semantic, source, precision_of(typmod), key=key)
    if base in (OID.BIT, OID.VARBIT):
        source = "BIT" if base == OID.BIT else "VARBIT"
        if typmod == 1:
            return Column(name, "boolean", None, source, 1, key=key)
        return Column(name, "bytes", Semantic.BITS, source, typmod if typmod > 0 else None, key=key)
    if registry.is_enum(base):
        return Column(name, "string", Semantic.ENUM, "ENUM", key=key)
    return Column(name, "string", None, "UNKNOWN", key=key)  # passed through as its text (docs)


def table_schema(
    registry: TypeRegistry,
    relation: Relation,
    key: Iterable[str],
    db: str,
    facts: Mapping[str, ColumnFacts] | None = None,
) -> TableSchema:
    """The schema of one relation as the Relation message (or the catalog) describes it, with the
    catalog's `facts` (NOT NULL, defaults, enum labels) when the reader has them."""
    keys = set(key)
    columns = []
    for c in relation.columns:
        described = column(registry, c.name, c.type_oid, c.type_modifier, key=c.name in keys)
        fact = (facts or {}).get(c.name)
        if fact is not None:
            described = dataclasses.replace(
                described,
                optional=not fact.not_null,
                default=default_value(registry, described, c.type_oid, c.type_modifier, fact.default),
                enum_values=fact.enum_labels if described.semantic == Semantic.ENUM else (),
            )
        columns.append(described)
    shape = repr(columns)
    return TableSchema(
        db, relation.namespace, relation.name, tuple(columns), version=zlib.crc32(shape.encode())
    )
