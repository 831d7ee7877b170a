"""Postgres values at the limits of their types, text and binary format alike (found by the type torture
test, tests/integration/test_postgres_types.py, which checks them against the server)."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc_logs.envelope import dumps
from cdc_logs.readers.postgres import pgtime
from cdc_logs.readers.postgres.types import OID, TypeRegistry

REG = TypeRegistry()
INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)


def text(oid: int, value: str, typmod: int = -1) -> Any:
    return REG.text_converter(oid, typmod)(value)


def binary(oid: int, value: bytes, typmod: int = -1) -> Any:
    return REG.binary_converter(oid, typmod)(value)


def test_the_largest_float4_in_binary_format() -> None:
    # 3.4028235e38 has shortest forms that round past the largest float4: they must be skipped
    assert binary(OID.FLOAT4, bytes.fromhex("7f7fffff")) == 3.4028235e38
    assert binary(OID.FLOAT4, bytes.fromhex("ff7fffff")) == -3.4028235e38
    assert text(OID.FLOAT4, "3.4028235e+38") == 3.4028235e38


@pytest.mark.parametrize(
    ("value", "months", "days", "micros", "expected"),
    [
        ("178000000 years", 2_136_000_000, 0, 0, INT64_MAX),
        ("-178000000 years", -2_136_000_000, 0, 0, INT64_MIN),
        ("-2147483648 days", 0, -(2**31), 0, INT64_MIN),
        ("2562047788:00:54.775807", 0, 0, INT64_MAX, INT64_MAX),
        ("1 mon 1 day 00:00:01", 1, 1, 1_000_000, 2_716_201_000_000),
    ],
)
def test_intervals_beyond_int64_are_its_bounds(
    value: str, months: int, days: int, micros: int, expected: int
) -> None:
    assert text(OID.INTERVAL, value) == expected
    assert binary(OID.INTERVAL, struct.pack(">qii", micros, days, months)) == expected
    assert orjson.loads(dumps({"v": expected})) == {"v": expected}  # writable


def test_timestamps_past_the_last_int64_microsecond_are_its_bound() -> None:
    last = "294247-01-10 04:00:54.775807"  # the last µs since 1970 an int64 holds
    assert text(OID.TIMESTAMP, last) == INT64_MAX
    assert text(OID.TIMESTAMP, "294276-12-31 23:59:59.999999") == INT64_MAX
    assert text(OID.TIMESTAMP, "294276-12-31 23:59:59.999999", 3) == 9_224_318_015_999_999  # ms fit
    pg_max = (9_224_318_015_999_999_999 - pgtime.PG_EPOCH_US).to_bytes(8, "big", signed=True)
    assert binary(OID.TIMESTAMP, pg_max) == INT64_MAX
    assert text(OID.TIMESTAMP, "4713-01-01 00:00:00 BC") == -2_440_550 * pgtime.DAY_US  # the minimum fits


@pytest.mark.parametrize(
    ("address", "bits", "expected"),
    [
        ("::ffff:1.2.3.4", 128, "::ffff:1.2.3.4"),
        ("::ffff:1.2.3.0", 120, "::ffff:1.2.3.0/120"),
        ("::1.2.3.4", 128, "::1.2.3.4"),
        ("::ffff:0.0.0.0", 128, "::ffff:0.0.0.0"),
        ("::0.0.1.2", 128, "::102"),  # 112 zero bits: not written as IPv4 (as Postgres)
        ("::1", 128, "::1"),
        ("::", 128, "::"),
        ("2001:db8::ff00:42:8329", 64, "2001:db8::ff00:42:8329/64"),
    ],
)
def test_ipv6_in_binary_format_prints_as_postgres_does(address: str, bits: int, expected: str) -> None:
    raw = bytes([3, bits, 0, 16]) + ipaddress.IPv6Address(address).packed
    assert binary(OID.INET, raw) == expected


@given(st.binary(min_size=16, max_size=16))
def test_ipv6_text_is_a_valid_address(raw: bytes) -> None:
    printed = binary(OID.INET, bytes([3, 128, 0, 16]) + raw)
    assert ipaddress.IPv6Address(printed).packed == raw
