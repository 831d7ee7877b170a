"""cdc_logs.connect_schema: the JsonConverter schema of events built from their TableSchema.

The exact equality with Debezium's schemas is tests/integration/test_debezium_schema_block.py; these
check the structure, the rules of the module docstring and the cache.
"""

from __future__ import annotations

import orjson
import pytest

from cdc_logs import connect_schema as cs
from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, Transaction
from cdc_logs.errors import CdcError
from cdc_logs.schema import Column, Semantic, TableSchema

TABLE = TableSchema(
    "shop",
    "public",
    "orders",
    (
        Column("id", "int32", None, "INTEGER", optional=False, key=True),
        Column("price", "string", None, "NUMERIC", 10, 2),
        Column("ratio", "float32", None, "REAL"),
        Column("weight", "float64", None, "DOUBLE PRECISION", default=1.5),
        Column("at", "int64", Semantic.MICRO_TIMESTAMP, "TIMESTAMP", 6),
        Column("mood", "string", Semantic.ENUM, "ENUM", enum_values=("sad", "ok")),
        Column("tags", "array", None, "INT4[]", element=Column("tags", "int32", None, "INTEGER")),
        Column("doc", "string", Semantic.JSON, "JSONB"),
    ),
)


def _event(op: Op = Op.CREATE, **kw: object) -> ChangeEvent:
    source = SourceInfo(
        "postgresql",
        "pipe",
        "shop",
        "orders",
        schema="public",
        ts_ms=5,
        extra={"txId": 7, "lsn": 8, "xmin": None},
    )
    row = {
        "id": 1,
        "price": "1.50",
        "ratio": 0.5,
        "weight": 2.0,
        "at": 1,
        "mood": "ok",
        "tags": [1],
        "doc": "{}",
    }
    defaults: dict[str, object] = {
        "op": op,
        "source": source,
        "after": row,
        "key": {"id": 1},
        "ts_ms": 9,
        "transaction": Transaction("7:8", 1, 1),
        "schema": TABLE,
    }
    defaults.update(kw)
    return ChangeEvent(**defaults)  # type: ignore[arg-type]


def _fields(schema: dict) -> dict[str, dict]:
    return {f["field"]: f for f in schema["fields"]}


def test_key_schema_names_the_key_columns() -> None:
    assert cs.key_schema(_event()) == {
        "type": "struct",
        "fields": [{"type": "int32", "optional": False, "field": "id"}],
        "optional": False,
        "name": "pipe.public.orders.Key",
    }
    assert cs.key_schema(_event(), "shop")["name"] == "shop.public.orders.Key"  # type: ignore[index]
    assert cs.key_schema(_event(key=None)) is None


def test_value_struct_columns_types_semantics_and_defaults() -> None:
    fields = _fields(cs.value_struct(_event()))
    assert list(fields) == [c.name for c in TABLE.columns]
    assert fields["id"] == {"type": "int32", "optional": False, "field": "id"}
    assert fields["price"] == {"type": "string", "optional": True, "field": "price"}  # decimal mode string
    assert fields["ratio"]["type"] == "float" and fields["weight"]["type"] == "double"
    assert fields["weight"]["default"] == 1.5
    assert fields["at"] == {
        "type": "int64",
        "optional": True,
        "name": "io.debezium.time.MicroTimestamp",
        "version": 1,
        "field": "at",
    }
    assert fields["mood"]["parameters"] == {"allowed": "sad,ok"}
    assert fields["tags"]["items"] == {"type": "int32", "optional": True}
    assert fields["doc"]["name"] == "io.debezium.data.Json"


def test_envelope_has_debeziums_fields_and_names() -> None:
    schema = cs.envelope_schema(_event())
    assert schema["name"] == "pipe.public.orders.Envelope" and schema["version"] == 2
    fields = _fields(schema)
    assert list(fields) == ["before", "after", "source", "transaction", "op", "ts_ms"]
    assert fields["before"]["name"] == fields["after"]["name"] == "pipe.public.orders.Value"
    assert fields["source"]["name"] == "io.debezium.connector.postgresql.Source"
    assert [f["field"] for f in fields["source"]["fields"]] == [
        "version", "connector", "name", "ts_ms", "snapshot", "db", "schema", "table", "txId", "lsn", "xmin",
    ]  # fmt: skip
    assert fields["transaction"]["name"] == "event.block"


