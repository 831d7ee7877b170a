"""The `mongodb` source: its config (change streams through PyMongo) and how it is built."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import SourceConfigBase
from cdc_logs.readers.base import Reader

_NAMESPACE = re.compile(r"^[^.$\s/\\\"]+\.[^$\s]+$")
_INTERNAL_DBS = ("admin", "config", "local")
_SNAPSHOT_MODES = {"initial": True, "always": True, "never": False, "no_data": False}


class MongoSourceConfig(SourceConfigBase):
    """MongoDB change streams (a replica set or sharded cluster); see docs/sources/mongo.md."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "mongodb",
                    "uri": "mongodb://cdc:${MONGO_PASSWORD}@db1.internal:27017/?replicaSet=rs0",
                    "collections": ["shop.orders"],
                }
            ]
        }
    )

    type: Literal["mongodb", "mongo"] = Field(
        description="Selects this source; `mongo` is an alias of `mongodb`."
    )
    uri: SecretStr = Field(
        description="MongoDB connection string (mongodb:// or mongodb+srv://) of a replica set or a mongos, "
        "for a user with `find` and `changeStream` on what is watched (and `clusterMonitor` for "
        "`cdc-logs doctor`). A secret: never logged; write the password as ${VAR}. Also accepted as "
        "`dsn`, `url`, `connection_string`.",
        examples=["mongodb://cdc:${MONGO_PASSWORD}@db1.internal:27017/?replicaSet=rs0"],
    )
    collections: list[str] = Field(
        default_factory=list,
        description="Collections to capture, as db.collection. One collection: a collection change stream; "
        "several in one database: that database's stream filtered to them; several databases: the "
        "deployment's stream filtered. Omit it to watch the deployment (`[]` is refused); MongoDB's own "
        "namespaces (admin, config, local, *.system.*) and duplicates are refused. The seed's `collection:` "
        "(one name) is accepted too.",
        examples=[["shop.orders", "shop.customers"]],
    )
    database: str | None = Field(
        None,
        description="Capture every collection of this database (a database change stream). Excludes "
        "`collections`. With neither, the whole deployment is captured (every database but admin, "
        "local and config).",
        examples=["shop"],
    )
    full_document: Literal["updateLookup", "whenAvailable", "required", "default"] = Field(
        "updateLookup",
        description="The change stream's `fullDocument`: what `after` of an update holds. updateLookup: "
        "the document as it is when the change is read (a later state is possible); whenAvailable / "
        "required: the post-image (MongoDB 6.0+ with changeStreamPreAndPostImages on the collection; "
        "required fails when it is missing); default: none (`after` is null on updates, "
        "`updateDescription` has the delta).",
        examples=["whenAvailable"],
    )
    full_document_before_change: Literal["off", "whenAvailable", "required"] = Field(
        "off",
        description="The change stream's `fullDocumentBeforeChange`: `before` of updates and deletes "
        "from pre-images (MongoDB 6.0+, changeStreamPreAndPostImages enabled on the collection). off: "
        "`before` is null.",
        examples=["whenAvailable"],
    )
    document_format: Literal["extended_json", "json"] = Field(
        "extended_json",
        description="extended_json: Debezium's MongoDB shape (`before`/`after` as JSON text in relaxed "
        'Extended JSON, key {"id": "<_id as Extended JSON>"}). json: `before`/`after` as plain JSON '
        'objects (ObjectId as hex text, dates as ISO-8601 UTC text, Decimal128 as text), key {"_id": ...}; '
        "use it for row sinks (SQL apply, Redis, search).",
        examples=["json"],
    )
    snapshot: bool = Field(
        True,
        description="On the first run (no stored position): emit the existing documents as op r, then "
        "stream from a resume point taken before the snapshot (no gap). false: stream from now. A stored "
        "position always wins. The seed's `snapshot_mode` (initial | never | no_data) is accepted too.",
    )
    batch_size: int = Field(
        1000,
        ge=1,
        description="Documents per batch of the snapshot and of the change stream.",
        examples=[500],
    )
    max_await_ms: int = Field(
        500,
        ge=10,
        description="Milliseconds the server waits for new changes before it answers an empty batch: an "
        "open transaction ends and a heartbeat is taken then.",
        examples=[1000],
    )
    heartbeat_interval_ms: int = Field(
        10_000,
        ge=0,
        description="Milliseconds between heartbeats of an idle stream (the server's latest resume token), "
        "so the stored position stays inside the oplog window. 0 turns them off.",
        examples=[30_000],
    )

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias in ("dsn", "url", "connection_string"):
                if alias in data and "uri" not in data:
                    data["uri"] = data.pop(alias)
            if "collection" in data and "collections" not in data:
                data["collections"] = [data.pop("collection")]
            if "snapshot_mode" in data and "snapshot" not in data:
                mode = str(data.pop("snapshot_mode"))
                if mode not in _SNAPSHOT_MODES:
                    raise ValueError(f"snapshot_mode must be one of {', '.join(_SNAPSHOT_MODES)}")
                data["snapshot"] = _SNAPSHOT_MODES[mode]
        return data

    @field_validator("full_document_before_change", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as the boolean false: `full_document_before_change: off`
        # as the docs write it must mean "off", not be refused as False.
        return "off" if value is False else value

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if not text.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("a MongoDB URI starts with mongodb:// or mongodb+srv://")  # never the value
        return value

    @field_validator("collections")
    @classmethod
    def _namespaces(cls, value: list[str]) -> list[str]:
        if not value:  # an empty list would silently mean "everything"
            raise ValueError(
                "`collections: []` lists nothing: omit `collections` to watch the whole deployment"
            )
        for name in value:
            if not _NAMESPACE.fullmatch(name):
                raise ValueError(f"{name!r} is not db.collection")
            db, coll = name.split(".", 1)
            if db in _INTERNAL_DBS or coll.startswith("system."):
                raise ValueError(
                    f"{name!r} is a MongoDB internal collection: change streams cannot watch "
                    "admin.*, config.*, local.* or *.system.*"
                )
        duplicates = sorted({n for n in value if value.count(n) > 1})
        if duplicates:
            raise ValueError(f"collections lists {', '.join(duplicates)} more than once")
        return value

    @field_validator("database")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        if value in _INTERNAL_DBS:
            raise ValueError(f"database {value!r} is MongoDB's own: change streams cannot watch it")
        return value

    @model_validator(mode="after")
    def _scope(self) -> MongoSourceConfig:
        if self.collections and self.database:
            raise ValueError("give either `collections` or `database`, not both")
        if self.document_format == "json" and self.full_document == "default":
            raise ValueError(
                "document_format: json applies documents as rows, so updates need their document: "
                "use full_document: updateLookup (or whenAvailable / required with post-images)"
            )
        return self


@registry.source(MongoSourceConfig, capabilities={"heartbeats"})
def build(cfg: MongoSourceConfig, ctx: registry.BuildContext) -> Reader:
    from cdc_logs.readers.mongo.reader import MongoReader

    return MongoReader(
        cfg.uri.get_secret_value(),
        collections=cfg.collections,
        database=cfg.database,
        pipeline_name=ctx.pipeline,
        full_document=cfg.full_document,
        full_document_before_change=cfg.full_document_before_change,
        document_format=cfg.document_format,
        snapshot=cfg.snapshot,
        batch_size=cfg.batch_size,
        max_await_ms=cfg.max_await_ms,
        heartbeat_interval_s=cfg.heartbeat_interval_ms / 1000,
    )
