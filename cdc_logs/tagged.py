"""Tagged JSON scalars: values that are not JSON numbers, kept as text that decodes to the same type.

Used where a database value must survive a JSON round trip exactly, e.g. a polling watermark in the
offset store: "s:" str, "dt:" datetime (ISO-8601), "d:" date, "t:" time, "n:" Decimal, "u:" UUID,
"b:" bytes (hex). Numbers, booleans and null stay bare.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from cdc_logs.errors import CdcError, ErrorKind


def encode_mark(value: Any) -> Any:
    """A watermark value as a JSON scalar that `decode_mark` turns back into the same value."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return "s:" + value
    if isinstance(value, dt.datetime):
        return "dt:" + value.isoformat()
    if isinstance(value, dt.date):
        return "d:" + value.isoformat()
    if isinstance(value, dt.time):
        return "t:" + value.isoformat()
    if isinstance(value, Decimal):
        return "n:" + str(value)
    if isinstance(value, uuid.UUID):
        return "u:" + str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "b:" + bytes(value).hex()
    raise CdcError(
        ErrorKind.UNSUPPORTED,
        f"cannot keep a watermark of type {type(value).__name__} ({value!r})",
        "use a timestamp, date, number or text column as the watermark",
    )


_DECODERS: dict[str, Callable[[str], Any]] = {
    "s": str,
    "dt": dt.datetime.fromisoformat,
    "d": dt.date.fromisoformat,
    "t": dt.time.fromisoformat,
    "n": Decimal,
    "u": uuid.UUID,
    "b": bytes.fromhex,
}


def decode_mark(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    tag, sep, text = value.partition(":")
    if not sep or tag not in _DECODERS:
        raise CdcError(
            ErrorKind.DECODE,
            f"not a polling watermark value: {value!r}",
            'tag it by type: "s:text", "dt:2024-01-31T12:00:00", "n:12.5" (numbers are bare)',
        )
    return _DECODERS[tag](text)
