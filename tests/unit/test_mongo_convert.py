"""The MongoDB reader's sans-IO parts on recorded change documents shaped exactly like mongod's.

The shapes are MongoDB's change events (docs: "Change Events"): `_id` the resume token (`_data`, a
KeyString whose first value is the clusterTime), `operationType`, `clusterTime`, `wallTime`, `ns`,
`documentKey`, `fullDocument`, `updateDescription`, `fullDocumentBeforeChange`, and for changes made
in a multi-document transaction `lsid` {id: UUID, uid: BinData} and `txnNumber`. mongo-java-server
(the stack's server) has no sessions, transactions, database or cluster streams, so those paths are
tested here only.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any

import orjson
import pytest
from bson.binary import Binary, UuidRepresentation
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.timestamp import Timestamp
from pymongo import errors

from cdc_logs.envelope import ChangeEvent, Heartbeat, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import MongoResumeToken, decode
from cdc_logs.readers.contract import ContractChecker
from cdc_logs.readers.mongo.changes import ChangeAssembler, Control
from cdc_logs.readers.mongo.config import MongoSourceConfig
from cdc_logs.readers.mongo.connection import Scope, map_error, uri_hosts
from cdc_logs.readers.mongo.convert import EventFactory, plain, token_time

SERVER = "rs:rs0:65f0aa000000000000000001"
OID = ObjectId("65f0d7b0a1b2c3d4e5f60718")
SESSION = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
WALL = dt.datetime(2024, 3, 12, 22, 10, 24, 123000, tzinfo=dt.UTC)


def token(ts: int, inc: int, rest: str = "2B022C0100296E5A1004") -> str:
    """A mongod v1 resume token's `_data`: 0x82 (Timestamp) + clusterTime, then the event's identity."""
    return f"82{ts:08X}{inc:08X}{rest}"


def change(kind: str, inc: int, doc_id: Any = OID, *, tx: int | None = None, coll: str = "orders",
           rest: str = "2B022C0100296E5A1004", **fields: Any) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {
        "_id": {"_data": token(1710281424, inc, rest)},
        "operationType": kind,
        "clusterTime": Timestamp(1710281424, inc),
        "wallTime": WALL,
        "ns": {"db": "shop", "coll": coll},
        "documentKey": {"_id": doc_id},
    }
    if tx is not None:
        out["lsid"] = {
            "id": Binary.from_uuid(SESSION, UuidRepresentation.STANDARD),
            "uid": Binary(b"\x01" * 32, 0),
        }
        out["txnNumber"] = Int64(tx)
    out.update(fields)
    return out


def factory(fmt: str = "extended_json") -> EventFactory:
    return EventFactory(SERVER, "shop-cdc", "rs0", fmt)  # type: ignore[arg-type]


DOC = {
    "_id": OID,
    "name": "Anne",
    "total": Decimal128("12.50"),
    "at": WALL,
    "n": Int64(7),
    "tags": ["a", "ü"],
    "blob": Binary(b"\x00\xff", 0),
}


def test_insert_in_debeziums_mongodb_shape() -> None:
    event = factory().change(change("insert", 1, fullDocument=DOC), position(1), True, None)
    value = orjson.loads(event.to_json())
    assert value["op"] == "c" and value["before"] is None
    assert isinstance(value["after"], str)  # JSON text, as Debezium's MongoDB connector writes it
    assert orjson.loads(value["after"]) == {
        "_id": {"$oid": str(OID)},
        "name": "Anne",
        "total": {"$numberDecimal": "12.50"},
        "at": {"$date": "2024-03-12T22:10:24.123Z"},
        "n": 7,
        "tags": ["a", "ü"],
        "blob": {"$binary": {"base64": "AP8=", "subType": "00"}},
    }
    assert event.key == {"id": f'{{"$oid": "{OID}"}}'}
    source = value["source"]
    assert source["connector"] == "mongodb" and source["name"] == "shop-cdc"
    assert (source["rs"], source["db"], source["collection"], source["ord"]) == ("rs0", "shop", "orders", 1)
    assert source["ts_ms"] == 1710281424000 and source["snapshot"] == "false"
    assert source["lsid"] is None and source["txnNumber"] is None
    assert source["wallTime"] == 1710281424123
    assert value["transaction"] is None and value["updateDescription"] is None  # as Debezium writes it
    assert event.schema is not None and event.schema.key == ("_id",)


def test_update_keeps_update_description_and_the_pre_image() -> None:
    description = {
        "updatedFields": {"name": "Bob", "at": WALL},
        "removedFields": ["phone"],
        "truncatedArrays": [{"field": "tags", "newSize": 1}],
    }
    doc = {**DOC, "name": "Bob"}
    raw = change("update", 2, updateDescription=description, fullDocument=doc, fullDocumentBeforeChange=DOC)
    value = orjson.loads(factory().change(raw, position(2), True, None).to_json())
    assert value["op"] == "u"
    assert orjson.loads(value["after"])["name"] == "Bob" and orjson.loads(value["before"])["name"] == "Anne"
    assert value["updateDescription"] == {
        "removedFields": ["phone"],
        "updatedFields": '{"name": "Bob", "at": {"$date": "2024-03-12T22:10:24.123Z"}}',
        "truncatedArrays": [{"field": "tags", "size": 1}],
    }


def test_replace_is_an_update_without_update_description_and_delete_has_no_after() -> None:
    replaced = factory().change(change("replace", 3, fullDocument=DOC), position(3), True, None)
    assert replaced.op.value == "u" and replaced.update_description is None
    deleted = orjson.loads(factory().change(change("delete", 4), position(4), True, None).to_json())
    # No pre-image: `before` is the document key, as Extended JSON text (Debezium leaves it null and
    # names the document in the Kafka key only), so the value alone says which document went.
    assert deleted["op"] == "d" and deleted["after"] is None
    assert deleted["before"] == f'{{"_id":{{"$oid":"{OID}"}}}}'
    with_image = change("delete", 5, fullDocumentBeforeChange=DOC)
    value = orjson.loads(factory().change(with_image, position(5), True, None).to_json())
    assert orjson.loads(value["before"])["name"] == "Anne"  # a pre-image wins


def test_update_without_a_lookup_has_no_after_but_the_delta() -> None:
    # fullDocument: default (and updateLookup on a document deleted since): Debezium's null `after`.
    raw = change("update", 5, updateDescription={"updatedFields": {"n": 8}, "removedFields": []})
    value = orjson.loads(factory().change(raw, position(5), True, None).to_json())
    assert value["after"] is None and value["updateDescription"]["updatedFields"] == '{"n": 8}'
    assert value["updateDescription"]["removedFields"] is None


def test_plain_json_documents_and_key() -> None:
    event = factory("json").change(change("insert", 1, fullDocument=DOC), position(1), True, None)
    assert event.after == {
        "_id": str(OID),
        "name": "Anne",
        "total": "12.50",
        "at": "2024-03-12T22:10:24.123Z",
        "n": 7,
        "tags": '["a","ü"]',  # nested documents and arrays: JSON text (io.debezium.data.Json)
        "blob": b"\x00\xff",
    }
    assert event.key == {"_id": str(OID)}
    value = orjson.loads(event.to_json())
    assert value["after"]["blob"] == "AP8="  # an object, not text
    assert event.schema is not None
    at = event.schema.column("at")
    assert at is not None and at.semantic == "io.debezium.time.ZonedTimestamp"
    tags = event.schema.column("tags")
    assert tags is not None and (tags.type, tags.semantic) == ("string", "io.debezium.data.Json")
    assert plain(Binary.from_uuid(SESSION)) == str(SESSION) and plain(float("nan")) == "NaN"
    assert plain(Decimal("1.5")) == "1.5" and plain(Timestamp(5, 6)) == {"t": 5, "i": 6}


def test_a_change_without_document_key_id_falls_back_then_is_undecodable() -> None:
    # mongo-java-server's update events put the update specification in documentKey.
    raw = change("update", 6, fullDocument={"_id": 5, "x": 2})
    raw["documentKey"] = {"$set": {"x": 2}}
    assert factory().change(raw, position(6), True, None).key == {"id": "5"}
    raw["fullDocument"] = {"x": 2}
    (item,) = ChangeAssembler(factory()).feed(raw)
    assert isinstance(item, Undecodable) and "documentKey._id" in item.reason and item.raw


def position(inc: int) -> MongoResumeToken:
    return MongoResumeToken(SERVER, token=token(1710281424, inc), ts=1710281424, inc=inc)


@pytest.mark.parametrize("fmt", ["extended_json", "json"])
def test_transactions_are_grouped_numbered_and_end_on_a_boundary(fmt: str) -> None:
    assembler = ChangeAssembler(factory(fmt))
    items: list[Any] = []
    # One transaction at one clusterTime: the events differ by txnOpIndex in their tokens.
    for n, (coll, doc_id) in enumerate([("orders", 1), ("lines", 10), ("orders", 2)]):
        items += assembler.feed(
            change("insert", 7, doc_id, tx=3, coll=coll, rest=f"2B02{n:02X}", fullDocument={"_id": doc_id})
        )
    assert len(items) == 2 and assembler.in_transaction  # the last one is held: is it the last?
    items += assembler.feed(change("insert", 8, 3, fullDocument={"_id": 3}))  # a change of no transaction
    items += assembler.feed(change("delete", 9, 3, tx=4, rest="2B0200"))
    assert assembler.in_transaction
    items += assembler.idle()  # the server had nothing more: the transaction is complete
    events = [i for i in items if isinstance(i, ChangeEvent)]
    assert [e.boundary for e in events] == [False, False, True, True, True]
    assert [e.position.event for e in events] == [1, 1, 0, 0, 0]  # type: ignore[union-attr]
    first_tx = [e.transaction for e in events[:3]]
    assert [t.id for t in first_tx] == [f"{SESSION}:3"] * 3  # type: ignore[union-attr]
    assert [(t.total_order, t.data_collection_order) for t in first_tx] == [(1, 1), (2, 1), (3, 2)]  # type: ignore[union-attr]
    assert events[3].transaction is None and events[4].transaction.id == f"{SESSION}:4"  # type: ignore[union-attr]
    source = orjson.loads(events[0].to_json())["source"]
    assert source["txnNumber"] == 3 and str(SESSION) not in source["lsid"]  # lsid as Extended JSON
    assert orjson.loads(source["lsid"])["id"]["$binary"]["subType"] == "04"
    before = orjson.loads(events[4].to_json())["before"]  # the delete names its document
    assert (orjson.loads(before) if fmt == "extended_json" else before) == {"_id": 3}
    if fmt == "json":  # Debezium's shape has no `before` on a delete without pre-images (contract V3)
        assert ContractChecker().check_all(items) == []


def test_a_new_transaction_right_after_another_closes_it() -> None:
    assembler = ChangeAssembler(factory())
    items = assembler.feed(change("insert", 1, 1, tx=1, fullDocument={"_id": 1}))
    items += assembler.feed(change("insert", 2, 2, tx=2, fullDocument={"_id": 2}))
    items += assembler.idle()
    assert [(i.boundary, i.transaction.total_order) for i in items] == [(True, 1), (True, 1)]  # type: ignore[union-attr]


def test_control_events_close_a_transaction_and_are_returned() -> None:
    assembler = ChangeAssembler(factory())
    items = assembler.feed(change("insert", 1, 1, tx=1, fullDocument={"_id": 1}))
    rename = change("rename", 2, to={"db": "shop", "coll": "orders_old"})
    del rename["documentKey"]
    items += assembler.feed(rename)
    assert isinstance(items[0], ChangeEvent) and items[0].boundary
    control = items[1]
    assert isinstance(control, Control) and control.kind == "rename"
    assert (control.namespace, control.target) == ("shop.orders", "shop.orders_old")
    invalidate = {"_id": {"_data": token(1710281424, 3)}, "operationType": "invalidate",
                  "clusterTime": Timestamp(1710281424, 3)}  # fmt: skip
    (inv,) = assembler.feed(invalidate)
    assert isinstance(inv, Control) and inv.kind == "invalidate" and inv.token == invalidate["_id"]


def test_database_stream_changes_name_their_collection() -> None:
    # A database or deployment stream: the namespace comes from each change's `ns`.
    f = factory()
    f.default_namespace = ("other", "ignored")
    event = f.change(
        change("insert", 1, 1, coll="customers", fullDocument={"_id": 1}), position(1), True, None
    )
    assert (event.source.db, event.source.table, event.source.extra["collection"]) == (
        "shop",
        "customers",
        "customers",
    )
    raw = change("insert", 1, 1, fullDocument={"_id": 1})
    del raw["ns"]  # mongo-java-server: a collection stream's changes name no namespace
    assert f.change(raw, position(1), True, None).source.qualified_table == "other.ignored"


def test_token_time_and_positions() -> None:
    assert token_time(token(1710281424, 7)) == (1710281424, 7)
    assert token_time("6b151e3800000002") == (0x6B151E38, 2)  # mongo-java-server's token
    assert token_time("zz") is None
    a, b = position(1), position(2)
    by_time = MongoResumeToken(SERVER, ts=1710281424, inc=2)  # a start point known by time only
    pending = MongoResumeToken(SERVER, token=b.token, ts=b.ts, inc=b.inc, snapshot_pending=True)
    assert a < by_time < pending < b < b.at_event(1) < position(3)
    for p in (a, by_time, pending, b.at_event(1)):
        assert decode(p.encode()) == p
    assert "snapshot_pending" not in a.encode()
    with pytest.raises(CdcError) as exc:
        _ = a < MongoResumeToken("mongodb://elsewhere:27017", token=a.token, ts=a.ts, inc=a.inc)
    assert exc.value.kind is ErrorKind.SERVER_MISMATCH


@pytest.mark.parametrize("code", [286, 280, 136])
def test_a_lost_resume_point_names_the_re_snapshot(code: int) -> None:
    exc = errors.OperationFailure("Resume of change stream was not possible", code=code)
    err = map_error(exc, "resuming")
    assert err.kind is ErrorKind.POSITION_LOST
    assert "cdc-logs offsets reset -c <pipeline.yaml>" in err.hint and "new snapshot" in err.hint


def test_scopes() -> None:
    one = Scope.of(["shop.orders"], None)
    assert (one.database, one.collection, one.match) == ("shop", "orders", {})
    two = Scope.of(["shop.orders", "shop.lines"], None)
    assert two.database == "shop" and two.collection is None and two.match["$or"][0] == {
        "ns.db": "shop", "ns.coll": "orders"}  # fmt: skip
    spread = Scope.of(["shop.orders", "crm.people"], None)
    assert spread.database is None and spread.match
    assert Scope.of([], "shop").database == "shop" and Scope.of([], None).describe() == "the whole deployment"
    assert uri_hosts("mongodb://u:p@h1:27017,h2:27018/db?replicaSet=rs0") == "h1:27017,h2:27018"


def test_config_aliases_and_refusals() -> None:
    cfg = MongoSourceConfig.model_validate(
        {"type": "mongo", "dsn": "mongodb://h:27017", "collection": "shop.orders", "snapshot_mode": "never"}
    )
    assert cfg.collections == ["shop.orders"] and cfg.snapshot is False and cfg.type == "mongo"
    with pytest.raises(ValueError, match="mongodb://"):
        MongoSourceConfig.model_validate({"type": "mongodb", "uri": "postgresql://x:secretpw@h/db"})
    with pytest.raises(ValueError, match=r"db\.collection"):
        MongoSourceConfig.model_validate({"type": "mongodb", "uri": "mongodb://h", "collections": ["orders"]})
    with pytest.raises(ValueError, match="not both"):
        MongoSourceConfig.model_validate(
            {"type": "mongodb", "uri": "mongodb://h", "collections": ["a.b"], "database": "a"}
        )


@pytest.mark.parametrize(
    ("scope", "says"),
    [
        ({"collections": []}, "omit `collections` to watch the whole deployment"),
        ({"collections": ["shop.a", "shop.b", "shop.a"]}, "shop.a more than once"),
        ({"collections": ["admin.users"]}, "internal collection"),
        ({"collections": ["local.oplog.rs"]}, "internal collection"),
        ({"collections": ["config.chunks"]}, "internal collection"),
        ({"collections": ["shop.system.profile"]}, "internal collection"),
        ({"database": "local"}, "MongoDB's own"),
    ],
)
def test_config_refuses_scopes_that_capture_nothing_or_mongodbs_own(scope: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        MongoSourceConfig.model_validate({"type": "mongodb", "uri": "mongodb://h", **scope})
    # omitted: the whole deployment; a collection named like system.* inside a name is fine
    assert MongoSourceConfig.model_validate({"type": "mongodb", "uri": "mongodb://h"}).collections == []
    ok = MongoSourceConfig.model_validate(
        {"type": "mongodb", "uri": "mongodb://h", "collections": ["s.my.system"]}
    )
    assert ok.collections == ["s.my.system"]


@pytest.mark.parametrize("query", ["", "?replicaSet=rs9"])
def test_no_server_at_the_address_names_what_to_check(query: str) -> None:
    """Nothing to reconnect to before the first connection: the hint says what to check."""
    from cdc_logs.readers.mongo.connection import connect

    with pytest.raises(CdcError) as exc:
        connect(f"mongodb://127.0.0.1:1/{query}", timeout_ms=300)  # nothing listens on port 1
    assert exc.value.kind is ErrorKind.CONNECTION and "reconnects" not in exc.value.hint
    assert "check the server address" in exc.value.hint
    assert ("remove replicaSet=" in exc.value.hint) == bool(query)


def test_the_uris_own_timeouts_win() -> None:
    """serverSelectionTimeoutMS / connectTimeoutMS written in the URI are the user's: cdc-logs' own
    10 s defaults apply only where the URI sets none (keyword arguments override PyMongo's URI)."""
    import time

    from cdc_logs.readers.mongo.connection import connect

    started = time.monotonic()
    with pytest.raises(CdcError) as exc:
        connect("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200&connectTimeoutMS=150")
    assert time.monotonic() - started < 5, "the URI's 200 ms, not the 10 s default"
    assert "Timeout: 0.2s" in exc.value.message and "connectTimeoutMS: 150.0ms" in exc.value.message


def test_snapshot_rows_and_heartbeats_keep_the_contract() -> None:
    f = factory("json")
    point = position(1)
    items: list[Any] = [Heartbeat(MongoResumeToken(SERVER, token=point.token, ts=point.ts, inc=point.inc,
                                                   snapshot_pending=True))]  # fmt: skip
    docs = [{"_id": i, "v": i} for i in range(3)]
    for i, doc in enumerate(docs):
        marker = "first" if i == 0 else "last" if i == 2 else "true"
        items.append(f.snapshot_row("shop", "orders", doc, marker, point, i == 2))
    items += ChangeAssembler(f).feed(change("insert", 2, 9, fullDocument={"_id": 9}))
    assert ContractChecker().check_all(items) == []


def test_opensearch_mirrors_a_document_under_its_id() -> None:
    """OpenSearch refuses `_id` inside a document: the mirror sends it as the document's `_id` only."""
    from cdc_logs.sinks.search import SearchSink

    event = factory("json").change(
        change("insert", 1, 7, fullDocument={"_id": 7, "v": 1}), position(1), True, None
    )
    meta, body = SearchSink("http://127.0.0.1:9", index="i").bulk_lines([event], ["x"])
    assert orjson.loads(meta) == {"index": {"_index": "i", "_id": "7"}} and orjson.loads(body) == {"v": 1}


@pytest.mark.parametrize("fmt", ["extended_json", "json"])
def test_connect_schemas_describe_both_formats(fmt: str) -> None:
    """`schemas: true` / `tail --schemas`: Debezium's MongoDB value schema (documents as Json text,
    updateDescription) or, for plain documents, a row struct of the top-level fields."""
    from cdc_logs import connect_schema
    from tests.jsonconverter import conforms_record

    f = factory(fmt)
    description = {"updatedFields": {"name": "Bob"}, "removedFields": ["x"], "truncatedArrays": []}
    events = [
        f.change(change("insert", 1, fullDocument=DOC), position(1), True, None),
        f.change(
            change("update", 2, updateDescription=description, fullDocument=DOC), position(2), True, None
        ),
        f.change(change("delete", 3), position(3), True, None),
        f.snapshot_row("shop", "orders", DOC, "last", position(3), True),
    ]
    for event in events:
        value = conforms_record(connect_schema.envelope_record(event))
        assert value["payload"] == orjson.loads(event.to_json())
        key = conforms_record(connect_schema.key_record(event, None, event.key))
        assert key["payload"] == event.key
    record = orjson.loads(connect_schema.envelope_record(events[1]))
    names = [field["field"] for field in record["schema"]["fields"]]
    if fmt == "extended_json":
        assert names[:3] == ["before", "after", "updateDescription"]
        assert record["schema"]["fields"][1]["name"] == "io.debezium.data.Json"
    else:
        assert names[:2] == ["before", "after"] and names[-1] == "updateDescription"


def test_a_delete_without_pre_image_describes_its_key() -> None:
    event = factory("json").change(change("delete", 3, 42), position(3), True, None)
    assert event.before == {"_id": 42} and event.schema is not None
    column = event.schema.column("_id")
    assert column is not None and (column.type, column.key) == ("int64", True)


def test_the_readers_answer_to_drop_rename_and_invalidate() -> None:
    """What the reader does with each control event (reader.py); mongo-java-server sends none of
    rename/invalidate, so this is the only test of those decisions."""
    from cdc_logs.readers.mongo.reader import MongoReader

    reader = MongoReader("mongodb://h", collections=["shop.orders"], database=None, pipeline_name="p")
    at = position(5)
    assert reader._control(Control("drop", at, "shop.orders")) is None  # logged; the stream goes on
    assert reader._control(Control("dropDatabase", at, "shop")) is None
    token = {"_data": at.token}
    assert reader._control(Control("invalidate", at, "shop.orders", token=token)) == token  # reopen after it
    with pytest.raises(CdcError) as exc:
        reader._control(Control("rename", at, "shop.orders", "shop.orders_2024"))
    assert exc.value.kind is ErrorKind.NOT_FOUND and "collections: [shop.orders_2024]" in exc.value.hint
    assert "offsets reset" in exc.value.hint
    # Renamed onto another captured name, or within a database stream: only logged.
    both = MongoReader("mongodb://h", collections=["shop.a", "shop.b"], database=None, pipeline_name="p")
    assert both._control(Control("rename", at, "shop.a", "shop.b")) is None
    whole = MongoReader("mongodb://h", collections=[], database="shop", pipeline_name="p")
    assert whole._control(Control("rename", at, "shop.a", "shop.c")) is None


def test_json_updates_always_carry_a_row() -> None:
    # updateLookup on a document deleted since: no fullDocument; its delete follows in the stream.
    raw = change("update", 5, 42, updateDescription={"updatedFields": {"n": 8}, "removedFields": []})
    event = factory("json").change(raw, position(5), True, None)
    assert event.after == {"_id": 42} and ContractChecker().check_all([event]) == []
    with pytest.raises(ValueError, match="updates need their document"):
        MongoSourceConfig.model_validate(
            {"type": "mongodb", "uri": "mongodb://h", "document_format": "json", "full_document": "default"}
        )


def test_unset_and_replace_clear_the_target_columns_of_the_sql_sink(tmp_path: Any) -> None:
    """`document_format: json` into the SQL apply sink: `after` is the whole document, so a field gone
    by $unset or by a replace is NULL in the target row (not the value it had), while a NOT NULL
    target column of the user's own keeps its default."""
    import sqlalchemy as sa
    from structlog.testing import capture_logs

    from cdc_logs.sinks.sql_apply.apply import SqlSink

    url = f"sqlite:///{tmp_path / 'target.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (_id INTEGER PRIMARY KEY, name TEXT, phone TEXT, "
                             "n INTEGER, mine TEXT NOT NULL DEFAULT 'own')"))  # fmt: skip
    f = factory("json")
    removed = {"updatedFields": {}, "removedFields": ["phone"]}
    changes = [
        change("insert", 1, 7, fullDocument={"_id": 7, "name": "Anne", "phone": "555", "n": 1}),
        change("update", 2, 7, updateDescription=removed, fullDocument={"_id": 7, "name": "Anne", "n": 1}),
    ]
    sink = SqlSink(url, target_schema=None, auto_create=True)
    rows = lambda: [tuple(r) for r in engine.connect().execute(sa.text("SELECT * FROM orders"))]  # noqa: E731
    try:
        with capture_logs() as logs:
            sink.write([f.change(c, position(i + 1), True, None) for i, c in enumerate(changes)])
            assert rows() == [(7, "Anne", None, 1, "own")]  # $unset phone: NULL
            doc = {"_id": 7, "n": 2}
            sink.write([f.change(change("replace", 3, 7, fullDocument=doc), position(3), True, None)])
            assert rows() == [(7, None, None, 2, "own")]  # replaced without name: NULL
        # Each document shape is a new table schema: no warning about the fields it lacks.
        assert not [e for e in logs if "does not send" in e["event"]], logs
        # A Postgres-style partial row (no whole_row): absent columns keep their values.
        partial = f.change(
            change("replace", 4, 7, fullDocument={"_id": 7, "name": "Bo"}), position(4), True, None
        )
        partial.whole_row = False
        sink.write([partial])
        assert rows() == [(7, "Bo", None, 2, "own")]
    finally:
        sink.close()
        engine.dispose()


