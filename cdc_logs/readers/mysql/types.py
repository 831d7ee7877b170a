"""MySQL/MariaDB column values -> envelope values, the way Debezium's MySQL connector writes them.

Pure functions, shared by the binlog path (convert.py, values decoded by python-mysql-replication) and
the snapshot path (snapshot.py, values read by PyMySQL over the text protocol), so a row reads the same
whichever way it arrived. The mapping (documented in docs/sources/mysql.md):

  tinyint..bigint (+unsigned), year   -> int (YEAR 0000 -> 0)
  decimal                             -> string "12.50"          (decimal.handling.mode=string)
  float                               -> the shortest decimal that round-trips the 32-bit float
  double                              -> float
  bit(1)                              -> bool;  bit(n>1) -> bytes, little-endian (io.debezium.data.Bits)
  enum / set                          -> string / comma-joined string in definition order ("" if empty)
  char/varchar/text, MariaDB json     -> string;  MySQL json -> its JSON text (io.debezium.data.Json)
  binary/varbinary/blob               -> bytes (base64 in JSON); binary(n) right-padded with 0x00 to n
  date                                -> days since the epoch                (io.debezium.time.Date)
  datetime(0-3) / datetime(4-6)       -> epoch millis / micros, no zone      (Timestamp / MicroTimestamp)
  timestamp(fsp)                      -> ISO-8601 UTC string, fsp digits     (io.debezium.time.ZonedTimestamp)
  time(fsp)                           -> microseconds (may be negative)      (io.debezium.time.MicroTime)
  geometry                            -> {"wkb": bytes, "srid": n}           (...data.geometry.Geometry)

Zero and partly-zero dates ('0000-00-00', '2024-00-10', a zero TIMESTAMP), which some sql_modes allow,
become null in a nullable column and the epoch (0, or "1970-01-01T00:00:00Z") in a NOT NULL one, as
Debezium does. Values python-mysql-replication decodes wrongly are repaired here or, where it loses
information, decoded by binlog_values.py.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import orjson

Converter = Callable[[Any], Any]

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DATE = dt.date(1970, 1, 1)
_FLOAT32 = struct.Struct("<f")


def _micros(delta: dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def decimal_value(value: Decimal) -> str:
    # format "f": str(Decimal) would write small values as "1E-8"; Debezium writes plain digits.
    return format(value, "f")


def float32_value(value: float) -> float:
    """The shortest decimal that reads back as the same 32-bit float (1.1, not 1.100000023841858).

    The binlog carries the float's 4 bytes, the text protocol the server's shortest rendering: both
    become the same number here, as Java's Float.toString makes them in Debezium.
    """
    try:
        single = _FLOAT32.unpack(_FLOAT32.pack(value))[0]
    except (OverflowError, struct.error):
        return value
    for digits in range(1, 10):
        candidate = float(f"{single:.{digits}g}")
        try:
            if _FLOAT32.unpack(_FLOAT32.pack(candidate))[0] == single:
                return candidate
        except OverflowError:  # rounded past the largest float32
            continue
    return single


def bits_from_int(number: int, nbits: int) -> bool | bytes:
    if nbits == 1:
        return bool(number)
    return number.to_bytes((nbits + 7) // 8, "little")


def bit_from_binlog(text: str, nbits: int) -> bool | bytes:
    """python-mysql-replication gives BIT as a string of '0'/'1', most significant first."""
    return bits_from_int(int(text, 2), nbits)


def bit_from_text(raw: bytes, nbits: int) -> bool | bytes:
    """PyMySQL gives BIT as big-endian bytes."""
    return bits_from_int(int.from_bytes(raw, "big"), nbits)


def set_value(members: Iterable[str] | str | None, definition: list[str] | None) -> str:
    """A SET as Debezium writes it: the members in definition order, joined by commas.

    Text from the server is in definition order already; it is kept as it is when the definition
    does not know a member (the snapshot reads the definition from information_schema, which is
    utf8mb3: a 4-byte member such as an emoji reads there as '?').
    """
    if members is None:
        return ""
    chosen = set(members.split(",")) if isinstance(members, str) else set(members)
    chosen.discard("")
    if definition and chosen <= set(definition):
        return ",".join(m for m in definition if m in chosen)
    if isinstance(members, str):
        return members
    return ",".join(sorted(chosen))


def date_value(value: dt.date | str | None, nullable: bool = True) -> int | None:
    """Days since the epoch. A zero date ('0000-00-00', '2024-00-10', year 0) arrives as None (binlog)
    or as its text (text protocol): null in a nullable column, the epoch (0) in a NOT NULL one."""
    if not isinstance(value, dt.date):
        return None if nullable else 0
    return (value - _EPOCH_DATE).days


def datetime_value(value: dt.datetime | str | None, fsp: int, nullable: bool = True) -> int | None:
    """DATETIME has no zone: epoch millis for fsp 0-3, micros for 4-6 (Debezium's adaptive mode)."""
    if not isinstance(value, dt.datetime):
        return None if nullable else 0
    micros = _micros(value.replace(tzinfo=None) - _EPOCH)
    return micros // 1000 if fsp <= 3 else micros


def timestamp_value(value: dt.datetime | str | None, fsp: int, nullable: bool = True) -> str | None:
    """TIMESTAMP is stored in UTC; the value given must be the UTC wall time (naive or aware).

    The zero TIMESTAMP is stored as 0 seconds since the epoch, which no real TIMESTAMP can be (the
    range starts at 1970-01-01 00:00:01): the library decodes it as 1970-01-01 00:00:00, the text
    protocol as the text '0000-00-00 00:00:00'. Null in a nullable column, the epoch otherwise.
    """
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if not isinstance(value, dt.datetime) or value.replace(microsecond=0) == _EPOCH:
        if nullable:
            return None
        value = _EPOCH
    # Formatted by hand: strftime drops the leading zeros of years before 1000.
    text = f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    text += f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    if fsp > 0:
        text += "." + f"{value.microsecond:06d}"[:fsp]
    return text + "Z"


def time_value(value: dt.timedelta | None) -> int | None:
    return _micros(value) if isinstance(value, dt.timedelta) else None


def year_value(value: int) -> int:
    """The binlog stores YEAR as the year - 1900 in one byte, 0 meaning the year 0000; the library
    adds 1900 to every value, so 0000 arrives as 1900 (which YEAR cannot hold: its range is 1901-2155)."""
    return 0 if value == 1900 else value


def geometry_value(raw: bytes | None) -> dict[str, Any] | None:
    """MySQL stores geometry as a 4-byte little-endian SRID followed by the WKB."""
    if raw is None:
        return None
    raw = bytes(raw)
    if len(raw) < 4:
        return {"wkb": raw, "srid": None}
    return {"wkb": raw[4:], "srid": int.from_bytes(raw[:4], "little")}


def json_text(value: Any) -> str | None:
    """MySQL binary JSON decoded by the library -> JSON text (keys and strings may be bytes)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(_unbytes(value)).decode()


def _unbytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_unbytes(k): _unbytes(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_unbytes(v) for v in value]
    return value


def binary_value(value: bytes | str, length: int = 0) -> bytes:
    """A BINARY/VARBINARY/BLOB value as bytes; BINARY(n) (`length` n) right-padded with 0x00 to n.

    The binlog drops BINARY's trailing 0x00 padding (SELECT keeps it), so an all-zero value arrives
    empty; and the library returns an empty binary value as the str '' (it "decodes" it with the
    charset `binary`, and Python decodes b'' without looking the codec up).
    """
    value = value.encode("latin-1") if isinstance(value, str) else bytes(value)
    if len(value) < length:
        value += b"\x00" * (length - len(value))
    return value


def pad_binary(value: bytes | str | None, length: int) -> bytes | None:
    """BINARY(n) is stored right-padded with 0x00; the binlog drops the padding, SELECT keeps it."""
    return None if value is None else binary_value(value, length)
