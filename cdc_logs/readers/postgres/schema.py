"""Postgres catalog -> `TableSchema`: each column's Connect type and Debezium semantic, by type OID.

The same mapping as the value converters in types.py / pgtime.py (Debezium's defaults): e.g.
timestamp(p<=3) -> int64 io.debezium.time.Timestamp (ms), timestamp(4..6) -> MicroTimestamp (µs),
numeric -> string (decimal.handling.mode=string) with its precision and scale, arrays -> array of
the element's description. A Relation message (or the catalog, for the snapshot) gives OIDs and
typmods; domains resolve to their base type. pgoutput does not send NOT NULL, so columns are optional.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Final

from cdc_logs.readers.postgres.pgoutput import Relation
from cdc_logs.readers.postgres.pgtime import precision_of
from cdc_logs.readers.postgres.types import OID, TypeRegistry
from cdc_logs.schema import Column, Semantic, TableSchema

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


def table_schema(registry: TypeRegistry, relation: Relation, key: Iterable[str], db: str) -> TableSchema:
    """The schema of one relation as the Relation message (or the catalog) describes it."""
    keys = set(key)
    columns = tuple(
        column(registry, c.name, c.type_oid, c.type_modifier, key=c.name in keys) for c in relation.columns
    )
    shape = repr([(c.name, c.type, c.semantic, c.source_type, c.length, c.scale, c.key) for c in columns])
    return TableSchema(db, relation.namespace, relation.name, columns, version=zlib.crc32(shape.encode()))
