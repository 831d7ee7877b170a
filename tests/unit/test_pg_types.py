"""Postgres type converters: text and binary formats -> Debezium JSON-converter values."""

from __future__ import annotations

import contextlib
import datetime as dt
import struct
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_logs.envelope import dumps
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.postgres import pgtime
from cdc_logs.readers.postgres.pgoutput import UNCHANGED, Relation, RelationColumn, Type
from cdc_logs.readers.postgres.types import OID, PG_TYPE_QUERY, TypeRegistry, parse_array, split_unchanged

REG = TypeRegistry()


def text(oid: int, value: str, typmod: int = -1) -> Any:
    return REG.text_converter(oid, typmod)(value)


def binary(oid: int, value: bytes, typmod: int = -1) -> Any:
    return REG.binary_converter(oid, typmod)(value)


# ---- scalars -----------------------------------------------------------------------------------


def test_integers_bool_oid() -> None:
    assert text(OID.INT2, "-32768") == -32768
    assert text(OID.INT4, "2147483647") == 2147483647
    assert text(OID.INT8, "-9223372036854775808") == -(2**63)
    assert text(OID.OID, "4294967295") == 4294967295
    assert text(OID.BOOL, "t") is True and text(OID.BOOL, "f") is False
    with pytest.raises(ValueError):
        text(OID.BOOL, "x")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3.14", 3.14), ("-1.5e+300", -1.5e300), ("0", 0.0), ("NaN", "NaN"), ("Infinity", "Infinity"),
     ("-Infinity", "-Infinity"), ("1e-45", 1e-45)],
)  # fmt: skip
def test_floats_keep_non_finite_values_as_strings(value: str, expected: Any) -> None:
    assert text(OID.FLOAT8, value) == expected
    assert text(OID.FLOAT4, value) == expected


def test_non_finite_floats_serialize_as_json_strings() -> None:
    row = {"a": text(OID.FLOAT8, "NaN"), "b": text(OID.FLOAT4, "-Infinity"), "c": text(OID.FLOAT8, "2.5")}
    assert orjson.loads(dumps(row)) == {"a": "NaN", "b": "-Infinity", "c": 2.5}


@pytest.mark.parametrize(
    "value", ["12.50", "-0.001", "12345678901234567890.123456789", "NaN", "Infinity", "-Infinity", "0"]
)
def test_numeric_is_the_exact_decimal_string(value: str) -> None:
    assert text(OID.NUMERIC, value) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [("$1,234.56", "1234.56"), ("-$1,234.50", "-1234.50"), ("($0.99)", "-0.99"), ("$0.00", "0.00"),
     ("$92,233,720,368,547,758.07", "92233720368547758.07")],
)  # fmt: skip
def test_money(value: str, expected: str) -> None:
    assert text(OID.MONEY, value) == expected


def test_bytea_hex_and_escape_formats() -> None:
    assert text(OID.BYTEA, "\\x00ff10") == b"\x00\xff\x10"
    assert text(OID.BYTEA, "\\x") == b""
    assert text(OID.BYTEA, "ab\\\\c\\000\\377") == b"ab\\c\x00\xff"


def test_strings_pass_through() -> None:
    for oid in (OID.TEXT, OID.VARCHAR, OID.BPCHAR, OID.NAME, OID.CHAR, OID.UUID, OID.JSON, OID.JSONB, OID.XML,
                OID.INET, OID.CIDR, OID.MACADDR, OID.MACADDR8, OID.POINT):  # fmt: skip
        assert text(oid, "ab  ") == "ab  "
    assert text(99999, "anything (unknown type)") == "anything (unknown type)"


def test_bits_follow_debezium() -> None:
    assert text(OID.BIT, "1", 1) is True and text(OID.BIT, "0", 1) is False
    assert text(OID.VARBIT, "1", 1) is True
    assert (
        text(OID.BIT, "1010000001", 10) == b"\x81\x02"
    )  # 641, little-endian, as few bytes as the value needs
    assert text(OID.BIT, "0000000000", 10) == b""
    assert text(OID.VARBIT, "", -1) == b""
    assert text(OID.VARBIT, "100000000", -1) == b"\x00\x01"
    with pytest.raises(ValueError):
        text(OID.BIT, "2", 1)