def test_the_schema_describes_every_payload_field() -> None:
    event = _event(unchanged=("doc",), after={"id": 1})
    record = orjson.loads(cs.envelope_record(event))
    assert record["payload"] == orjson.loads(event.to_json())
    fields = _fields(record["schema"])
    assert set(record["payload"]) <= set(fields)
    assert set(record["payload"]["source"]) <= {f["field"] for f in fields["source"]["fields"]}
    # unchanged columns are absent from `after`: optional in this event's row struct
    assert fields["unchanged"]["type"] == "array"
    assert _fields(fields["after"])["doc"]["optional"] is True


def test_unchanged_not_null_column_becomes_optional_only_for_that_event() -> None:
    table = TableSchema("d", "public", "t", (Column("id", "int32", optional=False, key=True),
                                             Column("big", "string", optional=False)))  # fmt: skip
    plain = cs.value_struct(_event(schema=table))
    toasted = cs.value_struct(_event(schema=table, unchanged=("big",)))
    assert _fields(plain)["big"]["optional"] is False
    assert _fields(toasted)["big"]["optional"] is True


def test_records_are_the_jsonconverter_form() -> None:
    event = _event()
    value = orjson.loads(cs.envelope_record(event, "shop"))
    assert value == cs.with_schema(orjson.loads(event.to_json()), cs.envelope_schema(event, "shop"))
    key = orjson.loads(cs.key_record(event, "shop", event.key) or b"")
    assert key == {"schema": cs.key_schema(event, "shop"), "payload": {"id": 1}}
    assert cs.key_record(event, "shop", None) is None


def test_schemas_are_cached_per_table_version() -> None:
    first, second = _event(), _event(after={"id": 2})
    assert cs.envelope_schema(first) is cs.envelope_schema(second)
    other = TableSchema("shop", "public", "orders", TABLE.columns[:2])
    assert cs.envelope_schema(_event(schema=other)) is not cs.envelope_schema(first)


def test_an_event_without_a_table_schema_is_refused_with_the_fix() -> None:
    with pytest.raises(CdcError) as err:
        cs.envelope_record(_event(schema=None))
    assert "schemas: false" in (err.value.hint or "")
    assert "value.converter.schemas.enable=true" in (err.value.hint or "")


def test_key_field_outside_the_table_is_refused() -> None:
    with pytest.raises(CdcError, match="not in its table schema"):
        cs.key_schema(_event(), columns=("nope",))


def test_mysql_and_sqlite_sources() -> None:
    mysql = SourceInfo(
        "mariadb", "p", "test", "t", extra={"server_id": 1, "gtid": None, "file": "b.1", "pos": 4, "row": 0}
    )
    schema = cs.source_schema(_event(source=mysql))
    assert schema["name"] == "io.debezium.connector.mariadb.Source"
    fields = _fields(schema)
    assert "schema" not in fields and fields["table"]["optional"] is True
    assert fields["row"]["type"] == "int32" and fields["pos"]["type"] == "int64"
    sqlite = SourceInfo("sqlite", "p", "app.db", "t", schema="main", extra={"change_id": 3})
    assert cs.source_schema(_event(source=sqlite))["name"] == "cdc_logs.connector.sqlite.Source"


def test_message_events_use_debeziums_message_value() -> None:
    event = _event(
        op=Op.MESSAGE,
        after=None,
        key={"prefix": "p"},
        schema=None,
        content={"prefix": "p", "content": "AA=="},
    )
    record = orjson.loads(cs.envelope_record(event))
    assert record["schema"]["name"] == "io.debezium.connector.postgresql.MessageValue"
    assert set(record["payload"]) == {f["field"] for f in record["schema"]["fields"]}
    assert cs.key_schema(event)["name"] == "io.debezium.connector.postgresql.MessageKey"  # type: ignore[index]


def test_a_before_with_only_the_key_makes_absent_not_null_columns_optional() -> None:
    # Postgres delete under REPLICA IDENTITY DEFAULT: only the key is sent
    table = TableSchema("d", "public", "k", (Column("id", "int32", optional=False, key=True),
                                             Column("req", "string", optional=False)))  # fmt: skip
    full = _event(schema=table, after={"id": 1, "req": "x"})
    delete = _event(op=Op.DELETE, schema=table, before={"id": 1}, after=None)
    assert _fields(cs.value_struct(full))["req"]["optional"] is False
    record = orjson.loads(cs.envelope_record(delete))
    before = {f["field"]: f for f in record["schema"]["fields"]}["before"]
    assert _fields(before)["req"]["optional"] is True and _fields(before)["id"]["optional"] is False
    assert record["payload"]["before"] == {"id": 1}
    assert "unchanged" not in {f["field"] for f in record["schema"]["fields"]}
