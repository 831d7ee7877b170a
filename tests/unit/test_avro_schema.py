"""Connect schema -> Avro, compared with what AvroData itself made of the same schemas.

tests/fixtures/avro/debezium_pg_schemas.json holds the key and value schema blocks (and payloads) the
Debezium 3.6.1 Postgres connector wrote for a table of every common type, before and after an ALTER
TABLE ADD COLUMN (recorded on the stack by record_debezium_schemas.py beside it);
connect_cases.json adds hand-written schemas for what Postgres does not produce (int8, maps, unnamed
structs, Connect's own Date/Time/Timestamp, defaults, docs). avrodata_expected.json is the output of
AvroData (Apicurio's port of Confluent's, the converter behind Debezium's Avro) on both, schemas and
binary datums, made by AvroDataDump.java. Nothing here is hand-computed from our own converter.
"""

from __future__ import annotations

import base64
import decimal
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from cdc_logs.errors import CdcError
from cdc_logs.sinks.avro_schema import avro_datum, avro_fullname, avro_name, connect_to_avro

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "avro"
RECORDED = json.loads((FIXTURES / "debezium_pg_schemas.json").read_text())
CASES = json.loads((FIXTURES / "connect_cases.json").read_text())["cases"]
EXPECTED = json.loads((FIXTURES / "avrodata_expected.json").read_text())


def binary(schema: Any, datum: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), datum)
    return buf.getvalue()


def from_json_converter(schema: dict[str, Any], value: Any) -> Any:
    """A JsonConverter payload in the envelope's own encoding: Connect Decimals are base64 of the
    unscaled integer there, text (docs/envelope.md) in cdc-logs' events; maps with non-string keys are
    [key, value] pairs there, objects in events."""
    if value is None:
        return None
    if schema["type"] == "struct":
        return {f["field"]: from_json_converter(f, value.get(f["field"])) for f in schema["fields"]}
    if schema.get("name") == "org.apache.kafka.connect.data.Decimal":
        unscaled = int.from_bytes(base64.b64decode(value), "big", signed=True)
        return str(decimal.Decimal(unscaled).scaleb(-int(schema["parameters"]["scale"])))
    if schema["type"] == "map" and isinstance(value, list):
        return {k: v for k, v in value}
    return value


