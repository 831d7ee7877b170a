"""Type torture test for the polling reader: every common column type at its extremes, polled through
SQLAlchemy from Postgres (psycopg), MariaDB (PyMySQL) and SQLite, in `timestamp+incrementing` and in
`incrementing` mode, checked against each database's own rendering of every value.

Per database, one table per case (`pt_<random>_<case>`: `id`, a `ts` watermark column and `v`) holds
one row per value plus a NULL row, and a wide table holds a column per case (a row NULL everywhere,
the first and the last value of each case). Two readers (one per mode) poll every table. For each row
the database renders the stored value in the same test (Postgres `format('%s', v)`, `EXTRACT`,
`to_json`; MariaDB `CAST(v AS CHAR)`, `HEX`, `BIN`; SQLite `typeof`, `hex`, `printf('%!.18g')`), and
the expected event value is computed from that text by the rules of docs/sources/polling.md, with no
cdc_logs code. The event's schema must describe each column (Connect type and semantic) and every
value must be of the type the schema says. A value the reader cannot encode for its column (SQLite
text in a DATETIME column...) is expected as an Undecodable for the dead-letter file.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
import sqlite3
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pymysql
import pytest

from cdc_logs.envelope import ChangeEvent, Undecodable, dumps
from cdc_logs.readers.contract import ContractChecker
from cdc_logs.readers.polling.reader import PollingReader

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.integration

UNDECODABLE = "<undecodable>"
DAY_US = 86_400_000_000
MONTH_US = 2_629_800_000_000  # a month is 365.25/12 days (docs/postgres-types.md)
INT64 = 2**63
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_CYCLE_DAYS, _CYCLE_YEARS = 146_097, 400


@dataclass
class Case:
    name: str
    ddl: str
    values: list[str]
    expect: Callable[[Any], Any]  # the database's rendering of a value -> the expected event value
    schema: tuple[str, str | None]  # (Connect type, semantic) of the event's schema for `v`
    render: str | None = None  # SQL expression of `v` (None: the database's default rendering)
    nullable: bool = True
    as_stored: bool = False  # SQLite, no type or one SQLAlchemy does not know: values of any class
    rows: list[str] = field(default_factory=list)


def _cases(cases: list[Case]) -> list[Case]:
    for case in cases:
        case.rows = [*case.values, *(["NULL"] if case.nullable else [])]
    return cases


# -- calendar arithmetic for any year (the expected values are computed here, not by cdc_logs) ---------------


def _days(year: int, month: int, day: int) -> int:
    shift = 0
    while year < 1:
        year, shift = year + _CYCLE_YEARS, shift - _CYCLE_DAYS
    while year > 9999:
        year, shift = year - _CYCLE_YEARS, shift + _CYCLE_DAYS
    return dt.date(year, month, day).toordinal() - _EPOCH_ORDINAL + shift


def _civil(days: int) -> tuple[int, int, int]:
    ordinal, years = days + _EPOCH_ORDINAL, 0
    while ordinal < 1:
        ordinal, years = ordinal + _CYCLE_DAYS, years - _CYCLE_YEARS
    while ordinal > dt.date(9999, 12, 31).toordinal():
        ordinal, years = ordinal - _CYCLE_DAYS, years + _CYCLE_YEARS
    date = dt.date.fromordinal(ordinal)
    return date.year + years, date.month, date.day


def _seconds_to_micros(text: str) -> int:
    """Exact decimal seconds ('-12.5') -> µs."""
    whole, _, fraction = text.partition(".")
    negative = whole.startswith("-")
    assert len(fraction.rstrip("0")) <= 6, text
    micros = abs(int(whole)) * 1_000_000 + int((fraction + "000000")[:6])
    return -micros if negative else micros


def _iso_utc(micros: int) -> str:
    """ISO-8601 in UTC: 6 fraction digits when there is a fraction; years past 9999 as +YYYYY and
    years before 1 astronomically (docs/sources/polling.md)."""
    days, rest = divmod(micros, DAY_US)
    year, month, day = _civil(days)
    seconds, fraction = divmod(rest, 1_000_000)
    ytext = f"{year:04d}" if 0 <= year <= 9999 else (f"+{year}" if year > 0 else f"-{-year:04d}")
    out = f"{ytext}-{month:02d}-{day:02d}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return out + (f".{fraction:06d}" if fraction else "") + "Z"


# -- Postgres: the database renders, the polling rules (docs/sources/polling.md) map -------------------------

TEXT = "format('%s', v)"
EPOCH = "(EXTRACT(EPOCH FROM v))::text"
DAYS_AND_TIME = (
    "CASE WHEN isfinite(v) THEN concat_ws('|', (v::date - DATE '1970-01-01'), EXTRACT(EPOCH FROM v::time))"
    " ELSE format('%s', v) END"
)
INTERVAL = (
    "concat_ws('|', (EXTRACT(YEAR FROM v) * 12 + EXTRACT(MONTH FROM v))::text,"
    " EXTRACT(DAY FROM v)::text, (EXTRACT(HOUR FROM v) * 3600 + EXTRACT(MINUTE FROM v) * 60"
    " + EXTRACT(SECOND FROM v))::text)"
)
TO_JSON = "to_json(v)::text"
PG_INFINITE_TS = {"infinity": 9_223_372_036_825_200_000, "-infinity": -9_223_372_036_832_400_000}
PG_INFINITE_DATE = {"infinity": 2**31 - 1, "-infinity": -(2**31)}


def _same(text: str) -> str:
    return text


def _pg_bool(text: str) -> bool:
    return {"t": True, "f": False}[text]


def _pg_float(text: str) -> float | str:
    return text if text in ("NaN", "Infinity", "-Infinity") else float(text)


def _pg_hex(text: str) -> bytes:
    return bytes.fromhex(text)


def _pg_date(text: str) -> int:
    return PG_INFINITE_DATE.get(text) or int(text)


def _pg_date_text(text: str) -> int:
    if text in PG_INFINITE_DATE:
        return PG_INFINITE_DATE[text]
    bc = text.endswith(" BC")
    year, month, day = (int(x) for x in text.removesuffix(" BC").split("-"))
    return _days(1 - year if bc else year, month, day)


def _pg_epoch_micros(text: str) -> int:
    days, seconds = text.split("|")
    return int(days) * DAY_US + _seconds_to_micros(seconds)


def _pg_timestamp(text: str) -> int:
    """µs whatever the precision; infinities as Debezium's sentinels; beyond int64, its bound."""
    if text in PG_INFINITE_TS:
        return PG_INFINITE_TS[text]
    return min(_pg_epoch_micros(text), INT64 - 1)


