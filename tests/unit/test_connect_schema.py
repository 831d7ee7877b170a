"""cdc_logs.connect_schema: the JsonConverter schema of events built from their TableSchema.

The exact equality with Debezium's schemas is tests/integration/test_debezium_schema_block.py; these
check the structure, the rules of the module docstring and the cache.
"""

from __future__ import annotations

import orjson
import pytest

from cdc_logs import connect_schema as cs
from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, Transaction
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.schema import Column, Semantic, TableSchema
from tests.jsonconverter import conforms_record

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
    plain = cs.value_struct(_event(schema=table, after={"id": 1, "big": "x"}))
    toasted = cs.value_struct(_event(schema=table, after={"id": 1}, unchanged=("big",)))
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


# -- values the table version's schema cannot describe as it is -------------------------------------
RACE = TableSchema(
    "d",
    "public",
    "race",
    (
        Column("id", "int32", None, "INTEGER", optional=False, key=True),
        Column("v", "string", None, "TEXT", optional=False),  # NOT NULL added after the row was written
        Column("w", "int32", None, "INTEGER", default=42),
        Column("nest", "array", None, "INT4[]", element=Column("nest", "int32", None, "INTEGER")),
    ),
)


def test_a_null_in_a_not_null_column_makes_it_optional_in_that_events_schema() -> None:
    # The catalog is read when the reader sees the table: a row written before `SET NOT NULL` (a
    # lagging reader, a replay) carries a null the newer catalog forbids; the converter must not fail.
    old = _event(schema=RACE, after={"id": 1, "v": None, "w": 1, "nest": None}, key={"id": 1})
    new = _event(schema=RACE, after={"id": 2, "v": "y", "w": 2, "nest": None}, key={"id": 2})
    old_record = conforms_record(cs.envelope_record(old))
    new_record = conforms_record(cs.envelope_record(new))
    assert _fields(_fields(old_record["schema"])["after"])["v"]["optional"] is True
    assert _fields(_fields(new_record["schema"])["after"])["v"]["optional"] is False
    update = _event(
        op=Op.UPDATE,
        schema=RACE,
        before={"id": 1, "v": None, "w": 1, "nest": None},
        after={"id": 1, "v": "x", "w": 1, "nest": None},
    )
    assert _fields(_fields(conforms_record(cs.envelope_record(update))["schema"])["after"])["v"]["optional"]
    assert cs.envelope_schema(new) is cs.envelope_schema(_event(schema=RACE, after=new.after))  # cached


def test_a_multidimensional_array_gets_nested_items_in_that_events_schema() -> None:
    flat = _event(schema=RACE, after={"id": 1, "v": "a", "w": 1, "nest": [1, None]})
    square = _event(schema=RACE, after={"id": 2, "v": "a", "w": 1, "nest": [[1, 2], [3, 4]]})
    cube = _event(schema=RACE, after={"id": 3, "v": "a", "w": 1, "nest": [[[1], [2]], [[3], [4]]]})
    empty = _event(schema=RACE, after={"id": 4, "v": "a", "w": 1, "nest": []})
    for event in (flat, square, cube, empty):
        conforms_record(cs.envelope_record(event))
    nest = _fields(cs.value_struct(square))["nest"]
    assert nest["items"] == {"type": "array", "items": {"type": "int32", "optional": True}, "optional": True}
    assert _fields(cs.value_struct(cube))["nest"]["items"]["items"]["items"] == {
        "type": "int32",
        "optional": True,
    }
    assert _fields(cs.value_struct(flat)) == _fields(cs.value_struct(empty))
    assert _fields(cs.value_struct(flat))["nest"]["items"] == {"type": "int32", "optional": True}
    # one update that changes the dimensions: before and after share one Value struct, so refused
    reshaped = _event(op=Op.UPDATE, schema=RACE, before=square.after, after=flat.after)
    with pytest.raises(CdcError, match="dimensional") as err:
        cs.envelope_record(reshaped)
    assert err.value.kind is ErrorKind.SINK_REJECTED and "schemas: false" in (err.value.hint or "")


def test_a_bigint_unsigned_above_int64_is_refused_not_wrapped() -> None:
    table = TableSchema(
        "shop",
        None,
        "u",
        (
            Column("id", "int64", None, "BIGINT UNSIGNED", optional=False, key=True),
            Column("n", "int64", None, "BIGINT"),
        ),
    )
    source = SourceInfo("mariadb", "p", "shop", "u", extra={"server_id": 1, "file": "b", "pos": 4, "row": 0})
    fits = _event(source=source, schema=table, after={"id": 2**63 - 1, "n": 1}, key={"id": 2**63 - 1})
    conforms_record(cs.envelope_record(fits))
    wraps = _event(source=source, schema=table, after={"id": 2**64 - 1, "n": 1}, key={"id": 2**64 - 1})
    with pytest.raises(CdcError, match="18446744073709551615") as err:
        cs.envelope_record(wraps)
    assert err.value.kind is ErrorKind.SINK_REJECTED and "schemas: false" in (err.value.hint or "")
    with pytest.raises(CdcError, match="18446744073709551615"):
        cs.key_record(wraps, "p", wraps.key)  # the key's int64 would wrap the same way
    assert orjson.loads(cs.key_record(fits, "p", fits.key) or b"")["payload"] == {"id": 2**63 - 1}
