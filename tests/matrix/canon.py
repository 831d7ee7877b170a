"""Typed comparison: every way a value can come back (a database driver, an envelope's JSON encoding,
SQLite text) turned into one canonical Python value per logical kind, so source and target compare
exactly (a timestamp is a timestamp, whether it came back as 1704067200123000 µs, an ISO string or
a datetime; a decimal keeps all its digits; a float32 compares at its own precision).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal
from typing import Any

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DATE = dt.date(1970, 1, 1)
_UNIT_US = {"ms": 1000, "us": 1}


def _datetime(value: Any, unit: str) -> dt.datetime:
    if isinstance(value, int):
        return _EPOCH + dt.timedelta(microseconds=value * _UNIT_US[unit])
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    raise TypeError(f"not a timestamp: {value!r}")


def _date(value: Any, unit: str = "days") -> dt.date:
    if isinstance(value, int) and unit == "ts_us":  # a date held in a timestamp (Oracle DATE)
        return (_EPOCH + dt.timedelta(microseconds=value)).date()
    if isinstance(value, int):
        return _EPOCH_DATE + dt.timedelta(days=value)
    if isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise TypeError(f"not a date: {value!r}")


def _time_us(value: Any, unit: str) -> int:
    if isinstance(value, int):
        return value * _UNIT_US[unit]
    if isinstance(value, dt.timedelta):
        return (value.days * 86400 + value.seconds) * 10**6 + value.microseconds
    if isinstance(value, str):
        value = dt.time.fromisoformat(value.replace("Z", ""))
    if isinstance(value, dt.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 10**6 + value.microsecond
    raise TypeError(f"not a time: {value!r}")


def _bytes(value: Any, envelope: bool) -> bytes:
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return base64.b64decode(value) if envelope else value.encode("latin-1")
    if isinstance(value, bytes):
        return value
    raise TypeError(f"not bytes: {value!r}")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("0", "1", "true", "false", "t", "f"):
        return value.lower() in ("1", "true", "t")
    raise TypeError(f"not a boolean: {value!r}")


def _decimal(value: Any, scale: int | None) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"a decimal came back as a float ({value!r}): digits may be lost")
    number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    return number.quantize(Decimal(1).scaleb(-scale)) if scale is not None else number.normalize()


def canon(kind: str, value: Any, *, unit: str = "us", envelope: bool = False, scale: int | None = 3) -> Any:
    """`value` as the canonical Python value of logical `kind` (None stays None)."""
    if value is None:
        return None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            raise TypeError(f"not an integer: {value!r}")
        return int(value)
    if kind == "bool":
        return _bool(value)
    if kind == "dec":
        return _decimal(value, scale)
    if kind == "float":
        return round(float(value), 9)
    if kind == "text":
        if not isinstance(value, str):
            raise TypeError(f"not text: {value!r}")
        return value
    if kind == "date":
        return _date(value, unit)
    if kind == "ts":
        return _datetime(value, unit)
    if kind == "time":
        return _time_us(value, unit)
    if kind == "bytes":
        return _bytes(value, envelope)
    if kind == "json":
        return json.loads(value) if isinstance(value, str | bytes) else value
    raise ValueError(f"unknown kind {kind}")


def canon_row(
    row: dict[str, Any], kinds: dict[str, tuple[str, str]], *, envelope: bool, decimal: Any = None
) -> dict[str, Any]:
    """Canonical form of a row (only the columns in `kinds`); `decimal` decodes Debezium's precise
    decimals when the source writes them that way."""
    out: dict[str, Any] = {}
    for name, (kind, unit) in kinds.items():
        value = row.get(name)
        if kind == "dec" and envelope and decimal is not None and value is not None:
            value = decimal(value)
        out[name] = canon(kind, value, unit=unit, envelope=envelope)
    return out