# ---- date and time -----------------------------------------------------------------------------

EPOCH = dt.date(1970, 1, 1)
CYCLE = 146_097  # days in 400 Gregorian years


def test_dates() -> None:
    assert text(OID.DATE, "1970-01-01") == 0
    assert text(OID.DATE, "2024-02-29") == (dt.date(2024, 2, 29) - EPOCH).days
    assert text(OID.DATE, "1969-12-31") == -1
    assert text(OID.DATE, "0001-01-01 BC") == (dt.date(400, 1, 1) - EPOCH).days - CYCLE  # 1 BC is year 0
    assert text(OID.DATE, "4714-11-24 BC") == -2_440_588  # Julian day 0, the first date Postgres has
    assert text(OID.DATE, "10000-01-01") == (dt.date(9999, 12, 31) - EPOCH).days + 1
    assert (
        text(OID.DATE, "5874897-12-31") == (dt.date(97, 12, 31) - EPOCH).days + 14687 * CYCLE
    )  # the last date
    assert text(OID.DATE, "infinity") == 2**31 - 1 and text(OID.DATE, "-infinity") == -(2**31)


@settings(max_examples=300, deadline=None)
@given(st.dates())
def test_civil_day_arithmetic_matches_python(d: dt.date) -> None:
    days = (d - EPOCH).days
    assert pgtime.days_from_civil(d.year, d.month, d.day) == days
    assert pgtime.civil_from_days(days) == (d.year, d.month, d.day)
    assert pgtime.civil_from_days(days - CYCLE * 30) == (d.year - 12000, d.month, d.day)


def test_times() -> None:
    assert text(OID.TIME, "13:45:10.123456") == ((13 * 60 + 45) * 60 + 10) * 1_000_000 + 123456
    assert text(OID.TIME, "13:45:10.5") == ((13 * 60 + 45) * 60 + 10) * 1_000_000 + 500000
    assert text(OID.TIME, "00:00:00") == 0
    assert text(OID.TIME, "24:00:00") == 86_400_000_000
    assert (
        text(OID.TIME, "13:45:10.123", 3) == ((13 * 60 + 45) * 60 + 10) * 1000 + 123
    )  # io.debezium.time.Time
    assert text(OID.TIME, "13:45:10.1234", 4) == ((13 * 60 + 45) * 60 + 10) * 1_000_000 + 123400
    for bad in ("13:45", "1:2:3", "13:45:10,5", "13:45:10.1234567"):
        with pytest.raises(ValueError):
            text(OID.TIME, bad)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("13:45:10.5+05:30", "08:15:10.5Z"), ("23:00:00.25-03", "02:00:00.25Z"), ("00:00:00+00", "00:00:00Z"),
     ("12:00:00.123456+00", "12:00:00.123456Z"), ("01:00:00+05:53:28", "19:06:32Z"),
     ("24:00:00+00", "24:00:00Z"),
     ("24:00:00+01", "23:00:00Z"), ("23:00:00-01", "00:00:00Z")],
)  # fmt: skip
def test_timetz_is_utc_zoned_time(value: str, expected: str) -> None:
    assert text(OID.TIMETZ, value) == expected


