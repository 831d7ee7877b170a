"""Bus messages -> change events (cdc_logs.readers.messages): the mapping every bus source shares."""

from __future__ import annotations

import orjson
import pytest

from cdc_logs.envelope import ChangeEvent, Op, Undecodable
from cdc_logs.position import KafkaOffsets
from cdc_logs.readers.messages import Message, MessageFormatConfig, decode_message

POS = KafkaOffsets(server="cluster", offsets=(("t:0", 5),), partition="t:0")


def _msg(body: object, *, key: bytes | None = None, ts_ms: int | None = 1_700_000_000_000) -> Message:
    raw = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    return Message(
        raw, "user_events", "kafka", POS, key=key, ts_ms=ts_ms, coordinates={"partition": 0, "offset": 4}
    )


def _decode(cfg: dict[str, object], msg: Message) -> ChangeEvent | Undecodable | None:
    return decode_message(msg, MessageFormatConfig(**cfg).mapping(), connector="kafka", pipeline="p")


def test_plain_json_row_is_an_insert_keyed_by_the_message_key() -> None:
    event = _decode({}, _msg({"id": 7, "name": "a"}, key=b'{"id": 7}'))
    assert isinstance(event, ChangeEvent)
    assert event.op is Op.CREATE and event.after == {"id": 7, "name": "a"} and event.before is None
    assert event.key == {"id": 7}
    assert event.source.table == "user_events" and event.source.ts_ms == 1_700_000_000_000
    assert event.source.extra == {"partition": 0, "offset": 4}
    assert event.position == POS


def test_op_field_key_fields_table_and_watermark() -> None:
    cfg = {
        "table": "users",
        "op_field": "action",
        "op_values": {"REMOVED": "d"},
        "key_fields": ["user_id"],
        "watermark": {"column": "ts", "type": "timestamp"},
    }
    event = _decode(cfg, _msg({"user_id": 3, "action": "removed", "ts": "2026-01-02T03:04:05.5Z"}))
    assert isinstance(event, ChangeEvent)
    assert event.op is Op.DELETE and event.after is None and event.before is not None
    assert event.key == {"user_id": 3} and event.source.table == "users"
    assert event.source.ts_ms == 1_767_323_045_500
    upd = _decode(cfg, _msg({"user_id": 3, "action": "UPDATE", "ts": 1_000}))
    assert isinstance(upd, ChangeEvent) and upd.op is Op.UPDATE and upd.source.ts_ms == 1_000


@pytest.mark.parametrize(
    ("cfg", "body", "reason"),
    [
        ({}, b"\xff\xfe", "not JSON"),
        ({}, b"[1, 2]", "JSON list, not an object"),
        ({}, None, "no body"),
        ({"op_field": "action"}, {"id": 1}, "no 'action' field"),
        ({"op_field": "action"}, {"id": 1, "action": "merge"}, "value cdc-logs does not know"),
        ({"key_fields": ["id"]}, {"name": "x"}, "lacks key field"),
        ({"watermark": {"column": "ts"}}, {"ts": "yesterday"}, "not an ISO-8601"),
        ({"watermark": {"column": "n", "type": "integer"}}, {"n": "7"}, "not an integer"),
    ],
)
def test_bad_messages_are_undecodable_with_the_reason_and_origin(
    cfg: dict[str, object], body: object, reason: str
) -> None:
    out = _decode(cfg, _msg(body, key=b"k1"))
    assert isinstance(out, Undecodable)
    assert reason in out.reason and out.hint
    assert out.position == POS and out.table == "user_events"
    assert out.origin == {"channel": "user_events", "partition": 0, "offset": 4, "key": b"k1"}


def test_a_value_is_never_echoed_in_the_reason() -> None:
    out = _decode({"op_field": "action"}, _msg({"id": 1, "action": "secret-op-4711"}))
    assert isinstance(out, Undecodable) and "4711" not in out.reason


def test_debezium_format_takes_the_envelope_whole() -> None:
    value = {
        "before": None,
        "after": {"id": 1},
        "source": {"connector": "postgresql", "name": "x", "db": "d", "schema": "public", "table": "t"},
        "op": "c",
        "ts_ms": 1,
    }
    event = _decode({"message_format": "debezium"}, _msg(value, key=b'{"id": 1}'))
    assert isinstance(event, ChangeEvent) and event.source.table == "t" and event.key == {"id": 1}
    assert _decode({"message_format": "debezium"}, _msg(None)) is None  # tombstone
    assert isinstance(_decode({"message_format": "debezium"}, _msg({"op": "c"})), Undecodable)
    with pytest.raises(ValueError, match="reads op, key and table from the envelope"):
        MessageFormatConfig(message_format="debezium", op_field="x")
