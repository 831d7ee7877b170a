"""Table schemas: what each value of an event is, from the source's own catalog.

Every reader describes each captured table once (and again after DDL) as a `TableSchema`, and hangs it
on its events by reference (`ChangeEvent.schema`). A column records its Kafka Connect type (`int64`,
`string`, ...), the Debezium/Connect semantic name that says how the value is encoded
(`io.debezium.time.MicroTimestamp` = microseconds since the epoch, no zone), the database's own type
and its length/precision/scale, and whether it is in the key. Sinks use it instead of guessing from
values: the SQL sink turns epoch milliseconds back into a timestamp only when the column says
`io.debezium.time.Timestamp`, and creates target columns with the source's types.

Values themselves are always the JSON-ready encodings of docs/envelope.md (the event contract); the
schema only describes them.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any


class Semantic:
    """Debezium / Kafka Connect semantic type names (the `name` of a Connect schema)."""

    DATE = "io.debezium.time.Date"  # int32: days since 1970-01-01
    TIME = "io.debezium.time.Time"  # int32: milliseconds since midnight
    MICRO_TIME = "io.debezium.time.MicroTime"  # int64: microseconds since midnight (MySQL: may be negative)
    NANO_TIME = "io.debezium.time.NanoTime"
    TIMESTAMP = "io.debezium.time.Timestamp"  # int64: milliseconds since the epoch, no zone
    MICRO_TIMESTAMP = "io.debezium.time.MicroTimestamp"  # int64: microseconds since the epoch, no zone
    NANO_TIMESTAMP = "io.debezium.time.NanoTimestamp"
    ZONED_TIMESTAMP = "io.debezium.time.ZonedTimestamp"  # string: ISO-8601 in UTC, "...Z"
    ZONED_TIME = "io.debezium.time.ZonedTime"  # string: "HH:MM:SS[.f]Z"
    MICRO_DURATION = "io.debezium.time.MicroDuration"  # int64: microseconds
    YEAR = "io.debezium.time.Year"  # int32
    DECIMAL = "org.apache.kafka.connect.data.Decimal"  # bytes (Debezium's precise mode) with a scale
    VARIABLE_SCALE_DECIMAL = "io.debezium.data.VariableScaleDecimal"  # struct {scale, value}
    JSON = "io.debezium.data.Json"  # string: JSON text
    UUID = "io.debezium.data.Uuid"  # string
    ENUM = "io.debezium.data.Enum"  # string
    ENUM_SET = "io.debezium.data.EnumSet"  # string: comma-joined members
    BITS = "io.debezium.data.Bits"  # bytes, little-endian
    XML = "io.debezium.data.Xml"
    GEOMETRY = "io.debezium.data.geometry.Geometry"  # struct {wkb: bytes, srid: int}


#: Semantic names whose value is a point in time or a duration, and the unit of the integer form.
TEMPORAL_UNITS: dict[str, str] = {
    Semantic.DATE: "days",
    Semantic.TIME: "ms",
    Semantic.MICRO_TIME: "us",
    Semantic.NANO_TIME: "ns",
    Semantic.TIMESTAMP: "ms",
    Semantic.MICRO_TIMESTAMP: "us",
    Semantic.NANO_TIMESTAMP: "ns",
    Semantic.MICRO_DURATION: "us",
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column as the source's catalog describes it."""

    name: str
    type: str  # Kafka Connect type: int8 int16 int32 int64 float32 float64 boolean string bytes array struct
    semantic: str | None = None  # Semantic.*, or None for a plain value of `type`
    source_type: str = ""  # the database's type name, upper case (e.g. "DATETIME", "NUMERIC", "VARCHAR")
    length: int | None = None  # characters/bytes, or the precision of a decimal / time fraction digits
    scale: int | None = None  # decimal scale
    optional: bool = True
    key: bool = False
    element: Column | None = None  # arrays: the element's description
    enum_values: tuple[str, ...] = ()  # ENUM / SET members in definition order
    # The catalog default in the value encoding (as Debezium's schema `default`); None: no default
    # (or one that is not a constant). Must be hashable (str, int, float, bool).
    default: Any = None

    @property
    def unit(self) -> str | None:
        """The unit of a temporal integer value (days, ms, us, ns), else None."""
        return TEMPORAL_UNITS.get(self.semantic or "")