def _pg_timestamptz(text: str) -> str:
    return text if text in ("infinity", "-infinity") else _iso_utc(_pg_epoch_micros(text))


def _pg_timetz(text: str) -> str:
    micros = _seconds_to_micros(text)
    if micros == DAY_US:
        return "24:00:00Z"
    micros %= DAY_US
    seconds, fraction = divmod(micros, 1_000_000)
    out = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return out + ("." + f"{fraction:06d}".rstrip("0") if fraction else "") + "Z"


def _pg_interval(text: str) -> int:
    months, days, seconds = text.split("|")
    micros = int(months) * MONTH_US + int(days) * DAY_US + _seconds_to_micros(seconds)
    return max(-INT64, min(INT64 - 1, micros))


def _pg_array(element: Callable[[Any], Any]) -> Callable[[str], Any]:
    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(v) for v in value]
        return None if value is None else element(value)

    return lambda text: walk(json.loads(text, parse_int=str, parse_float=str, parse_constant=str))


def _pg_bytea_json(text: str) -> bytes:
    assert text.startswith("\\x"), text
    return bytes.fromhex(text[2:])


S = ("string", None)
MICRO_TS = ("int64", "io.debezium.time.MicroTimestamp")
ZONED_TS = ("string", "io.debezium.time.ZonedTimestamp")
MICRO_TIME = ("int64", "io.debezium.time.MicroTime")
DATE = ("int32", "io.debezium.time.Date")
ARRAY = ("array", None)

PG_TIMESTAMPS = [
    "'4713-01-01 00:00:00 BC'",
    "'294276-12-31 23:59:59.999999'",
    "'infinity'",
    "'-infinity'",
    "'1970-01-01 00:00:00'",
    "'1969-12-31 23:59:59.999999'",
    "'0001-01-01 00:00:00'",
    "'0001-12-31 23:59:59.999999 BC'",
    "'2024-02-29 13:45:10.123456'",
    "'10000-01-01 00:00:00'",
]
PG_TIMESTAMPTZ = [
    "'4713-01-01 00:00:00+00 BC'",
    "'294276-12-31 23:59:59.999999+00'",
    "'infinity'",
    "'-infinity'",
    "'1970-01-01 00:00:00+00'",
    "'2024-02-29 13:45:10.5+05:30'",
    "'2024-12-31 20:00:00.123456-05:30'",
    "'1901-12-13 20:45:52+05:53:28'",
    "'10000-01-01 00:00:00+00'",
    "'0044-03-15 12:00:00.5+01 BC'",
]
PG_TIMES = ["'00:00:00'", "'23:59:59.999999'", "'24:00:00'", "'12:34:56.789'", "'00:00:00.000001'"]


