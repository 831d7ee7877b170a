"""Messages from an event bus -> change events: what every bus source (Kafka, Redis Streams, RabbitMQ,
NATS JetStream, MQTT, Pulsar) shares once it has a message's bytes.

A bus message is not a row change, so the source's config says how to read one
(`MessageFormatConfig`, mixed into each bus source's config model):

  message_format   json: the body is one JSON object, the row (the default);
                   debezium: the body is a Debezium envelope (JSON converter, with or without the
                   schema wrapper), taken as it is; avro is the Kafka source's own (a schema registry).
  table            the table the events are about. Default: the channel (topic, stream, queue, subject).
  op_field         a field of the row naming the operation; its value is mapped by `op_values` (default:
                   c/u/d/r and insert/create, update, delete, read/snapshot, case-insensitive). The field
                   stays in the row. Without it every message is an insert (`c`), as the seed's buses are
                   streams of new events.
  key_fields       the row's fields forming the event key (what SQL apply upserts by, what Kafka
                   partitions by). Default: the message's own key when the bus has one (a JSON object is
                   taken as it is, anything else becomes {"key": text}), else no key.
  watermark        {column, type}: the row's event-time field (an ISO-8601 timestamp, epoch
                   milliseconds, or an integer sequence). It becomes `source.ts_ms` (timestamps), which
                   the timestamp_based merge orders by; a message without it keeps the bus's timestamp.

`decode_message` never raises on bad data: a body that is not UTF-8, not JSON, not an object, an op
value it does not know, a missing key field or watermark of the wrong type give an `Undecodable` that
names the problem and the fix, which the pipeline parks in the dead-letter file (with the bytes and the
bus coordinates in `origin`) and moves past, as for any reader.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import Field, model_validator

from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, Undecodable, now_ms
from cdc_logs.position import Position

#: Op spellings understood without configuration (lower-cased before lookup).
DEFAULT_OP_VALUES: dict[str, str] = {
    "c": "c",
    "u": "u",
    "d": "d",
    "r": "r",
    "insert": "c",
    "create": "c",
    "created": "c",
    "update": "u",
    "updated": "u",
    "upsert": "u",
    "delete": "d",
    "deleted": "d",
    "read": "r",
    "snapshot": "r",
}


class WatermarkConfig(ConfigModel):
    """The row's event-time field (the seed's `watermark`)."""

    column: str = Field(
        description="The row field holding the event's time or sequence.", examples=["event_ts"]
    )
    type: Literal["timestamp", "integer"] = Field(
        "timestamp",
        description="timestamp: ISO-8601 text (a zone-less one is UTC) or epoch milliseconds, which becomes "
        "source.ts_ms; integer: a sequence number, kept in source.watermark for ordering.",
        examples=["timestamp"],
    )


class MessageFormatConfig(ConfigModel):
    """How a bus source reads its messages as change events (fields shared by every bus source)."""

    message_format: Literal["json", "avro", "debezium"] = Field(
        "json",
        description="json: each message is a JSON object, the row; debezium: each message is a Debezium "
        "envelope (JSON converter, schemas on or off); avro: Confluent wire format with schemas from "
        "`schema_registry_url` (Kafka only).",
        examples=["json"],
    )
    table: str | None = Field(
        None,
        description="The table name events carry (source.table, topic templates, SQL apply's target). "
        "Default: the channel the message came from (topic, stream, queue or subject).",
        examples=["user_events"],
    )
    op_field: str | None = Field(
        None,
        description="Row field naming the operation (insert/update/delete or c/u/d/r; see `op_values`). "
        "Default: none, every message is an insert (op c).",
        examples=["action"],
    )
    op_values: dict[str, Literal["c", "u", "d", "r"]] = Field(
        default_factory=dict,
        description="Extra spellings of `op_field`'s values, mapped to c/u/d/r (matched case-insensitively, "
        "over the built-in insert/update/delete/c/u/d/r/read/snapshot).",
        examples=[{"ADDED": "c", "MODIFIED": "u", "REMOVED": "d"}],
    )
    key_fields: list[str] = Field(
        default_factory=list,
        description="Row fields forming the event key (SQL apply upserts by it; Kafka partitions by it). "
        "Default: the message's own key where the bus has one, else no key.",
        examples=[["user_id"]],
    )
    watermark: WatermarkConfig | None = Field(
        None,
        description="The row's event-time field: source.ts_ms for timestamps (what the timestamp_based "
        "merge orders by). Default: the bus's own message time.",
        examples=[{"column": "event_timestamp", "type": "timestamp"}],
    )

    @model_validator(mode="after")
    def _debezium_is_whole(self) -> MessageFormatConfig:
        if self.message_format == "debezium" and (self.op_field or self.key_fields or self.table):
            raise ValueError(
                "message_format debezium reads op, key and table from the envelope itself: remove "
                "op_field, key_fields and table"
            )
        return self

    def mapping(self) -> MessageMapping:
        ops = dict(DEFAULT_OP_VALUES)
        ops.update({k.lower(): v for k, v in self.op_values.items()})
        return MessageMapping(
            table=self.table,
            op_field=self.op_field,
            op_values=ops,
            key_fields=tuple(self.key_fields),
            watermark=self.watermark.column if self.watermark else None,
            watermark_type=self.watermark.type if self.watermark else "timestamp",
            debezium=self.message_format == "debezium",
        )


@dataclass(frozen=True, slots=True)
class MessageMapping:
    """The resolved `MessageFormatConfig` (what `decode_message` needs, nothing else)."""

    table: str | None = None
    op_field: str | None = None
    op_values: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_OP_VALUES))
    key_fields: tuple[str, ...] = ()
    watermark: str | None = None
    watermark_type: str = "timestamp"
    debezium: bool = False  # message_format debezium: the body is a whole envelope


@dataclass(frozen=True, slots=True)
class Message:
    """One message as a bus source received it: bytes plus where it came from.

    `channel` is the topic/stream/queue/subject; `db` what `source.db` shows (the broker or
    cluster); `coordinates` the bus's own facts (partition and offset, stream id, delivery tag...),
    added to the `source` block after `table` and to a dead letter's `origin`."""

    body: bytes | None
    channel: str
    db: str
    position: Position
    key: bytes | None = None
    ts_ms: int | None = None  # the bus's own timestamp of the message, if it has one
    coordinates: Mapping[str, Any] = field(default_factory=dict)


