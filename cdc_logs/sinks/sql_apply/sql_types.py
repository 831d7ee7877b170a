"""Typed values for SQL apply: envelope encodings -> database values, and source columns -> DDL types.

The envelope carries Debezium's JSON encodings (days, epoch milliseconds or microseconds, decimal
strings...); the event's `TableSchema` says which (cdc_logs/schema.py). `Binder` turns each value
back into the Python value the target column takes: a `io.debezium.time.Timestamp` integer is epoch
*milliseconds*, a `MicroTimestamp` microseconds, a `ZonedTimestamp` string an aware datetime, a
decimal string an exact `Decimal`. Without a schema (Debezium topics written without one) the target
column's type decides alone, and integers in timestamp columns are read as microseconds (documented).

`ddl_type` picks the target column type for `auto_create` from the source column, per dialect: the
source's own type (timestamp(3) -> timestamp(3), numeric(20,5) -> numeric(20,5), jsonb -> jsonb)
or, where the target has none, the nearest that holds every value exactly (UUID on MariaDB 10.7+
else CHAR(36), DECIMAL past MySQL's 65 digits as LONGTEXT, exact decimals as TEXT on SQLite, whose
NUMERIC rounds through a float; docs/sinks.md#column-types-auto_create has the table). JSON text
from the source is stored as sent (`JsonText`), never parsed and re-serialised.

A value the target cannot hold (a date past year 9999, Postgres' infinite timestamps) raises
SINK_REJECTED naming the column, so that one event goes to the dead-letter file.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.schema import Column, Semantic
from cdc_logs.sinks.sql_apply import sql_fit

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DATE = dt.date(1970, 1, 1)
_DECIMAL_TYPES = frozenset({"NUMERIC", "DECIMAL", "MONEY", "DEC", "FIXED"})
_UNITS_US = {"ms": 1000, "us": 1, "ns": None}

Decoder = Callable[[Any], Any]


class OutOfRange(ValueError):
    """A source value the target type cannot represent."""


# -- envelope value -> Python value ----------------------------------------------------------------
def _micros(value: int, unit: str) -> dt.timedelta:
    if unit == "ns":
        return dt.timedelta(microseconds=value // 1000)
    return dt.timedelta(microseconds=value * _UNITS_US[unit])  # type: ignore[operator]


def _timestamp(unit: str) -> Decoder:
    def decode(value: Any) -> Any:
        if not isinstance(value, int):
            return _iso_datetime(value)
        try:
            return _EPOCH + _micros(value, unit)
        except OverflowError as exc:
            raise OutOfRange(f"{value} ({unit} since the epoch) is outside years 1-9999") from exc

    return decode


def _iso_datetime(value: Any) -> Any:
    if isinstance(value, str):
        if value in ("infinity", "-infinity"):
            raise OutOfRange(f"{value!r} has no datetime equivalent")
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def _date(value: Any) -> Any:
    if not isinstance(value, int):
        return value
    try:
        return _EPOCH_DATE + dt.timedelta(days=value)
    except OverflowError as exc:
        raise OutOfRange(f"{value} days since 1970-01-01 is outside years 1-9999") from exc


def _time(unit: str) -> Decoder:
    def decode(value: Any) -> Any:
        if not isinstance(value, int):
            return value
        delta = _micros(value, unit)
        if dt.timedelta(0) <= delta < dt.timedelta(days=1):
            return (_EPOCH + delta).time()
        return delta  # MySQL TIME: negative or past 24 hours (MySQL/MariaDB targets take a timedelta)

    return decode


def _zoned_time(value: Any) -> Any:
    if isinstance(value, str):
        return dt.time.fromisoformat(value.replace("Z", "+00:00"))
    return value


def _duration(value: Any) -> Any:
    return dt.timedelta(microseconds=value) if isinstance(value, int) else value


def _decimal(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation as exc:
            raise OutOfRange(f"{value!r} is not a decimal") from exc
    return value


def _precise_decimal(scale: int) -> Decoder:
    """Debezium's decimal.handling.mode=precise: the unscaled value's big-endian two's complement bytes
    (base64 in JSON), and the scale in the schema."""

    def decode(value: Any) -> Any:
        if isinstance(value, str):
            value = base64.b64decode(value)
        if isinstance(value, bytes):
            # From text: Decimal arithmetic (scaleb) would round to the context's 28 digits.
            return Decimal(f"{int.from_bytes(value, 'big', signed=True)}E{-scale}")
        return _decimal(value)

    return decode


def _variable_scale_decimal(value: Any) -> Any:
    """Debezium's numeric without a fixed scale in precise mode: {"scale": s, "value": base64}."""
    if isinstance(value, dict) and "value" in value:
        return _precise_decimal(int(value.get("scale") or 0))(value["value"])
    return _decimal(value)


