"""Oracle column descriptions (ALL_TAB_COLUMNS rows) -> `TableSchema`s with Debezium's types.

As Debezium's Oracle connector with decimal.handling.mode=string: NUMBER(p, 0) with p < 19 is an
integer (int8/16/32/64 by p), any other NUMBER and FLOAT a decimal string; BINARY_FLOAT/DOUBLE are
float32/float64; character types and CLOB strings; DATE and TIMESTAMP(0-6) microseconds since the
epoch (io.debezium.time.MicroTimestamp), TIMESTAMP(7-9) nanoseconds (NanoTimestamp); TIMESTAMP WITH
[LOCAL] TIME ZONE an ISO-8601 UTC string (ZonedTimestamp); RAW and BLOB bytes. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc_logs.schema import Column, Semantic, TableSchema


@dataclass(frozen=True, slots=True)
class CatalogColumn:
    """One row of ALL_TAB_COLUMNS (COLUMN_NAME, DATA_TYPE, DATA_LENGTH, DATA_PRECISION, DATA_SCALE,
    NULLABLE), with whether it is in the primary key."""

    name: str
    data_type: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    nullable: bool = True
    key: bool = False


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A captured table: its catalog columns in COLUMN_ID order and the schema built from them."""

    owner: str
    name: str
    columns: tuple[CatalogColumn, ...]
    schema: TableSchema

    @property
    def qualified(self) -> str:
        return f"{self.owner}.{self.name}"

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.key)

    def column(self, name: str) -> CatalogColumn | None:
        for column in self.columns:
            if column.name == name:
                return column
        return None


def base_type(data_type: str) -> str:
    """TIMESTAMP(6) WITH TIME ZONE -> TIMESTAMP WITH TIME ZONE (ALL_TAB_COLUMNS keeps the digits)."""
    text = data_type.upper()
    if "(" in text:
        head, _, rest = text.partition("(")
        text = head + rest.partition(")")[2]
    return " ".join(text.split())


def _integer_type(precision: int) -> str:
    if precision < 3:
        return "int8"
    if precision < 5:
        return "int16"
    if precision < 10:
        return "int32"
    return "int64"


def column_schema(col: CatalogColumn) -> Column:
    kind = base_type(col.data_type)
    key, optional = col.key, col.nullable
    if kind == "NUMBER":
        if col.scale == 0 and col.precision is not None and col.precision < 19:
            return Column(
                col.name,
                _integer_type(col.precision),
                None,
                "NUMBER",
                col.precision,
                0,
                key=key,
                optional=optional,
            )
        return Column(
            col.name, "string", None, "NUMBER", col.precision, col.scale, key=key, optional=optional
        )
    if kind == "FLOAT":
        return Column(col.name, "string", None, "FLOAT", col.precision, None, key=key, optional=optional)
    if kind == "BINARY_FLOAT":
        return Column(col.name, "float32", None, kind, key=key, optional=optional)
    if kind == "BINARY_DOUBLE":
        return Column(col.name, "float64", None, kind, key=key, optional=optional)
    if kind in ("DATE", "TIMESTAMP"):
        digits = 0 if kind == "DATE" else (col.scale if col.scale is not None else 6)
        semantic = Semantic.NANO_TIMESTAMP if digits > 6 else Semantic.MICRO_TIMESTAMP
        return Column(col.name, "int64", semantic, kind, digits, key=key, optional=optional)
    if kind in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH LOCAL TIME ZONE"):
        return Column(
            col.name, "string", Semantic.ZONED_TIMESTAMP, kind, col.scale, key=key, optional=optional
        )
    if kind in ("RAW", "LONG RAW", "BLOB"):
        return Column(col.name, "bytes", None, kind, col.length, key=key, optional=optional)
    return Column(col.name, "string", None, kind, col.length, key=key, optional=optional)


def table_info(db: str, owner: str, name: str, columns: list[CatalogColumn], version: int = 1) -> TableInfo:
    schema = TableSchema(db, owner, name, tuple(column_schema(c) for c in columns), version)
    return TableInfo(owner, name, tuple(columns), schema)
