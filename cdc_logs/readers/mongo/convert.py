"""MongoDB documents and change-stream events -> `ChangeEvent`s in Debezium's MongoDB shape (sans-IO).

Nothing here talks to a server: it turns the documents PyMongo decodes (BSON types: ObjectId,
datetime, Decimal128, Binary, ...) into envelopes, and is tested on recorded change documents
shaped exactly like mongod's (tests/unit/test_mongo_convert.py).

Two document formats (`document_format`):

* `extended_json` (default, Debezium's MongoDB connector): `before`/`after` are written as JSON text
  in relaxed Extended JSON (`{"_id": {"$oid": "..."}, "at": {"$date": "...Z"}}`), the key is
  `{"id": "<_id as Extended JSON>"}`, and an update keeps `updateDescription` (`updatedFields` as
  JSON text, `removedFields`, `truncatedArrays`).
* `json`: `before`/`after` are plain JSON objects (ObjectId -> hex string, datetime -> ISO-8601 UTC
  text, Decimal128 -> decimal text, binary -> base64), and the key is `{"_id": <that value>}`, so row
  sinks (SQL apply, Redis, search indexes) apply documents like rows.

In memory `before`/`after` are always objects (the relaxed Extended JSON form or the plain one), so
transforms and row sinks see documents; only the serialized envelope carries them as text
(`ChangeEvent.text_documents`).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

import orjson
from bson import json_util
from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.json_util import JSONMode, JSONOptions
from bson.objectid import ObjectId
from bson.timestamp import Timestamp

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, Transaction, dumps
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import MongoResumeToken
from cdc_logs.schema import Column, Semantic, TableSchema

DocumentFormat = Literal["extended_json", "json"]
CONNECTOR = "mongodb"
_RELAXED = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True, tzinfo=dt.UTC)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

#: operationType -> op of a data change.
DATA_OPS = {"insert": Op.CREATE, "update": Op.UPDATE, "replace": Op.UPDATE, "delete": Op.DELETE}


def extended_json(value: Any) -> str:
    """`value` as relaxed Extended JSON text (Debezium's key `id` and `updatedFields`)."""
    return json_util.dumps(value, json_options=_RELAXED)


def relaxed_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """A BSON document as the JSON object of its relaxed Extended JSON form."""
    parsed: dict[str, Any] = orjson.loads(extended_json(document))
    return parsed


def plain(value: Any) -> Any:
    """A BSON value as a JSON-ready value (the `json` document format)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):  # Int64 is an int
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        # JSON has no NaN/Infinity: Jackson's spelling, as Kafka's JSON converter writes a double and
        # the Postgres reader a float8 (docs/envelope.md); typed sinks read them back as doubles.
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        utc = aware.astimezone(dt.UTC).replace(tzinfo=None)
        return utc.isoformat(timespec="milliseconds") + "Z"  # BSON dates have milliseconds
    if isinstance(value, Decimal128):
        return str(value.to_decimal())
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Binary) and value.subtype in (3, 4) and len(value) == 16:
        return str(value.as_uuid(value.subtype))
    if isinstance(value, bytes):  # Binary is bytes
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Timestamp):
        return {"t": value.time, "i": value.inc}
    # Regex, Code, MinKey, MaxKey, DBRef, ...: their relaxed Extended JSON object
    return orjson.loads(extended_json(value))


def top_level(value: Any) -> Any:
    """A top-level field in the `json` format: a plain value; nested documents and arrays (and BSON
    types without a JSON form, whose Extended JSON object stands in) as JSON text, as Postgres jsonb
    columns are carried (io.debezium.data.Json): a row has flat columns whatever the document nests."""
    out = plain(value)
    if isinstance(out, dict | list):
        return dumps(out).decode()
    return out


def _column(name: str, value: Any, fmt: DocumentFormat, key: bool) -> Column:
    """How a top-level field is encoded in the envelope (for `schemas: true` and typed sinks)."""
    optional = not key
    if isinstance(value, bool):
        return Column(name, "boolean", None, "BOOLEAN", optional=optional, key=key)
    if isinstance(value, Int64):
        return Column(name, "int64", None, "INT64", optional=optional, key=key)
    if isinstance(value, int):
        source = "INT32" if -(2**31) <= value < 2**31 else "INT64"
        return Column(name, "int64", None, source, optional=optional, key=key)
    if isinstance(value, float):
        return Column(name, "float64", None, "DOUBLE", optional=optional, key=key)
    if isinstance(value, str):
        return Column(name, "string", None, "STRING", optional=optional, key=key)
    if value is None:
        return Column(name, "string", None, "NULL", optional=True, key=key)
    if fmt == "extended_json":
        # Nested documents, arrays, and ObjectId, dates, decimals, binary...: objects in relaxed
        # Extended JSON (the envelope writes the whole document as JSON text anyway).
        kind = "array" if isinstance(value, list | tuple) else "struct"
        return Column(name, kind, None, _bson_type(value), optional=optional, key=key)
    if isinstance(value, dt.datetime):
        return Column(name, "string", Semantic.ZONED_TIMESTAMP, "DATE", optional=optional, key=key)
    if isinstance(value, ObjectId):
        return Column(name, "string", None, "OBJECTID", optional=optional, key=key)
    if isinstance(value, Decimal128):
        return Column(name, "string", None, "DECIMAL128", optional=optional, key=key)
    if isinstance(value, Binary) and value.subtype in (3, 4) and len(value) == 16:
        return Column(name, "string", Semantic.UUID, "BINDATA", optional=optional, key=key)
    if isinstance(value, bytes):
        return Column(name, "bytes", None, "BINDATA", optional=optional, key=key)
    if isinstance(value, Timestamp):
        return Column(name, "string", Semantic.JSON, "TIMESTAMP", optional=optional, key=key)
    nested = "OBJECT" if isinstance(value, Mapping) else "ARRAY" if isinstance(value, list | tuple) else None
    return Column(name, "string", Semantic.JSON, nested or _bson_type(value), optional=optional, key=key)


def _bson_type(value: Any) -> str:
    return type(value).__name__.upper()


def token_time(data: str) -> tuple[int, int] | None:
    """The clusterTime (seconds, increment) in a resume token's `_data` hex, or None.

    mongod's token is a KeyString whose first value is the clusterTime: type byte 0x82 (Timestamp),
    then the 64-bit timestamp big-endian. mongo-java-server's is the bare 64-bit timestamp (16 hex).
    """
    try:
        if len(data) >= 18 and data[:2].upper() == "82":
            raw = int(data[2:18], 16)
        elif len(data) == 16:
            raw = int(data, 16)
        else:
            return None
    except ValueError:
        return None
    return raw >> 32, raw & 0xFFFFFFFF


def position_of(server: str, change: Mapping[str, Any]) -> MongoResumeToken:
    """A change's own resume point (its `_id` token and `clusterTime`)."""
    token = change.get("_id")
    data = token.get("_data") if isinstance(token, Mapping) else None
    if not isinstance(data, str) or not data:
        raise CdcError(
            ErrorKind.DECODE,
            "a change event without a resume token (`_id._data`): the pipeline removed or changed `_id`",
            "do not project `_id` out of the change stream",
        )
    cluster = change.get("clusterTime")
    if isinstance(cluster, Timestamp):
        ts, inc = cluster.time, cluster.inc
    else:
        ts, inc = token_time(data) or (0, 0)
    return MongoResumeToken(server, token=data, ts=ts, inc=inc)


class EventFactory:
    """Builds the envelopes of one source: its name, replica set and document format."""

    def __init__(self, server: str, pipeline: str, replica_set: str, fmt: DocumentFormat) -> None:
        self.server = server
        self.pipeline = pipeline
        self.replica_set = replica_set
        self.format: DocumentFormat = fmt
        self._schemas: dict[tuple[str, str, tuple[Column, ...]], TableSchema] = {}
        #: (db, collection) of a collection stream: the namespace of a change that names none
        #: (mongo-java-server sends no `ns`; mongod always does).
        self.default_namespace: tuple[str, str] | None = None

    def namespace(self, change: Mapping[str, Any]) -> tuple[str, str]:
        """(db, collection) a change document names (`ns`), else the stream's own collection."""
        ns = change.get("ns")
        if isinstance(ns, Mapping) and ns.get("db"):
            return str(ns.get("db")), str(ns.get("coll") or "")
        return self.default_namespace or ("", "")

    # -- values --------------------------------------------------------------------------------------
    def document(self, document: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if document is None:
            return None
        if self.format == "json":
            return {str(k): top_level(v) for k, v in document.items()}
        return relaxed_document(document)

    def key(self, document_id: Any) -> dict[str, Any]:
        if self.format == "json":
            return {"_id": top_level(document_id)}
        return {"id": extended_json(document_id)}  # Debezium's MongoDB key

    def schema(self, db: str, coll: str, document: Mapping[str, Any] | None) -> TableSchema:
        columns: tuple[Column, ...] = (_column("_id", None, self.format, True),)
        if document is not None:
            columns = tuple(_column(str(k), v, self.format, k == "_id") for k, v in document.items())
            if "_id" not in document:
                columns = (_column("_id", None, self.format, True), *columns)
        cache_key = (db, coll, columns)
        schema = self._schemas.get(cache_key)
        if schema is None:
            version = abs(hash(columns)) % (2**31)
            schema = TableSchema(db, None, coll, columns, version=version)
            if len(self._schemas) > 10_000:  # documents of ever-new shapes: do not grow without bound
                self._schemas.clear()
            self._schemas[cache_key] = schema
        return schema

    def source(
        self, db: str, coll: str, ts: int, inc: int, snapshot: str, extra: Mapping[str, Any] | None = None
    ) -> SourceInfo:
        fields: dict[str, Any] = {"rs": self.replica_set, "collection": coll, "ord": inc}
        fields["lsid"] = None
        fields["txnNumber"] = None
        if extra:
            fields.update(extra)
        return SourceInfo(CONNECTOR, self.pipeline, db, coll, None, ts * 1000, snapshot, fields)

    # -- events --------------------------------------------------------------------------------------
    def snapshot_row(
        self,
        db: str,
        coll: str,
        document: Mapping[str, Any],
        marker: str,
        position: MongoResumeToken,
        last: bool,
    ) -> ChangeEvent:
        if "_id" not in document:
            raise CdcError(ErrorKind.DECODE, f"a document of {db}.{coll} without _id", "")
        event = ChangeEvent(
            Op.READ,
            self.source(db, coll, position.ts, position.inc, marker),
            after=self.document(document),
            key=self.key(document["_id"]),
            ts_ms=_now_ms(),
            position=position,
            boundary=last,
            text_documents=self.format == "extended_json",
            whole_row=True,
        )
        event.schema = self.schema(db, coll, document)
        return event

    def change(
        self,
        change: Mapping[str, Any],
        position: MongoResumeToken,
        boundary: bool,
        transaction: Transaction | None,
    ) -> ChangeEvent:
        """The envelope of one insert/update/replace/delete change document."""
        kind = change.get("operationType")
        op = DATA_OPS.get(str(kind))
        if op is None:
            raise CdcError(ErrorKind.DECODE, f"operationType {kind!r} is not a document change", "")
        db, coll = self.namespace(change)
        full = change.get("fullDocument")
        before_doc = change.get("fullDocumentBeforeChange")
        document_id = _document_id(change, full, before_doc)
        key_doc = change.get("documentKey")
        if not (isinstance(key_doc, Mapping) and "_id" in key_doc):
            key_doc = {"_id": document_id}
        after = self.document(full) if op is not Op.DELETE else None
        before = self.document(before_doc)
        if after is None and op is Op.UPDATE and self.format == "json":
            # updateLookup found no document (deleted since: its delete follows in the stream). A row
            # sink needs a row: the key alone, so the update applies nothing the delete will not undo.
            after = self.document(key_doc)
        if before is None and op is Op.DELETE:
            # Without a pre-image, the delete's `before` is the document's key (documentKey: _id, plus
            # the shard key on a sharded collection), shaped as a pre-image holding only the key: row
            # sinks find the row by it, and a consumer of the value alone (file, stdout, `tail`) sees
            # which document went. Debezium's MongoDB connector leaves `before` null there and names
            # the document in the Kafka key only (docs/sources/mongo.md).
            before = self.document(key_doc)
        extra: dict[str, Any] = {}
        lsid = change.get("lsid")
        if lsid is not None:
            extra["lsid"] = extended_json(lsid)
            extra["txnNumber"] = int(change.get("txnNumber") or 0)
        wall = change.get("wallTime")
        if isinstance(wall, dt.datetime):
            extra["wallTime"] = _epoch_ms(wall)
        event = ChangeEvent(
            op,
            self.source(db, coll, position.ts, position.inc, "false", extra),
            before=before,
            after=after,
            key=self.key(document_id),
            ts_ms=_now_ms(),
            transaction=transaction,
            position=position,
            boundary=boundary,
            text_documents=self.format == "extended_json",
            # A fetched or sent document is the whole document: a field it lacks ($unset, replaced
            # away) is gone, so row sinks clear that column. Not the key-only stand-in above.
            whole_row=op is not Op.DELETE and full is not None,
        )
        if kind == "update":
            event.update_description = self.update_description(change.get("updateDescription"))
        shape = full if full is not None else before_doc if before_doc is not None else key_doc
        event.schema = self.schema(db, coll, shape)
        return event

    def update_description(self, description: Any) -> dict[str, Any] | None:
        """Debezium's `updateDescription`: updatedFields as JSON text, removedFields, truncatedArrays."""
        if not isinstance(description, Mapping):
            return None  # a server that does not send one (mongo-java-server)
        updated = description.get("updatedFields")
        truncated = description.get("truncatedArrays")
        return {
            "removedFields": list(description.get("removedFields") or []) or None,
            "updatedFields": (
                extended_json(updated) if self.format == "extended_json" else dumps(plain(updated)).decode()
            )
            if updated is not None
            else None,
            "truncatedArrays": [
                {"field": str(t.get("field")), "size": int(t.get("newSize", 0))} for t in truncated
            ]
            if truncated
            else None,
        }


def _document_id(change: Mapping[str, Any], full: Any, before: Any) -> Any:
    """`_id` of the changed document: `documentKey._id` (mongod always sends it; on sharded
    collections documentKey also holds the shard key). A server whose documentKey lacks `_id`
    (mongo-java-server's update events carry the update specification there) falls back to the
    full document's or the pre-image's `_id`; with none of them the change cannot be keyed."""
    key = change.get("documentKey")
    if isinstance(key, Mapping) and "_id" in key:
        return key["_id"]
    for document in (full, before):
        if isinstance(document, Mapping) and "_id" in document:
            return document["_id"]
    raise CdcError(
        ErrorKind.DECODE,
        f"{change.get('operationType')} change without documentKey._id",
        "the server sent a change event that names no document; it is dead-lettered",
    )


def _epoch_ms(value: dt.datetime) -> int:
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return (aware - _EPOCH) // dt.timedelta(milliseconds=1)


def _now_ms() -> int:
    from cdc_logs.envelope import now_ms

    return now_ms()
