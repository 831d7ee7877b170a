"""Avro encoding for the Kafka sink: schemas from the table schema (and the inferred fallback),
fastavro round trips, wire format, schema versions after an ALTER.

The registry here is a dict-backed stand-in with the client's `register` signature, so these tests
check what is registered, not a registry's rules; tests/contract/test_kafka_sink.py runs the sink
against the stack's broker (docs/sinks.md, "Avro", says which registry).
The Connect -> Avro rules themselves are checked against AvroData's output in test_avro_schema.py.
"""

from __future__ import annotations

import decimal
import io
import struct
from typing import Any

import fastavro
import pytest

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, Transaction
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.schema import Column, Semantic, TableSchema
from cdc_logs.sinks.kafka_avro import AvroEncoder, avro_name, decode_wire, namespace


class DictRegistry:
    def __init__(self) -> None:
        self.schemas: dict[int, dict[str, Any]] = {}
        self.subjects: dict[str, list[int]] = {}

    def register(self, subject: str, schema: dict[str, Any], *, text: str | None = None) -> int:
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


def event(
    after: dict[str, Any] | None,
    before: dict[str, Any] | None = None,
    op: str = "c",
    schema: TableSchema | None = None,
) -> ChangeEvent:
    return ChangeEvent(
        op=Op(op),
        source=SourceInfo("postgresql", "app", "shop", "orders", schema="public", ts_ms=5, extra={"lsn": 99}),
        before=before,
        after=after,
        key={"id": (after or before or {})["id"]},
        ts_ms=7,
        transaction=Transaction("767:99", 1, 1),
        schema=schema,
    )


def encoder() -> tuple[AvroEncoder, DictRegistry]:
    registry = DictRegistry()
    return AvroEncoder(registry), registry  # type: ignore[arg-type]


# -- typed: the Avro schema comes from the table schema ------------------------------------------------
COLUMNS = (
    Column("id", "int32", source_type="INT4", optional=False, key=True),
    Column("price", "bytes", Semantic.DECIMAL, "NUMERIC", length=10, scale=2),
    Column("created", "int64", Semantic.MICRO_TIMESTAMP, "TIMESTAMP", length=6),
    Column("note", "string", source_type="TEXT"),
    Column("data", "bytes", source_type="BYTEA"),
    Column("n", "int64", source_type="INT8"),
)
ORDERS = TableSchema("shop", "public", "orders", COLUMNS)
ORDERS_V2 = TableSchema(
    "shop",
    "public",
    "orders",
    (*COLUMNS, Column("added", "string", source_type="VARCHAR", length=20)),
    version=2,
)
ROW = {"id": 1, "price": "12.50", "created": 1709210096789012, "note": None, "data": "AP8Q", "n": 5}


def decoded(registry: DictRegistry, data: bytes) -> tuple[dict[str, Any], Any]:
    schema = registry.schemas[struct.unpack(">I", data[1:5])[0]]
    return schema, decode_wire(data, schema)[1]


def value_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """The Value record's fields, by name, from an Envelope schema."""
    (before,) = [f for f in schema["fields"] if f["name"] == "before"]
    return {f["name"]: f["type"] for f in before["type"][1]["fields"]}


def test_typed_schema_comes_from_the_table_not_the_values() -> None:
    enc, registry = encoder()
    ev = event(ROW, schema=ORDERS)
    key, value = enc(ev, "app.public.orders", ev.key_json())
    schema, record = decoded(registry, value)
    # Debezium's names: <prefix>.<schema>.<table>.Envelope / .Value / .Key, the connector's Source.
    assert (schema["namespace"], schema["name"]) == ("app.public.orders", "Envelope")
    fields = value_fields(schema)
    assert fields["id"] == "int"  # a NOT NULL int4: int, not a nullable long
    assert fields["note"] == ["null", "string"]  # null in the first row, typed by the column
    assert fields["n"] == ["null", "long"]
    assert fields["price"][1]["logicalType"] == "decimal"
    assert (fields["price"][1]["precision"], fields["price"][1]["scale"]) == (10, 2)
    assert fields["created"][1]["connect.name"] == Semantic.MICRO_TIMESTAMP
    assert fields["data"] == ["null", "bytes"]
    after = record["after"]
    assert after["price"] == decimal.Decimal("12.50") and after["data"] == b"\x00\xff\x10"
    assert after["created"] == 1709210096789012 and after["note"] is None and after["n"] == 5
    assert record["source"]["lsn"] == 99 and record["transaction"]["id"] == "767:99"
    assert key is not None
    key_schema, key_record = decoded(registry, key)
    assert (key_schema["name"], key_schema["fields"]) == ("Key", [{"name": "id", "type": "int"}])
    assert key_record == {"id": 1}


def test_typed_values_never_change_the_schema() -> None:
    enc, registry = encoder()
    enc(event(ROW, schema=ORDERS), "t", None)
    enc(event({**ROW, "id": 2, "n": 7, "note": "x"}, schema=ORDERS), "t", None)
    assert len(registry.subjects["t-value"]) == 1


def test_an_alter_registers_a_backward_compatible_version() -> None:
    enc, registry = encoder()
    old = enc(event(ROW, schema=ORDERS), "t", None)[1]
    new = enc(event({**ROW, "id": 2, "added": "new"}, schema=ORDERS_V2), "t", None)[1]
    old_id, new_id = registry.subjects["t-value"]
    assert value_fields(registry.schemas[new_id])["added"] == ["null", "string"]
    (added,) = [f for f in registry.schemas[new_id]["fields"][0]["type"][1]["fields"] if f["name"] == "added"]
    assert added["default"] is None
    assert decode_wire(new, registry.schemas[new_id])[1]["after"]["added"] == "new"
    # A consumer on the new schema reads records written with the old one (BACKWARD).
    record = fastavro.schemaless_reader(
        io.BytesIO(old[5:]),
        fastavro.parse_schema(registry.schemas[old_id]),
        fastavro.parse_schema(registry.schemas[new_id]),
    )
    assert record["after"]["added"] is None and record["after"]["id"] == 1


def test_key_field_keys_by_that_column() -> None:
    enc, registry = encoder()
    ev = event(ROW, schema=ORDERS)
    key, _value = enc(ev, "t", b'{"n": 5}')
    assert key is not None
    schema, record = decoded(registry, key)
    assert schema["fields"] == [{"name": "n", "type": ["null", "long"], "default": None}]
    assert record == {"n": 5}


def test_a_value_that_does_not_fit_its_column_is_rejected() -> None:
    enc, _registry = encoder()
    with pytest.raises(CdcError) as err:
        enc(event({**ROW, "price": "1.234"}, schema=ORDERS), "t", None)  # scale 3 in a scale-2 column
    assert err.value.kind is ErrorKind.SINK_REJECTED


# -- fallback: events without a table schema ---------------------------------------------------------
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


def test_a_logical_decoding_message_is_debeziums_message_value() -> None:
    enc, registry = encoder()
    ev = ChangeEvent(
        op=Op.MESSAGE,
        source=SourceInfo("postgresql", "app", "shop", "", schema=None, ts_ms=5, extra={"lsn": 7}),
        key={"prefix": "audit"},
        ts_ms=7,
        content={"prefix": "audit", "content": "aGk="},
    )
    key, value = enc(ev, "app.message", ev.key_json())
    schema, record = decoded(registry, value)
    assert (schema["namespace"], schema["name"]) == ("io.debezium.connector.postgresql", "MessageValue")
    assert record["op"] == "m" and record["message"] == {"prefix": "audit", "content": b"hi"}
    assert key is not None and decoded(registry, key)[1] == {"prefix": "audit"}
