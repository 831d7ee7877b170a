"""MySQL/MariaDB catalog -> `TableSchema`: each column's Connect type and Debezium semantic.

Two inputs, one mapping (the same as the value converters in types.py, Debezium's MySQL defaults):
the binlog's TABLE_MAP column metadata (with binlog_row_metadata=FULL: names, signedness, charsets,
ENUM/SET members, key flags) for streamed rows, and information_schema.COLUMNS for the snapshot.

  tinyint/smallint -> int16 (smallint unsigned: int32)   mediumint/int -> int32 (int unsigned: int64)
  bigint -> int64 ("BIGINT UNSIGNED" in source_type)      year -> int32 io.debezium.time.Year
  float -> float32   double -> float64   decimal(p,s) -> string with length p, scale s
  bit(1) -> boolean   bit(n) -> bytes io.debezium.data.Bits
  char/varchar/text -> string   binary/varbinary/blob -> bytes   enum -> Enum   set -> EnumSet
  json (MySQL) -> io.debezium.data.Json   (MariaDB's JSON is LONGTEXT: a string)
  date -> Date   datetime(0-3) -> Timestamp (ms)   datetime(4-6) -> MicroTimestamp (µs)
  timestamp -> ZonedTimestamp   time -> MicroTime   geometry -> struct io.debezium.data.geometry.Geometry
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE

from cdc_logs.schema import Column, Semantic, TableSchema

_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_INTS = {"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "integer": 4, "bigint": 8}
_BINLOG_INTS = {FIELD_TYPE.TINY: 1, FIELD_TYPE.SHORT: 2, FIELD_TYPE.INT24: 3, FIELD_TYPE.LONG: 4}
_BINLOG_INTS[FIELD_TYPE.LONGLONG] = 8
_BLOB_NAMES = {1: "TINYBLOB", 2: "BLOB", 3: "MEDIUMBLOB", 4: "LONGBLOB"}
_GEOMETRY = {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon"}
_GEOMETRY |= {"geometrycollection", "geomcollection"}
# Most bytes one character takes, by charset: the Maxlen column of MariaDB 10.11's and MySQL 8's
# `SHOW CHARACTER SET` ("utf8" is MySQL's old name of utf8mb3, gb18030 MySQL's only).
_MAX_BYTES_PER_CHAR = {"utf8mb4": 4, "utf16": 4, "utf16le": 4, "utf32": 4, "gb18030": 4}
_MAX_BYTES_PER_CHAR |= {"utf8mb3": 3, "utf8": 3, "ujis": 3, "eucjpms": 3}
_MAX_BYTES_PER_CHAR |= {"ucs2": 2, "big5": 2, "sjis": 2, "euckr": 2, "gb2312": 2, "gbk": 2, "cp932": 2}
# every other charset (latin1, ascii, cp1252 ..., binary) takes one byte per character


def _int(name: str, size: int, unsigned: bool, key: bool, optional: bool) -> Column:
    source = {1: "TINYINT", 2: "SMALLINT", 3: "MEDIUMINT", 4: "INT", 8: "BIGINT"}[size]
    if size <= 1 or (size == 2 and not unsigned):
        kind = "int16"
    elif size == 2 or size == 3 or (size == 4 and not unsigned):
        kind = "int32"
    else:
        kind = "int64"
    return Column(name, kind, None, source + (" UNSIGNED" if unsigned else ""), key=key, optional=optional)


def by_data_type(
    name: str,
    data_type: str,
    column_type: str = "",
    *,
    length: int | None = None,
    precision: int | None = None,
    scale: int | None = None,
    fsp: int | None = None,
    binary: bool = False,
    key: bool = False,
    optional: bool = True,
    flavor: str = "mariadb",
) -> Column:
    """One column from an information_schema-style description (lower-case DATA_TYPE)."""
    kind = data_type.lower()
    unsigned = "unsigned" in column_type.lower()
    if kind in _INTS:  # TINYINT(1) too: Debezium keeps it an int16 unless a converter is set
        return _int(name, _INTS[kind], unsigned, key, optional)
    common: dict[str, Any] = {"key": key, "optional": optional}
    if kind == "year":
        return Column(name, "int32", Semantic.YEAR, "YEAR", **common)
    if kind == "float":
        return Column(name, "float32", None, "FLOAT", **common)
    if kind in ("double", "real"):
        return Column(name, "float64", None, "DOUBLE", **common)
    if kind in ("decimal", "numeric"):
        return Column(name, "string", None, "DECIMAL", precision, scale, **common)
    if kind == "bit":
        bits = length or 1
        if bits == 1:
            return Column(name, "boolean", None, "BIT", 1, **common)
        return Column(name, "bytes", Semantic.BITS, "BIT", bits, **common)
    if kind in ("enum", "set"):
        members = tuple(m.replace("''", "'") for m in _QUOTED.findall(column_type))
        semantic = Semantic.ENUM if kind == "enum" else Semantic.ENUM_SET
        return Column(name, "string", semantic, kind.upper(), enum_values=members, **common)
    if kind == "json":
        if flavor == "mysql":
            return Column(name, "string", Semantic.JSON, "JSON", **common)
        return Column(name, "string", None, "LONGTEXT", **common)
    if kind == "date":
        return Column(name, "int32", Semantic.DATE, "DATE", **common)
    if kind == "datetime":
        digits = fsp or 0
        semantic = Semantic.TIMESTAMP if digits <= 3 else Semantic.MICRO_TIMESTAMP
        return Column(name, "int64", semantic, "DATETIME", digits, **common)
    if kind == "timestamp":
        return Column(name, "string", Semantic.ZONED_TIMESTAMP, "TIMESTAMP", fsp or 0, **common)
    if kind == "time":
        return Column(name, "int64", Semantic.MICRO_TIME, "TIME", fsp or 0, **common)
    if kind in _GEOMETRY:
        return Column(name, "struct", Semantic.GEOMETRY, kind.upper(), **common)
    if kind in ("binary", "varbinary") or kind.endswith("blob") or (binary and kind.endswith("text")):
        return Column(name, "bytes", None, kind.upper(), length, **common)
    return Column(name, "string", None, kind.upper(), length, **common)


def snapshot_schema(
    rows: Iterable[Sequence[Any]], db: str, table: str, key: Iterable[str], flavor: str
) -> TableSchema:
    """From information_schema.COLUMNS rows of `SNAPSHOT_COLUMNS_QUERY`, in ordinal order."""
    keys = set(key)
    columns = []
    for (
        name,
        data_type,
        column_type,
        dt_precision,
        char_len,
        num_precision,
        num_scale,
        nullable,
        charset,
    ) in rows:
        kind = str(data_type).lower()
        length = int(char_len) if char_len is not None else None
        if kind == "bit":
            match = re.search(r"\((\d+)\)", str(column_type))
            length = int(match.group(1)) if match else 1
        columns.append(
            by_data_type(
                str(name),
                kind,
                str(column_type),
                length=length,
                precision=int(num_precision) if num_precision is not None else None,
                scale=int(num_scale) if num_scale is not None else None,
                fsp=int(dt_precision) if dt_precision is not None else None,
                binary=charset == "binary",
                key=name in keys,
                optional=str(nullable).upper() == "YES",
                flavor=flavor,
            )
        )
    return _schema(db, table, columns)


SNAPSHOT_COLUMNS_QUERY = (
    "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, DATETIME_PRECISION, CHARACTER_MAXIMUM_LENGTH,"
    " NUMERIC_PRECISION, NUMERIC_SCALE, IS_NULLABLE, CHARACTER_SET_NAME"
    " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"
)


def binlog_schema(columns: Iterable[Any], db: str, table: str, flavor: str) -> TableSchema:
    """From python-mysql-replication's column objects of one TABLE_MAP event. NOT NULL comes from the
    event's NULL bitmap (binlog_values sets `column.nullable`), as Debezium marks such columns
    `optional: false`."""
    described = []
    for c in columns:
        column = _binlog_column(c, flavor)
        nullable = getattr(c, "nullable", None)
        if nullable is not None and column.optional != bool(nullable):
            column = dataclasses.replace(column, optional=bool(nullable))
        described.append(column)
    return _schema(db, table, described)


def _binlog_column(column: Any, flavor: str) -> Column:
    t, name = column.type, str(column.name)
    key, unsigned = bool(column.is_primary), bool(getattr(column, "unsigned", False))
    binary = getattr(column, "character_set_name", None) == "binary"
    ints = {
        FIELD_TYPE.TINY: 1,
        FIELD_TYPE.SHORT: 2,
        FIELD_TYPE.INT24: 3,
        FIELD_TYPE.LONG: 4,
        FIELD_TYPE.LONGLONG: 8,
    }
    if t in ints:
        return _int(name, ints[t], unsigned, key, True)
    fsp = int(getattr(column, "fsp", 0) or 0)
    simple = {
        FIELD_TYPE.YEAR: "year",
        FIELD_TYPE.FLOAT: "float",
        FIELD_TYPE.DOUBLE: "double",
        FIELD_TYPE.DATE: "date",
        FIELD_TYPE.NEWDATE: "date",
        FIELD_TYPE.DATETIME: "datetime",
        FIELD_TYPE.DATETIME2: "datetime",
        FIELD_TYPE.TIMESTAMP: "timestamp",
        FIELD_TYPE.TIMESTAMP2: "timestamp",
        FIELD_TYPE.TIME: "time",
        FIELD_TYPE.TIME2: "time",
        FIELD_TYPE.JSON: "json",
        FIELD_TYPE.GEOMETRY: "geometry",
    }
    if t in simple:
        return by_data_type(name, simple[t], fsp=fsp, key=key, flavor=flavor)
    if t == FIELD_TYPE.NEWDECIMAL:
        return by_data_type(name, "decimal", precision=column.precision, scale=column.decimals, key=key)
    if t == FIELD_TYPE.BIT:
        return by_data_type(name, "bit", length=int(column.bits), key=key)
    if t == FIELD_TYPE.ENUM or getattr(column, "enum_values", None):
        # python-mysql-replication puts "" first: the value of index 0 (an invalid value), no member
        quoted = ",".join("'" + v.replace("'", "''") + "'" for v in (column.enum_values or [""])[1:])
        return by_data_type(name, "enum", f"enum({quoted})", key=key)
    if t == FIELD_TYPE.SET or getattr(column, "set_values", None):
        quoted = ",".join("'" + v.replace("'", "''") + "'" for v in column.set_values or ())
        return by_data_type(name, "set", f"set({quoted})", key=key)
    if t == FIELD_TYPE.BLOB:
        size = int(getattr(column, "length_size", 4) or 4)
        kind = _BLOB_NAMES.get(size, "BLOB")
        if binary:
            return Column(name, "bytes", None, kind, key=key)
        return Column(name, "string", None, kind.replace("BLOB", "TEXT"), key=key)
    # BINARY/VARBINARY lengths are in bytes, as in information_schema (charset binary: 1 byte a char)
    length = _characters(column)
    if t == FIELD_TYPE.STRING:
        return by_data_type(name, "binary" if binary else "char", length=length, key=key)
    return by_data_type(name, "varbinary" if binary else "varchar", length=length, key=key)


def _characters(column: Any) -> int | None:
    """A CHAR/VARCHAR length in characters, as information_schema's CHARACTER_MAXIMUM_LENGTH (the
    snapshot's): the TABLE_MAP holds the column's size in bytes, characters x its charset's Maxlen."""
    length = getattr(column, "max_length", None)
    if length is None:
        return None
    # binlog_values names the charset (`charset_name`); else its collation does ("utf8mb4_general_ci":
    # collation names start with their charset's). A charset nobody could name leaves the length in
    # bytes, an upper bound (a target column sized from it is too wide, never too narrow).
    charset = getattr(column, "charset_name", None)
    if not charset:
        collation = getattr(column, "collation_name", None)
        charset = str(collation).split("_", 1)[0] if collation else None
    per_char = _MAX_BYTES_PER_CHAR.get(charset) if charset else None
    if not per_char:
        return int(length)
    return int(length) // per_char


def _schema(db: str, table: str, columns: list[Column]) -> TableSchema:
    shape = repr(
        [(c.name, c.type, c.semantic, c.source_type, c.length, c.scale, c.key, c.optional) for c in columns]
    )
    return TableSchema(db, None, table, tuple(columns), version=zlib.crc32(shape.encode()))
