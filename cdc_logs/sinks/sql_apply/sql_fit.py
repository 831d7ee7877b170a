"""Does a target column still hold what the source sends? Schema changes other than ADD COLUMN.

The SQL sink adds columns that appear at the source (`auto_create`) and changes nothing else on a
target table: it is the user's, as with Debezium's JDBC sink (`schema.evolution=basic` adds columns
only). Any other change at the source (a column's type changed, a column dropped or renamed) is
reported instead, and no value is ever written changed:

- `misfit` compares a source column (the event's schema) with the target column's type. Where the
  target is narrower in a way the database would absorb silently (fewer fractional-second digits:
  Postgres and MariaDB round or truncate them; a smaller numeric precision or scale: both round;
  a shorter varchar), it returns a guard that refuses each value that would change, so that event is
  dead-lettered naming the column and the ALTER that fixes it, and values that fit still go through.
  Where the kinds differ (a timestamp column that became text, say), it is only reported: the
  database refuses what it cannot convert.
- `labels_guard` refuses a label a MySQL/MariaDB ENUM or SET target column lacks (one added at the
  source), naming the MODIFY COLUMN that adds it; the ENUM is not extended here either.
- `dropped` lists target columns the source does not send (dropped or renamed at the source): they
  are kept, and rows written from then on leave them NULL (or their default).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from cdc_logs.schema import Column, Semantic

Guard = Callable[[Any], None]


class Misfit(ValueError):
    """A value the target column would store changed (rounded, truncated), or not at all."""


class MissingLabel(Misfit):
    """A label a MySQL/MariaDB ENUM or SET target column does not have. `labels`: the column's
    labels with the missing ones appended (what the column must become)."""

    def __init__(self, message: str, labels: tuple[str, ...]) -> None:
        super().__init__(message)
        self.labels = labels


_FRACTION = {
    Semantic.TIMESTAMP: 3,
    Semantic.TIME: 3,
    Semantic.MICRO_TIMESTAMP: 6,
    Semantic.MICRO_TIME: 6,
    Semantic.NANO_TIMESTAMP: 6,  # Python keeps microseconds: nanoseconds are gone before this point
    Semantic.NANO_TIME: 6,
    Semantic.ZONED_TIMESTAMP: 6,
    Semantic.ZONED_TIME: 6,
}
# Which target kinds hold each source kind's values (text holds the text form of anything).
_HOLDS = {
    "datetime": {"datetime", "text"},
    "date": {"date", "datetime", "text"},
    "time": {"time", "interval", "text"},
    "interval": {"interval", "integer", "text"},
    "decimal": {"decimal", "text"},
    "integer": {"integer", "decimal", "float", "boolean", "text"},
    "float": {"float", "decimal", "text"},
    "boolean": {"boolean", "integer", "text"},
    "binary": {"binary"},
    "json": {"json", "text"},
    "array": {"array", "json", "text"},
    "uuid": {"uuid", "text"},
    "text": {"text", "json", "uuid"},
}


def source_kind(column: Column) -> str:
    semantic, kind = column.semantic, column.type
    if semantic in (Semantic.TIMESTAMP, Semantic.MICRO_TIMESTAMP, Semantic.NANO_TIMESTAMP):
        return "datetime"
    if semantic == Semantic.ZONED_TIMESTAMP:
        return "datetime"
    if semantic == Semantic.DATE:
        return "date"
    if semantic in (Semantic.TIME, Semantic.MICRO_TIME, Semantic.NANO_TIME, Semantic.ZONED_TIME):
        return "time"
    if semantic == Semantic.MICRO_DURATION:
        return "interval"
    if semantic in (Semantic.DECIMAL, Semantic.VARIABLE_SCALE_DECIMAL) or (
        kind == "string" and column.source_type.split("(")[0] in ("NUMERIC", "DECIMAL", "MONEY")
    ):
        return "decimal"
    if semantic in (Semantic.JSON, Semantic.GEOMETRY) or kind == "struct":
        return "json"
    if semantic == Semantic.UUID:
        return "uuid"
    if semantic == Semantic.BITS or kind == "bytes":
        return "binary"
    if kind.startswith("int"):
        return "integer"
    return {"float32": "float", "float64": "float", "boolean": "boolean", "array": "array"}.get(kind, "text")


def target_kind(target: sa.types.TypeEngine[Any]) -> str | None:
    """The kind of a target column's type; None when unknown (nothing is checked then)."""
    kinds: list[tuple[type[Any], str]] = [
        (sa.DateTime, "datetime"),
        (sa.Date, "date"),
        (sa.Time, "time"),
        (sa.Interval, "interval"),
        (sa.Float, "float"),
        (sa.Numeric, "decimal"),
        (sa.Boolean, "boolean"),
        (sa.Integer, "integer"),
        (sa.LargeBinary, "binary"),
        (sa.types._Binary, "binary"),
        (sa.JSON, "json"),
        (sa.Uuid, "uuid"),
        (postgresql.ARRAY, "array"),
        (sa.String, "text"),
    ]
    for cls, kind in kinds:
        if isinstance(target, cls):
            return kind
    return None