def _float(value: Any) -> Any:
    if isinstance(value, str):  # "NaN", "Infinity", "-Infinity" (Jackson's spelling)
        return float(value.replace("Infinity", "inf"))
    return value


def _bytes(value: Any) -> Any:
    return base64.b64decode(value) if isinstance(value, str) else value


def decoder(column: Column) -> Decoder | None:
    """The function that turns `column`'s envelope value into a Python value (None: as is)."""
    semantic, unit = column.semantic, column.unit
    if semantic in (Semantic.TIMESTAMP, Semantic.MICRO_TIMESTAMP, Semantic.NANO_TIMESTAMP):
        return _timestamp(unit or "us")
    if semantic == Semantic.ZONED_TIMESTAMP:
        return _iso_datetime
    if semantic == Semantic.DATE:
        return _date
    if semantic in (Semantic.TIME, Semantic.MICRO_TIME, Semantic.NANO_TIME):
        return _time(unit or "us")
    if semantic == Semantic.ZONED_TIME:
        return _zoned_time
    if semantic == Semantic.MICRO_DURATION:
        return _duration
    if semantic == Semantic.VARIABLE_SCALE_DECIMAL:
        return _variable_scale_decimal
    if semantic == Semantic.DECIMAL and column.type == "bytes":
        return _precise_decimal(column.scale or 0)
    if semantic == Semantic.DECIMAL or is_decimal(column):
        return _decimal
    if column.type in ("float32", "float64"):
        return _float
    if column.type == "bytes":
        return _bytes
    if column.type == "array" and column.element is not None:
        inner = decoder(column.element)
        if inner is not None:
            return lambda v: _array(v, inner)
    return None


def _array(value: Any, inner: Decoder) -> Any:
    if not isinstance(value, list):
        return value
    return [_array(v, inner) if isinstance(v, list) else (None if v is None else inner(v)) for v in value]


# -- Python value -> what the target column takes ---------------------------------------------------
def adapt(target: sa.types.TypeEngine[Any], value: Any, dialect: str) -> Any:
    """Fit a decoded value to the target column's type (the target may differ from the source)."""
    if value is None:
        return None
    if isinstance(target, sa.DateTime):
        if isinstance(value, int):  # no schema: Debezium's default for timestamps is microseconds
            return _timestamp("us")(value)
        value = _iso_datetime(value)
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None and not target.timezone:
                return value.astimezone(dt.UTC).replace(tzinfo=None)
            if value.tzinfo is None and target.timezone:
                return value.replace(tzinfo=dt.UTC)
        return value
    if isinstance(target, sa.Date):
        return _date(value)
    if isinstance(target, sa.Time):
        if isinstance(value, int):
            value = _time("us")(value)
        if isinstance(value, dt.timedelta):
            return _time_of_day(value, dialect)
        if isinstance(value, dt.time) and value.tzinfo is not None and not target.timezone:
            return value.replace(tzinfo=None)
        return value
    if isinstance(target, sa.Interval):
        return _duration(value)
    if isinstance(target, sa.Integer) and isinstance(value, dt.timedelta):
        return value // dt.timedelta(microseconds=1)  # an interval without an interval type: µs
    if isinstance(target, sa.LargeBinary):
        return _bytes(value)
    if isinstance(target, sa.Numeric) and not isinstance(target, sa.Float):
        return _decimal(value)
    if isinstance(target, sa.Float):
        return _float(value)
    if isinstance(target, sa.JSON):
        # The source's own JSON text, sent as it is (json_serializer): parsing it would round big
        # numbers through floats and lose a json column's spacing and key order.
        return JsonText(value) if isinstance(value, str) else value
    if isinstance(target, sa.Uuid):
        return uuid.UUID(value) if isinstance(value, str) and target.as_uuid else value
    if isinstance(target, sa.String) and not isinstance(value, str):
        return _as_text(value)
    return value


class JsonText(str):
    """JSON text to store as it is (not a string value to encode as JSON)."""


def json_serializer(value: Any) -> str:
    """The engine's JSON encoder: JSON text from the source passes through unchanged."""
    return value if isinstance(value, JsonText) else json.dumps(value, ensure_ascii=False)


def _time_of_day(value: dt.timedelta, dialect: str) -> Any:
    """A duration for a TIME column: MySQL/MariaDB TIME holds -838:59:59..838:59:59 and takes it as
    is; elsewhere only 24:00:00 (Postgres' end of day) fits, and anything else is refused rather than
    wrapped around midnight."""
    if dialect in ("mysql", "mariadb"):
        return value
    if value == dt.timedelta(days=1):
        return "24:00:00"
    raise OutOfRange(f"{value} is not a time of day")


