"""Avro encoding for the Kafka sink: schemas derived from envelopes, fastavro round trips, wire format.

No schema registry can run on these machines (docs/sinks.md says why), so the registry here is a
dict-backed stand-in with the client's `register` signature; the REST client itself is exercised
against a real HTTP server in tests/contract/test_kafka_sink.py.
"""

from __future__ import annotations

import struct
from typing import Any

import fastavro
import pytest

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, Transaction
from cdc_logs.sinks.kafka_avro import AvroEncoder, avro_name, decode_wire, namespace


class DictRegistry:
    def __init__(self) -> None:
        self.schemas: dict[int, dict[str, Any]] = {}
        self.subjects: dict[str, list[int]] = {}

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        for schema_id, known in self.schemas.items():
            if known == schema:
                self.subjects.setdefault(subject, [])
                if schema_id not in self.subjects[subject]:
                    self.subjects[subject].append(schema_id)
                return schema_id
        schema_id = len(self.schemas) + 1
        self.schemas[schema_id] = schema
        self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id


def event(after: dict[str, Any] | None, before: dict[str, Any] | None = None, op: str = "c") -> ChangeEvent:
    return ChangeEvent(
        op=Op(op),
        source=SourceInfo("postgresql", "app", "shop", "orders", schema="public", ts_ms=5, extra={"lsn": 99}),
        before=before,
        after=after,
        key={"id": (after or before or {})["id"]},
        ts_ms=7,
        transaction=Transaction("767:99", 1, 1),
    )


def encoder() -> tuple[AvroEncoder, DictRegistry]:
    registry = DictRegistry()
    return AvroEncoder(registry), registry  # type: ignore[arg-type]


def test_round_trip_in_the_confluent_wire_format() -> None:
    enc, registry = encoder()
    ev = event({"id": 1, "email": "a@x", "price": 12.5, "ok": True, "tags": ["a"], "note": None})
    key, value = enc(ev, "app.public.orders", ev.key_json())
    assert value[:1] == b"\x00"
    (value_id,) = struct.unpack(">I", value[1:5])
    schema_id, record = decode_wire(value, registry.schemas[value_id])
    assert schema_id == value_id
    assert record["after"] == {
        "id": 1,
        "email": "a@x",
        "price": 12.5,
        "ok": True,
        "tags": '["a"]',
        "note": None,
    }
    assert record["before"] is None and record["op"] == "c" and record["ts_ms"] == 7
    assert record["source"]["lsn"] == 99 and record["source"]["table"] == "orders"
    assert record["transaction"] == {"id": "767:99", "total_order": 1, "data_collection_order": 1}
    assert key is not None
    _key_id, key_record = decode_wire(key, registry.schemas[struct.unpack(">I", key[1:5])[0]])
    assert key_record == {"id": 1}
    assert set(registry.subjects) == {"app.public.orders-value", "app.public.orders-key"}
    assert registry.schemas[value_id]["name"] == "Envelope"
    assert registry.schemas[value_id]["namespace"] == "app.public.orders"


def test_same_shape_reuses_the_schema_and_type_changes_register_a_version() -> None:
    enc, registry = encoder()
    enc(event({"id": 1, "n": 1}), "t", None)
    enc(event({"id": 2, "n": 5}), "t", None)
    assert len(registry.subjects["t-value"]) == 1
    enc(event({"id": 3, "n": 1.5}), "t", None)  # long widens to double
    assert len(registry.subjects["t-value"]) == 2
    value = enc(event({"id": 4, "n": 2}), "t", None)[1]
    _id, record = decode_wire(value, registry.schemas[registry.subjects["t-value"][-1]])
    assert record["after"]["n"] == 2.0


def test_update_and_delete_carry_before() -> None:
    enc, registry = encoder()
    _k, value = enc(event({"id": 1, "v": 2}, before={"id": 1, "v": 1}, op="u"), "t", None)
    _id, record = decode_wire(value, registry.schemas[struct.unpack(">I", value[1:5])[0]])
    assert record["before"] == {"id": 1, "v": 1} and record["after"] == {"id": 1, "v": 2}
    _k, value = enc(event(None, before={"id": 1, "v": 2}, op="d"), "t", None)
    _id, record = decode_wire(value, registry.schemas[struct.unpack(">I", value[1:5])[0]])
    assert record["after"] is None and record["op"] == "d"


def test_names_are_legal_avro() -> None:
    assert namespace("my-app.public.2024_orders") == "my_app.public._2024_orders"
    assert avro_name("order id") == "order_id"
    enc, registry = encoder()
    enc(event({"id": 1, "first name": "x"}), "my-app.public.t", None)
    for schema in registry.schemas.values():
        fastavro.parse_schema(schema)  # raises on an illegal name


def test_decode_wire_refuses_other_framing() -> None:
    with pytest.raises(ValueError):
        decode_wire(b"{}", {"type": "string"})