def us(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> int:
    moment = dt.datetime(year, month, day, hour, minute, second, micro)
    return (moment - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)


def test_timestamps() -> None:
    ts = OID.TIMESTAMP
    assert text(ts, "2024-02-29 13:45:10.123456") == us(2024, 2, 29, 13, 45, 10, 123456)
    assert text(ts, "1969-12-31 23:59:59.999999") == -1
    assert text(ts, "2024-02-29 13:45:10.123", 3) == us(2024, 2, 29, 13, 45, 10, 123000) // 1000
    assert text(ts, "0001-12-31 23:59:59.999999 BC") == us(1, 1, 1) - 1
    assert text(ts, "0044-03-15 12:00:00 BC") == us(357, 3, 15, 12) - CYCLE * pgtime.DAY_US
    assert text(ts, "10000-01-01 00:00:00") == us(9999, 12, 31) + pgtime.DAY_US
    assert text(ts, "infinity") == 9223372036825200000 == text(ts, "infinity", 3)
    assert text(ts, "-infinity") == -9223372036832400000


@pytest.mark.parametrize(
    ("value", "typmod", "expected"),
    [("2024-02-29 11:45:10.123456+00", -1, "2024-02-29T11:45:10.123456Z"),
     ("2024-02-29 11:45:10.5+00", -1, "2024-02-29T11:45:10.500000Z"),
     ("2024-02-29 11:45:10+00", -1, "2024-02-29T11:45:10.000000Z"),
     ("2024-02-29 11:45:10+00", 0, "2024-02-29T11:45:10Z"),
     ("2024-02-29 11:45:10.12+00", 3, "2024-02-29T11:45:10.120Z"),
     ("2024-02-29 17:15:10.123456+05:30", -1, "2024-02-29T11:45:10.123456Z"),
     ("2024-02-29 00:15:10-03:30", 0, "2024-02-29T03:45:10Z"),
     ("1900-01-01 00:00:00+05:53:28", -1, "1899-12-31T18:06:32.000000Z"),
     ("2000-01-01 00:00:00+14", 0, "1999-12-31T10:00:00Z"),
     ("0044-03-15 12:00:00+00 BC", 0, "-0043-03-15T12:00:00Z"),
     ("0001-01-01 00:00:00+00 BC", 0, "0000-01-01T00:00:00Z"),
     ("12345-06-07 08:09:10+00", 0, "+12345-06-07T08:09:10Z"),
     ("infinity", -1, "infinity"), ("-infinity", 3, "-infinity")],
)  # fmt: skip
def test_timestamptz_is_utc_zoned_timestamp(value: str, typmod: int, expected: str) -> None:
    assert text(OID.TIMESTAMPTZ, value, typmod) == expected


M, D, S = pgtime.MONTH_US, pgtime.DAY_US, 1_000_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [("00:00:00", 0), ("1 year 2 mons 3 days 04:05:06.789", 14 * M + 3 * D + 14706 * S + 789000),
     ("-1 years -2 mons +3 days -04:05:06.5", -14 * M + 3 * D - 14706 * S - 500000),
     ("-1 days +02:03:00", -D + 7380 * S), ("1 mon", M), ("3 days", 3 * D), ("-00:00:00.000001", -1),
     ("100:00:00", 100 * 3600 * S), ("178000000 years", 2**63 - 1),
     ("P1Y2M3DT4H5M6.789S", 14 * M + 3 * D + 14706 * S + 789000), ("PT0S", 0),
     ("P-1Y-2M3DT-4H-5M-6.5S", -14 * M + 3 * D - 14706 * S - 500000), ("P-1DT2H3M", -D + 7380 * S),
     ("P2W", 14 * D), ("PT-0.000001S", -1)],
)  # fmt: skip
def test_interval_is_micro_duration_with_average_months(value: str, expected: int) -> None:
    assert text(OID.INTERVAL, value) == expected


def test_interval_month_is_365_25_over_12_days() -> None:
    assert text(OID.INTERVAL, "1 year") == 365.25 * 86400 * 1_000_000
    assert text(OID.INTERVAL, "1 mon") == 30.4375 * 86400 * 1_000_000


@pytest.mark.parametrize("value", ["1-2 3 4:05:06", "@ 1 year ago", "1 fortnight", "P1X", "5"])
def test_unsupported_interval_styles_fail_loudly(value: str) -> None:
    with pytest.raises(ValueError):
        text(OID.INTERVAL, value)


# ---- arrays ------------------------------------------------------------------------------------


def test_array_parsing() -> None:
    assert parse_array("{}") == []
    assert parse_array("{a,b}") == ["a", "b"]
    assert parse_array('{a,"b,c","d\\"e","",NULL,"NULL","back\\\\slash"," sp ","{x}"}') == [
        "a", "b,c", 'd"e', "", None, "NULL", "back\\slash", " sp ", "{x}"]  # fmt: skip
    assert parse_array("{{1,2},{3,4}}", int) == [[1, 2], [3, 4]]
    assert parse_array("{{{1},{2}},{{3},{4}}}", int) == [[[1], [2]], [[3], [4]]]
    assert parse_array("{{NULL,2},{3,NULL}}", int) == [[None, 2], [3, None]]
    assert parse_array("[0:1]={7,8}", int) == [7, 8]
    assert parse_array("[1:2][1:1]={{1},{2}}", int) == [[1], [2]]
    assert parse_array("{(1,2);(3,4)}", delim=";") == ["(1,2)", "(3,4)"]
    assert parse_array('{"a\tb","é"}') == ["a\tb", "é"]
    for bad in ("", "{", "1,2", "{1,2", "{{1},{2}", "{1}}", "}{"):
        with pytest.raises((ValueError, IndexError)):
            parse_array(bad)


