"""Rows events' row images, parsed here instead of by python-mysql-replication (same values).

The library parses a WRITE/UPDATE/DELETE_ROWS event's rows lazily (`event.rows`) through a wrapper
that reads the packet a few bytes at a time: a method call, a `struct.unpack` and a slice per value,
a string built and parsed again per DECIMAL. On the MariaDB -> Kafka path that was ~40% of the binlog
stream's CPU (docs/benchmarks.md, Profile). `RowImages` reads the same bytes from one buffer, with
each table's column layout worked out once per TABLE_MAP definition.

It returns exactly what `event.rows` would: the same dicts (`values` and `none_sources`, or their
`before_`/`after_` pairs), the same Python values (`Decimal`, `datetime`, `timedelta`, the same
decoded text, including binlog_values' corrections to the library), the same reasons for a None. So
everything after it (convert.py's converters, keys, schemas) is unchanged, and
tests/integration/test_mysql_row_images.py compares the two parsers on a real server's binlog for
every supported type, NULLs, zero dates and partial row images.

It covers the types a table usually has: the integers, FLOAT, DOUBLE, DECIMAL, CHAR/VARCHAR/TEXT
and their binary forms, DATE, DATETIME, TIMESTAMP, TIME, YEAR, ENUM, SET and BIT. A table with any
other column (JSON, GEOMETRY, the pre-5.6 temporal formats) keeps the library's parser, as does any
event this module cannot read cleanly: `rows()` returns None, never a guess, and the library then
parses the event itself (nothing here consumes its packet).
"""

from __future__ import annotations

import codecs
import datetime as dt
import struct
from decimal import Decimal
from typing import Any, Final

from pymysqlreplication.constants import FIELD_TYPE, NONE_SOURCE
from pymysqlreplication.row_event import DeleteRowsEvent, RowsEvent, UpdateRowsEvent, WriteRowsEvent

from cdc_logs.readers.mysql.binlog_values import time2_micros

# Column kinds, in the order the hot loop tests them.
(_LONG, _VARSTR, _DECIMAL, _LONGLONG, _SHORT, _TINY, _INT24, _DOUBLE, _FLOAT, _DATETIME2,
 _TIMESTAMP2, _DATE, _TIME2, _YEAR, _ENUM, _SET, _BIT) = range(17)  # fmt: skip

_U8 = struct.Struct("<B").unpack_from
_I8 = struct.Struct("<b").unpack_from
_U16 = struct.Struct("<H").unpack_from
_I16 = struct.Struct("<h").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_I64 = struct.Struct("<q").unpack_from
_F32 = struct.Struct("<f").unpack_from
_F64 = struct.Struct("<d").unpack_from
_BE_I32 = struct.Struct(">i").unpack_from
_BE_U32 = struct.Struct(">I").unpack_from

_FIXED: Final = {
    FIELD_TYPE.TINY: _TINY,
    FIELD_TYPE.SHORT: _SHORT,
    FIELD_TYPE.INT24: _INT24,
    FIELD_TYPE.LONG: _LONG,
    FIELD_TYPE.LONGLONG: _LONGLONG,
    FIELD_TYPE.FLOAT: _FLOAT,
    FIELD_TYPE.DOUBLE: _DOUBLE,
    FIELD_TYPE.YEAR: _YEAR,
    FIELD_TYPE.DATE: _DATE,
}
_DECIMAL_BYTES: Final = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)  # bytes for 0..8 leftover digits
_EPOCH: Final = dt.datetime(1970, 1, 1)
# The library's reasons for a None (`none_sources`), as it words them.
_NULL, _COLS_BITMAP, _OUT_OF_DATE = NONE_SOURCE.NULL, NONE_SOURCE.COLS_BITMAP, NONE_SOURCE.OUT_OF_DATE_RANGE
_OUT_OF_DATETIME2, _EMPTY_SET = NONE_SOURCE.OUT_OF_DATETIME2_RANGE, NONE_SOURCE.EMPTY_SET


class _Unsupported(Exception):
    """A column this parser does not read: the table keeps the library's parser."""


def _fraction(buf: bytes, pos: int, fsp: int) -> int:
    """Microseconds of a DATETIME2/TIMESTAMP2 fraction (the library's __read_fsp, signed as it reads it)."""
    size = (fsp + 1) // 2
    value = int.from_bytes(buf[pos : pos + size], "big", signed=True)
    if fsp % 2:
        value = int(value / 10)
    return value * 10 ** (6 - fsp)


