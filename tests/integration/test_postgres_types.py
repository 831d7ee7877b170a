"""Type torture test for the Postgres reader: every type docs/postgres-types.md lists, at its extremes,
through the pgoutput stream in text format, the stream in binary format (`binary 'true'`) and the
snapshot, checked against the server's own rendering of each value.

One table per case (`tyt_<random>_<case>`, with the enum and domain types it needs, dropped at the end)
holds one row per value plus a NULL row. Two readers (text and binary) stream while the rows are
inserted, then a snapshot reader reads them. For each row the server renders the value in the same
test (`v::text`, `encode(v, 'hex')`, `EXTRACT(EPOCH FROM v)`, `to_json(v)`, ...) and the expected
envelope value is computed from that by the rules of docs/postgres-types.md, with no cdc_logs code.
A wide table with a column per case checks the values side by side, and a row NULL in every column.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

psycopg = pytest.importorskip("psycopg")

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, dumps  # noqa: E402
from cdc_logs.errors import CdcError  # noqa: E402
from cdc_logs.readers.postgres.reader import PostgresReader  # noqa: E402

pytestmark = pytest.mark.integration

DAY_US = 86_400_000_000
MONTH_US = 2_629_800_000_000  # docs/postgres-types.md: a month is 365.25/12 days
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_CYCLE_DAYS, _CYCLE_YEARS = 146_097, 400  # the Gregorian calendar repeats every 400 years


# -- the documented rules, applied to the server's rendering (no cdc_logs code) -----------------------------


def _days(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, any astronomical year."""
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


def _int(text: str) -> int:
    return int(text)


def _same(text: str) -> str:
    return text


def _bool(text: str) -> bool:
    return {"t": True, "f": False}[text]


def _float(text: str) -> float | str:
    return text if text in ("NaN", "Infinity", "-Infinity") else float(text)


def _b64_hex(text: str) -> str:
    return base64.b64encode(bytes.fromhex(text)).decode()