def _as_text(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # e.g. an unsigned BIGINT past 2**63 kept as text
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value


class Binder:
    """Converts rows of one (target table, source schema) pair; built once, used for every row.

    `misfits`: the source columns the target column does not hold (sql_fit.py), with the reason;
    values that column would change are refused, naming `fixes[name]` (set by the sink: the ALTER)."""

    def __init__(self, table: sa.Table, columns: dict[str, Column], dialect: str) -> None:
        self.table = table
        self.dialect = dialect
        self._decoders = {name: decoder(col) for name, col in columns.items()}
        for name, column in columns.items():
            target = table.c[name].type if name in table.c else None
            if isinstance(target, sa.Integer) and column.unit is not None and column.type.startswith("int"):
                # An integer column for a temporal one (made by hand, or by an older auto_create):
                # it gets the envelope's integer (days, ms or µs, as the schema's unit says), as before.
                self._decoders[name] = None
        self.misfits: dict[str, str] = {}
        self._guards: dict[str, sql_fit.Guard] = {}
        for name, column in columns.items():
            found = sql_fit.misfit(column, table.c[name].type, dialect) if name in table.c else None
            if found is not None:
                self.misfits[name] = found[0]
                if found[1] is not None:
                    self._guards[name] = found[1]
        for held in table.c:
            labels = sql_fit.labels_guard(held.type, dialect)
            if labels is not None and held.name not in self._guards:
                self._guards[held.name] = labels
        self.fixes: dict[str, str] = {}
        # The statement that gives a target column a type (set by the sink: it knows the dialect).
        self.alter: Callable[[str, sa.types.TypeEngine[Any]], str] | None = None

    def refuses(self, name: str) -> bool:
        """Whether values of misfit column `name` are checked (else the mismatch is only reported)."""
        return name in self._guards

    def value(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            decode = self._decoders.get(name)
            if decode is not None:
                value = decode(value)
            guard = self._guards.get(name)
            if guard is not None:
                guard(value)
            return adapt(self.table.c[name].type, value, self.dialect)
        except sql_fit.MissingLabel as exc:
            target = self.table.c[name].type
            wider = mysql.SET(*exc.labels) if isinstance(target, mysql.SET) else mysql.ENUM(*exc.labels)
            fix = self.alter(name, wider) if self.alter is not None else "add the label to the column"
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"column {name!r} of {self.table.fullname}: {exc} (a label added at the source)",
                f"add it on the target: {fix}; or map or mask the column with a transform",
            ) from exc
        except sql_fit.Misfit as exc:
            fix = self.fixes.get(name) or "widen the target column's type"
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"column {name!r} of {self.table.fullname} {self.misfits[name]}: {exc}",
                f"the source's column changed: {fix}; or drop or mask the column with a transform",
            ) from exc
        except (OutOfRange, ValueError, TypeError, OverflowError) as exc:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"column {name!r} of {self.table.fullname}: the value cannot be written ({exc})",
                "widen the target column's type, or drop or mask the column with a transform",
            ) from exc

    def row(self, values: dict[str, Any]) -> dict[str, Any]:
        return {name: self.value(name, v) for name, v in values.items()}


# -- source column -> target DDL type -----------------------------------------------------------------
def flavor(dialect: sa.Dialect) -> str:
    """The target's name for `ddl_type`: "mariadb" for MariaDB (whatever the driver), else the dialect's."""
    return "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name


