"""The SQL sink's `auto_create` column types (docs/sinks.md#column-types-auto_create) and its checks of
target columns against the source's (sql_fit.py), compiled for each dialect without a server.

The stack tests (tests/integration/test_sql_apply_typed.py) create these columns on Postgres and
MariaDB and round-trip values through them; this pins the table row by row, including the servers and
types that do not run here (MySQL 8, MariaDB before 10.7).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from cdc_logs.debezium.schema import column as debezium_column
from cdc_logs.schema import Column
from cdc_logs.schema import Semantic as S
from cdc_logs.sinks.sql_apply import sql_fit
from cdc_logs.sinks.sql_apply.sql_types import ddl_type

TEXT = Column("c", "string", None, "TEXT")
# source column -> (Postgres, MariaDB 10.11, MariaDB 10.6, MySQL 8.4, SQLite)
TABLE: list[tuple[Column, tuple[str, str, str, str, str]]] = [
    (Column("c", "int64", S.TIMESTAMP, "TIMESTAMP", 3),
     ("TIMESTAMP(3) WITHOUT TIME ZONE", "DATETIME(3)", "DATETIME(3)", "DATETIME(3)", "DATETIME")),
    (Column("c", "int64", S.MICRO_TIMESTAMP, "DATETIME", 5),
     ("TIMESTAMP(5) WITHOUT TIME ZONE", "DATETIME(5)", "DATETIME(5)", "DATETIME(5)", "DATETIME")),
    (Column("c", "string", S.ZONED_TIMESTAMP, "TIMESTAMPTZ", 2),
     ("TIMESTAMP(2) WITH TIME ZONE", "DATETIME(2)", "DATETIME(2)", "DATETIME(2)", "DATETIME")),
    (Column("c", "int32", S.TIME, "TIME", 3),
     ("TIME(3) WITHOUT TIME ZONE", "TIME(3)", "TIME(3)", "TIME(3)", "TIME")),
    (Column("c", "string", S.ZONED_TIME, "TIMETZ", 6),
     ("TIME(6) WITH TIME ZONE", "TIME(6)", "TIME(6)", "TIME(6)", "TIME")),
    (Column("c", "int32", S.DATE, "DATE"), ("DATE", "DATE", "DATE", "DATE", "DATE")),
    (Column("c", "int64", S.MICRO_DURATION, "INTERVAL"),
     ("INTERVAL", "BIGINT", "BIGINT", "BIGINT", "BIGINT")),
    (Column("c", "string", None, "NUMERIC", 20, 5),
     ("NUMERIC(20, 5)", "NUMERIC(20, 5)", "NUMERIC(20, 5)", "NUMERIC(20, 5)", "TEXT")),
    (Column("c", "string", None, "DECIMAL", 65, 30),
     ("NUMERIC(65, 30)", "NUMERIC(65, 30)", "NUMERIC(65, 30)", "NUMERIC(65, 30)", "TEXT")),
    (Column("c", "string", None, "NUMERIC", 66, 2),
     ("NUMERIC(66, 2)", "LONGTEXT", "LONGTEXT", "LONGTEXT", "TEXT")),
    (Column("c", "string", None, "NUMERIC", 40, 31),
     ("NUMERIC(40, 31)", "LONGTEXT", "LONGTEXT", "LONGTEXT", "TEXT")),
    (Column("c", "string", None, "NUMERIC"), ("NUMERIC", "LONGTEXT", "LONGTEXT", "LONGTEXT", "TEXT")),
    (Column("c", "string", None, "MONEY"), ("NUMERIC", "LONGTEXT", "LONGTEXT", "LONGTEXT", "TEXT")),
    (Column("c", "string", S.JSON, "JSONB"), ("JSONB", "JSON", "JSON", "JSON", "JSON")),
    (Column("c", "string", S.JSON, "JSON"), ("JSON", "JSON", "JSON", "JSON", "JSON")),
    (Column("c", "string", S.UUID, "UUID"), ("UUID", "UUID", "CHAR(36)", "CHAR(36)", "CHAR(36)")),
    (Column("c", "bytes", None, "BYTEA"), ("BYTEA", "LONGBLOB", "LONGBLOB", "LONGBLOB", "BLOB")),
    (Column("c", "bytes", S.BITS, "BIT", 8), ("BYTEA", "LONGBLOB", "LONGBLOB", "LONGBLOB", "BLOB")),
    (Column("c", "boolean", None, "BOOLEAN"), ("BOOLEAN", "BOOL", "BOOL", "BOOL", "BOOLEAN")),
    (Column("c", "int16", None, "TINYINT"), ("SMALLINT", "SMALLINT", "SMALLINT", "SMALLINT", "SMALLINT")),
    (Column("c", "int32", None, "INTEGER"), ("INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER")),
    (Column("c", "int64", None, "BIGINT"), ("BIGINT", "BIGINT", "BIGINT", "BIGINT", "BIGINT")),
    (Column("c", "int64", None, "BIGINT UNSIGNED"),
     ("NUMERIC(20, 0)", "NUMERIC(20, 0)", "NUMERIC(20, 0)", "NUMERIC(20, 0)", "TEXT")),
    (Column("c", "float32", None, "REAL"), ("REAL", "DOUBLE", "DOUBLE", "DOUBLE", "REAL")),
    (Column("c", "float64", None, "DOUBLE"), ("DOUBLE PRECISION", "DOUBLE", "DOUBLE", "DOUBLE", "DOUBLE")),
    (Column("c", "string", None, "VARCHAR", 40),
     ("VARCHAR(40)", "VARCHAR(40)", "VARCHAR(40)", "VARCHAR(40)", "VARCHAR(40)")),
    (Column("c", "string", None, "VARCHAR", 20000),
     ("VARCHAR(20000)", "LONGTEXT", "LONGTEXT", "LONGTEXT", "VARCHAR(20000)")),
    (Column("c", "string", None, "CHAR", 5),
     ("CHAR(5)", "VARCHAR(5)", "VARCHAR(5)", "VARCHAR(5)", "CHAR(5)")),
    (TEXT, ("TEXT", "LONGTEXT", "LONGTEXT", "LONGTEXT", "TEXT")),
    (Column("c", "string", S.XML, "XML"), ("TEXT", "LONGTEXT", "LONGTEXT", "LONGTEXT", "TEXT")),
    (Column("c", "string", S.ENUM, "ENUM"), ("TEXT", "LONGTEXT", "LONGTEXT", "LONGTEXT", "TEXT")),
    (Column("c", "string", S.ENUM, "ENUM", enum_values=("a", "it's")),
     ("TEXT", "ENUM('a','it''s')", "ENUM('a','it''s')", "ENUM('a','it''s')", "TEXT")),
    (Column("c", "string", S.ENUM_SET, "SET", enum_values=("x", "y")),
     ("TEXT", "SET('x','y')", "SET('x','y')", "SET('x','y')", "TEXT")),
    (Column("c", "int32", S.YEAR, "YEAR"), ("SMALLINT", "YEAR", "YEAR", "YEAR", "SMALLINT")),
    (Column("c", "array", None, "TEXT[]", element=TEXT), ("TEXT[]", "JSON", "JSON", "JSON", "JSON")),
    (Column("c", "array", None, "INTEGER[][]", element=Column("c", "array", None, "INTEGER[]",
     element=Column("c", "int32", None, "INTEGER"))), ("JSON", "JSON", "JSON", "JSON", "JSON")),
    (Column("c", "struct", S.GEOMETRY, "POINT"), ("JSON", "JSON", "JSON", "JSON", "JSON")),
]  # fmt: skip
TARGETS = [
    ("postgresql", postgresql.dialect(), ()),
    ("mariadb", mysql.dialect(), (10, 11, 19)),
    ("mariadb", mysql.dialect(), (10, 6, 0)),
    ("mysql", mysql.dialect(), (8, 4, 0)),
    ("sqlite", sqlite.dialect(), ()),
]


@pytest.mark.parametrize(("column", "expected"), TABLE, ids=[f"{c.source_type}-{c.length}" for c, _ in TABLE])
def test_auto_create_types(column: Column, expected: tuple[str, ...]) -> None:
    got = tuple(ddl_type(column, name, version=v).compile(dialect=d) for name, d, v in TARGETS)
    assert got == expected


def test_a_text_key_fits_a_mysql_index() -> None:
    assert ddl_type(TEXT, "mariadb", key=True).compile(dialect=mysql.dialect()) == "VARCHAR(255)"


def test_json_columns_store_none_as_sql_null() -> None:
    for name, _dialect, version in TARGETS:
        json_type = ddl_type(Column("c", "string", S.JSON, "JSONB"), name, version=version)
        assert isinstance(json_type, sa.JSON) and json_type.none_as_null


# -- sql_fit: does a target column still hold what the source sends? -----------------------------------
def fit(column: Column, target: sa.types.TypeEngine[Any], dialect: str = "postgresql") -> Any:
    return sql_fit.misfit(column, target, dialect)


def test_the_columns_auto_create_makes_always_fit() -> None:
    for column, _ in TABLE:
        for name, _dialect, version in TARGETS:
            assert fit(column, ddl_type(column, name, version=version), name) is None, (column, name)


def test_fewer_fraction_digits_refuse_only_the_values_they_would_round() -> None:
    source = Column("c", "int64", S.MICRO_TIMESTAMP, "TIMESTAMP", 6)
    why, guard = fit(source, postgresql.TIMESTAMP(precision=3))
    assert why == "holds 3 fractional-second digits, the source sends 6" and guard is not None
    guard(dt.datetime(2024, 1, 2, 3, 4, 5, 678000))
    with pytest.raises(sql_fit.Misfit, match="more than 3 fractional-second digits"):
        guard(dt.datetime(2024, 1, 2, 3, 4, 5, 678001))
    # MySQL's DATETIME without digits is whole seconds; Postgres' timestamp without them is 6
    assert fit(source, mysql.DATETIME(), "mariadb") is not None
    assert fit(source, postgresql.TIMESTAMP()) is None
    time_guard = fit(Column("c", "int64", S.MICRO_TIME, "TIME", 6), mysql.TIME(fsp=0), "mariadb")[1]
    time_guard(dt.timedelta(hours=-30))
    with pytest.raises(sql_fit.Misfit):
        time_guard(dt.timedelta(hours=-30, microseconds=5))


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        ("99999999.99", True),
        ("-99999999.99", True),
        ("1.10000", True),  # trailing zeros are not digits the target loses
        ("100000000", False),  # 9 digits before the point, 8 allowed
        ("0.001", False),
        ("1E+8", False),
        ("NaN", True),  # not a rounding: the database decides
    ],
)
def test_a_smaller_numeric_refuses_the_values_it_would_round(value: str, fits: bool) -> None:
    why, guard = fit(Column("c", "string", None, "NUMERIC", 20, 6), sa.Numeric(10, 2))
    assert why == "is numeric(10,2), the source numeric(20,6)"
    if fits:
        guard(Decimal(value))
    else:
        with pytest.raises(sql_fit.Misfit, match=r"does not fit numeric\(10,2\)"):
            guard(Decimal(value))


def test_numeric_targets_that_hold_the_source() -> None:
    source = Column("c", "string", None, "NUMERIC", 10, 2)
    assert fit(source, sa.Numeric(12, 2)) is None
    assert fit(source, sa.Numeric()) is None  # unconstrained
    assert fit(source, sa.Numeric(10, 3)) is not None  # one digit fewer before the point
    assert fit(Column("c", "string", None, "NUMERIC"), sa.Numeric(38, 10)) is not None


def test_a_shorter_varchar_refuses_longer_values() -> None:
    why, guard = fit(Column("c", "string", None, "VARCHAR", 50), sa.String(10))
    assert why == "holds 10 characters, the source up to 50"
    guard("x" * 10)
    with pytest.raises(sql_fit.Misfit):
        guard("x" * 11)
    assert fit(Column("c", "string", None, "VARCHAR", 5), sa.String(10)) is None
    assert fit(TEXT, sa.Text()) is None


def test_another_kind_is_reported_without_a_guard() -> None:
    ts = Column("c", "int64", S.TIMESTAMP, "DATETIME", 3)
    assert fit(ts, sa.BigInteger()) == ("is integer, and the source now sends datetime (DATETIME)", None)
    assert fit(TEXT, sa.DateTime()) is not None
    # the text form of anything fits a text column; a target of the user's choosing is not second-guessed
    assert fit(ts, sa.Text()) is None
    assert fit(Column("c", "boolean", None, "BOOLEAN"), mysql.TINYINT(1), "mariadb") is None
    assert fit(TEXT, sa.types.NullType()) is None  # a type SQLAlchemy does not know: not checked


def test_dropped_lists_the_target_columns_the_source_does_not_send() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("gone", sa.Text))
    assert sql_fit.dropped(table, {"id"}) == ["gone"]
    assert sql_fit.dropped(table, {"id", "gone", "new"}) == []


# A Debezium topic's Kafka Connect schema field (connector setting) -> (Postgres, MariaDB 10.11):
# the table "With the `debezium` source" in docs/sinks.md#column-types-auto_create.
PROPAGATED = {"__debezium.source.column.type": "NUMERIC", "__debezium.source.column.length": "10"}
DEBEZIUM: list[tuple[dict[str, Any], tuple[str, str]]] = [
    ({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",  # decimal.handling.mode=precise
      "parameters": {"scale": "2", "connect.decimal.precision": "10"}}, ("NUMERIC(10, 2)", "NUMERIC(10, 2)")),
    ({"type": "string"}, ("TEXT", "LONGTEXT")),  # string mode, or a varchar without its length
    ({"type": "string", "parameters": {**PROPAGATED, "__debezium.source.column.scale": "2"}},
     ("NUMERIC(10, 2)", "NUMERIC(10, 2)")),
    ({"type": "float64"}, ("DOUBLE PRECISION", "DOUBLE")),  # double mode
    ({"type": "int64", "name": "io.debezium.time.Timestamp"},  # timestamp(3), adaptive
     ("TIMESTAMP(6) WITHOUT TIME ZONE", "DATETIME(6)")),
    ({"type": "int64", "name": "io.debezium.time.Timestamp",
      "parameters": {"__debezium.source.column.type": "TIMESTAMP", "__debezium.source.column.length": "3"}},
     ("TIMESTAMP(3) WITHOUT TIME ZONE", "DATETIME(3)")),
    ({"type": "string", "name": "io.debezium.time.ZonedTimestamp"},
     ("TIMESTAMP(6) WITH TIME ZONE", "DATETIME(6)")),
    ({"type": "int64", "name": "org.apache.kafka.connect.data.Timestamp"},  # connect mode: not a timestamp
     ("BIGINT", "BIGINT")),
]  # fmt: skip


@pytest.mark.parametrize(("field", "expected"), DEBEZIUM)
def test_auto_create_types_from_a_debezium_connect_schema(
    field: dict[str, Any], expected: tuple[str, str]
) -> None:
    source = debezium_column({**field, "field": "c"})
    got = (
        ddl_type(source, "postgresql").compile(dialect=postgresql.dialect()),
        ddl_type(source, "mariadb", version=(10, 11)).compile(dialect=mysql.dialect()),
    )
    assert got == expected


def test_an_enum_target_refuses_a_label_it_lacks_naming_the_labels_it_needs() -> None:
    guard = sql_fit.labels_guard(mysql.ENUM("sad", "ok", "happy"), "mariadb")
    assert guard is not None
    for value in ("sad", "happy", "", None):  # '': MySQL's "no member" value, stored as the source has it
        guard(value)
    with pytest.raises(sql_fit.MissingLabel) as err:
        guard("ecstatic")
    assert err.value.labels == ("sad", "ok", "happy", "ecstatic")
    with pytest.raises(sql_fit.MissingLabel):
        guard("Happy")  # MariaDB would store 'happy': a changed value
    many = sql_fit.labels_guard(mysql.SET("a", "b"), "mysql")
    assert many is not None
    many("a,b")
    with pytest.raises(sql_fit.MissingLabel) as err:
        many("a,c,d")
    assert err.value.labels == ("a", "b", "c", "d")
    assert sql_fit.labels_guard(postgresql.ENUM("a", name="e"), "postgresql") is None  # its own error
    assert sql_fit.labels_guard(sa.String(10), "mariadb") is None
