"""A Redis stream entry (a field map) -> the bytes `decode_message` reads.

An entry is not one body but field/value pairs, so `entry_format` says which part is the message:

  auto    the `data_field` (default `data`, else a `payload` field) when the entry has it: its value is
          the body (a JSON object, or a Debezium envelope); otherwise the whole field map is the row.
  field   always the `data_field`; an entry without it is a poison message (dead-lettered).
  fields  always the whole field map, every value as text (Redis stores bytes only): `XADD events *
          user_id 42 action login` is the row {"user_id": "42", "action": "login"}.

`key_field` names a field holding the message key (as `key` written by cdc-logs' own redis_stream
sink), used when `key_fields` is not set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

EntryFormat = Literal["auto", "field", "fields"]
AUTO_FIELDS = ("data", "payload")


@dataclass(frozen=True, slots=True)
class EntryReading:
    """How entries are read (the resolved config)."""

    format: EntryFormat = "auto"
    data_field: str | None = None  # None: `data`, and in auto mode also `payload`
    key_field: str | None = None


@dataclass(frozen=True, slots=True)
class Body:
    body: bytes | None
    key: bytes | None = None
    problem: str | None = None  # why the entry has no body this format accepts
    hint: str | None = None


def body_of(fields: dict[bytes, bytes], reading: EntryReading) -> Body:
    """The message body (and key) an entry stands for."""
    key = fields.get(reading.key_field.encode()) if reading.key_field else None
    if reading.format != "fields":
        names = (reading.data_field,) if reading.data_field else AUTO_FIELDS
        for name in names:
            value = fields.get(name.encode())
            if value is not None:
                return Body(value, key)
        if reading.format == "field":
            return Body(
                None,
                key,
                f"the entry has no {' or '.join(repr(n) for n in names)} field (data_field)",
                "publish the message in that field, or set entry_format: fields (the field map is the row)",
            )
    row: dict[str, str] = {}
    for raw_name, raw_value in fields.items():
        try:
            row[raw_name.decode()] = raw_value.decode()
        except UnicodeDecodeError:
            return Body(
                None,
                key,
                "a field name or value is not UTF-8 text",
                "publish text values, or put a JSON object in one field and set data_field",
            )
    if reading.key_field:
        row.pop(reading.key_field, None)
    return Body(orjson.dumps(row), key)