def test_arrays_convert_their_elements() -> None:
    assert text(1007, "{1,2,NULL,4}") == [1, 2, None, 4]
    assert text(1022, "{1.5,NaN,-Infinity}") == [1.5, "NaN", "-Infinity"]
    assert text(1231, "{1.5,NaN}") == ["1.5", "NaN"]
    assert text(1001, '{"\\\\x0102",NULL}') == [b"\x01\x02", None]
    assert text(1185, '{"2024-01-01 00:00:00+00",infinity}') == ["2024-01-01T00:00:00.000000Z", "infinity"]
    assert text(1183, "{12:00:00.123}", 3) == [43_200_123]  # element precision from the array's typmod
    assert text(1000, "{t,f}") == [True, False]
    assert text(1561, "{1,0}", 1) == [True, False]
    assert text(1187, '{"1 day","-00:00:01"}') == [D, -S]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=st.characters(codec="utf-8"), max_size=8))))
def test_array_text_round_trip(items: list[str | None]) -> None:
    def quote(v: str | None) -> str:
        if v is None:
            return "NULL"
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    assert parse_array("{" + ",".join(quote(v) for v in items) + "}") == items


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{},"\\aN L1[]:=', max_size=30))
def test_array_parser_never_hangs_or_crashes_oddly(data: str) -> None:
    with contextlib.suppress(ValueError, IndexError):
        parse_array(data)


# ---- domains, enums, user arrays ---------------------------------------------------------------


def test_domains_resolve_through_type_messages_and_pg_type() -> None:
    reg = TypeRegistry()
    reg.learn_type(Type(None, 20001, "pg_catalog", "int4"))  # a domain over int4
    reg.learn_type(Type(None, 20002, "app", "mood"))  # an enum
    reg.learn_type(Type(None, 20003, "app", "_mood"))  # its array type
    reg.learn_type(Type(None, 20004, "app", "mood"))  # a domain over the enum: named after it
    reg.learn_type(Type(None, 20005, "pg_catalog", "_int8"))  # a domain over bigint[]
    assert reg.text_converter(20001)("42") == 42
    assert reg.text_converter(20002)("happy") == "happy"
    assert reg.text_converter(20003)("{sad,happy}") == ["sad", "happy"]
    assert reg.text_converter(20004)("ok") == "ok"
    assert reg.text_converter(20005)("{1,2}") == [1, 2]
    reg.learn_pg_types(
        [(20010, "ts3", "d", "D", OID.TIMESTAMP, 3, 0, ","), (20011, "e", "e", "E", 0, -1, 0, ","),
         (20012, "_e", "b", "A", 0, -1, 20011, ","), (20013, "nested", "d", "D", 20010, -1, 0, ",")]
    )  # fmt: skip
    assert reg.text_converter(20010)("1970-01-01 00:00:01.5") == 1500  # the domain's typmod: millis
    assert reg.text_converter(20013)("1970-01-01 00:00:01.5") == 1500  # domain over a domain
    assert reg.text_converter(20012)("{a,b}") == ["a", "b"]
    assert reg.binary_converter(20011)(b"happy") == "happy"
    assert reg.is_known(20011) and reg.is_known(20012) and not reg.is_known(30000)
    assert "typcategory" in PG_TYPE_QUERY


def test_domain_cycles_are_caught() -> None:
    reg = TypeRegistry()
    reg.register_domain(1, 2)
    reg.register_domain(2, 1)
    with pytest.raises(CdcError):
        reg.text_converter(1)


def rel(*cols: tuple[str, int, int]) -> Relation:
    return Relation(None, 5, "public", "t", "d", tuple(RelationColumn(0, n, o, m) for n, o, m in cols))


