"""Unit tests for the unwrap transform, the filter expression language and per-destination routes.

The equivalence of unwrap with Debezium's ExtractNewRecordState is proven against the real connector in
tests/integration/test_unwrap_equivalence.py; here: each mode's shape, field references, config errors,
the expression whitelist, and that routes narrow batches without touching the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from pydantic import ValidationError

from cdc_logs import connect_schema
from cdc_logs.build import build_transform
from cdc_logs.config import transform_config
from cdc_logs.configfile import parse_config
from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, Transaction
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, FanoutPolicy, Pipeline
from cdc_logs.route import RouteConfig, RoutedSink
from cdc_logs.schema import Column, TableSchema
from cdc_logs.sinks.base import Sink
from cdc_logs.transforms.expression import ExpressionError, compile_expression
from tests.helpers import ScriptedReader, make_event

ROOT = Path(__file__).resolve().parents[2]


def event(
    op: Op, *, before: dict[str, Any] | None = None, after: dict[str, Any] | None = None
) -> ChangeEvent:
    row = after if after is not None else before
    assert row is not None
    return ChangeEvent(
        op=op,
        source=SourceInfo(
            connector="postgresql",
            name="shop",
            db="app",
            schema="public",
            table="orders",
            ts_ms=1700000000000,
            extra={"txId": 7, "lsn": 1234},
        ),
        before=before,
        after=after,
        key={"id": row["id"]},
        ts_ms=1700000000500,
        transaction=Transaction("7:1234", 1, 1),
    )


def unwrap(**params: Any) -> Any:
    return build_transform(transform_config({"type": "unwrap", "params": params}))


# -- unwrap ----------------------------------------------------------------------------------------
def test_unwrap_default_is_the_after_row_and_deletes_become_null() -> None:
    t = unwrap()
    created = t.apply(event(Op.CREATE, after={"id": 1, "amount": 5}))
    assert orjson.loads(created.to_json()) == {"id": 1, "amount": 5}
    deleted = t.apply(event(Op.DELETE, before={"id": 1, "amount": 5}))
    assert deleted.to_json() == b"null"
    assert deleted.op is Op.DELETE and deleted.before == {"id": 1, "amount": 5}  # the event is intact


@pytest.mark.parametrize("mode", ["rewrite", "rewrite-with-tombstone"])
def test_unwrap_rewrite_marks_every_row(mode: str) -> None:
    t = unwrap(delete_tombstone_handling_mode=mode)
    assert orjson.loads(t.apply(event(Op.UPDATE, after={"id": 1})).to_json()) == {
        "id": 1,
        "__deleted": "false",
    }
    assert orjson.loads(t.apply(event(Op.DELETE, before={"id": 1, "x": None})).to_json()) == {
        "id": 1,
        "x": None,
        "__deleted": "true",
    }
    assert t.flattening.keeps_tombstone() is (mode == "rewrite-with-tombstone")


def test_unwrap_drop_mode_drops_deletes_and_every_mode_drops_truncates() -> None:
    assert unwrap(delete_tombstone_handling_mode="drop").apply(event(Op.DELETE, before={"id": 1})) is None
    truncate = ChangeEvent(op=Op.TRUNCATE, source=event(Op.CREATE, after={"id": 1}).source)
    assert unwrap().apply(truncate) is None
    message = ChangeEvent(op=Op.MESSAGE, source=truncate.source, content={"prefix": "p"})
    assert unwrap().apply(message) is message and message.flat is None  # passes as an envelope


def test_unwrap_added_fields_are_named_as_debezium_names_them() -> None:
    t = unwrap(
        delete_tombstone_handling_mode="rewrite",
        add_fields="op,table,lsn,source.ts_ms,ts_ms,transaction.id,total_order,txId:XID,nope",
        add_fields_prefix="__",
    )
    row = orjson.loads(t.apply(event(Op.CREATE, after={"id": 1})).to_json())
    assert row == {
        "id": 1,
        "__deleted": "false",
        "__op": "c",
        "__table": "orders",
        "__lsn": 1234,
        "__source_ts_ms": 1700000000000,
        "__ts_ms": 1700000000500,
        "__transaction_id": "7:1234",
        "__total_order": 1,
        "XID": 7,
    }  # `nope` is not a source field: left out, as Debezium leaves out what its source lacks


def test_unwrap_dotted_debezium_option_names_and_headers() -> None:
    t = unwrap(**{"delete.tombstone.handling.mode": "drop", "add.headers": "op,source.ts_ms"})
    flat = t.apply(event(Op.UPDATE, after={"id": 1})).flat
    assert flat.header_values(event(Op.UPDATE, after={"id": 1})) == [
        ("__op", "u"),
        ("__source_ts_ms", "1700000000000"),
    ]


@pytest.mark.parametrize(
    ("params", "mode"),
    [
        ({"delete_handling_mode": "rewrite"}, "rewrite"),
        ({"delete.handling.mode": "rewrite", "drop.tombstones": "false"}, "rewrite-with-tombstone"),
        ({"delete_handling_mode": "none"}, "tombstone"),
        ({"delete_handling_mode": "drop"}, "drop"),
        ({"drop_tombstones": False}, "delete-to-tombstone"),  # 2.x's default drop, tombstones kept
    ],
)
def test_unwrap_takes_debezium_2_option_names(params: dict[str, Any], mode: str) -> None:
    cfg = transform_config({"type": "unwrap", "params": params})
    assert cfg.params.delete_tombstone_handling_mode == mode  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"delete_handling_mode": "none", "drop_tombstones": False}, "no Debezium 3 equivalent"),
        ({"delete_handling_mode": "rewrite", "delete_tombstone_handling_mode": "drop"}, "not both"),
        ({"delete_handling_mode": "soft"}, "none, drop or rewrite"),
        ({"add_fields": ["source.ts ms"]}, "not a field reference"),
        ({"add_fields": ["op", "op"]}, "two fields one name"),
        ({"delete_tombstone_handling_mode": "none"}, "delete_tombstone_handling_mode"),
        ({"drop_tombstone": True}, "drop_tombstone"),
    ],
)
def test_unwrap_config_errors(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        transform_config({"type": "unwrap", "params": params})


def test_unwrap_schema_adds_deleted_and_fields_to_the_row_struct() -> None:
    table = TableSchema(
        "app",
        "public",
        "orders",
        (Column("id", "int32", optional=False, key=True), Column("amount", "int32")),
    )
    e = event(Op.CREATE, after={"id": 1, "amount": 2})
    e.schema = table
    t = unwrap(delete_tombstone_handling_mode="rewrite", add_fields=["op", "source.ts_ms"])
    record = json.loads(connect_schema.envelope_record(t.apply(e), "shop"))
    assert record["payload"] == {
        "id": 1,
        "amount": 2,
        "__deleted": "false",
        "__op": "c",
        "__source_ts_ms": 1700000000000,
    }
    schema = record["schema"]
    assert schema["name"] == "shop.public.orders.Value" and schema["optional"] is False
    assert [(f["field"], f["type"], f["optional"]) for f in schema["fields"]] == [
        ("id", "int32", False),
        ("amount", "int32", True),
        ("__deleted", "string", True),
        ("__op", "string", True),
        ("__source_ts_ms", "int64", True),
    ]
    tombstone = event(Op.DELETE, before={"id": 1, "amount": 2})
    tombstone.schema = table
    assert connect_schema.flat_record(unwrap().apply(tombstone), "shop") is not None  # schema, null payload
    real = event(Op.DELETE, before={"id": 1, "amount": 2})
    real.schema = table
    assert (
        connect_schema.flat_record(unwrap(delete_tombstone_handling_mode="delete-to-tombstone").apply(real))
        is None
    )


# -- expressions -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("op in ('c', 'u') and after.amount >= 100", True),
        ("after.amount > 500", False),
        ("after.missing is null and before.anything is None", True),
        ("table == 'orders' and schema == 'public' and source.lsn == 1234", True),
        ("not (after.region != 'eu')", True),
        ("after['odd name'] == 3", True),
        ("lower(after.email) == 'a@x.org' and endswith(after.email, '.ORG')", True),
        ("contains(after.email, '@') and len(after.email) == 7 and upper(after.region) == 'EU'", True),
        ("after.amount > 'text'", False),  # incomparable: no match, no error
        ("after.amount > null", False),
        ("-after.amount < 0", True),
        ("1 < after.amount < 1000", True),
        ("key.id == 1 and ts_ms > 0 and row.id == 1 and db == 'app'", True),
        ("after.amount in [1, 2, 150]", True),
        ("true and not false", True),
    ],
)
def test_expressions(text: str, expected: bool) -> None:
    e = event(Op.CREATE, after={"id": 1, "amount": 150, "region": "eu", "email": "a@X.ORG", "odd name": 3})
    assert bool(compile_expression(text)(e)) is expected


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("__import__('os').system('x')", "column 1"),
        ("after.__class__", "column 1"),
        ("after.email.lower() == 'x'", "column 1"),
        ("[x for x in after]", "column 1"),
        ("op == 'c' and open('f')", "column 15"),
        ("lambda: 1", "column 1"),
        ("op = 'c'", "syntax error at column"),
        ("amount > 1", "unknown name 'amount'"),
        ("after[0] == 1", "quoted field name"),
        ("len(after, 1)", "takes 1 argument"),
        ("op == b'c'", "bytes literal"),
        ("after.x ** 2 > 1", "BinOp is not allowed at column 1"),
        ("", "empty"),
    ],
)
def test_bad_expressions_are_config_errors_naming_the_column(text: str, where: str) -> None:
    with pytest.raises(ExpressionError, match=where.replace("(", r"\(").replace("[", r"\[")):
        compile_expression(text)


@pytest.mark.parametrize(
    "text", ["-after.email == 1", "-after.missing < 0", "-after.odd > 0", "not (-before.amount < 0)"]
)
def test_unary_minus_of_a_non_number_is_null_not_an_error(text: str) -> None:
    """It raised TypeError at run time: one text value (or a delete's null `after`) stopped the run."""
    check = compile_expression(text)
    assert check(event(Op.CREATE, after={"id": 1, "email": "a@x", "odd": {"k": 1}})) in (False, True)
    assert check(event(Op.DELETE, before={"id": 1, "email": "a@x"})) in (False, True)
    assert compile_expression("-after.amount == -1.5")(
        event(Op.CREATE, after={"id": 1, "amount": Decimal("1.5")})
    )
    with pytest.raises(ExpressionError, match="unary minus needs a number at column 1"):
        compile_expression("-'x' == 1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("after.amount >= 1000", True),
        ("after.amount > 1500.5", False),
        ("after.amount == 1500", True),
        ("after.amount != 1500", False),
        ("after.amount in [1, 1500]", True),
        ("after.amount not in (1500,)", False),
        ("1000 <= after.amount < 2000", True),
        ("-after.amount < -1000", True),
        ("after.small < 0.001", True),
        ("after.name > 100", False),  # a text that is no number still does not compare
        ("after.name == '1500.00'", False),
        ("after.amount == '1500.00'", True),  # text with text: as written
        ("after.huge > 1", False),  # past Decimal's exponent range: stays text, no error
        ("-after.huge == 1", False),
    ],
)
def test_numbers_compare_with_exact_numerics_carried_as_text(text: str, expected: bool) -> None:
    """NUMERIC/DECIMAL columns reach events as text ("1500.00"); `after.amount >= 1000`, the docs'
    route example, never matched them (text against a number was an incomparable pair)."""
    e = event(
        Op.CREATE,
        after={
            "id": 1,
            "amount": "1500.00",
            "small": "0.0001",
            "name": "bob",
            "huge": "1e99999999999999999999",
        },
    )
    assert bool(compile_expression(text)(e)) is expected