def postgres_cases(enum: str) -> list[Case]:
    return _cases(
        [
            Case("int2", "int2", ["-32768", "32767", "0", "-1"], int, ("int16", None), TEXT),
            Case("int4", "int4", ["-2147483648", "2147483647", "0"], int, ("int32", None), TEXT),
            Case(
                "int8",
                "int8",
                ["-9223372036854775808", "9223372036854775807", "0"],
                int,
                ("int64", None),
                TEXT,
            ),
            Case("oid", "oid", ["0", "4294967295"], int, ("int64", None), TEXT),
            Case(
                "numeric",
                "numeric",
                [
                    "'NaN'",
                    "'Infinity'",
                    "'-Infinity'",
                    "'0'",
                    "'-123.456'",
                    "'0.000000000000000000000000001'",
                    "'1e100'",
                    "'-" + "9" * 1000 + "." + "9" * 100 + "'",
                    "'1.50'",
                ],
                _same,
                S,
                TEXT,
            ),
            Case(
                "numeric_10_2",
                "numeric(10,2)",
                ["'12.5'", "'-99999999.99'", "'0'", "'-0.01'"],
                _same,
                S,
                TEXT,
            ),
            Case("numeric_neg_scale", "numeric(5,-2)", ["'1234567'", "'-50'"], _same, S, TEXT),
            Case(
                "float4",
                "float4",
                [
                    "'NaN'",
                    "'Infinity'",
                    "'-Infinity'",
                    "'3.4028235e38'",
                    "'1.4e-45'",
                    "'-0'",
                    "'0.1'",
                    "'16777217'",
                ],
                _pg_float,
                ("float32", None),
                TEXT,
            ),
            Case(
                "float8",
                "float8",
                [
                    "'NaN'",
                    "'Infinity'",
                    "'-Infinity'",
                    "'1.7976931348623157e308'",
                    "'5e-324'",
                    "'-0'",
                    "'0.1'",
                    "'-1.5e+300'",
                ],
                _pg_float,
                ("float64", None),
                TEXT,
            ),
            Case("bool", "bool", ["true", "false"], _pg_bool, ("boolean", None), TEXT),
            Case(
                "text",
                "text",
                ["''", "'😀é'", "E'a\\\\b\\nc\\t\"q\"'", "repeat('x', 300000)", "'NULL'", "' '"],
                _same,
                S,
                TEXT,
            ),
            Case("varchar", "varchar(5)", ["''", "'😀😀😀😀😀'"], _same, S, TEXT),
            Case("bpchar", "char(5)", ["''", "'ab'", "'😀'"], _same, S, "concat(v)"),
            Case("char", '"char"', ["'a'", "'Z'"], _same, S, TEXT),
            Case("name", "name", ["''", "'" + "n" * 63 + "'"], _same, S, TEXT),
            Case(
                "bytea",
                "bytea",
                ["''", "'\\x00'", "'\\xff00'", "decode(repeat('00ff', 100000), 'hex')"],
                _pg_hex,
                ("bytes", None),
                "encode(v, 'hex')",
            ),
            Case(
                "uuid",
                "uuid",
                ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'"],
                _same,
                ("string", "io.debezium.data.Uuid"),
                TEXT,
            ),
            Case(
                "json",
                "json",
                [
                    "'{}'",
                    "'null'",
                    "'\"😀\"'",
                    "'{\"a\":  [1, 2.5e300]}'",
                    "'123456789012345678901234567890'",
                ],
                _same,
                ("string", "io.debezium.data.Json"),
                TEXT,
            ),
            Case(
                "jsonb",
                "jsonb",
                ["'{}'", "'null'", '\'{"b": 1, "a":  [1, 2.50]}\'', "'\"x\"'", "'0.1e-5'"],
                _same,
                ("string", "io.debezium.data.Json"),
                TEXT,
            ),
            Case("xml", "xml", ["'<a>1</a>'", "''"], _same, S, TEXT),
            Case(
                "date",
                "date",
                [
                    "'4713-01-01 BC'",
                    "'5874897-12-31'",
                    "'infinity'",
                    "'-infinity'",
                    "'1970-01-01'",
                    "'1969-12-31'",
                    "'0044-03-15 BC'",
                    "'2024-02-29'",
                ],
                _pg_date,
                DATE,
                "CASE WHEN isfinite(v) THEN (v - DATE '1970-01-01')::text ELSE v::text END",
            ),
            Case("time", "time", PG_TIMES, _seconds_to_micros, MICRO_TIME, EPOCH),
            Case("time3", "time(3)", PG_TIMES, _seconds_to_micros, MICRO_TIME, EPOCH),
            Case(
                "timetz",
                "timetz",
                [
                    "'13:45:10.5+05:30'",
                    "'00:00:00+14'",
                    "'23:59:59.999999-12'",
                    "'24:00:00+00'",
                    "'12:00:00+05:53:28'",
                ],
                _pg_timetz,
                ("string", "io.debezium.time.ZonedTime"),
                EPOCH,
            ),
            Case("timestamp", "timestamp", PG_TIMESTAMPS, _pg_timestamp, MICRO_TS, DAYS_AND_TIME),
            Case("timestamp0", "timestamp(0)", PG_TIMESTAMPS, _pg_timestamp, MICRO_TS, DAYS_AND_TIME),
            Case("timestamp3", "timestamp(3)", PG_TIMESTAMPS, _pg_timestamp, MICRO_TS, DAYS_AND_TIME),
            Case("timestamptz", "timestamptz", PG_TIMESTAMPTZ, _pg_timestamptz, ZONED_TS, DAYS_AND_TIME),
            Case("timestamptz3", "timestamptz(3)", PG_TIMESTAMPTZ, _pg_timestamptz, ZONED_TS, DAYS_AND_TIME),
            Case(
                "interval",
                "interval",
                [
                    "'1 mon 1 day 00:00:01'",
                    "'-1 years -2 mons +3 days -04:05:06.789'",
                    "'178000000 years'",
                    "'-178000000 years'",
                    "'0'",
                    "'1 day -00:00:00.000001'",
                    "'-2147483648 days'",
                ],
                _pg_interval,
                ("int64", "io.debezium.time.MicroDuration"),
                INTERVAL,
            ),
            Case(
                "money",
                "money",
                ["'92233720368547758.07'", "'-92233720368547758.08'", "'0'", "'-1234.5'"],
                _same,
                S,
                "v::numeric::text",
            ),
            Case("inet", "inet", ["'192.168.1.5/24'", "'::1'", "'::ffff:1.2.3.4'"], _same, S, TEXT),
            Case("cidr", "cidr", ["'10.0.0.0/8'", "'2001:db8::/32'"], _same, S, TEXT),
            Case("macaddr", "macaddr", ["'08:00:2b:01:02:03'"], _same, S, TEXT),
            Case("bit10", "bit(10)", ["B'1010000001'", "B'0000000000'"], _same, S, TEXT),
            Case("varbit", "varbit", ["B''", "B'101'"], _same, S, TEXT),
            Case("int4range", "int4range", ["'[1,5)'", "'empty'", "'(,)'"], _same, S, TEXT),
            Case("point", "point", ["'(1.5,2)'", "'(-0,1e300)'"], _same, S, TEXT),
            Case(
                "enum",
                enum,
                ["'a'", "'😀'", "'with space'"],
                _same,
                ("string", "io.debezium.data.Enum"),
                TEXT,
            ),
            Case(
                "int4_array",
                "int4[]",
                ["'{}'", "'{1,NULL,3}'", "'{{1,2},{3,4}}'", "'[0:1]={7,8}'", "'{-2147483648,2147483647}'"],
                _pg_array(int),
                ARRAY,
                TO_JSON,
            ),
            Case(
                "text_array",
                "text[]",
                ["'{}'", r"""'{a,"b,c","","NULL",NULL,"\\","q\"q",😀," x "}'"""],
                _pg_array(str),
                ARRAY,
                TO_JSON,
            ),
            Case("numeric_array", "numeric[]", ["'{1.50,NaN,-0.001,NULL}'"], _pg_array(str), ARRAY, TO_JSON),
            Case(
                "float8_array",
                "float8[]",
                ["'{NaN,Infinity,-Infinity,0.1,-0,NULL}'"],
                _pg_array(_pg_float),
                ARRAY,
                TO_JSON,
            ),
            Case("bool_array", "bool[]", ["'{t,f,NULL}'"], _pg_array(lambda v: v), ARRAY, TO_JSON),
            Case(
                "date_array",
                "date[]",
                ["'{2024-02-29,infinity,-infinity,\"0044-03-15 BC\",NULL}'"],
                _pg_array(_pg_date_text),
                ARRAY,
                TO_JSON,
            ),
            Case(
                "bytea_array",
                "bytea[]",
                [r"""'{"\\x00ff",NULL,""}'"""],
                _pg_array(_pg_bytea_json),
                ARRAY,
                TO_JSON,
            ),
            Case("enum_array", f"{enum}[]", ["'{a,😀,NULL}'", "'{}'"], _pg_array(str), ARRAY, TO_JSON),
            Case(
                "uuid_array",
                "uuid[]",
                ["'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}'"],
                _pg_array(str),
                ARRAY,
                TO_JSON,
            ),
        ]
    )


# -- MariaDB -------------------------------------------------------------------------------------------------