def test_row_converter() -> None:
    relation = rel(
        ("id", OID.INT4, -1), ("big", OID.TEXT, -1), ("ts", OID.TIMESTAMPTZ, 0), ("p", OID.POINT, -1)
    )
    conv = TypeRegistry().row_converter(relation)
    row = conv.convert(("1", UNCHANGED, "2024-01-01 00:00:00+00", None))
    assert row == {"id": 1, "big": UNCHANGED, "ts": "2024-01-01T00:00:00Z", "p": None}
    assert split_unchanged(row) == ({"id": 1, "ts": "2024-01-01T00:00:00Z", "p": None}, ("big",))
    assert split_unchanged({"a": 1}) == ({"a": 1}, ())
    assert conv.fallback == ("p",)
    with pytest.raises(CdcError) as info:
        conv.convert(("x", None, None, None))
    assert (
        info.value.kind is ErrorKind.DECODE
        and "'id'" in info.value.message
        and "public.t" in info.value.message
    )
    with pytest.raises(CdcError):
        conv.convert(("1",))


def test_binary_row_converter_takes_text_columns_too() -> None:
    relation = rel(("id", OID.INT4, -1), ("e", 30000, -1))
    conv = TypeRegistry().row_converter(relation, binary=True)
    assert conv.convert((struct.pack(">i", 7), "label")) == {"id": 7, "e": "label"}
    assert conv.convert((None, UNCHANGED)) == {"id": None, "e": UNCHANGED}
    with pytest.raises(CdcError):
        conv.convert((b"\x00", None))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([OID.INT4, OID.FLOAT8, OID.NUMERIC, OID.MONEY, OID.BYTEA, OID.DATE, OID.TIME,
                        OID.TIMETZ,
                        OID.TIMESTAMP, OID.TIMESTAMPTZ, OID.INTERVAL, OID.BIT, OID.BOOL, 1007, 1185]),
       st.text(max_size=30), st.binary(max_size=30))  # fmt: skip
def test_fuzz_converters_raise_only_decode_errors(oid: int, value: str, raw: bytes) -> None:
    for binary_mode, v in ((False, value), (True, raw)):
        conv = TypeRegistry().row_converter(rel(("c", oid, -1)), binary=binary_mode)
        try:
            conv.convert((v,))
        except CdcError as exc:
            assert exc.kind is ErrorKind.DECODE


# ---- binary format -----------------------------------------------------------------------------


def numeric_bytes(digits: list[int], weight: int, sign: int, dscale: int) -> bytes:
    return struct.pack(f">hhHh{len(digits)}h", len(digits), weight, sign, dscale, *digits)


def test_binary_scalars() -> None:
    assert binary(OID.BOOL, b"\x01") is True
    assert binary(OID.INT2, struct.pack(">h", -5)) == -5
    assert binary(OID.INT8, struct.pack(">q", 2**62)) == 2**62
    assert binary(OID.OID, struct.pack(">I", 2**32 - 1)) == 2**32 - 1
    assert binary(OID.FLOAT4, struct.pack(">f", 3.14)) == 3.14
    assert binary(OID.FLOAT4, struct.pack(">f", 1e-45)) == 1e-45  # shortest digits, as Postgres prints
    assert binary(OID.FLOAT4, struct.pack(">f", 0.1)) == 0.1
    assert binary(OID.FLOAT4, struct.pack(">f", 16777217.0)) == 16777216.0
    assert binary(OID.FLOAT8, struct.pack(">d", float("nan"))) == "NaN"
    assert binary(OID.FLOAT8, struct.pack(">d", float("-inf"))) == "-Infinity"
    assert binary(OID.NUMERIC, numeric_bytes([12, 5000], 0, 0, 2)) == "12.50"
    assert binary(OID.NUMERIC, numeric_bytes([100], -1, 0x4000, 2)) == "-0.01"
    assert binary(OID.NUMERIC, numeric_bytes([], 0, 0, 0)) == "0"
    assert binary(OID.NUMERIC, numeric_bytes([1], 2, 0, 0)) == "100000000"
    assert binary(OID.NUMERIC, numeric_bytes([], 0, 0xC000, 0)) == "NaN"
    assert binary(OID.NUMERIC, numeric_bytes([], 0, 0xD000, 0)) == "Infinity"
    assert binary(OID.JSONB, b'\x01{"a": 1}') == '{"a": 1}'
    u = uuid.uuid4()
    assert binary(OID.UUID, u.bytes) == str(u)
    assert binary(OID.MONEY, struct.pack(">q", -123450)) == "-1234.50"
    assert binary(OID.MACADDR, bytes.fromhex("08002b010203")) == "08:00:2b:01:02:03"
    assert binary(OID.INET, bytes([2, 24, 0, 4, 192, 168, 1, 5])) == "192.168.1.5/24"
    assert binary(OID.INET, bytes([2, 32, 0, 4, 10, 0, 0, 1])) == "10.0.0.1"
    assert binary(OID.CIDR, bytes([2, 32, 1, 4, 10, 0, 0, 1])) == "10.0.0.1/32"
    assert binary(OID.INET, bytes([3, 64, 0, 16]) + bytes.fromhex("20010db8" + "00" * 12)) == "2001:db8::/64"
    assert binary(OID.BIT, struct.pack(">i", 10) + bytes([0b10100000, 0b01000000]), 10) == b"\x81\x02"
    assert binary(OID.BIT, struct.pack(">i", 1) + b"\x80", 1) is True
    assert binary(OID.VARBIT, struct.pack(">i", 0)) == b""