def test_filter_expression_is_checked_when_the_config_is_read() -> None:
    with pytest.raises(ValidationError, match="column 14"):
        transform_config({"type": "filter", "params": {"expression": "op == 'c' or exec('x')"}})
    keep = build_transform(
        transform_config({"type": "filter", "params": {"expression": "after.amount >= 100"}})
    )
    assert keep.apply(event(Op.CREATE, after={"id": 1, "amount": 100})) is not None
    assert keep.apply(event(Op.CREATE, after={"id": 1, "amount": 99})) is None
    assert keep.apply(event(Op.DELETE, before={"id": 1, "amount": 100})) is None  # after is null


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("-" * 3000 + "ts_ms > 0", "nests deeper than the limit of 64 levels"),  # was a RecursionError
        ("-" * 100 + "ts_ms > 0", "nests deeper than the limit of 64 levels"),
        ("not " * 1000 + "op", "nests deeper than the limit of 64 levels"),
        ("not " * 100_000 + "op", "400002 characters long, over the limit of 4096"),  # was a MemoryError
        ("(" * 300 + "op" + ")" * 300, "nests deeper than the limit of 64 levels"),
        ("op == 'c' or " * 400 + "op == 'd'", "characters long, over the limit of 4096"),
    ],
)
def test_huge_expressions_are_quick_config_errors_naming_the_limit(text: str, says: str) -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError, match=says):
        compile_expression(text)
    assert time.monotonic() - started < 1


