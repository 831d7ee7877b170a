"""Pure decoding of Debezium Kafka records (JSON converter) into ChangeEvents.

A record value is Debezium's envelope, either plain (`value.converter.schemas.enable=false`) or wrapped
as `{"schema": {...}, "payload": {...}}` (the JSON converter's default); keys likewise. Outcomes:

- a `ChangeEvent` (key parsed as the event key: Debezium keys are the primary-key struct);
- `Skip`: a tombstone (null value, written after each delete for log compaction) or a transaction
  metadata record (`{"status": "BEGIN"|"END", ...}` on `<prefix>.transaction`); the consumer moves its
  position past it and emits nothing;
- `Malformed`: anything else (not JSON, not an envelope, unknown op) with the reason, for the
  dead-letter destination.

Nothing here does I/O, so every case is unit-tested without Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from cdc_logs.debezium.schema import table_schema
from cdc_logs.envelope import ChangeEvent, Op

_OPS = {op.value for op in Op}


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str  # "tombstone" | "transaction metadata"


@dataclass(frozen=True, slots=True)
class Malformed:
    reason: str


Decoded = ChangeEvent | Skip | Malformed


def unwrap(data: Any) -> Any:
    """Strip the JSON converter's schema wrapper when present."""
    if isinstance(data, dict) and set(data) == {"schema", "payload"}:
        return data["payload"]
    return data


def _parse(raw: bytes, what: str) -> Any:
    return unwrap(_load(raw, what))


def _load(raw: bytes, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(
            f"{what} is not JSON ({exc}); is the connector's converter the JsonConverter?"
        ) from exc


def _schema_of(data: Any) -> Any:
    return data.get("schema") if isinstance(data, dict) and set(data) == {"schema", "payload"} else None


def decode_key(raw: bytes | None) -> dict[str, Any] | None:
    """The record key as the event key: a struct stays a dict, a bare value becomes `{"key": v}`."""
    if raw is None:
        return None
    key = _parse(raw, "key")
    if key is None or isinstance(key, dict):
        return key
    return {"key": key}


def decode_record(key: bytes | None, value: bytes | None) -> Decoded:
    """Decode one Debezium record (key and value bytes as read from Kafka)."""
    if value is None:
        return Skip("tombstone")
    try:
        whole = _load(value, "value")
    except ValueError as exc:
        return Malformed(str(exc))
    data = unwrap(whole)
    if data is None:
        return Skip("tombstone")  # a schema-wrapped null
    if not isinstance(data, dict):
        return Malformed(f"value is a JSON {type(data).__name__}, not a Debezium envelope object")
    if "op" not in data and data.get("status") in ("BEGIN", "END") and "id" in data:
        return Skip("transaction metadata")
    problem = _envelope_problem(data)
    if problem:
        return Malformed(problem)
    try:
        whole_key = _load(key, "key") if key is not None else None
    except ValueError as exc:
        return Malformed(str(exc))
    event_key = unwrap(whole_key)
    if event_key is not None and not isinstance(event_key, dict):
        event_key = {"key": event_key}
    try:
        event = ChangeEvent.from_dict(data, key=event_key)
    except (KeyError, TypeError, ValueError) as exc:
        return Malformed(f"cannot read the envelope: {type(exc).__name__}: {exc}")
    version = data["source"].get("version")
    if version is not None:
        # Keep the producing connector's version ("3.6.1.Final"): the event was made by Debezium, and
        # `extra` is written over SourceInfo's own default (cdc-logs' version) when serialized.
        event.source.extra["version"] = version
    src = event.source
    event.schema = table_schema(_schema_of(whole), _schema_of(whole_key), src.db, src.schema, src.table)
    return event


def _envelope_problem(data: dict[str, Any]) -> str | None:
    op = data.get("op")
    if op is None:
        return "no `op` field: not a Debezium change event (an ExtractNewRecordState-unwrapped row?)"
    if op not in _OPS:
        return f"unknown op {op!r} (expected one of {', '.join(sorted(_OPS))})"
    if not isinstance(data.get("source"), dict):
        return "no `source` block"
    for part in ("before", "after"):
        if data.get(part) is not None and not isinstance(data[part], dict):
            return f"`{part}` is a {type(data[part]).__name__}, not a row object"
    # Only inserts and snapshot reads must carry a row: Debezium's MongoDB connector sends deletes
    # without `before` and updates without `after` unless pre/post images are configured.
    if op in ("c", "r") and data.get("after") is None:
        return f"op {op!r} without `after`"
    tx = data.get("transaction")
    if tx is not None and not (
        isinstance(tx, dict) and {"id", "total_order", "data_collection_order"} <= set(tx)
    ):
        return "`transaction` block lacks id/total_order/data_collection_order"
    return None