def _column(column: Any, errors: str) -> tuple[Any, ...]:
    """One column's layout: (name, kind, arguments...) for the row loop."""
    kind = column.type
    name = column.name
    if not name:
        raise _Unsupported("no column name")
    if kind in _FIXED:
        return (name, _FIXED[kind], bool(column.unsigned))
    if kind in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING, FIELD_TYPE.BLOB):
        if kind == FIELD_TYPE.BLOB:
            prefix = int(column.length_size)
            if not 1 <= prefix <= 4:
                raise _Unsupported("BLOB length size")
        else:
            prefix = 2 if column.max_length > 255 else 1
        charset = column.character_set_name
        if charset is None:
            codec: str | None = "utf-8"
        else:
            codec = RowsEvent.charset_to_encoding(charset)  # binlog_values' corrected mapping
            try:
                codecs.lookup(codec)
            except LookupError:
                codec = None  # the library keeps the bytes of a charset Python does not know (binary)
        return (name, _VARSTR, prefix, codec, errors)
    if kind == FIELD_TYPE.NEWDECIMAL:
        precision, decimals = int(column.precision), int(column.decimals)
        integral = precision - decimals
        if integral < 0 or decimals < 0:
            raise _Unsupported("DECIMAL metadata")
        parts = (
            _DECIMAL_BYTES[integral % 9],
            integral // 9,
            decimals // 9,
            _DECIMAL_BYTES[decimals % 9],
            decimals % 9,
        )
        total = parts[0] + 4 * parts[1] + 4 * parts[2] + parts[3]
        return (name, _DECIMAL, parts, total)
    if kind in (FIELD_TYPE.DATETIME2, FIELD_TYPE.TIMESTAMP2, FIELD_TYPE.TIME2):
        fsp = int(column.fsp or 0)
        if not 0 <= fsp <= 6:
            raise _Unsupported("fractional seconds precision")
        code = {FIELD_TYPE.DATETIME2: _DATETIME2, FIELD_TYPE.TIMESTAMP2: _TIMESTAMP2}.get(kind, _TIME2)
        return (name, code, fsp)
    if kind == FIELD_TYPE.ENUM:
        if not column.enum_values or not 1 <= int(column.size) <= 2:
            raise _Unsupported("ENUM without members")  # the library's None has no reason of its own
        return (name, _ENUM, int(column.size), list(column.enum_values))
    if kind == FIELD_TYPE.SET:
        if not 1 <= int(column.size) <= 8:
            raise _Unsupported("SET size")
        return (name, _SET, int(column.size), list(column.set_values or ()))
    if kind == FIELD_TYPE.BIT:
        nbytes, bits = int(column.bytes), int(column.bits)
        if nbytes < 1:
            raise _Unsupported("BIT(0)")
        first = bits if nbytes == 1 else (bits % 8 or 8)
        return (name, _BIT, nbytes, first)
    raise _Unsupported(f"column type {kind}")