def _bits(text: str) -> str:
    number = int(text, 2) if text else 0
    return base64.b64encode(number.to_bytes((number.bit_length() + 7) // 8, "little")).decode()


def _bit1(text: str) -> bool:
    return {"1": True, "0": False}[text]


def _date(text: str) -> int:
    """`CASE WHEN isfinite(v) THEN v - DATE '1970-01-01' ELSE v END`: days, or the infinities."""
    return {"infinity": 2**31 - 1, "-infinity": -(2**31)}.get(text) or int(text)


def _date_text(text: str) -> int:
    """A date as Postgres prints it in JSON ('2024-02-29', '0044-03-15 BC', 'infinity')."""
    if text in ("infinity", "-infinity"):
        return _date(text)
    bc = text.endswith(" BC")
    year, month, day = (int(x) for x in text.removesuffix(" BC").split("-"))
    return _days(1 - year if bc else year, month, day)


def _epoch_micros(text: str) -> int:
    """'days|seconds of the day' (DAYS_AND_TIME) -> µs since the epoch."""
    days, seconds = text.split("|")
    return int(days) * DAY_US + _micros(seconds)


def _micros(text: str) -> int:
    """`EXTRACT(EPOCH FROM v)` (exact numeric seconds) -> µs."""
    whole, _, fraction = text.partition(".")
    negative = whole.startswith("-")
    micros = abs(int(whole)) * 1_000_000 + int((fraction + "000000")[:6])
    assert len(fraction.rstrip("0")) <= 6, text
    return -micros if negative else micros


def _time(precision: int) -> Callable[[str], int]:
    return lambda text: _micros(text) // 1000 if precision <= 3 else _micros(text)


def _timetz(text: str) -> str:
    """EXTRACT(EPOCH FROM timetz): seconds of the UTC time (may leave 0..24h) -> "HH:MM:SS[.f]Z"."""
    micros = _micros(text)
    if micros == DAY_US:
        return "24:00:00Z"  # 24:00:00+00 (docs)
    micros %= DAY_US
    seconds, fraction = divmod(micros, 1_000_000)
    out = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return out + ("." + f"{fraction:06d}".rstrip("0") if fraction else "") + "Z"


INFINITE_TIMESTAMP = {"infinity": 9_223_372_036_825_200_000, "-infinity": -9_223_372_036_832_400_000}


def _timestamp(precision: int) -> Callable[[str], int]:
    def expect(text: str) -> int:
        if text in INFINITE_TIMESTAMP:
            return INFINITE_TIMESTAMP[text]
        micros = _epoch_micros(text)
        # docs: µs beyond int64 (after 294247-01-10 04:00:54.775807) are the int64 bound
        return micros // 1000 if precision <= 3 else min(micros, 2**63 - 1)

    return expect


def _timestamptz(precision: int) -> Callable[[str], str]:
    def expect(text: str) -> str:
        if text in ("infinity", "-infinity"):
            return text
        micros = _epoch_micros(text)
        days, rest = divmod(micros, DAY_US)
        year, month, day = _civil(days)
        seconds, fraction = divmod(rest, 1_000_000)
        ytext = f"{year:04d}" if 0 <= year <= 9999 else (f"+{year}" if year > 0 else f"-{-year:04d}")
        out = (
            f"{ytext}-{month:02d}-{day:02d}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        )
        return out + ("." + f"{fraction:06d}"[:precision] if precision else "") + "Z"

    return expect


def _interval(text: str) -> int:
    """'months|days|time seconds' from EXTRACT -> µs (a month of 30.4375 days); beyond int64, the
    int64 bounds (docs: Debezium's double-to-long cast saturates)."""
    months, days, seconds = text.split("|")
    micros = int(months) * MONTH_US + int(days) * DAY_US + _micros(seconds)
    return max(-(2**63), min(2**63 - 1, micros))


def _array(element: Callable[[Any], Any]) -> Callable[[str], Any]:
    """to_json(v), its numbers kept as text; NULL elements -> None; nested per dimension."""

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(v) for v in value]
        return None if value is None else element(value)

    return lambda text: walk(json.loads(text, parse_int=str, parse_float=str, parse_constant=str))


def _json_float(value: str) -> float | str:
    return value if value in ("NaN", "Infinity", "-Infinity") else float(value)


def _json_bytea(value: str) -> str:
    assert value.startswith("\\x"), value
    return _b64_hex(value[2:])


# -- the cases --------------------------------------------------------------------------------------------

TEXT = "format('%s', v)"  # the type's output function: what pgoutput sends in text format
EPOCH = "(EXTRACT(EPOCH FROM v))::text"
# EXTRACT(EPOCH FROM timestamp) loses µs near the year 294276: days and the time of day are exact
DAYS_AND_TIME = (
    "CASE WHEN isfinite(v) THEN concat_ws('|', (v::date - DATE '1970-01-01'), EXTRACT(EPOCH FROM v::time))"
    " ELSE format('%s', v) END"
)
DAYS_AND_TIME_UTC = DAYS_AND_TIME  # timestamptz: the test session runs in UTC (AT TIME ZONE overflows)
INTERVAL = (
    "concat_ws('|', (EXTRACT(YEAR FROM v) * 12 + EXTRACT(MONTH FROM v))::text,"
    " EXTRACT(DAY FROM v)::text, (EXTRACT(HOUR FROM v) * 3600 + EXTRACT(MINUTE FROM v) * 60"
    " + EXTRACT(SECOND FROM v))::text)"
)


@dataclass
class Case:
    name: str
    ddl: str  # may name {enum} / {domain...}: the test's own types
    values: list[str]
    expect: Callable[[str], Any]
    render: str = TEXT
    binary_expect: Callable[[str], Any] | None = None  # when binary format differs (documented)
    binary_render: str | None = None
    rows: list[str] = field(default_factory=list)


TIMESTAMPS = [
    "'4713-01-01 00:00:00 BC'",
    "'294276-12-31 23:59:59.999999'",
    "'infinity'",
    "'-infinity'",
    "'1970-01-01 00:00:00'",
    "'1969-12-31 23:59:59.999999'",
    "'0001-01-01 00:00:00'",
    "'0001-12-31 23:59:59.999999 BC'",
    "'2024-02-29 13:45:10.123456'",
    "'9999-12-31 23:59:59.5'",
    "'10000-01-01 00:00:00'",
]
TIMESTAMPTZ = [
    "'4713-01-01 00:00:00+00 BC'",
    "'294276-12-31 23:59:59.999999+00'",
    "'infinity'",
    "'-infinity'",
    "'1970-01-01 00:00:00+00'",
    "'2024-02-29 13:45:10.5+05:30'",
    "'2024-12-31 20:00:00.123456-05:30'",
    "'0001-01-01 00:00:00+00'",
    "'1901-12-13 20:45:52+05:53:28'",
    "'10000-01-01 00:00:00+00'",
    "'0044-03-15 12:00:00.5+01 BC'",
]
TIMES = ["'00:00:00'", "'23:59:59.999999'", "'24:00:00'", "'12:34:56.789'", "'00:00:00.000001'"]

CASES: list[Case] = [
    Case("int2", "int2", ["-32768", "32767", "0", "-1"], _int),
    Case("int4", "int4", ["-2147483648", "2147483647", "0"], _int),
    Case("int8", "int8", ["-9223372036854775808", "9223372036854775807", "0"], _int),
    Case("oid", "oid", ["0", "4294967295"], _int),
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
    ),
    Case("numeric_10_2", "numeric(10,2)", ["'12.5'", "'-99999999.99'", "'0'", "'NaN'"], _same),
    Case("numeric_neg_scale", "numeric(5,-2)", ["'1234567'", "'-50'", "'0'"], _same),
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
            "'1.17549435e-38'",
            "'-2.5'",
        ],
        _float,
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
            "'123456789.123456789'",
        ],
        _float,
    ),
    Case("bool", "bool", ["true", "false"], _bool),
    Case(
        "text",
        "text",
        ["''", "'😀é'", "E'a\\\\b\\nc\\t\"q\"'", "repeat('x', 300000)", "'NULL'", "' '"],
        _same,
    ),
    Case("varchar", "varchar(5)", ["''", "'😀😀😀😀😀'", "'a'"], _same),
    Case("bpchar", "char(5)", ["''", "'ab'", "'😀'", "'abcde'"], _same, render="concat(v)"),
    Case("char", '"char"', ["'a'", "'Z'"], _same),
    Case("name", "name", ["''", "'" + "n" * 63 + "'"], _same),
    Case(
        "bytea",
        "bytea",
        ["''", "'\\x00'", "'\\xff00'", "decode(repeat('00ff', 100000), 'hex')"],
        _b64_hex,
        render="encode(v, 'hex')",
    ),
    Case(
        "uuid",
        "uuid",
        ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'"],
        _same,
    ),
    Case("json", "json", ["'{}'", "'[]'", "'null'", "'\"😀\"'", "'{\"a\":  [1, 2.5e300]}'", "'\"\"'"], _same),
    Case("jsonb", "jsonb", ["'{}'", "'null'", '\'{"b": 1, "a":  [1, 2.50]}\'', "'\"😀\"'"], _same),
    Case("xml", "xml", ["'<a>1</a>'", "''"], _same),
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
            "'0001-01-01'",
            "'0001-12-31 BC'",
            "'0044-03-15 BC'",
            "'2024-02-29'",
        ],
        _date,
        render="CASE WHEN isfinite(v) THEN (v - DATE '1970-01-01')::text ELSE v::text END",
    ),
    *(Case(f"time{p}", f"time({p})", TIMES, _time(p), render=EPOCH) for p in range(7)),
    Case("time", "time", TIMES, _time(6), render=EPOCH),
    Case(
        "timetz",
        "timetz",
        [
            "'13:45:10.5+05:30'",
            "'00:00:00+14'",
            "'23:59:59.999999-12'",
            "'24:00:00+00'",
            "'24:00:00+05'",
            "'12:00:00+05:53:28'",
            "'00:00:00.000001+00'",
        ],
        _timetz,
        render=EPOCH,
    ),
    *(
        Case(f"timestamp{p}", f"timestamp({p})", TIMESTAMPS, _timestamp(p), render=DAYS_AND_TIME)
        for p in range(7)
    ),
    Case("timestamp", "timestamp", TIMESTAMPS, _timestamp(6), render=DAYS_AND_TIME),
    *(
        Case(f"timestamptz{p}", f"timestamptz({p})", TIMESTAMPTZ, _timestamptz(p), render=DAYS_AND_TIME_UTC)
        for p in range(7)
    ),
    Case("timestamptz", "timestamptz", TIMESTAMPTZ, _timestamptz(6), render=DAYS_AND_TIME_UTC),
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
            "'6.789 seconds'",
            "'-2147483648 days'",
            "'2562047788 hours'",
        ],
        _interval,
        render=INTERVAL,
    ),
    Case(
        "money",
        "money",
        ["'92233720368547758.07'", "'-92233720368547758.08'", "'0'", "'-1234.5'"],
        _same,
        render="v::numeric::text",
    ),
    Case(
        "inet",
        "inet",
        [
            "'192.168.1.5/24'",
            "'::1'",
            "'10.0.0.1'",
            "'2001:db8::ff00:42:8329/64'",
            "'::ffff:1.2.3.4'",
            "'::ffff:1.2.3.4/120'",
            "'::1.2.3.4'",
            "'::'",
            "'0.0.0.0/0'",
        ],
        _same,
    ),
    Case("cidr", "cidr", ["'10.0.0.0/8'", "'2001:db8::/32'", "'::ffff:1.2.3.0/120'"], _same),
    Case("macaddr", "macaddr", ["'08:00:2b:01:02:03'", "'ff:ff:ff:ff:ff:ff'"], _same),
    Case("macaddr8", "macaddr8", ["'08:00:2b:01:02:03:04:05'"], _same),
    Case("bit1", "bit(1)", ["B'0'", "B'1'"], _bit1),
    Case("bit", "bit", ["B'1'"], _bit1),
    Case("bit10", "bit(10)", ["B'1010000001'", "B'0000000000'", "B'1111111111'"], _bits),
    Case("varbit1", "varbit(1)", ["B'0'", "B'1'"], _bit1),
    Case("varbit", "varbit", ["B''", "B'0'", "B'1010000001'", "B'" + "1" * 70 + "'", "B'0001'"], _bits),
    Case("enum", "{enum}", ["'a'", "'😀'", "'with space'"], _same),
    Case("domain_int", "{domain_int}", ["1", "2147483647"], _int),
    Case("domain_numeric", "{domain_numeric}", ["'12.5'", "'-9999.99'"], _same),
    Case("domain_time3", "{domain_time3}", ["'12:34:56.789'", "'24:00:00'"], _time(3), render=EPOCH),
    Case(
        "point",
        "point",
        ["'(1.5,2)'", "'(-0,1e300)'"],
        _same,
        binary_expect=_b64_hex,  # documented: no converter in binary format -> the raw send bytes
        binary_render="encode(float8send(v[0]) || float8send(v[1]), 'hex')",
    ),
    Case(
        "int4_array",
        "int4[]",
        [
            "'{}'",
            "'{1,NULL,3}'",
            "'{{1,2},{3,4}}'",
            "'[0:1]={7,8}'",
            "'{NULL}'",
            "'{-2147483648,2147483647}'",
        ],
        _array(int),
        render="to_json(v)::text",
    ),
    Case(
        "text_array",
        "text[]",
        ["'{}'", r"""'{a,"b,c","","NULL",NULL,"\\","q\"q",😀," x "}'""", "'{{a,b},{c,d}}'"],
        _array(str),
        render="to_json(v)::text",
    ),
    Case(
        "numeric_array",
        "numeric[]",
        ["'{1.50,NaN,-0.001,NULL,Infinity}'"],
        _array(str),
        render="to_json(v)::text",
    ),
    Case(
        "float8_array",
        "float8[]",
        ["'{NaN,Infinity,-Infinity,0.1,-0,NULL}'"],
        _array(_json_float),
        render="to_json(v)::text",
    ),
    Case("bool_array", "bool[]", ["'{t,f,NULL}'"], _array(lambda v: v), render="to_json(v)::text"),
    Case(
        "date_array",
        "date[]",
        ["'{2024-02-29,infinity,-infinity,\"0044-03-15 BC\",NULL}'"],
        _array(_date_text),
        render="to_json(v)::text",
    ),
    Case(
        "bytea_array",
        "bytea[]",
        [r"""'{"\\x00ff",NULL,""}'"""],
        _array(_json_bytea),
        render="to_json(v)::text",
    ),
    Case("enum_array", "{enum}[]", ["'{a,😀,NULL}'", "'{}'"], _array(str), render="to_json(v)::text"),
    Case(
        "uuid_array",
        "uuid[]",
        ["'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}'"],
        _array(str),
        render="to_json(v)::text",
    ),
]
for _case in CASES:
    _case.rows = [*_case.values, "NULL"]