@pytest.mark.parametrize("index", range(len(RECORDED["versions"])))
@pytest.mark.parametrize("part", ["key", "value"])
def test_debezium_schema_blocks_convert_as_avrodata_does(index: int, part: str) -> None:
    connect = RECORDED["versions"][index][part]
    expected = EXPECTED["versions"][index]
    assert connect_to_avro(connect) == expected[part]
    payload = from_json_converter(connect, RECORDED["versions"][index][f"{part}_payload"])
    datum = avro_datum(connect, payload)
    assert binary(expected[part], datum) == base64.b64decode(expected[f"{part}_datum"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_other_connect_types_convert_as_avrodata_does(case: dict[str, Any]) -> None:
    (expected,) = [c for c in EXPECTED["cases"] if c["name"] == case["name"]]
    assert connect_to_avro(case["schema"]) == expected["schema"]
    datum = avro_datum(case["schema"], from_json_converter(case["schema"], case["payload"]))
    assert binary(expected["schema"], datum) == base64.b64decode(expected["schema_datum"])


def test_the_alter_adds_an_optional_field_with_default_null() -> None:
    old, new = (connect_to_avro(v["value"]) for v in RECORDED["versions"])
    old_value = old["fields"][0]["type"][1]
    new_value = new["fields"][0]["type"][1]
    added = [f for f in new_value["fields"] if f["name"] not in {g["name"] for g in old_value["fields"]}]
    assert added == [{"name": "c_added", "type": ["null", "string"], "default": None}]
    # Backward compatible: data written with the old schema reads with the new one.
    datum = avro_datum(
        RECORDED["versions"][0]["value"],
        from_json_converter(RECORDED["versions"][0]["value"], RECORDED["versions"][0]["value_payload"]),
    )
    record = fastavro.schemaless_reader(
        io.BytesIO(binary(old, datum)), fastavro.parse_schema(old), fastavro.parse_schema(new)
    )
    assert record["after"]["c_added"] is None and record["after"]["c_text"] == "hello"


def test_envelope_values_in_the_event_encoding() -> None:
    """Row values as readers put them in events (Python objects or their JSON encodings) map to the
    datum AvroData gives for Debezium's JSON payload of the same row."""
    connect = RECORDED["versions"][0]["value"]
    expected = EXPECTED["versions"][0]
    payload = from_json_converter(connect, RECORDED["versions"][0]["value_payload"])
    after = dict(payload["after"])
    after["c_numeric"] = decimal.Decimal(after["c_numeric"])  # a reader's Decimal
    after["c_bytea"] = base64.b64decode(after["c_bytea"])  # a reader's bytes
    after["c_numeric_any"] = "3.14159"  # the envelope's text for a numeric without precision
    datum = avro_datum(connect, {**payload, "after": after})
    assert binary(expected["value"], datum) == base64.b64decode(expected["value_datum"])


def test_names_are_made_legal_as_debezium_avro_adjustment_does() -> None:
    assert avro_name("order id") == "order_id"
    assert avro_name("2024_orders") == "_2024_orders"
    assert avro_fullname("my-app.public.2024-orders.Value") == "my_app.public._2024_orders.Value"
    schema = {
        "type": "struct",
        "name": "my-app.public.t.Value",
        "optional": False,
        "fields": [{"field": "first name", "type": "string", "optional": True}],
    }
    avro = connect_to_avro(schema)
    fastavro.parse_schema(avro)
    assert avro["name"] == "Value" and avro["namespace"] == "my_app.public.t"
    assert avro["connect.name"] == "my_app.public.t.Value"
    assert avro_datum(schema, {"first name": "x"}) == {"first_name": "x"}


def test_colliding_names_are_refused() -> None:
    schema = {
        "type": "struct",
        "name": "t.Value",
        "optional": False,
        "fields": [
            {"field": "a-b", "type": "string", "optional": True},
            {"field": "a_b", "type": "string", "optional": True},
        ],
    }
    with pytest.raises(CdcError, match="both become"):
        connect_to_avro(schema)


def test_required_null_and_special_decimals() -> None:
    required = {"type": "int32", "optional": False}
    with pytest.raises(CdcError, match="required"):
        avro_datum(required, None)
    dec = {
        "type": "bytes",
        "optional": True,
        "name": "org.apache.kafka.connect.data.Decimal",
        "parameters": {"scale": "2"},
    }
    assert avro_datum(dec, "NaN") is None  # Avro decimals have no NaN: null where allowed
    with pytest.raises(CdcError, match="no Avro decimal form"):
        avro_datum({**dec, "optional": False}, "Infinity")


def test_a_decimal_default_in_the_envelope_encoding() -> None:
    """Column defaults come as the envelope encodes values (decimal text); AvroData writes a Decimal
    default as the unscaled two's complement bytes (BigInteger.toByteArray: 150 -> 00 96), ISO-8859-1."""
    column = {
        "type": "bytes",
        "optional": False,
        "name": "org.apache.kafka.connect.data.Decimal",
        "parameters": {"scale": "2"},
        "default": "1.50",
        "field": "price",
    }
    avro = connect_to_avro({"type": "struct", "name": "t.Value", "optional": False, "fields": [column]})
    assert avro["fields"][0]["default"] == "\x00\x96"
    assert connect_to_avro({**column, "default": "AJY="})["connect.default"] == "\x00\x96"  # base64 form


def test_the_per_event_variants_of_the_connect_schema_give_avro_that_holds_the_row() -> None:
    # A 2-D Postgres array and a null in a NOT NULL column (written before SET NOT NULL): the Connect
    # schema's variant for the event (cdc_logs.connect_schema) converts, and the row round-trips.
    from cdc_logs import connect_schema
    from cdc_logs.envelope import ChangeEvent, Op, SourceInfo
    from cdc_logs.schema import Column, TableSchema

    table = TableSchema(
        "d",
        "public",
        "t",
        (
            Column("id", "int32", None, "INTEGER", optional=False, key=True),
            Column("v", "string", None, "TEXT", optional=False),
            Column("nest", "array", None, "INT4[]", element=Column("nest", "int32", None, "INTEGER")),
        ),
    )
    row = {"id": 1, "v": None, "nest": [[1, 2], [None, 4]]}
    source = SourceInfo(
        "postgresql", "p", "d", "t", schema="public", extra={"txId": 1, "lsn": 2, "xmin": None}
    )
    event = ChangeEvent(op=Op.CREATE, source=source, after=row, key={"id": 1}, ts_ms=1, schema=table)
    connect = connect_schema.envelope_schema(event)
    avro = connect_to_avro(connect)
    datum = avro_datum(connect, json.loads(event.to_json()))
    assert (
        fastavro.schemaless_reader(io.BytesIO(binary(avro, datum)), fastavro.parse_schema(avro))["after"]
        == row
    )