def decode_message(
    msg: Message, mapping: MessageMapping, *, connector: str, pipeline: str
) -> ChangeEvent | Undecodable | None:
    """The change event a message stands for, an Undecodable saying why it cannot be one, or None for
    a message that carries no change (a Debezium tombstone or transaction marker: the source acks it)."""
    bad = _bad(msg, mapping)
    if mapping.debezium:
        return _debezium(msg, bad)
    if msg.body is None:
        return bad("the message has no body", "publish JSON objects; an empty message carries no row")
    try:
        row = orjson.loads(msg.body)
    except orjson.JSONDecodeError as exc:
        return bad(f"the body is not JSON ({exc.args[0]})", "publish one JSON object per message")
    if not isinstance(row, dict):
        return bad(
            f"the body is a JSON {type(row).__name__}, not an object", "publish one JSON object per message"
        )
    return decode_row(msg, row, mapping, connector=connector, pipeline=pipeline)


def decode_row(
    msg: Message,
    row: dict[str, Any],
    mapping: MessageMapping,
    *,
    connector: str,
    pipeline: str,
    key: dict[str, Any] | None = None,
) -> ChangeEvent | Undecodable:
    """The change event of a row already decoded from the message's body (JSON by `decode_message`,
    Avro by the Kafka source). `key`: the message key already decoded (Avro); default: `msg.key` read
    as JSON (or text). `key_fields` win over both."""
    bad = _bad(msg, mapping)
    table = mapping.table or msg.channel
    op = Op.CREATE
    if mapping.op_field is not None:
        raw_op = row.get(mapping.op_field)
        if raw_op is None:
            return bad(
                f"the row has no {mapping.op_field!r} field (op_field)",
                "give every message that field, or remove op_field to read all messages as inserts",
            )
        mapped = mapping.op_values.get(str(raw_op).lower())
        if mapped is None:
            return bad(
                f"op_field {mapping.op_field!r} has a value cdc-logs does not know",
                "map it to c/u/d/r with the source's op_values",
            )
        op = Op(mapped)

    event_key: dict[str, Any] | None
    if mapping.key_fields:
        missing = [f for f in mapping.key_fields if f not in row or row[f] is None]
        if missing:
            return bad(
                f"the row lacks key field(s) {missing} (key_fields)",
                "give every message its key fields, or change the source's key_fields",
            )
        event_key = {f: row[f] for f in mapping.key_fields}
    else:
        event_key = key if key is not None else _message_key(msg.key)

    ts_ms = msg.ts_ms if msg.ts_ms is not None else now_ms()
    extra: dict[str, Any] = dict(msg.coordinates)
    if mapping.watermark is not None and mapping.watermark in row and row[mapping.watermark] is not None:
        mark = row[mapping.watermark]
        if mapping.watermark_type == "integer":
            if not isinstance(mark, int) or isinstance(mark, bool):
                return bad(
                    f"watermark {mapping.watermark!r} is not an integer",
                    "publish an integer sequence there, or set watermark.type: timestamp",
                )
            extra["watermark"] = mark
        else:
            parsed = _epoch_ms(mark)
            if parsed is None:
                return bad(
                    f"watermark {mapping.watermark!r} is not an ISO-8601 timestamp or epoch milliseconds",
                    "publish the event time as ISO-8601 text or epoch milliseconds",
                )
            ts_ms = parsed

    source = SourceInfo(connector=connector, name=pipeline, db=msg.db, table=table, ts_ms=ts_ms, extra=extra)
    before, after = (row, None) if op is Op.DELETE else (None, row)
    return ChangeEvent(
        op=op, source=source, before=before, after=after, key=event_key, ts_ms=now_ms(), position=msg.position
    )


def _bad(msg: Message, mapping: MessageMapping) -> Any:
    """An Undecodable for `msg` with a reason and a hint (and the bus coordinates as its origin)."""
    table = mapping.table or msg.channel

    def bad(reason: str, hint: str) -> Undecodable:
        return Undecodable(
            msg.position,
            table,
            reason,
            raw=msg.body,
            hint=hint,
            origin={"channel": msg.channel, **msg.coordinates, **({"key": msg.key} if msg.key else {})},
        )

    return bad


def _debezium(msg: Message, bad: Any) -> ChangeEvent | Undecodable | None:
    from cdc_logs.debezium.decode import Malformed, decode_record

    decoded = decode_record(msg.key, msg.body)
    if isinstance(decoded, ChangeEvent):
        decoded.position = msg.position
        decoded.boundary = True
        return decoded
    if isinstance(decoded, Malformed):
        return bad(decoded.reason, "publish Debezium envelopes (JSON converter), or set message_format: json")
    return None  # Skip: a tombstone or a transaction marker


def _message_key(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"key": raw.decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"key": value}


def _epoch_ms(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)