CASE_NAMES = [c.name for c in CASES]
WIDE = CASES


# -- one run of the three paths over every case -------------------------------------------------------------

PATHS = ("text", "binary", "snapshot")


@dataclass
class Run:
    tables: dict[str, str]  # case name (and "wide") -> table name
    got: dict[str, dict[str, dict[int, Any]]] = field(default_factory=lambda: {p: {} for p in PATHS})
    errors: dict[str, str] = field(default_factory=dict)  # path -> why its reader stopped
    rendered: dict[str, dict[int, Any]] = field(default_factory=dict)  # table -> id -> server's text
    rendered_binary: dict[str, dict[int, Any]] = field(default_factory=dict)


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    """Each column as the envelope writes it; a value the envelope cannot write becomes a message."""
    out = {}
    for name, value in row.items():
        try:
            out[name] = orjson.loads(dumps(value))
        except TypeError as exc:
            out[name] = f"<cannot be written: {exc}>"
    return out


def _started(reader: PostgresReader) -> Iterator[Any]:
    reader.open()
    stream = reader.stream(None)
    first = next(stream)
    while first is None:
        first = next(stream)
    assert isinstance(first, Heartbeat), first  # the slot exists: changes from now on are streamed
    return stream


def _collect(
    stream: Iterator[Any], expected: int, into: dict[str, dict[int, Any]], first: Any = None
) -> None:
    deadline = time.monotonic() + 120
    seen = 0
    item = first
    while True:
        if isinstance(item, ChangeEvent) and item.op in (Op.CREATE, Op.READ):
            after = as_json(item.after or {})
            into.setdefault(item.source.table, {})[after["id"]] = after
            seen += 1
            if seen >= expected:
                return
        assert time.monotonic() < deadline, f"timed out after {seen} of {expected} events"
        item = next(stream)


