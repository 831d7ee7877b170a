"""Postgres default expressions (pg_get_expr) -> the schema's `default`, as Debezium writes it.

The live comparison with Debezium is tests/integration/test_debezium_schema_block.py; these cover
the expression forms one table cannot hold at once.
"""

from __future__ import annotations

from typing import Any

import pytest

from cdc_logs.readers.postgres.pgoutput import Relation, RelationColumn
from cdc_logs.readers.postgres.schema import ColumnFacts, column, default_value, table_schema
from cdc_logs.readers.postgres.types import OID, TypeRegistry

NUMERIC_6_2 = ((6 << 16) | 2) + 4


@pytest.mark.parametrize(
    ("oid", "typmod", "expr", "expected"),
    [
        (OID.INT4, -1, "7", 7),
        (OID.INT4, -1, "'-3'::integer", -3),
        (OID.INT4, -1, "(-3)", -3),
        (OID.INT8, -1, "nextval('t_id_seq'::regclass)", 0),
        (OID.NUMERIC, NUMERIC_6_2, "1.5", "1.50"),
        (OID.NUMERIC, -1, "2", "2"),
        (OID.FLOAT8, -1, "1.25", 1.25),
        (OID.BOOL, -1, "true", True),
        (OID.TEXT, -1, "'it''s'::text", "it's"),
        (OID.VARCHAR, 13, "'v'::character varying", "v"),
        (OID.DATE, -1, "'2024-01-02'::date", 19724),
        (OID.TIMESTAMP, -1, "'2024-01-02 03:04:05'::timestamp without time zone", 1704164645000000),
        (OID.TIMESTAMPTZ, -1, "now()", "1970-01-01T00:00:00Z"),
        (OID.TIMESTAMPTZ, -1, "CURRENT_TIMESTAMP", "1970-01-01T00:00:00Z"),
        (OID.TIMESTAMP, -1, "LOCALTIMESTAMP", 0),
        (OID.INTERVAL, -1, "'1 day'::interval", 86_400_000_000),
        (
            OID.UUID,
            -1,
            "'12345678-1234-5678-1234-567812345678'::uuid",
            "12345678-1234-5678-1234-567812345678",
        ),
        (OID.JSONB, -1, "'{}'::jsonb", "{}"),
        # not constants Debezium writes: no default
        (OID.BYTEA, -1, "'\\x01'::bytea", None),
        (OID.TEXT, -1, "lower('X'::text)", None),
        (OID.TEXT, -1, "nextval('s'::regclass)", None),
        (OID.TEXT, -1, "NULL::text", None),
        (OID.INT4, -1, "'x'::integer", None),
    ],
)
def test_default_value(oid: int, typmod: int, expr: str, expected: Any) -> None:
    registry = TypeRegistry()
    described = column(registry, "c", oid, typmod)
    assert default_value(registry, described, oid, typmod, expr) == expected


def test_facts_set_nullability_defaults_and_enum_labels() -> None:
    registry = TypeRegistry()
    registry.register_enum(90001)
    relation = Relation(
        None,
        1,
        "public",
        "t",
        "d",
        (
            RelationColumn(1, "id", OID.INT4, -1),
            RelationColumn(0, "mood", 90001, -1),
            RelationColumn(0, "n", OID.INT4, -1),
        ),
    )
    facts = {
        "id": ColumnFacts(not_null=True, default="nextval('t_id_seq'::regclass)"),
        "mood": ColumnFacts(default="'ok'::mood", enum_labels=("sad", "ok")),
    }
    described = {c.name: c for c in table_schema(registry, relation, ["id"], "db", facts).columns}
    assert described["id"].optional is False and described["id"].default == 0 and described["id"].key
    assert described["mood"].enum_values == ("sad", "ok") and described["mood"].default == "ok"
    assert described["n"].optional is True and described["n"].default is None
    plain = {c.name: c for c in table_schema(registry, relation, ["id"], "db").columns}
    assert plain["id"].optional is True, "without the catalog's facts nothing is assumed"
