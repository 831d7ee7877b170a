"""Polled rows -> JSON-ready values and a `TableSchema`, from SQLAlchemy's column types.

A polled row comes back as Python values (datetime, Decimal, UUID...). The event contract wants the
envelope's encodings in the event itself, so every path (one sink, fan-out, any serializer) sees the
same values: naive datetime -> µs since the epoch (io.debezium.time.MicroTimestamp), aware datetime
-> ISO-8601 UTC string (ZonedTimestamp), date -> days (Date), time -> µs (MicroTime), timedelta ->
µs (MicroDuration), Decimal -> exact string, UUID -> string, JSON columns -> JSON text (Json),
arrays -> lists. Bytes stay bytes (base64 only in JSON).

The schema comes from the reflected table's column types; a custom `query` has none, so its columns
are described from the Python types of the first row it returns (a column NULL in that row is
described as a string).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zlib
from collections.abc import Callable, Iterable
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from cdc_logs.envelope import encode_value
from cdc_logs.schema import Column, Semantic, TableSchema

Encoder = Callable[[Any], Any]


def json_ready(value: Any) -> Any:
    """One polled value in the envelope's encoding (bytes stay bytes)."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else encode_value(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return json_ready(value.value)
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, dt.time) and value.tzinfo is not None:
        offset = value.utcoffset() or dt.timedelta(0)
        moment = dt.datetime.combine(dt.date(2000, 1, 1), value.replace(tzinfo=None)) - offset
        return moment.time().isoformat() + "Z"
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return orjson.dumps(value, default=encode_value).decode()  # a JSON column: its text
    return encode_value(value)


def _as_json_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, default=encode_value).decode()


def encoder(sa_type: sa.types.TypeEngine[Any] | None) -> Encoder:
    """The encoder for a column of this type (JSON columns keep lists and numbers as JSON text)."""
    if isinstance(sa_type, sa.JSON):
        return _as_json_text
    return json_ready


def from_sa_type(name: str, sa_type: sa.types.TypeEngine[Any], *, key: bool, nullable: bool) -> Column:
    """Describe a reflected column."""
    common: dict[str, Any] = {"key": key, "optional": nullable}
    source = str(sa_type.compile(dialect=postgresql.dialect())) if _compiles(sa_type) else ""
    source = source.upper() or type(sa_type).__name__.upper()
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
    if isinstance(sa_type, sa.DateTime):
        semantic = Semantic.ZONED_TIMESTAMP if sa_type.timezone else Semantic.MICRO_TIMESTAMP
        return Column(name, "string" if sa_type.timezone else "int64", semantic, source, **common)
    if isinstance(sa_type, sa.Date):
        return Column(name, "int32", Semantic.DATE, source, **common)
    if isinstance(sa_type, sa.Time):
        if sa_type.timezone:
            return Column(name, "string", Semantic.ZONED_TIME, source, **common)
        return Column(name, "int64", Semantic.MICRO_TIME, source, **common)
    if isinstance(sa_type, sa.Interval):
        return Column(name, "int64", Semantic.MICRO_DURATION, source, **common)
    if isinstance(sa_type, sa.JSON):
        return Column(name, "string", Semantic.JSON, source, **common)
    if isinstance(sa_type, sa.Uuid):
        return Column(name, "string", Semantic.UUID, source, **common)
    if isinstance(sa_type, sa.LargeBinary | sa.types._Binary):
        return Column(name, "bytes", None, source, getattr(sa_type, "length", None), **common)
    if isinstance(sa_type, sa.ARRAY):
        element = from_sa_type(name, sa_type.item_type, key=False, nullable=True)
        return Column(name, "array", None, source, element=element, **common)
    if isinstance(sa_type, sa.Enum):
        return Column(name, "string", Semantic.ENUM, source, enum_values=tuple(sa_type.enums), **common)
    if isinstance(sa_type, sa.String):
        return Column(name, "string", None, source, sa_type.length, **common)
    return Column(name, "string", None, source, **common)


def _compiles(sa_type: sa.types.TypeEngine[Any]) -> bool:
    try:
        sa_type.compile(dialect=postgresql.dialect())
    except Exception:
        return False
    return True


def from_value(name: str, value: Any, *, key: bool) -> Column:
    """Describe a custom query's column from a value it returned."""
    if isinstance(value, bool):
        return Column(name, "boolean", key=key)
    if isinstance(value, int):
        return Column(name, "int64", key=key)
    if isinstance(value, float):
        return Column(name, "float64", key=key)
    if isinstance(value, Decimal):
        return Column(name, "string", None, "DECIMAL", key=key)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return Column(name, "string", Semantic.ZONED_TIMESTAMP, "TIMESTAMPTZ", key=key)
        return Column(name, "int64", Semantic.MICRO_TIMESTAMP, "TIMESTAMP", key=key)
    if isinstance(value, dt.date):
        return Column(name, "int32", Semantic.DATE, "DATE", key=key)
    if isinstance(value, dt.time):
        return Column(name, "int64", Semantic.MICRO_TIME, "TIME", key=key)
    if isinstance(value, dt.timedelta):
        return Column(name, "int64", Semantic.MICRO_DURATION, "INTERVAL", key=key)
    if isinstance(value, uuid.UUID):
        return Column(name, "string", Semantic.UUID, "UUID", key=key)
    if isinstance(value, bytes | bytearray | memoryview):
        return Column(name, "bytes", key=key)
    if isinstance(value, dict):
        return Column(name, "string", Semantic.JSON, "JSON", key=key)
    return Column(name, "string", key=key)


class RowShape:
    """Per polled table: the column encoders and the schema, built once (queries: from a first row)."""

    def __init__(
        self, db: str, schema: str | None, table: str, source: sa.FromClause, key: Iterable[str]
    ) -> None:
        self.db, self.schema_name, self.table = db, schema, table
        self.key = set(key)
        self._types: dict[str, sa.types.TypeEngine[Any]] = {}
        if isinstance(source, sa.Table):
            self._types = {c.name: c.type for c in source.columns}
            columns = [
                from_sa_type(c.name, c.type, key=c.name in self.key, nullable=bool(c.nullable))
                for c in source.columns
            ]
            self.schema: TableSchema | None = self._make(columns)
        else:
            self.schema = None
        self._encoders = {name: encoder(t) for name, t in self._types.items()}

    def encode(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.schema is None:
            self.schema = self._make([from_value(n, v, key=n in self.key) for n, v in row.items()])
        encoders = self._encoders
        return {n: (encoders.get(n, json_ready))(v) if v is not None else None for n, v in row.items()}

    def _make(self, columns: list[Column]) -> TableSchema:
        shape = repr([(c.name, c.type, c.semantic, c.source_type, c.key) for c in columns])
        return TableSchema(self.db, self.schema_name, self.table, tuple(columns), zlib.crc32(shape.encode()))