def test_binary_temporal() -> None:
    assert binary(OID.DATE, struct.pack(">i", 0)) == pgtime.PG_EPOCH_DAYS
    assert binary(OID.DATE, struct.pack(">i", 2**31 - 1)) == 2**31 - 1
    assert binary(OID.DATE, struct.pack(">i", -(2**31))) == -(2**31)
    assert binary(OID.TIME, struct.pack(">q", 1_500_000)) == 1_500_000
    assert binary(OID.TIME, struct.pack(">q", 1_500_000), 3) == 1500
    assert binary(OID.TIMETZ, struct.pack(">qi", 49_510_500_000, -19800)) == "08:15:10.5Z"
    assert binary(OID.TIMETZ, struct.pack(">qi", pgtime.DAY_US, 0)) == "24:00:00Z"
    assert binary(OID.TIMESTAMP, struct.pack(">q", 0)) == pgtime.PG_EPOCH_US
    assert binary(OID.TIMESTAMP, struct.pack(">q", 2**63 - 1)) == pgtime.TIMESTAMP_POS_INF
    assert binary(OID.TIMESTAMP, struct.pack(">q", -(2**63)), 3) == pgtime.TIMESTAMP_NEG_INF
    assert binary(OID.TIMESTAMPTZ, struct.pack(">q", 1_500_000), 3) == "2000-01-01T00:00:01.500Z"
    assert binary(OID.TIMESTAMPTZ, struct.pack(">q", -(2**63))) == "-infinity"
    assert binary(OID.INTERVAL, struct.pack(">qii", -1, 2, 3)) == 3 * M + 2 * D - 1


def test_binary_arrays() -> None:
    def array(dims: list[int], elems: Sequence[bytes | None], oid: int = OID.INT4) -> bytes:
        head = struct.pack(">iiI", len(dims), int(None in elems), oid)
        head += b"".join(struct.pack(">ii", d, 1) for d in dims)
        body = b"".join(struct.pack(">i", -1) if e is None else struct.pack(">i", len(e)) + e for e in elems)
        return head + body

    i4 = [struct.pack(">i", n) for n in (1, 2, 3, 4)]
    assert binary(1007, array([], [])) == []
    assert binary(1007, array([4], [i4[0], None, i4[2], i4[3]])) == [1, None, 3, 4]
    assert binary(1007, array([2, 2], i4)) == [[1, 2], [3, 4]]
    assert binary(1009, array([2], [b"a", "é".encode()], OID.TEXT)) == ["a", "é"]
    with pytest.raises((ValueError, struct.error)):
        binary(1007, array([5], i4))


def test_unknown_binary_type_is_raw_bytes() -> None:
    assert binary(OID.POINT, b"\x01\x02") == b"\x01\x02"
