"""Debezium JSON records -> ChangeEvent: plain and schema-wrapped, tombstones, metadata, malformed."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from cdc_logs.debezium.decode import Malformed, Skip, decode_key, decode_record
from cdc_logs.envelope import ChangeEvent, Op

# A value as the Debezium 3.6.1 Postgres connector wrote it on the local stack (JSON converter,
# schemas off, provide.transaction.metadata=true, decimal.handling.mode=string).
VALUE: dict[str, Any] = {
    "before": None,
    "after": {"id": 1, "v": "a", "amount": "12.50", "at": "2024-01-02T03:04:05.123000Z", "d": 19724},
    "source": {
        "version": "3.6.1.Final",
        "connector": "postgresql",
        "name": "probe",
        "ts_ms": 1795928570804,
        "snapshot": "false",
        "db": "cdc_test",
        "sequence": '[null,"28515728"]',
        "ts_us": 1795928570804330,
        "ts_ns": 1795928570804330000,
        "schema": "public",
        "table": "orders",
        "txId": 803,
        "lsn": 28515728,
        "xmin": None,
        "origin": None,
        "origin_lsn": None,
    },
    "transaction": {"id": "803:28515728", "total_order": 1, "data_collection_order": 1},
    "op": "c",
    "ts_ms": 1795928570844,
    "ts_us": 1795928570844776,
    "ts_ns": 1795928570844776367,
}
KEY = {"id": 1}


def _wrap(payload: Any) -> bytes:
    return orjson.dumps({"schema": {"type": "struct", "fields": [], "optional": False}, "payload": payload})


def test_plain_value_becomes_a_change_event() -> None:
    event = decode_record(orjson.dumps(KEY), orjson.dumps(VALUE))
    assert isinstance(event, ChangeEvent)
    assert event.op is Op.CREATE
    assert event.key == KEY
    assert event.after == VALUE["after"]
    assert event.before is None
    assert event.source.table == "orders" and event.source.schema == "public"
    assert event.transaction is not None and event.transaction.id == "803:28515728"
    assert event.ts_ms == VALUE["ts_ms"]


def test_serialized_event_keeps_debeziums_fields() -> None:
    event = decode_record(orjson.dumps(KEY), orjson.dumps(VALUE))
    assert isinstance(event, ChangeEvent)
    out = orjson.loads(event.to_json())
    # The producing connector's version survives re-serialization, and so does every source field.
    assert out["source"] == VALUE["source"]
    expected = {k: v for k, v in VALUE.items() if k not in ("ts_us", "ts_ns")}
    assert out == expected  # only the top-level ts_us / ts_ns are dropped (docs/debezium.md)


def test_schema_wrapped_key_and_value_are_unwrapped() -> None:
    wrapped = decode_record(_wrap(KEY), _wrap(VALUE))
    plain = decode_record(orjson.dumps(KEY), orjson.dumps(VALUE))
    assert isinstance(wrapped, ChangeEvent) and isinstance(plain, ChangeEvent)
    assert wrapped.to_dict() == plain.to_dict()
    assert wrapped.key == KEY


@pytest.mark.parametrize("value", [None, _wrap(None)])
def test_tombstones_are_skipped(value: bytes | None) -> None:
    assert decode_record(orjson.dumps(KEY), value) == Skip("tombstone")


@pytest.mark.parametrize("status", ["BEGIN", "END"])
def test_transaction_metadata_records_are_skipped(status: str) -> None:
    meta = {"status": status, "id": "803:28515728", "event_count": None, "data_collections": None, "ts_ms": 1}
    assert decode_record(b'{"id":"803:28515728"}', orjson.dumps(meta)) == Skip("transaction metadata")


def test_delete_and_update_variants() -> None:
    delete = copy.deepcopy(VALUE) | {"op": "d", "before": {"id": 1, "v": None}, "after": None}
    event = decode_record(orjson.dumps(KEY), orjson.dumps(delete))
    assert isinstance(event, ChangeEvent) and event.op is Op.DELETE and event.row == {"id": 1, "v": None}
    # MongoDB sends deletes without `before` unless pre-images are on: still an event.
    mongo_delete = copy.deepcopy(VALUE) | {"op": "d", "before": None, "after": None}
    assert isinstance(decode_record(None, orjson.dumps(mongo_delete)), ChangeEvent)


def _malformed(value: bytes, key: bytes | None = None) -> str:
    result = decode_record(key, value)
    assert isinstance(result, Malformed), result
    return result.reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json {", "value is not JSON"),
        (b"[1, 2]", "not a Debezium envelope object"),
        (b'{"id": 1, "v": "a"}', "no `op` field"),
        (orjson.dumps(VALUE | {"op": "x"}), "unknown op 'x'"),
        (orjson.dumps(VALUE | {"source": None}), "no `source` block"),
        (orjson.dumps(VALUE | {"after": [1, 2]}), "`after` is a list"),
        (orjson.dumps(VALUE | {"after": None}), "op 'c' without `after`"),
        (orjson.dumps(VALUE | {"transaction": {"id": "1"}}), "`transaction` block lacks"),
    ],
)
def test_malformed_values_name_the_reason(value: bytes, reason: str) -> None:
    assert reason in _malformed(value)


def test_malformed_key() -> None:
    assert "key is not JSON" in _malformed(orjson.dumps(VALUE), key=b"\xff\x00")


def test_key_shapes() -> None:
    assert decode_key(None) is None
    assert decode_key(b'{"id": 7}') == {"id": 7}
    assert decode_key(b'"abc"') == {"key": "abc"}  # a bare key (e.g. a custom SMT) keeps its value
    assert decode_key(_wrap({"id": 7})) == {"id": 7}


def test_a_wrapper_lookalike_with_more_fields_is_not_unwrapped() -> None:
    # Only exactly {"schema", "payload"} is the JSON converter's wrapper; a row with those columns is not.
    value = copy.deepcopy(VALUE)
    value["after"] = {"schema": "s", "payload": "p"}
    event = decode_record(None, orjson.dumps(value))
    assert isinstance(event, ChangeEvent) and event.after == {"schema": "s", "payload": "p"}
