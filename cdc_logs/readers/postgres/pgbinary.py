"""Postgres binary send/recv formats -> the same values the text converters produce.

Used when the stream is started with `binary 'true'` (pgoutput then sends every column whose type has
a send function as 'b'). Each factory takes the column's type modifier and returns bytes -> value.
Formats (Postgres `*_send` functions, all big-endian): integers and floats as is; numeric as base-10000
digits; date as int32 days and time/timestamp as int64 µs since 2000-01-01 (int max/min = infinity);
timetz adds int32 seconds west of UTC; interval is int64 µs, int32 days, int32 months; money is an
int64 in cents; bit strings an int32 bit count then the bits; arrays a header then length-prefixed
elements. Wrong lengths raise struct.error/ValueError, which the row converter reports as DECODE.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from typing import Any, Final

from cdc_logs.readers.postgres import pgtime

BinaryConverter = Callable[[bytes], Any]

_I16 = struct.Struct(">h").unpack
_I32 = struct.Struct(">i").unpack
_I64 = struct.Struct(">q").unpack
_U32 = struct.Struct(">I").unpack
_F4 = struct.Struct(">f").unpack
_F8 = struct.Struct(">d").unpack
_F4_PACK = struct.Struct(">f").pack
_TIMETZ = struct.Struct(">qi").unpack
_INTERVAL = struct.Struct(">qii").unpack
_NUMERIC_HEAD = struct.Struct(">hhHh").unpack_from
_ARRAY_HEAD = struct.Struct(">iiI").unpack_from
_I32_FROM = struct.Struct(">i").unpack_from
_INT32_MAX, _INT32_MIN = 2**31 - 1, -(2**31)
_INT64_MAX, _INT64_MIN = 2**63 - 1, -(2**63)
_INF = float("inf")


def _bool(b: bytes) -> bool:
    if b == b"\x01":
        return True
    if b == b"\x00":
        return False
    raise ValueError(f"bad bool {b!r}")


def _float(f: float) -> float | str:
    if f != f:
        return "NaN"
    if f == _INF:
        return "Infinity"
    if f == -_INF:
        return "-Infinity"
    return f


def _float4(b: bytes) -> float | str:
    # A float4 widened to double reads 3.140000104904175; Postgres prints the shortest decimal that
    # reads back as the same float4 ("3.14"), and so do we (the text path then agrees).
    f = _F4(b)[0]
    if f != f or abs(f) == _INF:
        return _float(f)
    for digits in range(1, 10):
        short = float(f"{f:.{digits}g}")
        try:
            if _F4_PACK(short) == b:
                return short
        except OverflowError:  # rounded past the largest float4 (3.4028235e38 -> 3.402824e38)
            continue
    return f


def _numeric(b: bytes) -> str:
    ndigits, weight, sign, dscale = _NUMERIC_HEAD(b, 0)
    if sign == 0xC000:
        return "NaN"
    if sign == 0xD000:
        return "Infinity"
    if sign == 0xF000:
        return "-Infinity"
    if sign not in (0, 0x4000) or len(b) != 8 + 2 * ndigits or dscale < 0:
        raise ValueError("bad numeric")
    value = 0
    for digit in struct.unpack_from(f">{ndigits}h", b, 8):
        value = value * 10_000 + digit
    exp10 = 4 * (weight - ndigits + 1) + dscale  # value * 10**exp10 is the number * 10**dscale
    scaled = value * 10**exp10 if exp10 >= 0 else value // 10 ** (-exp10)
    text = str(scaled).rjust(dscale + 1, "0")
    if dscale:
        text = f"{text[:-dscale]}.{text[-dscale:]}"
    return "-" + text if sign == 0x4000 and scaled else text


def _utf8(b: bytes) -> str:
    return b.decode()


def _jsonb(b: bytes) -> str:
    if b[:1] != b"\x01":
        raise ValueError("unknown jsonb binary version")
    return b[1:].decode()


def _uuid(b: bytes) -> str:
    if len(b) != 16:
        raise ValueError("bad uuid")
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _date(b: bytes) -> int:
    days = _I32(b)[0]
    if days == _INT32_MAX:
        return pgtime.DATE_POS_INF
    if days == _INT32_MIN:
        return pgtime.DATE_NEG_INF
    return days + pgtime.PG_EPOCH_DAYS


def _time(typmod: int) -> BinaryConverter:
    if pgtime.precision_of(typmod) <= 3:
        return lambda b: _I64(b)[0] // 1000
    return lambda b: _I64(b)[0]


def _timetz(b: bytes) -> str:
    us, zone = _TIMETZ(b)  # zone: seconds west of UTC
    if us == pgtime.DAY_US and zone == 0:
        return "24:00:00Z"
    return pgtime.format_zoned_time((us + zone * 1_000_000) % pgtime.DAY_US)


def _timestamp_us(b: bytes) -> int | None:
    us = _I64(b)[0]
    return None if us in (_INT64_MAX, _INT64_MIN) else us + pgtime.PG_EPOCH_US


def _timestamp(typmod: int) -> BinaryConverter:
    millis = pgtime.precision_of(typmod) <= 3

    def convert(b: bytes) -> int:
        us = _timestamp_us(b)
        if us is None:
            return pgtime.TIMESTAMP_POS_INF if _I64(b)[0] > 0 else pgtime.TIMESTAMP_NEG_INF
        return us // 1000 if millis else pgtime.clamp_int64(us)

    return convert


def _timestamptz(typmod: int) -> BinaryConverter:
    precision = pgtime.precision_of(typmod)

    def convert(b: bytes) -> str:
        us = _timestamp_us(b)
        if us is None:
            return "infinity" if _I64(b)[0] > 0 else "-infinity"
        return pgtime.format_zoned_timestamp(us, precision)

    return convert


def _interval(b: bytes) -> int:
    us, days, months = _INTERVAL(b)
    return pgtime.interval_us(months, days, us)


def _money(b: bytes) -> str:
    cents = _I64(b)[0]  # lc_monetary with 2 fraction digits (C and most locales)
    whole, frac = divmod(abs(cents), 100)
    return f"{'-' if cents < 0 else ''}{whole}.{frac:02d}"


def _ipv6_text(raw: bytes) -> str:
    """An IPv6 address as Postgres prints it: like Python, except that IPv4-mapped ('::ffff:1.2.3.4')
    and IPv4-compatible addresses ('::1.2.3.4': 96 zero bits, then not 0.0.x.x) end in dotted IPv4
    (inet_net_ntop_ipv6 in Postgres's src/backend/utils/adt/inet_net_ntop.c)."""
    if raw[:10] == bytes(10) and (
        raw[10:12] == b"\xff\xff" or (raw[10:12] == b"\0\0" and raw[12:14] != b"\0\0")
    ):
        return f"::{'ffff:' if raw[10] else ''}{ipaddress.IPv4Address(raw[12:])}"
    return str(ipaddress.IPv6Address(raw))


def _inet(cidr: bool) -> BinaryConverter:
    def convert(b: bytes) -> str:
        family, bits, _is_cidr, size = b[0], b[1], b[2], b[3]
        if (family, size) not in ((2, 4), (3, 16)) or len(b) != 4 + size:
            raise ValueError("bad inet")
        addr = str(ipaddress.IPv4Address(b[4:])) if family == 2 else _ipv6_text(b[4:])
        return f"{addr}/{bits}" if cidr or bits != size * 8 else addr

    return convert


def _macaddr(b: bytes) -> str:
    if len(b) not in (6, 8):
        raise ValueError("bad macaddr")
    return b.hex(":")


def _bits(typmod: int) -> BinaryConverter:
    def convert(b: bytes) -> Any:
        nbits = _I32_FROM(b, 0)[0]
        data = b[4:]
        if nbits < 0 or len(data) != (nbits + 7) // 8:
            raise ValueError("bad bit string")
        n = int.from_bytes(data, "big") >> (len(data) * 8 - nbits)
        if typmod == 1:
            return bool(n)
        return n.to_bytes((n.bit_length() + 7) // 8, "little")

    return convert


def binary_array(element: BinaryConverter) -> BinaryConverter:
    """array_send: int32 ndim, int32 has-nulls, uint32 element oid, ndim x (int32 size, int32 lbound),
    then each element as int32 length (-1 = NULL) + bytes, in row-major order."""

    def convert(b: bytes) -> list[Any]:
        ndim, _flags, _elem = _ARRAY_HEAD(b, 0)
        if ndim == 0:
            return []
        if not 0 < ndim <= 6:
            raise ValueError(f"bad array dimensions {ndim}")
        sizes = [_I32_FROM(b, 12 + 8 * i)[0] for i in range(ndim)]
        pos = 12 + 8 * ndim
        total = 1
        for size in sizes:
            total *= size
        if total < 0 or total > len(b):
            raise ValueError("bad array size")
        flat: list[Any] = []
        for _ in range(total):
            (length,) = _I32_FROM(b, pos)
            pos += 4
            if length == -1:
                flat.append(None)
                continue
            if length < 0 or pos + length > len(b):
                raise ValueError("array element runs past the end")
            flat.append(element(b[pos : pos + length]))
            pos += length
        if pos != len(b):
            raise ValueError("trailing bytes after array")
        for size in reversed(sizes[1:]):
            flat = [flat[i : i + size] for i in range(0, len(flat), size)]
        return flat

    return convert


def _same(fn: BinaryConverter) -> Callable[[int], BinaryConverter]:
    return lambda _typmod: fn


#: type oid -> factory(typmod) -> converter. OIDs as in types.OID.
BINARY_FACTORIES: Final[dict[int, Callable[[int], BinaryConverter]]] = {
    16: _same(_bool),
    17: _same(bytes),
    18: _same(lambda b: b.decode("latin-1")),  # "char"
    19: _same(_utf8),
    20: _same(lambda b: _I64(b)[0]),
    21: _same(lambda b: _I16(b)[0]),
    23: _same(lambda b: _I32(b)[0]),
    25: _same(_utf8),
    26: _same(lambda b: _U32(b)[0]),
    114: _same(_utf8),
    142: _same(_utf8),
    650: lambda _t: _inet(True),
    700: _same(_float4),
    701: _same(lambda b: _float(_F8(b)[0])),
    774: _same(_macaddr),
    790: _same(_money),
    829: _same(_macaddr),
    869: lambda _t: _inet(False),
    1042: _same(_utf8),
    1043: _same(_utf8),
    1082: _same(_date),
    1083: _time,
    1114: _timestamp,
    1184: _timestamptz,
    1186: _same(_interval),
    1266: _same(_timetz),
    1560: _bits,
    1562: _bits,
    1700: _same(_numeric),
    2950: _same(_uuid),
    3802: _same(_jsonb),
}