def test_expressions_within_the_limits_still_compile() -> None:
    deep = compile_expression("not " * 60 + "(op == 'c')")  # 60 levels: within the limit
    assert deep(event(Op.CREATE, after={"id": 1})) is True
    assert compile_expression(" or ".join(f"after.id == {n}" for n in range(200)))(
        event(Op.CREATE, after={"id": 199})
    )


def test_config_validate_reports_a_bad_filter_expression_with_its_path(tmp_path: Path) -> None:
    """docs/transforms.md shows this message: keep the two in step (and exit 2, a config error)."""
    config = tmp_path / "bad.yaml"
    config.write_text(
        "source: {type: sqlite, path: app.db, tables: [t]}\n"
        "destination: {type: stdout}\n"
        "plugins:\n"
        "  transformers:\n"
        "    - type: filter\n"
        "      params: {expression: \"op == 'c' or exec('x')\"}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "config", "validate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "plugins.transformers.0.params.expression" in done.stderr, done.stderr
    assert "calls other than the listed functions are not allowed at column 14 (`exec('x')`)" in done.stderr


# -- routes ----------------------------------------------------------------------------------------
class Recording(Sink):
    def __init__(self, name: str) -> None:
        self.name = name
        self.batches: list[list[ChangeEvent]] = []

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if batch:
            self.batches.append(list(batch))

    @property
    def ops(self) -> list[tuple[str, int]]:
        return [(e.op.value, (e.row or {})["id"]) for b in self.batches for e in b]


def test_route_by_ops_keeps_the_halves_of_a_key_change_together() -> None:
    deleted = event(Op.DELETE, before={"id": 3})
    created = event(Op.CREATE, after={"id": 30})
    deleted.key_change = created.key_change = True
    plain_delete = event(Op.DELETE, before={"id": 4})
    upserts = RoutedSink(Recording("upserts"), RouteConfig(ops=["c", "u"]))
    inserts = RoutedSink(Recording("inserts"), RouteConfig(ops=["c"]))
    upserts.write([deleted, created, plain_delete])
    inserts.write([deleted, created, plain_delete])
    assert upserts.inner.ops == [("d", 3), ("c", 30)]  # type: ignore[attr-defined]
    assert inserts.inner.ops == []  # type: ignore[attr-defined]


def test_route_tables_exclude_and_when() -> None:
    e = event(Op.CREATE, after={"id": 1, "amount": 5})
    assert RoutedSink(Recording("a"), RouteConfig(tables=["public.orders"])).takes(e)
    assert not RoutedSink(Recording("a"), RouteConfig(tables=["public.users"])).takes(e)
    assert not RoutedSink(Recording("a"), RouteConfig(exclude_tables=["*.ord*"])).takes(e)
    assert RoutedSink(Recording("a"), RouteConfig(when="after.amount < 10")).takes(e)
    with pytest.raises(ValidationError, match="column 1"):
        RouteConfig(when="os.system('x')")


def test_a_when_route_keeps_a_state_destination_in_step_with_its_condition() -> None:
    """docs/transforms.md's big_orders: `when: after.amount >= 1000` into a SQL table. Rows that leave
    the condition (deleted, or updated below it) must leave the destination too."""
    big = RoutedSink(Recording("big"), RouteConfig(when="after.amount >= 1000"))
    big.write(
        [
            event(Op.CREATE, after={"id": 1, "amount": 5000}),
            event(Op.CREATE, after={"id": 2, "amount": 10}),  # never matched: not taken
            event(Op.UPDATE, before={"id": 1, "amount": 5000}, after={"id": 1, "amount": 50}),  # left it
            event(Op.UPDATE, before={"id": 2, "amount": 10}, after={"id": 2, "amount": 20}),  # never in
            event(Op.CREATE, after={"id": 3, "amount": 3000}),
            event(Op.DELETE, before={"id": 3, "amount": 3000}),  # full identity: the row matched
            event(Op.DELETE, before={"id": 2, "amount": 20}),  # it never matched: not taken
            event(Op.CREATE, after={"id": 4, "amount": 4000}),
            event(Op.DELETE, before={"id": 4}),  # default identity: key only, unknown: taken
            event(Op.CREATE, after={"id": 5, "amount": 6000}),
            ChangeEvent(  # default identity: no before on an update; below the limit now: removed
                op=Op.UPDATE,
                source=event(Op.CREATE, after={"id": 5}).source,
                after={"id": 5, "amount": 1},
                key={"id": 5},
            ),
        ]
    )
    assert big.inner.ops == [  # type: ignore[attr-defined]
        ("c", 1), ("d", 1), ("c", 3), ("d", 3), ("c", 4), ("d", 4), ("c", 5), ("d", 5)
    ]  # fmt: skip
    left = big.inner.batches[0][1]  # type: ignore[attr-defined]
    assert left.before == {"id": 1, "amount": 5000} and left.after is None and left.key == {"id": 1}
    assert orjson.loads(left.to_json())["op"] == "d"
    gone = big.inner.batches[0][-1]  # type: ignore[attr-defined]
    assert gone.op is Op.DELETE and gone.before == {"id": 5}


def test_a_when_route_on_row_takes_the_delete_half_of_a_key_change() -> None:
    deleted = event(Op.DELETE, before={"id": 3})  # default identity: only the old key
    created = event(Op.CREATE, after={"id": 30, "amount": 2000})
    deleted.key_change = created.key_change = True
    big = RoutedSink(Recording("big"), RouteConfig(when="row.amount >= 1000"))
    big.write([deleted, created])
    assert big.inner.ops == [("d", 3), ("c", 30)]  # type: ignore[attr-defined]


def test_a_when_not_about_the_row_is_evaluated_as_written() -> None:
    creates = RoutedSink(Recording("c"), RouteConfig(when="op == 'c'"))
    creates.write(
        [
            event(Op.CREATE, after={"id": 1}),
            event(Op.UPDATE, after={"id": 1, "v": 2}),
            event(Op.DELETE, before={"id": 1}),
        ]
    )
    assert creates.inner.ops == [("c", 1)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("fanout", [False, True], ids=["single", "fanout"])
def test_routed_events_never_hold_back_the_checkpoint(fanout: bool, tmp_path: Path) -> None:
    """One sink takes nothing of a batch: the position still commits once the other has written."""
    events = [make_event(n) for n in range(1, 6)]
    reader = ScriptedReader(events, follow=False)
    big = Recording("big")
    small = Recording("small")
    sinks = [RoutedSink(big, RouteConfig(when="after.v > 100")), RoutedSink(small, RouteConfig())]
    offsets = MemoryOffsetStore()
    pipeline = Pipeline(
        "routes",
        {"src": reader},
        sinks,
        offsets,
        batch=BatchPolicy(max_events=2),
        stop_when_idle=True,
        fanout=FanoutPolicy(str(tmp_path / "spool")) if fanout else None,
    )
    stats = pipeline.run()
    assert big.batches == [] and [e.after["id"] for b in small.batches for e in b] == [1, 2, 3, 4, 5]
    assert stats.commits["src"] == events[-1].position
    assert (
        offsets.load("routes", "src") is not None
        and offsets.load("routes", "src").decoded() == events[-1].position
    )


# -- the pipeline: `cdc-logs run` with filter, unwrap and routed destinations -------------------------
def test_cdc_logs_run_with_filter_unwrap_and_routes(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER, region TEXT)")
        conn.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, note TEXT)")
    config = {
        "name": "routes",
        "source": {"type": "sqlite", "path": str(db), "tables": ["orders", "audit"], "poll_interval_ms": 50},
        "plugins": {
            "transformers": [
                {"type": "filter", "params": {"expression": "table != 'audit' or op == 'c'"}},
                {
                    "type": "unwrap",
                    "params": {"delete_tombstone_handling_mode": "rewrite", "add_fields": ["op", "table"]},
                },
            ]
        },
        "destinations": [
            {"type": "file", "name": "all", "path": str(tmp_path / "all.jsonl")},
            {
                "type": "file",
                "name": "eu_upserts",
                "path": str(tmp_path / "eu.jsonl"),
                "route": {"tables": ["orders"], "ops": ["c", "u"], "when": "row.region == 'eu'"},
            },
            {
                "type": "file",
                "name": "nothing",
                "path": str(tmp_path / "nothing.jsonl"),
                "route": {"tables": ["no_such_table"]},
            },
        ],
        "sync": {"mode": "one_time"},
        "offsets": {"type": "sqlite", "path": str(tmp_path / "offsets.db")},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    run = [sys.executable, "-m", "cdc_logs", "run", "-c", str(path)]
    first = subprocess.run(run, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert first.returncode == 0, first.stderr  # installs the triggers
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO orders VALUES (1, 50, 'eu')")
        conn.execute("INSERT INTO orders VALUES (2, 70, 'us')")
        conn.execute("UPDATE orders SET amount = 55 WHERE id = 1")
        conn.execute("DELETE FROM orders WHERE id = 2")
        conn.execute("UPDATE orders SET id = 10 WHERE id = 1")  # a key change: delete 1 + create 10
        conn.execute("DELETE FROM orders WHERE id = 10")
        conn.execute("INSERT INTO audit VALUES (1, 'kept: a create')")
        conn.execute("UPDATE audit SET note = 'dropped by the filter' WHERE id = 1")
    second = subprocess.run(run, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert second.returncode == 0, second.stderr

    def rows(name: str) -> list[dict[str, Any]]:
        file = tmp_path / name
        return [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []

    assert rows("all.jsonl") == [
        {"id": 1, "amount": 50, "region": "eu", "__deleted": "false", "__op": "c", "__table": "orders"},
        {"id": 2, "amount": 70, "region": "us", "__deleted": "false", "__op": "c", "__table": "orders"},
        {"id": 1, "amount": 55, "region": "eu", "__deleted": "false", "__op": "u", "__table": "orders"},
        {"id": 2, "amount": 70, "region": "us", "__deleted": "true", "__op": "d", "__table": "orders"},
        {"id": 1, "amount": 55, "region": "eu", "__deleted": "true", "__op": "d", "__table": "orders"},
        {"id": 10, "amount": 55, "region": "eu", "__deleted": "false", "__op": "c", "__table": "orders"},
        {"id": 10, "amount": 55, "region": "eu", "__deleted": "true", "__op": "d", "__table": "orders"},
        {"id": 1, "note": "kept: a create", "__deleted": "false", "__op": "c", "__table": "audit"},
    ]
    # ops [c, u]: the key change's two halves count as the update they are; the plain delete does not
    assert [(r["id"], r["__op"]) for r in rows("eu.jsonl")] == [(1, "c"), (1, "u"), (1, "d"), (10, "c")]
    assert rows("nothing.jsonl") == []
    # Everything was committed although two destinations took little or nothing: a third run reads nothing.
    third = subprocess.run(run, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert len(rows("all.jsonl")) == 8


def test_sql_apply_under_unwrap_applies_the_change_itself(tmp_path: Path) -> None:
    """State sinks are supported explicitly: unwrap changes what log sinks write, the SQL sink still
    applies each change by op and key (a rewritten delete deletes; the added fields are no columns)."""
    import sqlite3

    db, target = tmp_path / "app.db", tmp_path / "target.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER)")
    config = {
        "name": "unwrap_sql",
        "source": {"type": "sqlite", "path": str(db), "tables": ["orders"], "poll_interval_ms": 50},
        "plugins": {
            "transformers": [
                {
                    "type": "unwrap",
                    "params": {"delete_tombstone_handling_mode": "rewrite", "add_fields": "op"},
                }
            ]
        },
        "destination": {"type": "sqlite", "url": f"sqlite:///{target}", "auto_create": True},
        "sync": {"mode": "one_time"},
        "offsets": {"type": "sqlite", "path": str(tmp_path / "offsets.db")},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    run = [sys.executable, "-m", "cdc_logs", "run", "-c", str(path)]
    assert subprocess.run(run, capture_output=True, timeout=120, cwd=tmp_path).returncode == 0
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(1, 10), (2, 20), (3, 30)])
        conn.execute("UPDATE orders SET amount = 11 WHERE id = 1")
        conn.execute("DELETE FROM orders WHERE id = 2")
    done = subprocess.run(run, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(target) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(orders)")]
        rows = conn.execute("SELECT id, amount FROM orders ORDER BY id").fetchall()
    assert columns == ["id", "amount"]
    assert rows == [(1, 11), (3, 30)]


# -- capture: log | poll | auto (the config and the choice; on the servers: test_capture_auto.py) ----
def _pg_source(**extra: Any) -> dict[str, Any]:
    return {"type": "postgres", "dsn": "postgresql://u@h/db", "tables": ["public.a", "public.b"], **extra}


def test_capture_needs_a_cursor_for_every_table() -> None:
    with pytest.raises(CdcError, match=r"cursor column for public\.b"):
        parse_config(
            {
                "source": _pg_source(
                    capture="poll", poll={"tables": {"public.a": {"incrementing_column": "id"}}}
                ),
                "destination": {"type": "stdout"},
            },
            {},
        )
    cfg = parse_config(
        {
            "source": _pg_source(
                capture_mode="polling",  # the seed's name
                poll={
                    "timestamp_column": "updated_at",
                    "tables": {"b": {"incrementing_column": "n", "mode": "incrementing"}},
                },
            ),
            "destination": {"type": "stdout"},
        },
        {},
    )
    source = cfg.all_sources()[0]
    assert source.capture == "poll"  # type: ignore[attr-defined]
    from cdc_logs.readers.capture import caveats, polled_tables

    tables = polled_tables(source.tables, source.poll)  # type: ignore[attr-defined]
    assert [(t.name, t.mode, t.timestamp_column, t.incrementing_column) for t in tables] == [
        ("public.a", "timestamp", "updated_at", None),
        ("public.b", "incrementing", "updated_at", "n"),
    ]
    said = caveats(tables)
    assert any("deletes are not seen in public.a, public.b" in c for c in said)
    assert any("updates are not seen in public.b" in c for c in said)


def test_capture_log_builds_the_plain_log_reader() -> None:
    from cdc_logs.build import build_reader
    from cdc_logs.readers.capture import CaptureReader
    from cdc_logs.readers.postgres.reader import PostgresReader

    cfg = parse_config({"source": _pg_source(), "destination": {"type": "stdout"}}, {})
    assert isinstance(build_reader(cfg.all_sources()[0], "p"), PostgresReader)
    auto = parse_config(
        {
            "source": _pg_source(capture="auto", poll={"incrementing_column": "id"}),
            "destination": {"type": "stdout"},
        },
        {},
    )
    assert isinstance(build_reader(auto.all_sources()[0], "p"), CaptureReader)


@pytest.mark.parametrize(
    ("checks", "chosen"),
    [
        ([("connect", True), ("wal_level", True), ("max_slot_wal_keep_size", False)], "log"),  # advisory only
        ([("connect", True), ("wal_level", False)], "poll"),
        ([("connect", False)], "log"),  # unreachable: the log reader's open reports it (and is retried)
    ],
)
def test_auto_decides_by_the_checks_log_capture_needs(checks: list[tuple[str, bool]], chosen: str) -> None:
    from cdc_logs.readers.capture import CaptureReader
    from cdc_logs.readers.checks import Check
    from cdc_logs.readers.polling.query import PolledTable

    log_reader, poll_reader = ScriptedReader([]), ScriptedReader([])
    reader = CaptureReader(
        "auto",
        source="pg",
        log_reader=lambda: log_reader,
        poll_reader=lambda: poll_reader,
        tables=lambda: [PolledTable(name="t", mode="incrementing", incrementing_column="id")],
        checks=lambda: [Check(name, ok, "detail") for name, ok in checks],
        needed=frozenset({"connect", "wal_level"}),
    )
    reader.open()
    assert reader.chosen == chosen
    assert reader.inner is (log_reader if chosen == "log" else poll_reader)
    info = reader.capture_info()
    assert info["mode"] == "auto" and info["chosen"] == chosen
    assert bool(info["cannot_see"]) is (chosen == "poll")


def test_auto_decides_again_after_an_unreachable_start() -> None:
    """The checks could not connect: the log reader's open reports the error, and the next open
    (the pipeline retries it) runs the checks again instead of keeping a choice made blind."""
    from cdc_logs.readers.capture import CaptureReader
    from cdc_logs.readers.checks import Check
    from cdc_logs.readers.polling.query import PolledTable

    class Down(ScriptedReader):
        def open(self) -> None:
            raise CdcError(ErrorKind.CONNECTION, "connection refused (scripted)")

    answers = iter(
        [
            [Check("connect", False, "refused")],
            [Check("connect", True, "ok"), Check("wal_level", False, "replica")],
        ]
    )
    poll_reader = ScriptedReader([])
    reader = CaptureReader(
        "auto",
        source="pg",
        log_reader=lambda: Down([]),
        poll_reader=lambda: poll_reader,
        tables=lambda: [PolledTable(name="t", mode="incrementing", incrementing_column="id")],
        checks=lambda: next(answers),
        needed=frozenset({"connect", "wal_level"}),
    )
    with pytest.raises(CdcError, match="refused"):
        reader.open()
    assert reader.chosen is None
    reader.open()
    assert reader.chosen == "poll" and reader.inner is poll_reader


def test_unwrap_rewrite_of_a_key_only_delete_writes_the_other_columns_as_null() -> None:
    """Postgres' default replica identity: the delete carries only the key. Debezium's rewritten record
    has every column of the table (its before struct), the others null; so does ours."""
    columns = (
        Column("id", "int32", optional=False, key=True),
        Column("amount", "int32"),
        Column("note", "string"),
    )
    schema = TableSchema("app", "public", "orders", columns)
    t = unwrap(delete_tombstone_handling_mode="rewrite")
    deleted = dataclasses.replace(event(Op.DELETE, before={"id": 1}), schema=schema)
    assert list(orjson.loads(t.apply(deleted).to_json()).items()) == [
        ("id", 1), ("amount", None), ("note", None), ("__deleted", "true"),
    ]  # fmt: skip
    full = dataclasses.replace(event(Op.DELETE, before={"id": 2, "amount": 5, "note": "x"}), schema=schema)
    assert orjson.loads(t.apply(full).to_json()) == {"id": 2, "amount": 5, "note": "x", "__deleted": "true"}