def test_non_finite_doubles_are_spelled_as_jackson_writes_them() -> None:
    """NaN and the infinities have no JSON form: "NaN", "Infinity", "-Infinity", as Kafka's JSON
    converter (Jackson) writes a double and the Postgres reader a float8; the schema still says double,
    and the SQL sink reads them back as doubles."""
    from cdc_logs.sinks.sql_apply.sql_types import _float

    doc = {"_id": 1, "a": float("nan"), "b": float("inf"), "c": float("-inf"), "d": 1.5}
    event = factory("json").change(change("insert", 1, 1, fullDocument=doc), position(1), True, None)
    assert orjson.loads(event.to_json())["after"] == {
        "_id": 1, "a": "NaN", "b": "Infinity", "c": "-Infinity", "d": 1.5
    }  # fmt: skip
    assert event.schema is not None
    for name in "abcd":
        column = event.schema.column(name)
        assert column is not None and (column.type, column.source_type) == ("float64", "DOUBLE")
    assert [_float(event.after[n]) for n in "bcd"] == [float("inf"), float("-inf"), 1.5]  # type: ignore[index]
    assert plain([float("-inf")]) == ["-Infinity"]


def test_a_type_mismatch_is_warned_once_whatever_the_document_shapes(tmp_path: Any) -> None:
    """Each document shape is a new table schema for the SQL sink: its warning about a target column
    whose type differs is said once per table, column and mismatch, not once per shape."""
    from structlog.testing import capture_logs

    from cdc_logs.sinks.sql_apply.apply import SqlSink

    f = factory("json")
    sink = SqlSink(f"sqlite:///{tmp_path / 'target.db'}", target_schema=None, auto_create=True)
    try:
        sink.write(
            [f.change(change("insert", 1, 1, fullDocument={"_id": 1, "n": 1}), position(1), True, None)]
        )
        with capture_logs() as logs:
            for i, extra in enumerate([{}, {"x": 1}, {"y": 1}], start=2):
                doc = {"_id": i, "n": "7.5", **extra}  # n: integer column, now text
                sink.write([f.change(change("insert", i, i, fullDocument=doc), position(i), True, None)])
    finally:
        sink.close()
    said = [(e["column"], e["mismatch"]) for e in logs if "type differs" in e["event"]]
    assert said == [("n", "is integer, and the source now sends text (STRING)")], logs


