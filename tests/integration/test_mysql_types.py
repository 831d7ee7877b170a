"""Type torture test for the MariaDB reader: every documented column type at its extremes, through the
binlog and through the snapshot, checked against the server's own rendering of each value.

One table per case (`ty_<random>_<case>`, dropped at the end) holds one row per value plus a NULL row.
The rows are inserted while a binlog reader streams (op c), then read by a snapshot reader (op r). For
each row the server renders the value as text in the same test (CAST(v AS CHAR), HEX(...), BIN(...));
the expected envelope value is computed from that text by the rules of docs/sources/mysql.md, with
no cdc_logs code, so a converter bug cannot make the expectation agree with it. A wide table with a
column per case checks the same values side by side, and a row that is NULL in every column.

Rows are inserted with `sql_mode=''`, so the server accepts zero dates and invalid ENUM values (and
cuts fractions to the column's precision: the rendering says what was stored).
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pymysql
import pytest

from cdc_logs.envelope import ChangeEvent, dumps
from cdc_logs.errors import CdcError
from cdc_logs.readers.mysql.connection import parse_dsn
from cdc_logs.readers.mysql.reader import MysqlReader

pytestmark = pytest.mark.integration

_EPOCH_DAY = dt.date(1970, 1, 1).toordinal()


# -- expected values from the server's text, by the documented rules (no cdc_logs code) -------------------


def _int(text: str) -> int:
    return int(text)


def _same_text(text: str) -> str:
    return text


def _utf8_hex(text: str) -> str:
    return bytes.fromhex(text).decode("utf-8")


def _b64_hex(text: str) -> str:
    return base64.b64encode(bytes.fromhex(text)).decode()


def _f32(value: float) -> bytes | None:
    try:
        return struct.pack("<f", value)
    except OverflowError:  # beyond the largest float32
        return None


def _float32(text: str) -> float:
    """The shortest decimal (fewest significant digits) that reads back as the same 32-bit float."""
    exact = float(text)  # the server's DOUBLE rendering of the FLOAT: exact
    for digits in range(1, 10):
        candidate = float(f"{exact:.{digits - 1}e}")
        if _f32(candidate) == _f32(exact):
            return candidate
    raise AssertionError(f"no float32 for {text}")


def _bits(nbits: int) -> Callable[[str], Any]:
    def expect(text: str) -> Any:  # BIN(v): the bits, most significant first
        number = int(text, 2)
        if nbits == 1:
            return bool(number)
        return base64.b64encode(number.to_bytes((nbits + 7) // 8, "little")).decode()

    return expect


def _zero_date(text: str) -> bool:
    year, month, day = (int(x) for x in text[:10].split("-"))
    return year == 0 or month == 0 or day == 0


def _days(text: str) -> int:
    year, month, day = (int(x) for x in text.split("-"))
    return dt.date(year, month, day).toordinal() - _EPOCH_DAY


def _date(nullable: bool) -> Callable[[str], Any]:
    def expect(text: str) -> Any:
        if _zero_date(text):
            return None if nullable else 0
        return _days(text)

    return expect


def _datetime_micros(text: str) -> int:
    day, _, clock = text.partition(" ")
    hms, _, fraction = clock.partition(".")
    hours, minutes, seconds = (int(x) for x in hms.split(":"))
    micros = int((fraction + "000000")[:6])
    return (_days(day) * 86_400 + hours * 3600 + minutes * 60 + seconds) * 1_000_000 + micros


def _datetime(fsp: int, nullable: bool = True) -> Callable[[str], Any]:
    def expect(text: str) -> Any:
        if _zero_date(text):
            return None if nullable else 0
        micros = _datetime_micros(text)
        if fsp <= 3:
            assert micros % 1000 == 0, text
            return micros // 1000
        return micros

    return expect


def _timestamp(fsp: int, nullable: bool = True) -> Callable[[str], Any]:
    def expect(text: str) -> Any:  # the session runs in UTC; the server prints exactly fsp digits
        if _zero_date(text):
            if nullable:
                return None
            return "1970-01-01T00:00:00" + ("." + "0" * fsp if fsp else "") + "Z"
        assert len(text) == 19 + (fsp + 1 if fsp else 0), text
        return text.replace(" ", "T") + "Z"

    return expect


def _time(text: str) -> int:
    negative = text.startswith("-")
    hms, _, fraction = text.lstrip("-").partition(".")
    hours, minutes, seconds = (int(x) for x in hms.split(":"))
    micros = (hours * 3600 + minutes * 60 + seconds) * 1_000_000 + int((fraction + "000000")[:6])
    return -micros if negative else micros


def _geometry(text: str) -> dict[str, Any]:
    wkb, _, srid = text.partition(":")
    return {"wkb": _b64_hex(wkb), "srid": int(srid)}


# -- the cases --------------------------------------------------------------------------------------------

AS_CHAR = "CAST(v AS CHAR)"
AS_UTF8 = "HEX(CONVERT(v USING utf8mb4))"
AS_HEX = "HEX(v)"
AS_DOUBLE = "CAST(CAST(v AS DOUBLE) AS CHAR)"  # a FLOAT's exact value (CAST(v AS CHAR) has 6 digits)


@dataclass
class Case:
    name: str
    ddl: str
    values: list[str]
    expect: Callable[[str], Any]
    render: str = AS_CHAR
    nullable: bool = True
    rows: list[str] = field(default_factory=list)  # values + NULL (filled in below)


def _ints(name: str, ddl: str, *values: int | str) -> Case:
    return Case(name, ddl, [str(v) for v in values], _int)


def _s(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


NINES = "9" * 35 + "." + "9" * 30
TIME_VALUES = [
    "'-838:59:59.999999'",
    "'838:59:59.999999'",
    "'00:00:00'",
    "'-00:00:00.000001'",
    "'-00:00:00.5'",
    "'-00:00:01'",
    "'-00:00:01.25'",
    "'12:34:56.789012'",
    "'-12:34:56.789012'",
    "'-1:00:00.1'",
    "'-837:00:00.000099'",
]
DATETIME_VALUES = [
    "'1000-01-01 00:00:00'",
    "'9999-12-31 23:59:59.999999'",
    "'1970-01-01 00:00:00'",
    "'1969-12-31 23:59:59.999999'",
    "'0000-00-00 00:00:00'",
    "'0001-01-01 00:00:00'",
    "'2024-02-29 12:34:56.123456'",
    "'1900-03-01 00:00:00.000001'",
]
TIMESTAMP_VALUES = [
    "'1970-01-01 00:00:01'",
    "'2038-01-19 03:14:07.999999'",
    "0",  # the zero TIMESTAMP
    "'2000-01-01 00:00:00.5'",
    "'1999-12-31 23:59:59.000001'",
    "'1970-01-01 00:00:01.000001'",
]
SET64 = ",".join(f"'m{i}'" for i in range(64))

CASES: list[Case] = [
    _ints("tinyint", "TINYINT", -128, 127, 0, -1),
    _ints("tinyint_u", "TINYINT UNSIGNED", 0, 255, 1),
    _ints("boolean", "BOOLEAN", "FALSE", "TRUE", 2, -128),
    _ints("smallint", "SMALLINT", -32768, 32767, 0, -1),
    _ints("smallint_u", "SMALLINT UNSIGNED", 0, 65535),
    _ints("mediumint", "MEDIUMINT", -8388608, 8388607, 0, -1),
    _ints("mediumint_u", "MEDIUMINT UNSIGNED", 0, 16777215),
    _ints("int", "INT", -2147483648, 2147483647, 0, -1),
    _ints("int_u", "INT UNSIGNED", 0, 4294967295),
    _ints("bigint", "BIGINT", -9223372036854775808, 9223372036854775807, 0, -1),
    _ints("bigint_u", "BIGINT UNSIGNED", 0, 18446744073709551615, 9223372036854775808),
    Case(
        "dec65_30",
        "DECIMAL(65,30)",
        [
            f"'{NINES}'",
            f"'-{NINES}'",
            "0",
            "'0.000000000000000000000000000001'",
            "'-0.5'",
            "'-1'",
            "'12345678901234567890.123456789'",
            "'-0.000000001'",
        ],
        _same_text,
    ),
    Case("dec65_0", "DECIMAL(65,0)", ["9" * 65, "-" + "9" * 65, "0", "-1", "1000000000"], _same_text),
    Case("dec10_2", "DECIMAL(10,2)", ["'-12.34'", "'99999999.99'", "0", "'-0.01'", "'0.5'"], _same_text),
    Case("dec5_5", "DECIMAL(5,5)", ["'0.99999'", "'-0.99999'", "0", "'-0.00001'"], _same_text),
    Case(
        "dec18_9",
        "DECIMAL(18,9)",
        ["'123456789.123456789'", "'-123456789.123456789'", "'-0.000000001'", "'100000000'"],
        _same_text,
    ),
    Case("dec1_0", "DECIMAL(1,0)", ["9", "-9", "0"], _same_text),
    Case(
        "float",
        "FLOAT",
        [
            "0",
            "-0e0",
            "1.1",
            "-1.1",
            "3.4028234e38",
            "-3.4028234e38",
            "1.17549435e-38",
            "1.4e-45",
            "-1.4e-45",
            "16777217",
            "123456789",
            "0.1",
            "-2.5",
        ],
        _float32,
        render=AS_DOUBLE,
    ),
    Case("float_7_3", "FLOAT(7,3)", ["-9999.999", "0", "1.5"], _float32, render=AS_DOUBLE),
    Case(
        "double",
        "DOUBLE",
        [
            "0",
            "-0e0",
            "2.2",
            "-2.2",
            "1.7976931348623157e308",
            "-1.7976931348623157e308",
            "2.2250738585072014e-308",
            "4.9e-324",
            "-4.9e-324",
            "0.1",
            "1e22",
            "123456789.123456789",
        ],
        float,
    ),
    Case("bit1", "BIT(1)", ["b'0'", "b'1'"], _bits(1), render="BIN(v)"),
    Case("bit8", "BIT(8)", ["b'0'", "b'11111111'", "b'10000000'"], _bits(8), render="BIN(v)"),
    Case("bit12", "BIT(12)", ["b'101000000001'", "0", "b'111111111111'"], _bits(12), render="BIN(v)"),
    Case(
        "bit64",
        "BIT(64)",
        ["0", "b'1'", "b'" + "1" * 64 + "'", "b'1" + "0" * 63 + "'"],
        _bits(64),
        render="BIN(v)",
    ),
    Case(
        "char10",
        "CHAR(10)",
        ["''", "'ab'", "'ab   '", _s("😀é"), "'   '", _s("😀" * 10)],
        _utf8_hex,
        render=AS_UTF8,
    ),
    Case("char64", "CHAR(64)", [_s("😀" * 64), "''"], _utf8_hex, render=AS_UTF8),
    Case("char255", "CHAR(255)", [_s("x" * 255), _s("😀" * 255)], _utf8_hex, render=AS_UTF8),
    Case(
        "varchar",
        "VARCHAR(20)",
        ["''", _s("😀"), _s("é"), _s("a\tb\nc"), _s("\\"), _s("'"), _s("\x00"), _s("  ")],
        _utf8_hex,
        render=AS_UTF8,
    ),
    Case("varchar_big", "VARCHAR(16000)", [_s("😀" * 16000), "''"], _utf8_hex, render=AS_UTF8),
    Case(
        "latin1",
        "VARCHAR(10) CHARACTER SET latin1",
        ["''", _s("é€"), _s("ÿ"), "x'81'", "x'9d8d'"],
        _utf8_hex,
        render=AS_UTF8,
    ),
    Case("utf8mb3", "VARCHAR(10) CHARACTER SET utf8mb3", ["''", _s("éﾟ")], _utf8_hex, render=AS_UTF8),
    Case("ucs2", "VARCHAR(10) CHARACTER SET ucs2", ["''", _s("éﾟa")], _utf8_hex, render=AS_UTF8),
    Case("utf16", "VARCHAR(10) CHARACTER SET utf16", ["''", _s("é😀a")], _utf8_hex, render=AS_UTF8),
    Case("utf16le", "VARCHAR(10) CHARACTER SET utf16le", ["''", _s("é😀a")], _utf8_hex, render=AS_UTF8),
    Case("utf32", "VARCHAR(10) CHARACTER SET utf32", ["''", _s("é😀a")], _utf8_hex, render=AS_UTF8),
    Case("cp1251", "VARCHAR(10) CHARACTER SET cp1251", ["''", _s("Жё")], _utf8_hex, render=AS_UTF8),
    Case("tinytext", "TINYTEXT", ["''", _s("😀")], _utf8_hex, render=AS_UTF8),
    Case("text", "TEXT", ["''", "REPEAT('é', 30000)"], _utf8_hex, render=AS_UTF8),
    Case("mediumtext", "MEDIUMTEXT", ["''", _s("😀" * 100000)], _utf8_hex, render=AS_UTF8),
    Case("longtext", "LONGTEXT", ["''", _s("x")], _utf8_hex, render=AS_UTF8),
    Case(
        "binary4",
        "BINARY(4)",
        ["''", "x'00000000'", "x'ffffffff'", "x'01'", "x'ff000000'", "x'000000ff'", "x'00'"],
        _b64_hex,
        render=AS_HEX,
    ),
    Case("binary1", "BINARY(1)", ["''", "x'00'", "x'ff'"], _b64_hex, render=AS_HEX),
    Case("binary255", "BINARY(255)", ["REPEAT(x'ff', 255)", "''", "x'00ff'"], _b64_hex, render=AS_HEX),
    Case("varbinary", "VARBINARY(10)", ["''", "x'00'", "x'ff00'", "x'0000000000'"], _b64_hex, render=AS_HEX),
    Case("tinyblob", "TINYBLOB", ["''", "x'00ff'"], _b64_hex, render=AS_HEX),
    Case("blob", "BLOB", ["''", "x'00'"], _b64_hex, render=AS_HEX),
    Case("mediumblob", "MEDIUMBLOB", ["''", "REPEAT(x'00ff', 40000)"], _b64_hex, render=AS_HEX),
    Case("longblob", "LONGBLOB", ["''", "x'ff'"], _b64_hex, render=AS_HEX),
    Case("enum", "ENUM('a','b','😀')", ["'a'", _s("😀"), "''"], _utf8_hex, render=AS_UTF8),
    Case("set", "SET('a','b','c','😀')", ["''", "'a'", "'c,a'", _s("a,b,c,😀")], _utf8_hex, render=AS_UTF8),
    Case(
        "enum_latin1",
        "ENUM('é','ü','a', '€') CHARACTER SET latin1",
        [_s("é"), "'a'", _s("€"), "''"],
        _utf8_hex,
        render=AS_UTF8,
    ),
    Case(
        "set_latin1",
        "SET('é','ß','a') CHARACTER SET latin1",
        [_s("ß,é"), "'a'", "''", _s("é,ß,a")],
        _utf8_hex,
        render=AS_UTF8,
    ),
    Case(
        "set64",
        f"SET({SET64})",
        ["'m63'", "'m0,m63'", "''", "'" + ",".join(f"m{i}" for i in range(64)) + "'"],
        _utf8_hex,
        render=AS_UTF8,
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
            "'0001-01-01'",
            "'2024-02-29'",
            "'2024-00-10'",
            "'0000-01-01'",
        ],
        _date(True),
    ),
    Case(
        "date_not_null",
        "DATE NOT NULL",
        ["'0000-00-00'", "'1970-01-02'", "'2024-00-00'"],
        _date(False),
        nullable=False,
    ),
    *(Case(f"datetime{p}", f"DATETIME({p})", DATETIME_VALUES, _datetime(p)) for p in range(7)),
    Case(
        "datetime_not_null",
        "DATETIME(3) NOT NULL",
        ["'0000-00-00 00:00:00'", "'1969-12-31 23:59:59.999'"],
        _datetime(3, False),
        nullable=False,
    ),
    *(Case(f"timestamp{p}", f"TIMESTAMP({p}) NULL", TIMESTAMP_VALUES, _timestamp(p)) for p in range(7)),
    Case(
        "timestamp_not_null",
        "TIMESTAMP(2) NOT NULL DEFAULT '2000-01-01 00:00:00'",
        ["0", "'2038-01-19 03:14:07.99'"],
        _timestamp(2, False),
        nullable=False,
    ),
    *(Case(f"time{p}", f"TIME({p})", TIME_VALUES, _time) for p in range(7)),
    Case("year", "YEAR", ["0", "'0000'", "1901", "2155", "1970", "'00'", "'69'"], _int),
    Case(
        "json",
        "JSON",
        [
            "'{}'",
            "'[]'",
            "'null'",
            _s('"😀"'),
            _s('{"a": [1, 2.5e300, null, true, "é"]}'),
            _s('""'),
            _s("123456789012345678901234567890"),
            _s('{"k":  "v"}'),
        ],
        _utf8_hex,
        render=AS_UTF8,
    ),
    Case(
        "point",
        "POINT",
        ["ST_GeomFromText('POINT(1 2)', 4326)", "ST_GeomFromText('POINT(-1.5 1e300)')"],
        _geometry,
        render="CONCAT(HEX(ST_AsWKB(v)), ':', ST_SRID(v))",
    ),
    Case(
        "geometry",
        "GEOMETRY",
        [
            "ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))', 3857)",
            "ST_GeomFromText('GEOMETRYCOLLECTION EMPTY')",
        ],
        _geometry,
        render="CONCAT(HEX(ST_AsWKB(v)), ':', ST_SRID(v))",
    ),
]
for _case in CASES:
    _case.rows = [*_case.values, *(["NULL"] if _case.nullable else [])]
WIDE = [c for c in CASES if c.nullable and c.name != "varchar_big"]  # (the row size limit)


# -- one run of both paths over every case ------------------------------------------------------------------


@dataclass
class Run:
    tables: dict[str, str]  # case name -> table name
    binlog: dict[str, dict[int, Any]] = field(default_factory=dict)  # table -> id -> after (JSON)
    snapshot: dict[str, dict[int, Any]] = field(default_factory=dict)
    rendered: dict[str, dict[int, Any]] = field(default_factory=dict)  # table -> id -> server's text
    binlog_error: str | None = None
    snapshot_error: str | None = None


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    """Each column as the envelope writes it; a value the envelope cannot write becomes a message."""
    out = {}
    for name, value in row.items():
        try:
            out[name] = orjson.loads(dumps(value))
        except TypeError as exc:
            out[name] = f"<cannot be written: {exc}>"
    return out


def _connect(dsn: str) -> pymysql.connections.Connection:
    return pymysql.connect(
        **parse_dsn(dsn).kwargs(), autocommit=True, init_command="SET time_zone = '+00:00', sql_mode = ''"
    )


def _read(reader: MysqlReader, expected: int, into: dict[str, dict[int, Any]], action: Any = None) -> None:
    """Stream until `expected` change events arrived (their `after`, as JSON, by table and id)."""
    reader.open()
    deadline = time.monotonic() + 90
    seen = 0
    acted = action is None
    try:
        for item in reader.stream(None):
            if not acted:
                acted = True
                action()
            if isinstance(item, ChangeEvent):
                after = as_json(item.after or {})
                into.setdefault(item.source.table, {})[after["id"]] = after
                seen += 1
                if seen >= expected:
                    return
            assert time.monotonic() < deadline, f"timed out after {seen} of {expected} events"
    finally:
        reader.stop()
        reader.close()


@pytest.fixture(scope="module")
def run(mariadb_dsn: str) -> Iterator[Run]:
    db = _connect(mariadb_dsn)
    prefix = "ty_" + uuid.uuid4().hex[:8] + "_"
    result = Run({c.name: prefix + c.name for c in CASES} | {"wide": prefix + "wide"})
    created: list[str] = []
    try:
        with db.cursor() as cur:
            for case in CASES:
                cur.execute(f"CREATE TABLE {result.tables[case.name]} (id INT PRIMARY KEY, v {case.ddl})")
                created.append(result.tables[case.name])
            columns = ", ".join(f"c_{c.name} {c.ddl}" for c in WIDE)
            cur.execute(f"CREATE TABLE {result.tables['wide']} (id INT PRIMARY KEY, {columns})")
            created.append(result.tables["wide"])
        wide_rows = [
            ["NULL"] * len(WIDE),
            [c.values[0] for c in WIDE],
            [c.values[-1] for c in WIDE],
        ]
        total = sum(len(c.rows) for c in CASES) + len(wide_rows)

        inserted = []

        def insert() -> None:
            inserted.append(True)
            with db.cursor() as cur:
                for case in CASES:
                    for index, literal in enumerate(case.rows, 1):
                        cur.execute(f"INSERT INTO {result.tables[case.name]} VALUES ({index}, {literal})")
                for index, row in enumerate(wide_rows, 1):
                    cur.execute(f"INSERT INTO {result.tables['wide']} VALUES ({index}, {', '.join(row)})")

        names = [f"test.{t}" for t in result.tables.values()]
        kw: dict[str, Any] = {"pipeline_name": "types", "heartbeat_s": 1.0, "temporary": True}
        try:
            _read(MysqlReader(parse_dsn(mariadb_dsn), names, **kw), total, result.binlog, insert)
        except CdcError as exc:  # a decoding error stops the stream: every case reports it
            result.binlog_error = str(exc)
        if not inserted:
            insert()  # the binlog reader died before the rows went in: the snapshot still needs them
        try:
            _read(MysqlReader(parse_dsn(mariadb_dsn), names, snapshot=True, **kw), total, result.snapshot)
        except CdcError as exc:
            result.snapshot_error = str(exc)
        with db.cursor() as cur:
            for case in CASES:
                table = result.tables[case.name]
                cur.execute(f"SELECT id, {case.render} FROM {table} ORDER BY id")
                result.rendered[table] = dict(cur.fetchall())
            wide = ", ".join(re.sub(r"\bv\b", f"c_{c.name}", c.render) for c in WIDE)
            cur.execute(f"SELECT id, {wide} FROM {result.tables['wide']} ORDER BY id")
            result.rendered[result.tables["wide"]] = {row[0]: row[1:] for row in cur.fetchall()}
        yield result
    finally:
        with db.cursor() as cur:
            for table in created:
                cur.execute(f"DROP TABLE IF EXISTS {table}")
        db.close()


def same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON type (True is not 1, 0.0 is not -0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 90 else text[:60] + f"...({len(text)} chars)"


def check(run: Run, table: str, column: str, cases: list[tuple[int, str, Any, Callable[[str], Any]]]) -> None:
    paths = {"binlog": (run.binlog, run.binlog_error), "snapshot": (run.snapshot, run.snapshot_error)}
    problems = [
        f"the {path} reader failed (see test_both_readers_finish)" for path, (_, e) in paths.items() if e
    ]
    for row_id, literal, text, expect in cases:
        expected = None if text is None else expect(text)
        for path, (rows, error) in paths.items():
            row = rows.get(table, {}).get(row_id)
            if row is None:
                if not error:  # (a failed reader is reported once, above)
                    problems.append(f"{_short(literal)}: no {path} event")
                continue
            if not same(row[column], expected):
                problems.append(
                    f"{_short(literal)} (server: {_short(text)}): {path} gave {_short(row[column])},"
                    f" expected {_short(expected)}"
                )
    assert not problems, "\n".join(problems)


def test_both_readers_finish(run: Run) -> None:
    """A value the binlog reader cannot decode stops the stream: that is a failure of its own."""
    assert run.binlog_error is None, run.binlog_error
    assert run.snapshot_error is None, run.snapshot_error


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_value_through_binlog_and_snapshot(run: Run, case: Case) -> None:
    table = run.tables[case.name]
    rendered = run.rendered[table]
    check(
        run,
        table,
        "v",
        [(i, literal, rendered[i], case.expect) for i, literal in enumerate(case.rows, 1)],
    )


def test_a_wide_row_null_in_every_column_and_each_extreme_side_by_side(run: Run) -> None:
    table = run.tables["wide"]
    rendered = run.rendered[table]
    assert rendered[1] == (None,) * len(WIDE)
    for index, case in enumerate(WIDE):
        check(
            run,
            table,
            f"c_{case.name}",
            [
                (1, "NULL", None, case.expect),
                (2, case.values[0], rendered[2][index], case.expect),
                (3, case.values[-1], rendered[3][index], case.expect),
            ],
        )
