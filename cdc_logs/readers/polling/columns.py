"""How the polling reader reads each column of a polled table, per database.

For every column: the SELECT expression, a decoder from the driver's value to the envelope's encoding
(docs/envelope.md, docs/sources/polling.md), and the schema entry that describes the result. The
driver's own values are taken raw: SQLAlchemy's result processing is bypassed, because it rounded
MySQL DOUBLEs to 10 decimals, wrapped negative MySQL TIMEs into one day, turned SETs into unordered
Python sets, stopped the stream on an ENUM label missing from the reflected list, re-serialized JSON
(and lost a JSON `null`), and raised mid-batch on SQLite text it could not parse. Where the driver
cannot represent a value, the database renders it as text for us:

  Postgres  date, time, timetz, timestamp, timestamptz, interval, json, jsonb, money, arrays, and every
            type without a plain Python value (inet, bit, ranges, xml, geometric...) are read as text
            (its output function, `format('%s', c)`; the session runs with DateStyle=ISO,
            IntervalStyle=postgres, bytea_output=hex) and decoded with the Postgres reader's
            rules: infinities, BC dates, years past 9999 and 24:00:00 come through instead of
            stopping the stream.
  MySQL     FLOAT is read as a DOUBLE (the text protocol prints 6 digits) and written as the shortest
            decimal of the 32-bit float; zero dates are null (0 when NOT NULL), BIT(1) is a boolean
            and BIT(n) little-endian bytes, as the binlog reader writes them.
  SQLite    values come as stored. A column declared with a type SQLAlchemy knows (DATETIME, BOOLEAN,
            DECIMAL, JSON, INTEGER, TEXT, BLOB...) must hold a value of that type; other columns (no
            type, or a name SQLite gives NUMERIC affinity by default) carry whatever they hold.

A value its column's type cannot hold raises BadValue, and the reader sends that row to the
dead-letter file instead of stopping. Messages describe the problem, never the value.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlalchemy.engine import Connection, Dialect

from cdc_logs.envelope import encode_value
from cdc_logs.readers.mysql.types import float32_value
from cdc_logs.readers.postgres import pgtime
from cdc_logs.readers.postgres.types import parse_array
from cdc_logs.readers.sqlite.connection import InvalidText
from cdc_logs.schema import Column, Semantic

Decode = Callable[[Any], Any]

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DATE = dt.date(1970, 1, 1)
_ONE_US = dt.timedelta(microseconds=1)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_GEOMETRY = frozenset(
    [
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
    ]
)


class BadValue(ValueError):
    """A stored value its column's type cannot hold. The message never contains the value."""


@dataclass(frozen=True, slots=True)
class ColumnRead:
    """One column: what the SELECT reads (labelled with the column's name), how its driver value
    becomes the envelope's encoding, and the schema entry."""

    name: str
    expr: sa.ColumnElement[Any]
    decode: Decode
    column: Column


# -- value decoders (driver value -> JSON-ready value) --------------------------------------------------