def _reader(dsn: str, tables: list[str], **kw: Any) -> PostgresReader:
    return PostgresReader(
        dsn, tables, pipeline_name="types", temporary=True, heartbeat_interval_s=0, idle_tick_s=0.1, **kw
    )


@pytest.fixture(scope="module")
def run(pg_dsn: str) -> Iterator[Run]:
    suffix = uuid.uuid4().hex[:8]
    names = {
        "enum": f"tyt_{suffix}_mood",
        "domain_int": f"tyt_{suffix}_posint",
        "domain_numeric": f"tyt_{suffix}_price",
        "domain_time3": f"tyt_{suffix}_clock",
    }
    result = Run({c.name: f"tyt_{suffix}_{c.name}" for c in CASES} | {"wide": f"tyt_{suffix}_wide"})
    qualified = [f"public.{t}" for t in result.tables.values()]
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute("SET TimeZone = 'UTC'")
        try:
            db.execute(f"CREATE TYPE {names['enum']} AS ENUM ('a', '😀', 'with space')")
            db.execute(f"CREATE DOMAIN {names['domain_int']} AS integer CHECK (VALUE > 0)")
            db.execute(f"CREATE DOMAIN {names['domain_numeric']} AS numeric(6,2)")
            db.execute(f"CREATE DOMAIN {names['domain_time3']} AS time(3)")
            for case in CASES:
                ddl = case.ddl.format(**names)
                db.execute(f"CREATE TABLE {result.tables[case.name]} (id int PRIMARY KEY, v {ddl})")
            columns = ", ".join(f"c_{c.name} {c.ddl.format(**names)}" for c in WIDE)
            db.execute(f"CREATE TABLE {result.tables['wide']} (id int PRIMARY KEY, {columns})")
            wide_rows = [["NULL"] * len(WIDE), [c.values[0] for c in WIDE], [c.values[-1] for c in WIDE]]
            total = sum(len(c.rows) for c in CASES) + len(wide_rows)

            text_reader, binary_reader = _reader(pg_dsn, qualified), _reader(pg_dsn, qualified, binary=True)
            try:
                streams = {"text": _started(text_reader), "binary": _started(binary_reader)}
                for case in CASES:
                    for index, literal in enumerate(case.rows, 1):
                        db.execute(f"INSERT INTO {result.tables[case.name]} VALUES ({index}, {literal})")
                for index, row in enumerate(wide_rows, 1):
                    db.execute(f"INSERT INTO {result.tables['wide']} VALUES ({index}, {', '.join(row)})")
                for path, stream in streams.items():
                    try:
                        _collect(stream, total, result.got[path])
                    except CdcError as exc:  # a value the reader cannot decode stops its stream
                        result.errors[path] = str(exc)
            finally:
                text_reader.close()
                binary_reader.close()
            snapshot_reader = _reader(pg_dsn, qualified, snapshot=True)
            try:
                snapshot_reader.open()
                _collect(snapshot_reader.stream(None), total, result.got["snapshot"])
            except CdcError as exc:
                result.errors["snapshot"] = str(exc)
            finally:
                snapshot_reader.close()

            def rendered(expression: str, table: str) -> dict[int, Any]:
                value = f"CASE WHEN v IS NULL THEN NULL ELSE ({expression}) END"
                return dict(db.execute(f"SELECT id, {value} FROM {table} ORDER BY id").fetchall())

            for case in CASES:
                table = result.tables[case.name]
                result.rendered[table] = rendered(case.render, table)
                if case.binary_render:
                    result.rendered_binary[table] = rendered(case.binary_render, table)
            wide = result.tables["wide"]
            for case in WIDE:
                column = f"c_{case.name}"
                view = f"(SELECT id, {column} AS v FROM {wide}) AS w"
                result.rendered[f"{wide}.{column}"] = rendered(case.render, view)
                if case.binary_render:
                    result.rendered_binary[f"{wide}.{column}"] = rendered(case.binary_render, view)
            yield result
        finally:
            for table in result.tables.values():
                db.execute(f"DROP TABLE IF EXISTS {table}")
            for name in names.values():
                with contextlib.suppress(psycopg.Error):
                    db.execute(f"DROP TYPE IF EXISTS {name} CASCADE")