def test_a_null_field_is_no_type_mismatch(tmp_path: Any) -> None:
    """A field holding null has no type (MongoDB): writing it into the integer column that an earlier
    document made is no mismatch, and says nothing (it warned "the source now sends text (NULL)")."""
    from structlog.testing import capture_logs

    from cdc_logs.sinks.sql_apply.apply import SqlSink

    f = factory("json")
    sink = SqlSink(f"sqlite:///{tmp_path / 'target.db'}", target_schema=None, auto_create=True)
    try:
        sink.write(
            [f.change(change("insert", 1, 1, fullDocument={"_id": 1, "n": 1}), position(1), True, None)]
        )
        with capture_logs() as logs:
            doc = {"_id": 2, "n": None}
            sink.write([f.change(change("insert", 2, 2, fullDocument=doc), position(2), True, None)])
    finally:
        sink.close()
    assert [e for e in logs if "type differs" in e["event"]] == []


def test_a_server_without_deployment_streams_is_unsupported_naming_the_collection_scope() -> None:
    # mongo-java-server's answer to a deployment change stream (seen against the stack's server)
    failure = errors.OperationFailure("no such command: 'aggregate'", 59, {"code": 59, "ok": 0})
    error = map_error(failure, "opening the change stream on the whole deployment")
    assert error.kind is ErrorKind.UNSUPPORTED and "--collection db.c" in error.hint


@pytest.mark.parametrize("page", ["mongo.md", "oracle.md"])
def test_the_source_pages_pipeline_examples_load(page: str, tmp_path: Any) -> None:
    """The YAML a user copies from docs/sources/<page> loads as written (`off` is a YAML boolean:
    mongo.md's `full_document_before_change: off` was refused as `False`)."""
    from pathlib import Path

    import yaml

    from cdc_logs.configfile import load_config

    text = (Path(__file__).parents[2] / "docs" / "sources" / page).read_text()
    blocks = re.findall(r"^```yaml\n(.*?)^```$", text, flags=re.S | re.M)
    assert blocks
    for block in blocks:
        data = {"name": "docs", **yaml.safe_load(block), "destination": {"type": "stdout"}}
        path = tmp_path / "pipeline.yaml"
        path.write_text(yaml.safe_dump(data))
        env = {name: "example-value" for name in re.findall(r"\$\{(\w+)", block)}
        assert load_config(path, env=env).all_sources()