class RowImages:
    """The row parser of one table definition (one TABLE_MAP's column list)."""

    __slots__ = ("_columns", "_count", "_ignore_decode_errors")

    def __init__(self, columns: list[tuple[Any, ...]], ignore_decode_errors: bool) -> None:
        self._columns = columns
        self._count = len(columns)
        self._ignore_decode_errors = ignore_decode_errors

    @classmethod
    def for_columns(cls, columns: Any, *, ignore_decode_errors: bool = False) -> RowImages | None:
        """The parser for these library columns, or None when one of them is not covered."""
        try:
            layout = [_column(c, "ignore" if ignore_decode_errors else "strict") for c in columns]
        except Exception:  # whatever it cannot lay out, the library still parses
            return None
        return cls(layout, ignore_decode_errors)

    def rows(self, event: Any) -> list[dict[str, Any]] | None:
        """`event.rows`, parsed here; None when this event must be left to the library (an event type
        or packet state this parser does not handle, or bytes it cannot read: the library then
        raises or reads them as it always has)."""
        try:
            kind = type(event)
            if kind is not WriteRowsEvent and kind is not UpdateRowsEvent and kind is not DeleteRowsEvent:
                return None  # MySQL 8's partial JSON updates carry more than row images
            if bool(event._ignore_decode_errors) != self._ignore_decode_errors:
                return None
            buf, end = _payload(event)
            if buf is None or len(event.columns) != self._count:
                return None
            update = kind is UpdateRowsEvent
            present = event.columns_present_bitmap
            after_present = event.columns_present_bitmap2 if update else b""
            nulls, after_nulls = _null_bitmap_size(present), _null_bitmap_size(after_present)  # per event
            out: list[dict[str, Any]] = []
            pos = 0
            while pos < end:
                began = pos
                values, sources, pos = self._image(buf, pos, present, nulls)
                if update:
                    after, after_sources, pos = self._image(buf, pos, after_present, after_nulls)
                    out.append(
                        {
                            "before_values": values,
                            "before_none_sources": sources,
                            "after_values": after,
                            "after_none_sources": after_sources,
                        }
                    )
                else:
                    out.append({"values": values, "none_sources": sources})
                if pos == began:
                    return None  # an image of no bytes (no column present): it would never end
            if pos != end:
                return None
            return out
        except (ValueError, IndexError, OverflowError, struct.error, UnicodeError, ArithmeticError):
            return None
        except LookupError:  # a codec that is not a text codec: the library keeps the bytes
            return None

    def _image(
        self, buf: bytes, pos: int, present: bytes, nulls: int
    ) -> tuple[dict[str, Any], dict[str, str], int]:
        """One row image: the null bitmap (one bit per present column), then the non-null values."""
        nulls_at = pos
        pos += nulls
        if pos > len(buf):
            raise ValueError("truncated null bitmap")
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        index = 0  # among the present columns
        for i, spec in enumerate(self._columns):
            name = spec[0]
            if not present[i >> 3] & (1 << (i & 7)):
                values[name] = None
                sources[name] = _COLS_BITMAP
                continue
            if buf[nulls_at + (index >> 3)] & (1 << (index & 7)):
                index += 1
                values[name] = None
                sources[name] = _NULL
                continue
            index += 1
            kind = spec[1]
            if kind == _LONG:
                value = (_U32 if spec[2] else _I32)(buf, pos)[0]
                pos += 4
            elif kind == _VARSTR:
                prefix = spec[2]
                if prefix == 1:
                    length = buf[pos]
                elif prefix == 2:
                    length = _U16(buf, pos)[0]
                else:
                    length = int.from_bytes(buf[pos : pos + prefix], "little")
                start = pos + prefix
                pos = start + length
                if pos > len(buf):
                    raise ValueError("string past the end")
                raw = buf[start:pos]
                # A charset Python has no codec for (binary): the bytes, but '' for none, as
                # bytes.decode() returns without looking the codec up.
                value = raw.decode(spec[3], spec[4]) if spec[3] is not None else (raw or "")
            elif kind == _DECIMAL:
                value = _decimal(buf, pos, spec[2], spec[3])
                pos += spec[3]
            elif kind == _LONGLONG:
                value = (_U64 if spec[2] else _I64)(buf, pos)[0]
                pos += 8
            elif kind == _SHORT:
                value = (_U16 if spec[2] else _I16)(buf, pos)[0]
                pos += 2
            elif kind == _TINY:
                value = (_U8 if spec[2] else _I8)(buf, pos)[0]
                pos += 1
            elif kind == _INT24:
                value = int.from_bytes(buf[pos : pos + 3], "little", signed=not spec[2])
                if len(buf) < pos + 3:
                    raise ValueError("truncated INT24")
                pos += 3
            elif kind == _DOUBLE:
                value = _F64(buf, pos)[0]
                pos += 8
            elif kind == _FLOAT:
                value = _F32(buf, pos)[0]
                pos += 4
            elif kind == _DATETIME2:
                value, pos = _datetime2(buf, pos, spec[2])
                if value is None:
                    sources[name] = _OUT_OF_DATETIME2
            elif kind == _TIMESTAMP2:
                seconds = _BE_I32(buf, pos)[0]
                value = _EPOCH + dt.timedelta(seconds=seconds)
                pos += 4
                fsp = spec[2]
                if fsp:
                    micros = _fraction(buf, pos, fsp)
                    pos += (fsp + 1) // 2
                    if micros > 0:
                        value = value.replace(microsecond=micros)
            elif kind == _DATE:
                packed = int.from_bytes(buf[pos : pos + 3], "little")
                pos += 3
                year, month, day = (packed >> 9) & 0x7FFF, (packed >> 5) & 0xF, packed & 0x1F
                if packed == 0 or year == 0 or month == 0 or day == 0:
                    value = None
                    sources[name] = _OUT_OF_DATE
                else:
                    value = dt.date(year, month, day)
            elif kind == _TIME2:
                size = 3 + (spec[2] + 1) // 2
                if len(buf) < pos + size:
                    raise ValueError("truncated TIME")
                value = dt.timedelta(microseconds=time2_micros(buf[pos : pos + size], spec[2]))
                pos += size
            elif kind == _YEAR:
                value = buf[pos] + 1900
                pos += 1
            elif kind == _ENUM:
                size = spec[2]
                value = spec[3][int.from_bytes(buf[pos : pos + size], "little")]
                pos += size
            elif kind == _SET:
                size = spec[2]
                mask = int.from_bytes(buf[pos : pos + size], "little")
                if len(buf) < pos + size:
                    raise ValueError("truncated SET")
                pos += size
                members = {m for bit, m in enumerate(spec[3]) if mask & (1 << bit)}
                if members:
                    value = members
                else:
                    value = None
                    sources[name] = _EMPTY_SET
            else:  # _BIT
                nbytes, first = spec[2], spec[3]
                if len(buf) < pos + nbytes:
                    raise ValueError("truncated BIT")
                value = format(buf[pos] & ((1 << first) - 1), f"0{first}b") + "".join(
                    format(b, "08b") for b in buf[pos + 1 : pos + nbytes]
                )
                pos += nbytes
            values[name] = value
        if pos > len(buf):
            raise ValueError("row past the end")
        return values, sources, pos