def ddl_type(
    column: Column, dialect: str, *, key: bool = False, version: tuple[int, ...] = ()
) -> sa.types.TypeEngine[Any]:
    """The target column type `auto_create` uses for `column` on `dialect` ("postgresql", "mariadb",
    "mysql", "sqlite", ...; `version`: the server's, for types only newer servers have). The table in
    docs/sinks.md#sql-column-types lists the mapping; every choice holds each source value exactly."""
    my, pg, lite = dialect in ("mysql", "mariadb"), dialect == "postgresql", dialect == "sqlite"
    semantic, kind, source = column.semantic, column.type, column.source_type.split("(")[0]
    digits = min(column.length, 6) if column.length is not None else 6
    if semantic == Semantic.DATE:
        return sa.Date()
    if semantic in (Semantic.TIMESTAMP, Semantic.MICRO_TIMESTAMP, Semantic.NANO_TIMESTAMP):
        if my:
            return mysql.DATETIME(fsp=digits)
        return postgresql.TIMESTAMP(precision=digits) if pg else sa.DateTime()
    if semantic == Semantic.ZONED_TIMESTAMP:
        if my:  # no zoned type (TIMESTAMP ends in 2038): DATETIME holding UTC
            return mysql.DATETIME(fsp=digits)
        return postgresql.TIMESTAMP(timezone=True, precision=digits) if pg else sa.DateTime(timezone=True)
    if semantic in (Semantic.TIME, Semantic.MICRO_TIME, Semantic.NANO_TIME):
        # A MySQL TIME outside 0..24 h fits only a MySQL target; elsewhere that event is refused
        # (dead-lettered), never wrapped around midnight.
        if my:
            return mysql.TIME(fsp=digits)
        return postgresql.TIME(precision=digits) if pg else sa.Time()
    if semantic == Semantic.ZONED_TIME:
        if my:
            return mysql.TIME(fsp=digits)  # UTC
        return postgresql.TIME(timezone=True, precision=digits) if pg else sa.Time(timezone=True)
    if semantic == Semantic.MICRO_DURATION:
        return sa.Interval() if pg else sa.BigInteger()  # elsewhere: microseconds
    if semantic == Semantic.JSON:
        if pg:
            return (
                postgresql.JSONB(none_as_null=True)
                if source == "JSONB"
                else postgresql.JSON(none_as_null=True)
            )
        return sa.JSON(
            none_as_null=True
        )  # MariaDB: LONGTEXT with a json_valid() check; the text is kept as sent
    if semantic == Semantic.UUID:
        if pg or (dialect == "mariadb" and version >= (10, 7)):
            return sa.UUID(as_uuid=False)
        return sa.CHAR(36)
    if semantic in (Semantic.ENUM, Semantic.ENUM_SET) and my and column.enum_values:
        members = column.enum_values
        return mysql.ENUM(*members) if semantic == Semantic.ENUM else mysql.SET(*members)
    if semantic == Semantic.YEAR:
        return mysql.YEAR() if my else sa.SmallInteger()
    if kind == "boolean":
        return sa.Boolean()
    if kind in ("int8", "int16"):
        return sa.SmallInteger()
    if kind == "int32":
        return sa.Integer()
    if kind == "int64":
        if "UNSIGNED" in column.source_type.upper():  # past 2**63: SQLite's NUMERIC would round it
            return sa.Text() if lite else sa.Numeric(20, 0)
        return sa.BigInteger()
    if kind == "float32":
        # MySQL/MariaDB send a FLOAT to clients with 6 significant digits: a DOUBLE holds and returns
        # every float4 exactly (and the shortest text Postgres gives, e.g. 3.4028235e38, would
        # overflow a FLOAT).
        return sa.Double() if my else sa.REAL()
    if kind == "float64":
        return sa.Double()
    if is_decimal(column):
        if lite:
            return sa.Text()  # SQLite's NUMERIC rounds through a float; text keeps every digit
        return _decimal_type(column, my)
    if kind == "bytes":
        return mysql.LONGBLOB() if my else sa.LargeBinary()
    if kind == "array":
        if pg and column.element is not None and column.element.type != "array":
            return postgresql.ARRAY(ddl_type(column.element, dialect))
        return sa.JSON(none_as_null=True)
    if kind == "struct":
        return sa.JSON(none_as_null=True)
    if column.length and column.length <= (16383 if my else 10485760):
        if source == "CHAR" and not my:  # MySQL's CHAR drops trailing spaces on read; VARCHAR keeps them
            return sa.CHAR(column.length)
        return sa.String(column.length)
    if my:
        return sa.String(255) if key else mysql.LONGTEXT()
    return sa.Text()


def is_decimal(column: Column) -> bool:
    return column.semantic in (Semantic.DECIMAL, Semantic.VARIABLE_SCALE_DECIMAL) or (
        column.type == "string" and column.source_type.split("(")[0] in _DECIMAL_TYPES
    )


def _decimal_type(column: Column, my: bool) -> sa.types.TypeEngine[Any]:
    """An exact type for a decimal column. MySQL/MariaDB DECIMAL stops at 65 digits and 30 after the
    point and rounds silently beyond; an unconstrained or larger decimal becomes text there."""
    precision, scale = column.length, column.scale or 0
    if my:
        if precision is None or precision > 65 or scale > 30 or scale < 0 or scale > precision:
            return mysql.LONGTEXT()
        return sa.Numeric(precision, scale)
    if precision is None or scale < 0 or scale > precision:
        return sa.Numeric()  # Postgres' unconstrained numeric keeps every digit
    return sa.Numeric(precision, scale)


def guess_type(value: Any, dialect: str) -> sa.types.TypeEngine[Any]:
    """A column type from a value alone (events without a schema)."""
    if isinstance(value, bool):
        return sa.Boolean()
    if isinstance(value, int):
        return sa.BigInteger()
    if isinstance(value, float):
        return sa.Double()
    if isinstance(value, dict | list):
        return sa.JSON(none_as_null=True)
    if isinstance(value, bytes):
        return mysql.LONGBLOB() if dialect in ("mysql", "mariadb") else sa.LargeBinary()
    return mysql.LONGTEXT() if dialect in ("mysql", "mariadb") else sa.Text()