def _kind(value: Any) -> str:
    """What a value is, for messages (never the value itself)."""
    if isinstance(value, InvalidText):
        return "text that is not valid UTF-8"
    return {bool: "a boolean", int: "an integer", float: "a real", str: "text", bytes: "a blob"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _bad(value: Any, column_kind: str) -> BadValue:
    article = "an" if column_kind[0] in "aeiou" else "a"
    return BadValue(f"{_kind(value)} in {article} {column_kind} column")


def float_value(value: float) -> float | str:
    """NaN and the infinities as the strings every reader writes (JSON has no such numbers)."""
    if math.isfinite(value):
        return value
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _integer(value: Any) -> int:
    if type(value) is int:
        return value
    raise _bad(value, "integer")


def _floating(value: Any) -> float | str:
    if isinstance(value, float):
        return float_value(value)
    if type(value) is int:
        return float(value)
    raise _bad(value, "floating-point")


def _float32(value: Any) -> float | str:
    out = _floating(value)
    return float32_value(out) if isinstance(out, float) else out


def _decimal_special(value: Decimal) -> str:
    return str(encode_value(value))


def _decimal(value: Any) -> str:
    """Exact decimal text, plain digits (no exponent), as the other readers write decimals."""
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else _decimal_special(value)
    if type(value) is int:
        return str(value)
    if isinstance(value, float):  # SQLite: a REAL in a DECIMAL column, written exactly as stored
        return format(Decimal(repr(value)), "f") if math.isfinite(value) else str(float_value(value))
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return format(Decimal(value), "f")
    raise _bad(value, "decimal")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise _bad(value, "boolean (0 or 1)")


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value if type(value) is str else str(value)  # a str subclass (psycopg's BitString...)
    raise _bad(value, "text")


def _binary(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview) and not isinstance(value, InvalidText):
        return bytes(value)
    raise _bad(value, "binary")


def _uuid(value: Any) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    return _string(value)


def _as_stored(value: Any) -> Any:
    """A column of a type nobody knows: the driver's value in the envelope's encoding."""
    if isinstance(value, InvalidText):
        raise _bad(value, "text")
    if isinstance(value, float):
        return float_value(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if value is None or isinstance(value, bool | int | str):
        return value if type(value) in (bool, int, str) else str(value)
    if isinstance(value, list | tuple):
        return [None if v is None else _as_stored(v) for v in value]
    try:
        return encode_value(value)
    except TypeError:
        raise _bad(value, "column of an unknown type") from None


def _micros(value: dt.datetime) -> int:
    if value.tzinfo is not None:  # an instant: µs since the epoch in UTC
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return (value - _EPOCH) // _ONE_US


def _datetime(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return _micros(value)
    raise _bad(value, "date-time")


def _zoned(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return str(encode_value(value if value.tzinfo else value.replace(tzinfo=dt.UTC)))
    raise _bad(value, "timestamp with time zone")


def _date(value: Any) -> int:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return (value - _EPOCH_DATE).days
    raise _bad(value, "date")


def _time(value: Any) -> Any:
    if isinstance(value, dt.time):
        return encode_value(value) if value.tzinfo is None else _zoned_time(value)
    if isinstance(value, dt.timedelta):  # MySQL TIME: signed, up to 838 hours
        return value // _ONE_US
    raise _bad(value, "time")


def _zoned_time(value: dt.time) -> str:
    local = ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    offset = (value.utcoffset() or dt.timedelta(0)) // _ONE_US
    return pgtime.format_zoned_time((local - offset) % pgtime.DAY_US)


def _interval(value: Any) -> int:
    if isinstance(value, dt.timedelta):
        return value // _ONE_US
    raise _bad(value, "interval")


def _text_of(decode: Callable[[str], Any], column_kind: str) -> Decode:
    """A decoder of the database's text rendering (Postgres columns read as text)."""

    def run(value: Any) -> Any:
        if not isinstance(value, str):
            raise _bad(value, column_kind)
        return decode(value)

    return run


# -- Postgres: text renderings, decoded like the Postgres reader (docs/postgres-types.md) ---------------


def _pg_timestamptz(text: str) -> str:
    """ISO-8601 in UTC, 6 fraction digits when there is a fraction (as every polled aware datetime),
    "infinity" / "-infinity" as Debezium writes them; BC and years past 9999 included."""
    out = pgtime.text_timestamptz(-1)(text)
    return out.replace(".000000Z", "Z")


def _pg_float(text: str) -> float | str:
    return text if text in ("NaN", "Infinity", "-Infinity") else float(text)


def _pg_bool(text: str) -> bool:
    if text in ("t", "f"):
        return text == "t"
    raise BadValue("not a boolean")


def _pg_bytea(text: str) -> bytes:
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    raise BadValue("bytea not in hex format")


def _pg_element(sa_type: sa.types.TypeEngine[Any]) -> tuple[Callable[[str], Any], Column]:
    """How an array element's text decodes, and its description."""
    sa_type = _pg_base(sa_type)
    column = _pg_column("", sa_type, "", optional=True, key=False)
    if isinstance(sa_type, sa.Boolean):
        return _pg_bool, column
    if isinstance(sa_type, sa.Integer | postgresql.OID):
        return int, column
    if isinstance(sa_type, sa.Float):
        return _pg_float, column
    if isinstance(sa_type, sa.LargeBinary):
        return _pg_bytea, column
    temporal = _PG_TEMPORAL.get(_pg_temporal_kind(sa_type) or "")
    if temporal is not None:
        return temporal, column
    return str, column


_PG_TEMPORAL: dict[str, Callable[[str], Any]] = {
    "date": pgtime.text_date,
    "timestamp": pgtime.text_timestamp(-1),  # µs whatever the precision: polling's MicroTimestamp
    "timestamptz": _pg_timestamptz,
    "time": pgtime.text_time(-1),
    "timetz": pgtime.text_timetz,
    "interval": pgtime.text_interval,
}


def _pg_temporal_kind(sa_type: sa.types.TypeEngine[Any]) -> str | None:
    if isinstance(sa_type, sa.DateTime):
        return "timestamptz" if sa_type.timezone else "timestamp"
    if isinstance(sa_type, sa.Date):
        return "date"
    if isinstance(sa_type, sa.Time):
        return "timetz" if sa_type.timezone else "time"
    if isinstance(sa_type, postgresql.INTERVAL | sa.Interval):
        return "interval"
    return None


def _pg_base(sa_type: sa.types.TypeEngine[Any]) -> sa.types.TypeEngine[Any]:
    """A domain reads as its base type."""
    while isinstance(sa_type, postgresql.DOMAIN):
        sa_type = sa_type.data_type
    return sa_type


def _pg_column(
    name: str, sa_type: sa.types.TypeEngine[Any], source: str, *, optional: bool, key: bool
) -> Column:
    common: dict[str, Any] = {"optional": optional, "key": key}
    source = source or _compiled(sa_type, postgresql.dialect())
    kind = _pg_temporal_kind(sa_type)
    if kind is not None:
        return _temporal_column(name, kind, source, common)
    if isinstance(sa_type, sa.Float):
        wide = isinstance(sa_type, sa.Double) or not isinstance(sa_type, sa.REAL)
        return Column(name, "float64" if wide else "float32", None, source, **common)
    if isinstance(sa_type, postgresql.MONEY):
        return Column(name, "string", None, "MONEY", **common)
    if isinstance(sa_type, postgresql.OID | postgresql.REGCLASS):
        return Column(name, "int64", None, source, **common)
    if isinstance(sa_type, sa.ARRAY):
        _, element = _pg_element(sa_type.item_type)
        return Column(name, "array", None, source, element=element, **common)
    return _plain_column(name, sa_type, source, common)


def _postgres(column: sa.Column[Any], source: str, key: bool) -> ColumnRead:
    sa_type = _pg_base(column.type)
    described = _pg_column(column.name, sa_type, source, optional=bool(column.nullable), key=key)
    kind = _pg_temporal_kind(sa_type)
    if kind is not None:
        return _read(column, _as_text(column), _text_of(_PG_TEMPORAL[kind], kind), described)
    if isinstance(sa_type, postgresql.MONEY):  # the locale-free exact amount
        expr = sa.type_coerce(sa.cast(sa.cast(column, sa.Numeric), sa.Text), sa.types.NullType())
        return _read(column, expr, _text_of(str, "money"), described)
    if isinstance(sa_type, sa.ARRAY):
        element, _ = _pg_element(sa_type.item_type)
        decode = _text_of(lambda s: parse_array(s, element), "array")
        return _read(column, _as_text(column), decode, described)
    if isinstance(sa_type, sa.JSON):  # the server's own text: json as written, jsonb normalized
        return _read(column, _as_text(column), _text_of(str, "json"), described)
    native = _native_decoder(sa_type)
    if native is not None and not isinstance(sa_type, sa.types.NullType):
        return _read(column, _raw(column), native, described)
    # Everything else (inet, cidr, macaddr, bit, ranges, xml, tsvector, geometric types...): its text.
    return _read(column, _as_text(column), _text_of(str, "text"), described)


# -- MySQL / MariaDB ------------------------------------------------------------------------------------


def _mysql_zero_date(decode: Decode, nullable: bool) -> Decode:
    """Zero and partly-zero dates ('0000-00-00', '2024-00-10') come from the driver as text: null,
    or 0 in a NOT NULL column, as the binlog reader (and Debezium) write them."""

    def run(value: Any) -> Any:
        if isinstance(value, str):
            return None if nullable else 0
        return decode(value)

    return run


def _mysql_bits(nbits: int) -> Decode:
    def run(value: Any) -> bool | bytes:
        if isinstance(value, bytes):
            number = int.from_bytes(value, "big")
        elif type(value) is int:
            number = value
        else:
            raise _bad(value, "bit")
        if nbits == 1:
            return bool(number)
        return number.to_bytes((nbits + 7) // 8, "little")

    return run


def _mysql(column: sa.Column[Any], source: str, key: bool) -> ColumnRead:
    sa_type = column.type
    common: dict[str, Any] = {"optional": bool(column.nullable), "key": key}
    name = column.name
    compiled = source_name(source) if source else _compiled(sa_type, mysql.dialect())
    if isinstance(sa_type, mysql.FLOAT):  # exactly, as a DOUBLE (the text protocol prints 6 digits)
        expr = sa.type_coerce(column + sa.literal_column("0E0"), sa.types.NullType())
        return _read(column, expr, _float32, Column(name, "float32", None, compiled, **common))
    if isinstance(sa_type, mysql.BIT):
        nbits = sa_type.length or 1
        if nbits == 1:
            described = Column(name, "boolean", None, compiled, **common)
        else:
            described = Column(name, "bytes", Semantic.BITS, compiled, nbits, **common)
        return _read(column, _raw(column), _mysql_bits(nbits), described)
    if isinstance(sa_type, mysql.YEAR):
        return _read(column, _raw(column), _integer, Column(name, "int32", Semantic.YEAR, "YEAR", **common))
    if isinstance(sa_type, mysql.SET):
        values = tuple(sa_type.values)
        described = Column(name, "string", Semantic.ENUM_SET, "SET", enum_values=values, **common)
        return _read(column, _raw(column), _string, described)
    if isinstance(sa_type, sa.Integer):
        unsigned = bool(getattr(sa_type, "unsigned", False))
        size = "int64" if isinstance(sa_type, sa.BigInteger) else "int32"
        if isinstance(sa_type, sa.SmallInteger) or type(sa_type).__name__ == "TINYINT":
            size = "int32" if unsigned else "int16"
        elif unsigned and type(sa_type).__name__ == "INTEGER":
            size = "int64"
        return _read(column, _raw(column), _integer, Column(name, size, None, compiled, **common))
    kind = _temporal_kind(sa_type)
    if kind in ("date", "timestamp"):
        described = _temporal_column(name, kind, compiled, common)
        decode = _date if kind == "date" else _datetime
        return _read(column, _raw(column), _mysql_zero_date(decode, bool(column.nullable)), described)
    if isinstance(sa_type, sa.types.NullType):
        if source.split("(")[0].strip().lower() in _GEOMETRY:  # the server's format: SRID, then WKB
            return _read(column, _raw(column), _binary, Column(name, "bytes", None, compiled, **common))
        return _read(column, _raw(column), _as_stored, Column(name, "string", None, compiled, **common))
    return _generic(column, compiled, key)


# -- SQLite ---------------------------------------------------------------------------------------------


def _sqlite_temporal(sa_type: sa.types.TypeEngine[Any], convert: Decode, kind: str) -> Decode:
    """SQLite keeps dates as text: parsed as SQLAlchemy parses them (ISO-8601); anything else in a
    date/time column is a BadValue (an epoch number, say, which SQLite's functions read as a Julian
    day: ambiguous)."""
    dialect = sa_sqlite.dialect()
    parse = sa_type.dialect_impl(dialect).result_processor(dialect, None)
    assert parse is not None

    def run(value: Any) -> Any:
        if not isinstance(value, str) or isinstance(value, InvalidText):
            raise _bad(value, kind)
        try:
            parsed = parse(value)
        except (ValueError, TypeError):
            raise BadValue(f"text that is not an ISO-8601 {kind} in a {kind} column") from None
        return convert(parsed)

    return run


def _sqlite_json(value: Any) -> str:
    """The JSON text; a number (a JSON column has NUMERIC affinity: '12' is stored as 12) as its text."""
    if type(value) is int:
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str) and not isinstance(value, InvalidText):
        try:
            json.loads(value)
        except ValueError:
            raise BadValue("text that is not JSON in a JSON column") from None
        return value
    raise _bad(value, "JSON")


def _sqlite_as_stored(value: Any) -> Any:
    """As stored, and -0.0 as 0.0 (as SQLite prints it, and as the SQLite reader writes it)."""
    if isinstance(value, float) and value == 0.0:
        return 0.0
    return _as_stored(value)


def _sqlite(column: sa.Column[Any], declared: str, key: bool) -> ColumnRead:
    sa_type = column.type
    common: dict[str, Any] = {"optional": bool(column.nullable), "key": key}
    name = column.name
    source = declared.strip().upper()
    base = source.split("(")[0].strip()
    known = base in sa_sqlite.base.ischema_names
    if isinstance(sa_type, sa.types.NullType) or (isinstance(sa_type, sa.NUMERIC) and not known):
        # No type, or a name SQLite gives NUMERIC affinity by default (UUID, MONEY...): as stored.
        return _read(column, _raw(column), _sqlite_as_stored, Column(name, "string", None, source, **common))
    if isinstance(sa_type, sa.Integer):  # SQLite's INTEGER is 64-bit whatever the declared name
        return _read(column, _raw(column), _integer, Column(name, "int64", None, source, **common))
    if isinstance(sa_type, sa.Float):
        return _read(column, _raw(column), _floating, Column(name, "float64", None, source, **common))
    if isinstance(sa_type, sa.Numeric):
        described = Column(name, "string", None, "DECIMAL", sa_type.precision, sa_type.scale, **common)
        return _read(column, _raw(column), _decimal, described)
    kind = _temporal_kind(sa_type)
    if kind is not None:
        convert = {"timestamp": _micros, "date": _date, "time": _time}[kind]
        described = _temporal_column(name, kind, source, common)
        return _read(column, _raw(column), _sqlite_temporal(sa_type, convert, kind), described)
    if isinstance(sa_type, sa.JSON):
        described = Column(name, "string", Semantic.JSON, source, **common)
        return _read(column, _raw(column), _sqlite_json, described)
    return _generic(column, source, key)


# -- any database ---------------------------------------------------------------------------------------


def _temporal_kind(sa_type: sa.types.TypeEngine[Any]) -> str | None:
    if isinstance(sa_type, sa.DateTime):
        return "timestamptz" if sa_type.timezone else "timestamp"
    if isinstance(sa_type, sa.Date):
        return "date"
    if isinstance(sa_type, sa.Time):
        return "timetz" if sa_type.timezone else "time"
    if isinstance(sa_type, sa.Interval | postgresql.INTERVAL):
        return "interval"
    return None


def _temporal_column(name: str, kind: str, source: str, common: dict[str, Any]) -> Column:
    if kind == "date":
        return Column(name, "int32", Semantic.DATE, source, **common)
    if kind == "timestamp":
        return Column(name, "int64", Semantic.MICRO_TIMESTAMP, source, **common)
    if kind == "timestamptz":
        return Column(name, "string", Semantic.ZONED_TIMESTAMP, source, **common)
    if kind == "time":
        return Column(name, "int64", Semantic.MICRO_TIME, source, **common)
    if kind == "timetz":
        return Column(name, "string", Semantic.ZONED_TIME, source, **common)
    return Column(name, "int64", Semantic.MICRO_DURATION, source, **common)


def _native_decoder(sa_type: sa.types.TypeEngine[Any]) -> Decode | None:
    """The decoder of a driver's plain Python value for this type, or None when there is none."""
    if isinstance(sa_type, sa.Boolean):
        return _boolean
    if isinstance(sa_type, sa.Integer | postgresql.OID | postgresql.REGCLASS):
        return _integer
    if isinstance(sa_type, sa.Float):
        return _floating
    if isinstance(sa_type, sa.Numeric):
        return _decimal
    if isinstance(sa_type, sa.Uuid):
        return _uuid
    if isinstance(sa_type, sa.LargeBinary | sa.types._Binary):
        return _binary
    if isinstance(sa_type, sa.String | sa.Enum):
        return _string
    kind = _temporal_kind(sa_type)
    if kind is not None:
        return {
            "date": _date,
            "timestamp": _datetime,
            "timestamptz": _zoned,
            "time": _time,
            "timetz": _time,
            "interval": _interval,
        }[kind]
    return None


def _plain_column(
    name: str, sa_type: sa.types.TypeEngine[Any], source: str, common: dict[str, Any]
) -> Column:
    if isinstance(sa_type, sa.Boolean):
        return Column(name, "boolean", None, source, **common)
    if isinstance(sa_type, sa.SmallInteger):
        return Column(name, "int16", None, source, **common)
    if isinstance(sa_type, sa.BigInteger):
        return Column(name, "int64", None, source, **common)
    if isinstance(sa_type, sa.Integer):
        return Column(name, "int32", None, source, **common)
    if isinstance(sa_type, sa.Float):
        return Column(name, "float64", None, source, **common)
    if isinstance(sa_type, sa.Numeric):
        return Column(name, "string", None, "DECIMAL", sa_type.precision, sa_type.scale, **common)
    kind = _temporal_kind(sa_type)
    if kind is not None:
        return _temporal_column(name, kind, source, common)
    if isinstance(sa_type, sa.JSON):
        return Column(name, "string", Semantic.JSON, source, **common)
    if isinstance(sa_type, sa.Uuid):
        return Column(name, "string", Semantic.UUID, source, **common)
    if isinstance(sa_type, sa.LargeBinary | sa.types._Binary):
        return Column(name, "bytes", None, source, getattr(sa_type, "length", None), **common)
    if isinstance(sa_type, sa.Enum):
        return Column(name, "string", Semantic.ENUM, source, enum_values=tuple(sa_type.enums), **common)
    if isinstance(sa_type, sa.String):
        return Column(name, "string", None, source, sa_type.length, **common)
    return Column(name, "string", None, source, **common)


def _generic(column: sa.Column[Any], source: str, key: bool) -> ColumnRead:
    sa_type = column.type
    common: dict[str, Any] = {"optional": bool(column.nullable), "key": key}
    described = _plain_column(column.name, sa_type, source, common)
    if isinstance(sa_type, sa.JSON):  # the JSON text as the driver returns it, not re-serialized
        return _read(column, _raw(column), _as_json_text, described)
    return _read(column, _raw(column), _native_decoder(sa_type) or _as_stored, described)


def _as_json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise _bad(value, "JSON")


def _raw(column: sa.Column[Any]) -> sa.ColumnElement[Any]:
    """The column as the driver returns it (no SQLAlchemy result processing)."""
    return sa.type_coerce(column, sa.types.NullType())


def _as_text(column: sa.Column[Any]) -> sa.ColumnElement[Any]:
    """Postgres: the type's output function (`format('%s', c)`: a cast to text is not always the
    same, inet::text adds a netmask), NULL kept NULL."""
    text = sa.func.format(sa.literal("%s", sa.Text), column)
    return sa.type_coerce(sa.case((column.is_(None), sa.null()), else_=text), sa.types.NullType())


def _read(
    column: sa.Column[Any], expr: sa.ColumnElement[Any], decode: Decode, described: Column
) -> ColumnRead:
    return ColumnRead(column.name, expr, decode, described)


def _compiled(sa_type: sa.types.TypeEngine[Any], dialect: Dialect) -> str:
    try:
        return source_name(str(sa_type.compile(dialect=dialect)))
    except Exception:
        return type(sa_type).__name__.upper()


def source_name(text: str) -> str:
    """A type's name in upper case, what is in parentheses (ENUM labels) as it is: `enum('a')` ->
    `ENUM('a')`, `bigint(20) unsigned` -> `BIGINT(20) UNSIGNED`."""
    if "(" not in text:
        return text.upper()
    head, _, rest = text.partition("(")
    inner, _, tail = rest.rpartition(")")
    return f"{head.upper()}({inner}){tail.upper()}"


# -- entry points ---------------------------------------------------------------------------------------


def column_reads(
    table: sa.Table, dialect: Dialect, key: Iterable[str], catalog: dict[str, str]
) -> list[ColumnRead]:
    """How to read every column of a reflected table on this dialect. `catalog` maps column names to
    the database's own type names (`catalog_types`), for the types SQLAlchemy does not know."""
    keys = set(key)
    out = []
    for column in table.columns:
        source = catalog.get(column.name, "")
        is_key = column.name in keys
        if dialect.name == "postgresql":
            out.append(_postgres(column, source_name(source), is_key))
        elif dialect.name in ("mysql", "mariadb"):
            out.append(_mysql(column, source, is_key))
        elif dialect.name == "sqlite":
            out.append(_sqlite(column, source, is_key))
        else:
            out.append(_generic(column, source_name(source) or _compiled(column.type, dialect), is_key))
    return out


def catalog_types(conn: Connection, schema: str | None, table: str) -> dict[str, str]:
    """Column name -> the database's own type name (Postgres `format_type`, MySQL `COLUMN_TYPE`,
    SQLite the declared type); {} for other databases or when the catalog cannot be read."""
    name = conn.dialect.name
    try:
        if name == "postgresql":
            quoted = conn.dialect.identifier_preparer.quote
            relation = f"{quoted(schema)}.{quoted(table)}" if schema else quoted(table)
            rows = conn.execute(
                sa.text(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                    " WHERE attrelid = CAST(:rel AS regclass) AND attnum > 0 AND NOT attisdropped"
                ),
                {"rel": relation},
            )
        elif name in ("mysql", "mariadb"):
            rows = conn.execute(
                sa.text(
                    "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS"
                    " WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table"
                ),
                {"schema": schema, "table": table},
            )
        elif name == "sqlite":
            quoted = conn.dialect.identifier_preparer.quote
            prefix = f"{quoted(schema)}." if schema else ""
            rows = conn.exec_driver_sql(f"PRAGMA {prefix}table_info({quoted(table)})")
            return {str(r[1]): str(r[2] or "") for r in rows}
        else:
            return {}
        return {str(r[0]): str(r[1]) for r in rows}
    except sa.exc.DBAPIError:
        conn.rollback()
        return {}