def same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON type (True is not 1, 0.0 is not -0.0), recursively."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 90 else text[:60] + f"...({len(text)} chars)"


def check(
    run: Run, case: Case, table: str, column: str, rendered_key: str, rows: list[tuple[int, str]]
) -> None:
    problems = [f"the {path} reader failed (see test_every_reader_finishes)" for path in run.errors]
    for row_id, literal in rows:
        text = run.rendered[rendered_key][row_id]
        for path in PATHS:
            if path == "binary" and case.binary_expect is not None:
                binary_text = run.rendered_binary[rendered_key][row_id]
                expected = None if binary_text is None else case.binary_expect(binary_text)
            else:
                expected = None if text is None else case.expect(text)
            row = run.got[path].get(table, {}).get(row_id)
            if row is None:
                if path not in run.errors:
                    problems.append(f"{_short(literal)}: no {path} event")
                continue
            if not same(row[column], expected):
                problems.append(
                    f"{_short(literal)} (server: {_short(text)}): {path} gave {_short(row[column])},"
                    f" expected {_short(expected)}"
                )
    assert not problems, "\n".join(problems)


def test_every_reader_finishes(run: Run) -> None:
    """A value a reader cannot decode stops its stream: that is a failure of its own."""
    assert not run.errors, run.errors


@pytest.mark.parametrize("case", CASES, ids=CASE_NAMES)
def test_every_value_through_text_binary_and_snapshot(run: Run, case: Case) -> None:
    table = run.tables[case.name]
    check(run, case, table, "v", table, list(enumerate(case.rows, 1)))


@pytest.mark.parametrize("case", WIDE, ids=[c.name for c in WIDE])
def test_a_wide_row_null_in_every_column_and_each_extreme_side_by_side(run: Run, case: Case) -> None:
    wide = run.tables["wide"]
    check(
        run,
        case,
        wide,
        f"c_{case.name}",
        f"{wide}.c_{case.name}",
        [(1, "NULL"), (2, case.values[0]), (3, case.values[-1])],
    )
