"""SQLite catalog -> `TableSchema`, by the declared type's affinity (SQLite's own rules, section 3.1
of its datatype docs): INT -> int64; CHAR/CLOB/TEXT -> string; BLOB or no type -> bytes; REAL/FLOA/DOUB
-> float64; anything else (NUMERIC, DECIMAL, BOOLEAN, DATE, DATETIME...) has NUMERIC affinity.

SQLite is dynamically typed: a row stores whatever it was given, and the envelope carries it as stored
(INTEGER -> int, REAL -> float, TEXT -> str, BLOB -> bytes). The schema therefore describes the
declared column, and a NUMERIC-affinity column is a string when declared DECIMAL/NUMERIC (so a target
keeps every digit) and otherwise the declared name decides nothing: it is described as a string of its
`source_type`. Tables keyed by rowid carry the rowid as an extra int64 key column.
"""

from __future__ import annotations

import zlib

from cdc_logs.readers.sqlite.connection import TableInfo
from cdc_logs.schema import Column, TableSchema


def affinity(declared: str) -> str:
    """SQLite's type affinity of a declared column type: INTEGER, TEXT, BLOB, REAL or NUMERIC."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper.strip():
        return "BLOB"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


_CONNECT = {"INTEGER": "int64", "TEXT": "string", "BLOB": "bytes", "REAL": "float64", "NUMERIC": "string"}


def column(name: str, declared: str, *, key: bool) -> Column:
    kind = affinity(declared)
    source = declared.strip().upper() or "BLOB"
    if kind == "NUMERIC" and source.split("(")[0] in ("DECIMAL", "NUMERIC"):
        source = "DECIMAL" + source[len(source.split("(")[0]) :]
    return Column(name, _CONNECT[kind], None, source, key=key)


def table_schema(info: TableInfo, db: str) -> TableSchema:
    columns = [column(n, t, key=n in info.key) for n, t in zip(info.columns, info.types, strict=True)]
    if not info.key and info.rowid:
        columns.append(Column(info.rowid, "int64", None, "INTEGER", key=True))
    shape = repr([(c.name, c.type, c.source_type, c.key) for c in columns])
    return TableSchema(db, "main", info.name, tuple(columns), version=zlib.crc32(shape.encode()))