def misfit(column: Column, target: sa.types.TypeEngine[Any], dialect: str) -> tuple[str, Guard | None] | None:
    """Why `target` does not hold every value of `column`, and a guard refusing each value it would
    change (None: only reported). None when it holds them all."""
    source, kind = source_kind(column), target_kind(target)
    if kind is None or column.source_type == "NULL":  # a MongoDB field holding null: it has no type
        return None
    if kind not in _HOLDS[source]:
        return (
            f"is {kind}, and the source now sends {source} ({column.source_type or column.type})",
            None,
        )
    if kind in ("datetime", "time") and source in ("datetime", "time"):
        return _fraction_misfit(column, target, dialect)
    if kind == "decimal" and source == "decimal":
        return _decimal_misfit(column, target)
    members = column.semantic in (Semantic.ENUM, Semantic.ENUM_SET)  # the database checks members
    if kind == "text" and source == "text" and not members and not isinstance(target, sa.Enum):
        length = getattr(target, "length", None)
        if length is not None and (column.length is None or column.length > length):
            return f"holds {length} characters, the source up to {column.length or 'any number'}", _length(
                length
            )
    return None


def _fraction_misfit(
    column: Column, target: sa.types.TypeEngine[Any], dialect: str
) -> tuple[str, Guard] | None:
    sent = min(column.length if column.length is not None else _FRACTION.get(column.semantic or "", 6), 6)
    held = (
        getattr(target, "fsp", None)
        if dialect in ("mysql", "mariadb")
        else getattr(target, "precision", None)
    )
    if held is None:
        held = 0 if dialect in ("mysql", "mariadb") else 6  # MySQL's DATETIME is whole seconds
    if sent <= held:
        return None
    return f"holds {held} fractional-second digits, the source sends {sent}", _fraction(held)


def _fraction(digits: int) -> Guard:
    step = 10 ** (6 - digits)

    def guard(value: Any) -> None:
        micros = getattr(value, "microsecond", None)
        if micros is None:
            micros = getattr(value, "microseconds", 0)  # a MySQL TIME as a duration
        if micros % step:
            raise Misfit(f"{value} has more than {digits} fractional-second digits: it would be rounded")

    return guard


def _decimal_misfit(column: Column, target: sa.types.TypeEngine[Any]) -> tuple[str, Guard] | None:
    precision, scale = getattr(target, "precision", None), getattr(target, "scale", None) or 0
    if precision is None:
        return None  # an unconstrained numeric holds every value
    sent_p, sent_s = column.length, column.scale or 0
    if sent_p is not None and sent_s <= scale and sent_p - sent_s <= precision - scale:
        return None
    sent = f"numeric({sent_p},{sent_s})" if sent_p is not None else "numeric without a precision"
    return f"is numeric({precision},{scale}), the source {sent}", _digits(precision, scale)


def _digits(precision: int, scale: int) -> Guard:
    def guard(value: Any) -> None:
        if not isinstance(value, Decimal) or not value.is_finite():
            return  # not a number the target could round: the database says what it thinks
        _sign, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        while digits and digits[-1] == 0 and exponent < 0:  # trailing zeros after the point
            digits, exponent = digits[:-1], exponent + 1
        after = max(0, -exponent)
        before = max(0, len(digits) + exponent)
        if after > scale or before > precision - scale:
            raise Misfit(f"{value} does not fit numeric({precision},{scale}): it would be rounded or refused")

    return guard


def labels_guard(target: sa.types.TypeEngine[Any], dialect: str) -> Guard | None:
    """For a MySQL/MariaDB ENUM or SET target column: a guard refusing a label the column does not
    have (one added at the source: `ALTER TYPE ... ADD VALUE`, `MODIFY COLUMN ... ENUM(...)`). The
    database would refuse it anyway (strict mode: "Data truncated"), but with no word on the fix, or
    store '' (non-strict). The source's schema cannot be trusted to list the new label (Postgres
    sends no new relation for `ALTER TYPE`), so the check is against the target's labels. Only
    refused, never added: the target table is the user's (`schema.evolution=basic` adds columns
    only). None for other columns."""
    if dialect not in ("mysql", "mariadb"):
        return None
    if isinstance(target, mysql.SET):  # not an sa.Enum
        many, labels = True, tuple(target.values)
    elif isinstance(target, sa.Enum):
        many, labels = False, tuple(target.enums)
    else:
        return None
    have = set(labels)
    kind = "SET" if many else "ENUM"

    def guard(value: Any) -> None:
        if not isinstance(value, str) or value == "":
            return  # '' is MySQL's "no member" value: stored as the source has it
        parts = value.split(",") if many else [value]
        missing = [p for p in dict.fromkeys(parts) if p not in have]
        if missing:
            shown = ", ".join(repr(m) for m in missing)
            raise MissingLabel(
                f"{shown} is not a label of the target's {kind}({', '.join(repr(x) for x in labels)})",
                labels + tuple(missing),
            )

    return guard


def _length(length: int) -> Guard:
    def guard(value: Any) -> None:
        if isinstance(value, str) and len(value) > length:
            raise Misfit(f"a value of {len(value)} characters does not fit {length}")

    return guard


def dropped(table: sa.Table, columns: set[str]) -> list[str]:
    """Target columns the source does not send (dropped or renamed there): kept on the target."""
    return [c.name for c in table.c if c.name not in columns]