AS_CHAR = "CAST(v AS CHAR)"
AS_UTF8 = "HEX(CONVERT(v USING utf8mb4))"
AS_HEX = "HEX(v)"
AS_DOUBLE = "CAST(CAST(v AS DOUBLE) AS CHAR)"  # a FLOAT's exact value (CAST(v AS CHAR) has 6 digits)


def _utf8_hex(text: str) -> str:
    return bytes.fromhex(text).decode("utf-8")


def _f32(value: float) -> bytes | None:
    try:
        return struct.pack("<f", value)
    except OverflowError:
        return None


def _float32(text: str) -> float:
    """The shortest decimal (fewest significant digits) that reads back as the same 32-bit float."""
    exact = float(text)
    for digits in range(1, 10):
        candidate = float(f"{exact:.{digits - 1}e}")
        if _f32(candidate) == _f32(exact):
            return candidate
    raise AssertionError(text)


def _my_bits(nbits: int) -> Callable[[str], Any]:
    def expect(text: str) -> Any:  # BIN(v): most significant bit first
        number = int(text, 2)
        return bool(number) if nbits == 1 else number.to_bytes((nbits + 7) // 8, "little")

    return expect


def _zero_date(text: str) -> bool:
    year, month, day = (int(x) for x in text[:10].split("-"))
    return year == 0 or month == 0 or day == 0


def _my_date(nullable: bool) -> Callable[[str], Any]:
    def expect(text: str) -> Any:
        if _zero_date(text):
            return None if nullable else 0
        year, month, day = (int(x) for x in text.split("-"))
        return _days(year, month, day)

    return expect


def _my_datetime(nullable: bool) -> Callable[[str], Any]:
    """µs since the epoch whatever the precision (TIMESTAMP as the session renders it)."""

    def expect(text: str) -> Any:
        if _zero_date(text):
            return None if nullable else 0
        day, _, clock = text.partition(" ")
        year, month, dom = (int(x) for x in day.split("-"))
        hms, _, fraction = clock.partition(".")
        hours, minutes, seconds = (int(x) for x in hms.split(":"))
        seconds_total = _days(year, month, dom) * 86_400 + hours * 3600 + minutes * 60 + seconds
        return seconds_total * 1_000_000 + int((fraction + "000000")[:6])

    return expect


def _my_time(text: str) -> int:
    negative = text.startswith("-")
    hms, _, fraction = text.lstrip("-").partition(".")
    hours, minutes, seconds = (int(x) for x in hms.split(":"))
    micros = (hours * 3600 + minutes * 60 + seconds) * 1_000_000 + int((fraction + "000000")[:6])
    return -micros if negative else micros


def _sq(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


NINES = "9" * 35 + "." + "9" * 30
MY_DATETIMES = [
    "'1000-01-01 00:00:00'",
    "'9999-12-31 23:59:59.999999'",
    "'1970-01-01 00:00:00'",
    "'1969-12-31 23:59:59.999999'",
    "'0000-00-00 00:00:00'",
    "'2024-02-29 12:34:56.123456'",
    "'2024-00-10 00:00:00'",
]
MY_TIMES = ["'-838:59:59.999999'", "'838:59:59.999999'", "'00:00:00'", "'-00:00:00.5'", "'-12:34:56.789012'"]
SIZE16, SIZE32, SIZE64 = ("int16", None), ("int32", None), ("int64", None)


def mariadb_cases() -> list[Case]:
    i16, i32, i64 = SIZE16, SIZE32, SIZE64
    return _cases(
        [
            Case("tinyint", "TINYINT", ["-128", "127", "0"], int, i16),
            Case("tinyint_u", "TINYINT UNSIGNED", ["0", "255"], int, i32),
            Case("boolean", "BOOLEAN", ["FALSE", "TRUE", "2", "-128"], int, i16),
            Case("smallint", "SMALLINT", ["-32768", "32767"], int, i16),
            Case("smallint_u", "SMALLINT UNSIGNED", ["0", "65535"], int, i32),
            Case("mediumint", "MEDIUMINT", ["-8388608", "8388607"], int, i32),
            Case("mediumint_u", "MEDIUMINT UNSIGNED", ["16777215"], int, i32),
            Case("int", "INT", ["-2147483648", "2147483647", "0"], int, i32),
            Case("int_u", "INT UNSIGNED", ["0", "4294967295"], int, i64),
            Case("bigint", "BIGINT", ["-9223372036854775808", "9223372036854775807"], int, i64),
            Case("bigint_u", "BIGINT UNSIGNED", ["0", "18446744073709551615"], int, i64),
            Case(
                "dec65_30",
                "DECIMAL(65,30)",
                [f"'{NINES}'", f"'-{NINES}'", "0", "'0.000000000000000000000000000001'", "'-0.5'"],
                _same,
                S,
            ),
            Case("dec65_0", "DECIMAL(65,0)", ["9" * 65, "-" + "9" * 65, "0"], _same, S),
            Case("dec10_2", "DECIMAL(10,2)", ["'-12.34'", "'99999999.99'", "'-0.01'"], _same, S),
            Case(
                "float",
                "FLOAT",
                [
                    "0",
                    "-0e0",
                    "1.1",
                    "3.4028234e38",
                    "-3.4028234e38",
                    "1.17549435e-38",
                    "1.4e-45",
                    "16777217",
                    "0.1",
                ],
                _float32,
                ("float32", None),
                AS_DOUBLE,
            ),
            Case(
                "double",
                "DOUBLE",
                ["0", "-0e0", "1.7976931348623157e308", "-1.7976931348623157e308", "4.9e-324", "0.1", "1e22"],
                float,
                ("float64", None),
            ),
            Case("bit1", "BIT(1)", ["b'0'", "b'1'"], _my_bits(1), ("boolean", None), "BIN(v)"),
            Case(
                "bit12",
                "BIT(12)",
                ["b'101000000001'", "0", "b'111111111111'"],
                _my_bits(12),
                ("bytes", "io.debezium.data.Bits"),
                "BIN(v)",
            ),
            Case(
                "bit64",
                "BIT(64)",
                ["0", "b'" + "1" * 64 + "'", "b'1" + "0" * 63 + "'"],
                _my_bits(64),
                ("bytes", "io.debezium.data.Bits"),
                "BIN(v)",
            ),
            Case("char10", "CHAR(10)", ["''", "'ab'", "'ab   '", _sq("😀é")], _utf8_hex, S, AS_UTF8),
            Case(
                "varchar",
                "VARCHAR(20)",
                ["''", _sq("😀"), _sq("a\tb\nc"), _sq("\\"), _sq("'"), _sq("\x00")],
                _utf8_hex,
                S,
                AS_UTF8,
            ),
            Case(
                "latin1",
                "VARCHAR(10) CHARACTER SET latin1",
                ["''", _sq("é€"), "x'81'"],
                _utf8_hex,
                S,
                AS_UTF8,
            ),
            Case("mediumtext", "MEDIUMTEXT", ["''", _sq("😀" * 100000)], _utf8_hex, S, AS_UTF8),
            Case(
                "binary4", "BINARY(4)", ["''", "x'00000000'", "x'ff'"], bytes.fromhex, ("bytes", None), AS_HEX
            ),
            Case("varbinary", "VARBINARY(10)", ["''", "x'00ff'"], bytes.fromhex, ("bytes", None), AS_HEX),
            Case(
                "longblob",
                "LONGBLOB",
                ["''", "REPEAT(x'00ff', 200000)"],
                bytes.fromhex,
                ("bytes", None),
                AS_HEX,
            ),
            Case(
                "enum",
                "ENUM('a','b','c d','😀') CHARACTER SET utf8mb4",
                ["'a'", "'c d'", _sq("😀"), "''"],
                _utf8_hex,
                ("string", "io.debezium.data.Enum"),
                AS_UTF8,
            ),
            Case(
                "set",
                "SET('a','b','c','😀') CHARACTER SET utf8mb4",
                ["''", "'c,a'", _sq("a,b,c,😀")],
                _utf8_hex,
                ("string", "io.debezium.data.EnumSet"),
                AS_UTF8,
            ),
            Case(
                "date",
                "DATE",
                [
                    "'1000-01-01'",
                    "'9999-12-31'",
                    "'1970-01-01'",
                    "'1969-12-31'",
                    "'0000-00-00'",
                    "'2024-00-10'",
                ],
                _my_date(True),
                DATE,
            ),
            Case(
                "date_not_null",
                "DATE NOT NULL",
                ["'0000-00-00'", "'1970-01-02'"],
                _my_date(False),
                DATE,
                nullable=False,
            ),
            Case("datetime", "DATETIME", MY_DATETIMES, _my_datetime(True), MICRO_TS),
            Case("datetime3", "DATETIME(3)", MY_DATETIMES, _my_datetime(True), MICRO_TS),
            Case("datetime6", "DATETIME(6)", MY_DATETIMES, _my_datetime(True), MICRO_TS),
            Case(
                "datetime_not_null",
                "DATETIME(6) NOT NULL",
                ["'0000-00-00 00:00:00'", "'1969-12-31 23:59:59.999999'"],
                _my_datetime(False),
                MICRO_TS,
                nullable=False,
            ),
            Case(
                "timestamp6",
                "TIMESTAMP(6) NULL",
                ["'1970-01-01 00:00:01'", "'2038-01-19 03:14:07.999999'", "0", "'2000-01-01 00:00:00.5'"],
                _my_datetime(True),
                MICRO_TS,
            ),
            Case("time", "TIME", MY_TIMES, _my_time, MICRO_TIME),
            Case("time6", "TIME(6)", MY_TIMES, _my_time, MICRO_TIME),
            Case("year", "YEAR", ["0", "1901", "2155", "'69'"], int, ("int32", "io.debezium.time.Year")),
            Case(
                "json",
                "JSON",
                [
                    "'{}'",
                    "'null'",
                    _sq('"😀"'),
                    _sq('{"a":  [1, 2.5e300]}'),
                    _sq("123456789012345678901234567890"),
                ],
                _utf8_hex,
                S,
                AS_UTF8,
            ),
            Case(
                "point",
                "POINT",
                ["ST_GeomFromText('POINT(1 2)', 4326)", "ST_GeomFromText('POINT(-1.5 1e300)')"],
                bytes.fromhex,
                ("bytes", None),
                AS_HEX,
            ),
            Case(
                "uuid",
                "UUID",
                ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'"],
                _same,
                ("string", "io.debezium.data.Uuid"),
            ),
            Case("inet6", "INET6", ["'::1'", "'::ffff:1.2.3.4'"], _same, S),
        ]
    )


# -- SQLite --------------------------------------------------------------------------------------------------

LITE_RENDER = "typeof(v), hex(v), printf('%!.18g', v), json_valid(v)"
_DECIMAL_LITERAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _lite_value(rendered: tuple[str, str, str, int]) -> Any:
    """The stored value, by storage class (TEXT that is not UTF-8 cannot be read)."""
    typeof, hexed, real, _ = rendered
    if typeof == "integer":
        return int(bytes.fromhex(hexed).decode())
    if typeof == "real":
        return {"Inf": "Infinity", "-Inf": "-Infinity"}.get(real) or float(real)
    if typeof == "text":
        try:
            return bytes.fromhex(hexed).decode("utf-8")
        except UnicodeDecodeError:
            return UNDECODABLE
    return bytes.fromhex(hexed)


def _lite_only(kind: type, convert: Callable[[Any], Any] = lambda v: v) -> Callable[[Any], Any]:
    """A declared type: a value of its storage class, converted; anything else is undecodable."""

    def expect(rendered: Any) -> Any:
        value = _lite_value(rendered)
        if value in ("Infinity", "-Infinity") and kind is float:
            return value
        if type(value) is not kind:
            return UNDECODABLE
        try:
            return convert(value)
        except ValueError:
            return UNDECODABLE

    return expect


def _lite_decimal(rendered: Any) -> Any:
    value = _lite_value(rendered)
    if value in ("Infinity", "-Infinity"):
        return value
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return format(Decimal(repr(value)), "f")
    if type(value) is str and _DECIMAL_LITERAL.fullmatch(value):
        return format(Decimal(value), "f")
    return UNDECODABLE


def _lite_bool(rendered: Any) -> Any:
    value = _lite_value(rendered)
    return bool(value) if type(value) is int and value in (0, 1) else UNDECODABLE


def _iso_micros(text: str) -> int:
    moment = dt.datetime.fromisoformat(text)  # ISO-8601 as Python reads it (docs/sources/polling.md)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return (moment - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)


def _iso_date(text: str) -> int:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(text)
    return (dt.date.fromisoformat(text) - dt.date(1970, 1, 1)).days


def _iso_time(text: str) -> int:
    clock = dt.time.fromisoformat(text)
    if clock.tzinfo is not None or not re.fullmatch(r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?", text):
        raise ValueError(text)
    return ((clock.hour * 60 + clock.minute) * 60 + clock.second) * 1_000_000 + clock.microsecond


def _lite_json(rendered: Any) -> Any:
    value = _lite_value(rendered)
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return repr(value)
    return value if type(value) is str and rendered[3] == 1 else UNDECODABLE


def _lite_stored(rendered: Any) -> Any:
    value = _lite_value(rendered)
    return 0.0 if isinstance(value, float) and value == 0 else value  # SQLite prints -0.0 as 0.0


LITE_REALS = ["0.0", "5e-324", "1.7976931348623157e308", "9e999", "-9e999", "9e999 - 9e999", "0.1", "-2.5"]


def sqlite_cases() -> list[Case]:
    return _cases(
        [
            Case(
                "integer",
                "INTEGER",
                ["-9223372036854775808", "9223372036854775807", "0", "'12abc'", "1.5", "x'00'"],
                _lite_only(int),
                ("int64", None),
            ),
            Case("real", "REAL", [*LITE_REALS, "1", "'abc'"], _lite_only(float), ("float64", None)),
            Case(
                "numeric",
                "NUMERIC",
                ["1", "'1.0'", "1.5", "'abc'", "9e999", "'9223372036854775808'", "5e-324", "0.1 + 0.2"],
                _lite_decimal,
                S,
            ),
            Case("decimal", "DECIMAL(10,2)", ["'12.345'", "0.1", "'-0.01'", "'x'"], _lite_decimal, S),
            Case("boolean", "BOOLEAN", ["TRUE", "FALSE", "2", "'yes'"], _lite_bool, ("boolean", None)),
            Case(
                "datetime",
                "DATETIME",
                [
                    "'2024-02-29 12:34:56.123456'",
                    "'2024-02-29T12:34:56'",
                    "'1969-12-31 23:59:59.999999'",
                    "'0001-01-01 00:00:00'",
                    "'9999-12-31 23:59:59.999999'",
                    "'2024-02-29 12:34:56+02:00'",
                    "'2024-02-29 12:34:56Z'",
                    "'garbage'",
                    "'2024-02-30 00:00:00'",
                    "1700000000",
                ],
                _lite_only(str, _iso_micros),
                MICRO_TS,
            ),
            Case(
                "timestamp",
                "TIMESTAMP",
                ["'2024-02-29 12:34:56.5'", "'1970-01-01'", "''"],
                _lite_only(str, _iso_micros),
                MICRO_TS,
            ),
            Case(
                "date",
                "DATE",
                ["'2024-02-29'", "'1969-12-31'", "'0001-01-01'", "'2024-02-29 12:00:00'", "2460000"],
                _lite_only(str, _iso_date),
                DATE,
            ),
            Case(
                "time",
                "TIME",
                ["'00:00:00'", "'23:59:59.999999'", "'12:34:56.5'", "'24:00:00'"],
                _lite_only(str, _iso_time),
                MICRO_TIME,
            ),
            Case(
                "json",
                "JSON",
                ["'{\"a\":  [1, 2.5e300]}'", "'null'", "'\"x\"'", "'12'", "'1.5'", "'not json'", "x'00'"],
                _lite_json,
                ("string", "io.debezium.data.Json"),
            ),
            Case(
                "text",
                "TEXT",
                [
                    "''",
                    "'😀é€'",
                    "'a' || char(0) || 'b'",
                    "replace(hex(zeroblob(250000)), '00', '😀')",
                    "9e999",
                    "x'00ff'",
                    "CAST(x'e9' AS TEXT)",
                ],
                _lite_only(str),
                S,
            ),
            Case("varchar", "VARCHAR(5)", ["'😀😀😀😀😀😀'", "12"], _lite_only(str), S),
            Case(
                "blob",
                "BLOB",
                ["x''", "x'" + bytes(range(256)).hex() + "'", "randomblob(1000000)", "'text'", "1"],
                _lite_only(bytes),
                ("bytes", None),
            ),
            Case(
                "none",
                "",
                ["1", "-1.5", "'t'", "x'00ff'", "9e999", "-0.0", "CAST(x'e9' AS TEXT)"],
                _lite_stored,
                S,
                as_stored=True,
            ),
            Case(
                "uuid",
                "UUID",
                ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "x'00'", "7"],
                _lite_stored,
                S,
                as_stored=True,
            ),
        ]
    )


# -- one run per database ------------------------------------------------------------------------------------

MODES = ("timestamp+incrementing", "incrementing")


@dataclass
class Run:
    db: str
    cases: list[Case]
    tables: dict[str, str]  # case name (and "wide") -> table name
    got: dict[str, dict[str, dict[int, Any]]] = field(default_factory=lambda: {m: {} for m in MODES})
    schemas: dict[str, dict[str, Any]] = field(default_factory=lambda: {m: {} for m in MODES})
    rendered: dict[str, dict[int, Any]] = field(default_factory=dict)  # table[.column] -> id -> rendering
    items: dict[str, list[Any]] = field(default_factory=lambda: {m: [] for m in MODES})
    seconds: float = 0.0


def _row_id(item: Undecodable) -> int:
    """An undecodable row's id, from its position (the reason never names data)."""
    values = item.position.values  # type: ignore[attr-defined]
    for i in range(0, len(values), 3):
        if values[i] == item.table:
            return int(values[i + 2])
    raise AssertionError(values)


def _poll(url: str, run: Run, mode: str, total: int) -> None:
    reader = PollingReader(
        url,
        list(run.tables.values()),
        pipeline_name="types",
        mode=mode,
        timestamp_column="ts",
        incrementing_column="id",
        poll_interval_s=0.01,
        idle_tick_s=0.05,
        batch_size=500,
    )
    reader.open()
    seen = 0
    deadline = time.monotonic() + 120
    try:
        for item in reader.stream(None):
            if item is None:
                assert time.monotonic() < deadline, f"{mode}: timed out after {seen} of {total}"
                continue
            run.items[mode].append(item)
            if isinstance(item, ChangeEvent):
                after = item.after or {}
                run.got[mode].setdefault(item.source.table, {})[after["id"]] = after
                run.schemas[mode][item.source.table] = item.schema
            elif isinstance(item, Undecodable):
                run.got[mode].setdefault(item.table, {})[_row_id(item)] = item
            seen += 1
            if seen >= total:
                return
    finally:
        reader.close()


WIDE_PICKS = {"postgres": (0, -1), "mariadb": (0, -1), "sqlite": (0, 1)}  # SQLite: two decodable values


def _wide_rows(run: Run, cases: list[Case]) -> list[list[str]]:
    first, second = WIDE_PICKS[run.db]
    return [["NULL"] * len(cases), [c.values[first] for c in cases], [c.values[second] for c in cases]]


def _populate(run: Run, url: str, execute: Callable[[str], None], ts_ddl: str, wide: list[Case]) -> None:
    for case in run.cases:
        table = run.tables[case.name]
        execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, {ts_ddl}, v {case.ddl})")
        for index, literal in enumerate(case.rows, 1):
            execute(f"INSERT INTO {table} (id, v) VALUES ({index}, {literal})")
    columns = ", ".join(f"c_{c.name} {c.ddl}" for c in wide)
    execute(f"CREATE TABLE {run.tables['wide']} (id INT PRIMARY KEY, {ts_ddl}, {columns})")
    names = ", ".join(f"c_{c.name}" for c in wide)
    for index, row in enumerate(_wide_rows(run, wide), 1):
        execute(f"INSERT INTO {run.tables['wide']} (id, {names}) VALUES ({index}, {', '.join(row)})")
    total = sum(len(c.rows) for c in run.cases) + 3
    started = time.monotonic()
    for mode in MODES:
        _poll(url, run, mode, total)
    run.seconds = time.monotonic() - started


def _render(run: Run, query: Callable[[str], list[tuple[Any, ...]]], wide: list[Case], default: str) -> None:
    def rows(expression: str, source: str) -> dict[int, Any]:
        out = {}
        for row in query(f"SELECT id, {expression} FROM {source} ORDER BY id"):
            out[row[0]] = row[1] if len(row) == 2 else row[1:]
        return out

    for case in run.cases:
        table = run.tables[case.name]
        run.rendered[table] = rows(case.render or default, table)
    for case in wide:
        column = f"c_{case.name}"
        source = f"(SELECT id, {column} AS v FROM {run.tables['wide']}) w"
        run.rendered[f"{run.tables['wide']}.{column}"] = rows(case.render or default, source)


@pytest.fixture(scope="module")
def pg_run(pg_dsn: str) -> Iterator[Run]:
    suffix = uuid.uuid4().hex[:8]
    enum = f"pt_{suffix}_mood"
    cases = postgres_cases(enum)
    run = Run(
        "postgres", cases, {c.name: f"pt_{suffix}_{c.name}" for c in cases} | {"wide": f"pt_{suffix}_wide"}
    )
    parts = urlsplit(pg_dsn)
    url = f"postgresql+psycopg://{parts.netloc}{parts.path}"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute("SET TimeZone = 'UTC'")
        try:
            db.execute(f"CREATE TYPE {enum} AS ENUM ('a', '😀', 'with space')")
            _populate(run, url, db.execute, "ts timestamp(6) NOT NULL DEFAULT clock_timestamp()", cases)
            _render_pg(run, db, cases)
            yield run
        finally:
            for table in run.tables.values():
                db.execute(f"DROP TABLE IF EXISTS {table}")
            db.execute(f"DROP TYPE IF EXISTS {enum} CASCADE")


def _render_pg(run: Run, db: Any, cases: list[Case]) -> None:
    def rows(expression: str, source: str) -> dict[int, Any]:
        value = f"CASE WHEN v IS NULL THEN NULL ELSE ({expression}) END"
        return dict(db.execute(f"SELECT id, {value} FROM {source} ORDER BY id").fetchall())

    for case in cases:
        table = run.tables[case.name]
        run.rendered[table] = rows(case.render or TEXT, table)
        view = f"(SELECT id, c_{case.name} AS v FROM {run.tables['wide']}) AS w"
        run.rendered[f"{run.tables['wide']}.c_{case.name}"] = rows(case.render or TEXT, view)


def _mariadb_url(dsn: str) -> str:
    parts = urlsplit(dsn)
    return f"mysql+pymysql://{parts.netloc}{parts.path}?charset=utf8mb4"


@pytest.fixture(scope="module")
def mariadb_run(mariadb_dsn: str) -> Iterator[Run]:
    from cdc_logs.readers.mysql.connection import parse_dsn

    suffix = uuid.uuid4().hex[:8]
    cases = mariadb_cases()
    wide = [c for c in cases if c.nullable and c.name not in ("mediumtext", "longblob")]
    run = Run(
        "mariadb", cases, {c.name: f"pt_{suffix}_{c.name}" for c in cases} | {"wide": f"pt_{suffix}_wide"}
    )
    db = pymysql.connect(**parse_dsn(mariadb_dsn).kwargs(), autocommit=True, init_command="SET sql_mode = ''")
    try:
        with db.cursor() as cur:

            def execute(sql: str) -> None:
                cur.execute(sql)

            def query(sql: str) -> list[tuple[Any, ...]]:
                cur.execute(sql)
                return list(cur.fetchall())

            _populate(run, _mariadb_url(mariadb_dsn), execute, "ts DATETIME(6) NOT NULL DEFAULT NOW(6)", wide)
            _render(run, query, wide, AS_CHAR)
        yield run
    finally:
        with db.cursor() as cur:
            for table in run.tables.values():
                cur.execute(f"DROP TABLE IF EXISTS {table}")
        db.close()


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    path: Path = tmp_path_factory.mktemp("polling_types") / "types.db"
    cases = sqlite_cases()
    wide = cases
    run = Run("sqlite", cases, {c.name: f"pt_{c.name}" for c in cases} | {"wide": "pt_wide"})
    db = sqlite3.connect(path, isolation_level=None)
    db.text_factory = bytes
    db.execute("PRAGMA synchronous = OFF")

    def query(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(x.decode() if isinstance(x, bytes) else x for x in row) for row in db.execute(sql)]

    ts = "ts TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))"
    _populate(run, f"sqlite:///{path}", db.execute, ts, wide)
    _render(run, query, wide, LITE_RENDER)
    db.close()
    yield run


# -- the checks ----------------------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type (True is not 1, 0.0 is not -0.0, bytes are not str), recursively."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


_RANGES = {"int8": 2**7, "int16": 2**15, "int32": 2**31, "int64": 2**63}


def fits(column: Any, value: Any) -> bool:
    """The value is of the Connect type the schema names (docs/envelope.md encodings)."""
    if value is None:
        return bool(column.optional)
    kind = column.type
    if kind in _RANGES:
        limit = _RANGES[kind]
        high = 2 * limit if "UNSIGNED" in column.source_type else limit  # BIGINT UNSIGNED (documented)
        return type(value) is int and -limit <= value < high
    if kind in ("float32", "float64"):
        return type(value) is float or value in ("NaN", "Infinity", "-Infinity")
    if kind == "array":
        return type(value) is list and all(
            fits(column.element, v) if not isinstance(v, list) else fits(column, v) for v in value
        )
    return type(value) is {"boolean": bool, "string": str, "bytes": bytes}[kind]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 90 else text[:60] + f"...({len(text)} chars)"


def check(
    run: Run, case: Case, table: str, column: str, rendered_key: str, rows: list[tuple[int, str]]
) -> None:
    problems = []
    for mode in MODES:
        schema = run.schemas[mode].get(table)
        described = schema.column(column) if schema is not None else None
        if described is None:
            problems.append(f"{mode}: no schema for {table}.{column}")
        elif (described.type, described.semantic) != case.schema:
            problems.append(
                f"{mode}: schema says {(described.type, described.semantic)}, expected {case.schema}"
            )
        for row_id, literal in rows:
            text = run.rendered[rendered_key][row_id]
            expected = (
                None if text is None or (isinstance(text, tuple) and text[0] == "null") else case.expect(text)
            )
            got = run.got[mode].get(table, {}).get(row_id)
            if got is None:
                problems.append(f"{mode}: {_short(literal)}: no event")
                continue
            if isinstance(got, Undecodable):
                if expected != UNDECODABLE:
                    problems.append(
                        f"{mode}: {_short(literal)} (db: {_short(text)}): undecodable: {got.reason}"
                    )
                elif column not in got.reason:
                    problems.append(
                        f"{mode}: {_short(literal)}: the reason does not name the column: {got.reason}"
                    )
                continue
            value = got[column]
            where = f"{mode}: {_short(literal)}"
            if expected == UNDECODABLE:
                problems.append(
                    f"{where} (db: {_short(text)}): gave {_short(value)}, expected an Undecodable"
                )
                continue
            if not same(value, expected):
                problems.append(
                    f"{where} (db: {_short(text)}): gave {_short(value)}, expected {_short(expected)}"
                )
            # (a column that holds values as stored has no single type: docs/sources/polling.md)
            if described is not None and not case.as_stored and not fits(described, value):
                problems.append(
                    f"{mode}: {_short(literal)}: {_short(value)} is not what the schema says ({described})"
                )
            written = orjson.loads(dumps(value))
            if written != _as_json(value):
                problems.append(f"{mode}: {_short(literal)}: written as {_short(written)}")
    assert not problems, "\n".join(problems)


def _as_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    return value


def _check_case(run: Run, case: Case) -> None:
    table = run.tables[case.name]
    check(run, case, table, "v", table, list(enumerate(case.rows, 1)))


def _check_wide(run: Run, case: Case) -> None:
    wide = run.tables["wide"]
    first, second = WIDE_PICKS[run.db]
    rows = [(1, "NULL"), (2, case.values[first]), (3, case.values[second])]
    check(run, case, wide, f"c_{case.name}", f"{wide}.c_{case.name}", rows)


def _check_contract(run: Run) -> None:
    for mode in MODES:
        violations = ContractChecker().check_all(run.items[mode])
        assert not violations, violations[:5]


PG_CASES = postgres_cases("mood")
MY_CASES = mariadb_cases()
LITE_CASES = sqlite_cases()


@pytest.mark.parametrize("case", PG_CASES, ids=[c.name for c in PG_CASES])
def test_postgres_every_value(pg_run: Run, case: Case) -> None:
    _check_case(pg_run, next(c for c in pg_run.cases if c.name == case.name))


@pytest.mark.parametrize("case", PG_CASES, ids=[c.name for c in PG_CASES])
def test_postgres_wide_row_side_by_side(pg_run: Run, case: Case) -> None:
    _check_wide(pg_run, next(c for c in pg_run.cases if c.name == case.name))


def test_postgres_contract_and_runtime(pg_run: Run) -> None:
    _check_contract(pg_run)
    print(f"postgres: both modes polled in {pg_run.seconds:.1f} s")


@pytest.mark.parametrize("case", MY_CASES, ids=[c.name for c in MY_CASES])
def test_mariadb_every_value(mariadb_run: Run, case: Case) -> None:
    _check_case(mariadb_run, case)


@pytest.mark.parametrize(
    "case",
    [c for c in MY_CASES if c.nullable and c.name not in ("mediumtext", "longblob")],
    ids=lambda c: c.name,
)
def test_mariadb_wide_row_side_by_side(mariadb_run: Run, case: Case) -> None:
    _check_wide(mariadb_run, case)


def test_mariadb_contract_and_runtime(mariadb_run: Run) -> None:
    _check_contract(mariadb_run)
    print(f"mariadb: both modes polled in {mariadb_run.seconds:.1f} s")


@pytest.mark.parametrize("case", LITE_CASES, ids=[c.name for c in LITE_CASES])
def test_sqlite_every_value(sqlite_run: Run, case: Case) -> None:
    _check_case(sqlite_run, case)


@pytest.mark.parametrize("case", LITE_CASES, ids=[c.name for c in LITE_CASES])
def test_sqlite_wide_row_side_by_side(sqlite_run: Run, case: Case) -> None:
    _check_wide(sqlite_run, case)


def test_sqlite_contract_and_runtime(sqlite_run: Run) -> None:
    _check_contract(sqlite_run)
    print(f"sqlite: both modes polled in {sqlite_run.seconds:.1f} s")
