"""Polled rows -> JSON-ready values and a `TableSchema`.

The event contract wants the envelope's encodings in the event itself, so every path (one sink,
fan-out, any serializer) sees the same values. A polled table is read and described column by column
as columns.py says (per database, from the reflected types). A custom `query` has no reflected types:
its values are encoded from their Python types (naive datetime -> µs since the epoch, aware datetime
-> ISO-8601 UTC string, date -> days, time -> µs, timedelta -> µs, Decimal -> exact string, UUID ->
string, float NaN/infinity -> "NaN"/"Infinity"/"-Infinity", lists -> lists, bytes stay bytes), and
its columns are described from the Python types of the first row it returns (a column NULL in that
row is described as a string).
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

from cdc_logs.envelope import encode_value
from cdc_logs.readers.polling.columns import BadValue, ColumnRead, float_value
from cdc_logs.readers.sqlite.connection import InvalidText
from cdc_logs.schema import Column, Semantic, TableSchema


def json_ready(value: Any) -> Any:
    """One polled value in the envelope's encoding (bytes stay bytes)."""
    if isinstance(value, float):
        return float_value(value)
    if isinstance(value, InvalidText):
        raise BadValue("text that is not valid UTF-8")
    if value is None or isinstance(value, bool | int | str | bytes):
        return value if type(value) in (bool, int, str, bytes) or value is None else _plain(value)
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


def _plain(value: Any) -> Any:
    """A subclass of a JSON scalar (psycopg's BitString, an IntEnum) as the plain type."""
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return bytes(value)


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
    """Per polled table: the column decoders and the schema, built once (queries: from a first row)."""

    def __init__(
        self,
        db: str,
        schema: str | None,
        table: str,
        source: sa.FromClause,
        key: Iterable[str],
        reads: Iterable[ColumnRead] = (),
    ) -> None:
        self.db, self.schema_name, self.table = db, schema, table
        self.key = set(key)
        reads = list(reads)
        self._decoders: dict[str, Callable[[Any], Any]] = {r.name: r.decode for r in reads}
        self.schema: TableSchema | None = self._make([r.column for r in reads]) if reads else None

    def encode(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row's values in the envelope's encodings; BadValue names the column a value does not
        fit (the reader dead-letters the row)."""
        if self.schema is None:
            self.schema = self._make([from_value(n, v, key=n in self.key) for n, v in row.items()])
        decoders = self._decoders
        out: dict[str, Any] = {}
        for name, value in row.items():
            if value is None:
                out[name] = None
                continue
            try:
                out[name] = decoders.get(name, json_ready)(value)
            except BadValue as exc:
                raise BadValue(f"column {name!r}: {exc}") from None
            except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
                # (never the exception's text: it may quote the value)
                raise BadValue(f"column {name!r}: cannot be read ({type(exc).__name__})") from None
        return out

    def _make(self, columns: list[Column]) -> TableSchema:
        shape = repr([(c.name, c.type, c.semantic, c.source_type, c.key) for c in columns])
        return TableSchema(self.db, self.schema_name, self.table, tuple(columns), zlib.crc32(shape.encode()))