def _null_bitmap_size(present: bytes) -> int:
    """Bytes of a row image's null bitmap, as the library sizes it: the bits set in the whole
    columns-present bitmap (one null bit per present column)."""
    return (int.from_bytes(present, "little").bit_count() + 7) >> 3


def _payload(event: Any) -> tuple[bytes | None, int]:
    """The event's unread bytes (its rows) and their length, without consuming them; (None, 0) when the
    packet is not in the state the library leaves a rows event in after reading its header."""
    if not getattr(event, "complete", False) or getattr(event, "_processed", True) is False:
        return None, 0
    if getattr(event, "_RowsEvent__rows", None) is not None:
        return None, 0  # the library has parsed them already (its packet is read to the end)
    wrapper = event.packet
    if getattr(wrapper, "_BinLogPacketWrapper__data_buffer", None) != b"":
        return None, 0
    packet = wrapper.packet
    data, start = getattr(packet, "_data", None), getattr(packet, "_position", None)
    if type(data) is not bytes or type(start) is not int:
        return None, 0
    length = int(event.event_size) - int(wrapper.read_bytes)
    if length < 0 or start + length > len(data):
        return None, 0
    return data[start : start + length], length


def _datetime2(buf: bytes, pos: int, fsp: int) -> tuple[dt.datetime | None, int]:
    """DATETIME(fsp): 5 bytes big-endian (sign, year*13+month, day, hour, minute, second), then the
    fraction; None (and the fraction skipped) for a date Python cannot hold, as the library does."""
    if len(buf) < pos + 5:
        raise ValueError("truncated DATETIME")
    packed = (_BE_U32(buf, pos)[0] << 8) | buf[pos + 4]
    pos += 5
    year_month = (packed >> 22) & 0x1FFFF
    try:
        value = dt.datetime(
            year_month // 13,
            year_month % 13,
            (packed >> 17) & 0x1F,
            (packed >> 12) & 0x1F,
            (packed >> 6) & 0x3F,
            packed & 0x3F,
        )
    except ValueError:
        return None, pos + (fsp + 1) // 2
    if fsp:
        micros = _fraction(buf, pos, fsp)
        pos += (fsp + 1) // 2
        if micros > 0:
            value = value.replace(microsecond=micros)
    return value, pos


def _decimal(buf: bytes, pos: int, parts: tuple[int, int, int, int, int], size: int) -> Decimal:
    """DECIMAL(p, s) in MySQL's binary form: groups of 9 digits in 4 bytes big-endian, the leftover
    digits at both ends in fewer bytes, the sign in the top bit and every byte inverted when negative.
    Built as the library builds it (the same text, so the same `Decimal`)."""
    head, whole_int, whole_frac, tail, tail_digits = parts
    first = buf[pos]
    negative = not first & 0x80
    mask = -1 if negative else 0
    data = bytes((first ^ 0x80,)) + buf[pos + 1 : pos + size]
    if len(data) != size:
        raise ValueError("truncated DECIMAL")
    text = "-" if negative else ""
    at = 0
    if head:
        text += str(int.from_bytes(data[:head], "big", signed=True) ^ mask)
        at = head
    for _ in range(whole_int):
        text += f"{_BE_I32(data, at)[0] ^ mask:09d}"
        at += 4
    text += "."
    for _ in range(whole_frac):
        text += f"{_BE_I32(data, at)[0] ^ mask:09d}"
        at += 4
    if tail:
        text += f"{int.from_bytes(data[at : at + tail], 'big', signed=True) ^ mask:0{tail_digits}d}"
    return Decimal(text)