@dataclass(frozen=True, slots=True, eq=False)
class TableSchema:
    """A captured table's columns, in table order. `version` changes when the table's shape does.
    Compared by identity: readers share one object per table version."""

    db: str
    schema: str | None
    table: str
    columns: tuple[Column, ...]
    version: int = 1
    _by_name: dict[str, Column] = field(default_factory=dict, compare=False, repr=False)

    fingerprint: int = field(default=0, compare=False, repr=False)  # set from the columns

    def __post_init__(self) -> None:
        self._by_name.update({c.name: c for c in self.columns})
        # What the columns say, for caches keyed by content (equal copies, e.g. unpickled, share it).
        object.__setattr__(self, "fingerprint", hash((self.db, self.schema, self.table, self.columns)))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt through __init__, so the fingerprint is this process's hash of the columns: string
        # hashes differ between processes (PYTHONHASHSEED), and a copy from a spool file or the decode
        # process must key the same caches as an equal schema made here.
        return (TableSchema, (self.db, self.schema, self.table, self.columns, self.version))

    def column(self, name: str) -> Column | None:
        return self._by_name.get(name)

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.key)

    def reshaped(
        self,
        *,
        table: str | None = None,
        rename: Mapping[str, str] | None = None,
        as_text: Collection[str] = (),
        drop: Collection[str] = (),
    ) -> TableSchema:
        """This schema as a transform leaves the rows: the table renamed, columns renamed (old: new),
        columns whose values became text (a hash, a mask pattern), columns dropped. Its own version.
        Raises CONFIG when a rename gives two columns one name (onto a column the table has, or two
        columns onto one name): one of them would be lost."""
        rename = rename or {}
        if rename:
            renamed_onto(self.qualified, [c.name for c in self.columns if c.name not in drop], rename)
        columns = []
        for col in self.columns:
            if col.name in drop:
                continue
            if col.name in as_text:
                col = Column(col.name, "string", None, "TEXT", optional=col.optional, key=col.key)
            if col.name in rename:
                col = dataclasses.replace(col, name=rename[col.name])
            columns.append(col)
        shape = repr([(c.name, c.type, c.semantic, c.source_type, c.length, c.scale, c.key) for c in columns])
        version = zlib.crc32(f"{self.version}:{shape}".encode())
        return TableSchema(self.db, self.schema, table or self.table, tuple(columns), version=version)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else f"{self.db}.{self.table}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for `cdc-logs` tools and tests)."""
        return {
            "table": self.qualified,
            "version": self.version,
            "columns": [_column_dict(c) for c in self.columns],
        }


def renamed_onto(table: str, names: Collection[str], rename: Mapping[str, str]) -> None:
    """Raise a CONFIG CdcError when renaming `names` (a table's columns) by `rename` (old: new) would
    give two columns one name, so that one of them is lost."""
    seen: dict[str, str] = {}
    for name in names:
        new = rename.get(name, name)
        if new in seen:
            old = seen[new]
            first, second = (old, name) if old in rename else (name, old)
            from cdc_logs.errors import CdcError, ErrorKind  # errors imports nothing of ours: no cycle

            raise CdcError(
                ErrorKind.CONFIG,
                f"rename: column {first!r} of {table} would become {new!r}, a name "
                + (f"column {second!r} also gets" if second in rename else "the table already has")
                + ": one of the two columns would be lost",
                f"rename {second!r} too, or rename {first!r} to a name {table} does not have (the "
                "transform's column renames apply to every table)",
            )
        seen[new] = name


def _column_dict(column: Column) -> dict[str, Any]:
    out: dict[str, Any] = {"name": column.name, "type": column.type}
    for name in ("semantic", "source_type", "length", "scale"):
        value = getattr(column, name)
        if value not in (None, ""):
            out[name] = value
    if not column.optional:
        out["optional"] = False
    if column.key:
        out["key"] = True
    if column.element is not None:
        out["element"] = _column_dict(column.element)
    if column.enum_values:
        out["enum_values"] = list(column.enum_values)
    if column.default is not None:
        out["default"] = column.default
    return out
