"""MongoDB I/O: the client, the server's identity, change streams and the mapping of PyMongo's errors.

Everything that talks to the server lives here (and in snapshot.py); convert.py and changes.py only
turn documents into events.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pymongo
from bson.timestamp import Timestamp
from pymongo import errors
from pymongo.change_stream import ChangeStream

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact
from cdc_logs.position import MongoResumeToken
from cdc_logs.readers.mongo.convert import token_time

SYSTEM_DATABASES = ("admin", "local", "config")
#: Server codes of a resume point the oplog no longer holds.
HISTORY_LOST = {286: "ChangeStreamHistoryLost", 280: "ChangeStreamFatalError", 136: "CappedPositionLost"}
RESNAPSHOT_FIX = (
    "the oplog no longer holds the stored resume point, so changes were lost to this pipeline: "
    "`cdc-logs offsets reset -c <pipeline.yaml>`, then run again to take a new snapshot (and give the "
    "oplog a longer window: replSetResizeOplog minRetentionHours)"
)


@dataclass(frozen=True)
class Scope:
    """What is watched: one collection, a database, or the deployment, filtered to `collections`."""

    database: str | None  # None: the deployment
    collection: str | None  # set: a collection stream
    collections: tuple[str, ...] = ()  # db.coll names a database/deployment stream is filtered to
    match: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, collections: list[str], database: str | None) -> Scope:
        if database:
            return cls(database, None)
        if not collections:
            return cls(None, None)
        pairs = [tuple(name.split(".", 1)) for name in collections]
        dbs = {db for db, _ in pairs}
        if len(pairs) == 1:
            return cls(pairs[0][0], pairs[0][1], tuple(collections))
        ns = [{"ns.db": db, "ns.coll": coll} for db, coll in pairs]
        # Control events of a watched database (dropDatabase, invalidate) have no `ns.coll`: keep them.
        controls = {"operationType": {"$in": ["dropDatabase", "invalidate"]}}
        match = {"$or": [*ns, controls]}
        return cls(dbs.pop() if len(dbs) == 1 else None, None, tuple(collections), match)

    def describe(self) -> str:
        if self.collection:
            return f"collection {self.database}.{self.collection}"
        if self.collections:
            through = "database" if self.database else "deployment"
            return f"{', '.join(self.collections)} (through the {through} stream)"
        return f"database {self.database}" if self.database else "the whole deployment"


def connect(uri: str, *, timeout_ms: int = 10_000) -> pymongo.MongoClient[dict[str, Any]]:
    """A client whose first command proves the server answers (CdcError naming the problem)."""
    # PyMongo's keyword arguments override the URI's options: set only what the URI leaves unset.
    options: dict[str, Any] = {
        name: value
        for name, value in (
            ("serverSelectionTimeoutMS", timeout_ms),
            ("connectTimeoutMS", timeout_ms),
            ("appname", "cdc-logs"),
        )
        if not re.search(rf"[?&]{name}=", uri, re.IGNORECASE)
    }
    try:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, tz_aware=True, **options)
        client.admin.command("ping")
    except errors.PyMongoError as exc:
        error = map_error(exc, "connecting")
        if error.kind is ErrorKind.CONNECTION:  # nothing to resume yet: `tail` and `doctor` stop here
            error = CdcError(ErrorKind.CONNECTION, error.message, _connect_fix(uri))
        raise error from exc
    except Exception as exc:  # a malformed URI (InvalidURI is a PyMongoError; others are ValueError)
        raise CdcError(
            ErrorKind.CONFIG, f"MongoDB URI: {redact(str(exc))}", "check the connection string"
        ) from exc
    return client


def _connect_fix(uri: str) -> str:
    """What to check when no server answers the URI (never the URI itself: it may hold a password)."""
    fix = "check the server address (host and port in the URI) and that MongoDB runs and is reachable"
    named = re.search(r"[?&]replicaSet=([^&]*)", uri, re.IGNORECASE)
    if named:
        fix += (
            f"; the URI asks for replica set {named.group(1)!r}: a server that is not a member of it (a "
            "standalone, another set's member, mongo-java-server) is never selected, so remove "
            "replicaSet= from the URI or name the server's own set"
        )
    return fix


def map_error(exc: Exception, doing: str) -> CdcError:
    """PyMongo's error as a CdcError with the fix; never the URI's password."""
    text = redact(str(exc))[:500]
    code = getattr(exc, "code", None)
    if isinstance(exc, errors.OperationFailure) and code in HISTORY_LOST:
        return CdcError(
            ErrorKind.POSITION_LOST, f"MongoDB {doing}: {HISTORY_LOST[code]}: {text}", RESNAPSHOT_FIX
        )
    if isinstance(exc, errors.OperationFailure) and code in (13, 18):  # Unauthorized, AuthenticationFailed
        kind = ErrorKind.AUTH if code == 18 else ErrorKind.PERMISSION
        return CdcError(
            kind,
            f"MongoDB {doing}: {text}",
            "give the user `find` and `changeStream` on the captured namespaces (role `read`), "
            "and check user and password",
        )
    if isinstance(exc, errors.OperationFailure) and code in (40573, 76):  # not a replica set
        return CdcError(
            ErrorKind.UNSUPPORTED,
            f"MongoDB {doing}: change streams need a replica set or a sharded cluster: {text}",
            "run mongod as a replica set (a single-node one is enough: --replSet rs0 and rs.initiate())",
        )
    if isinstance(exc, errors.OperationFailure) and code == 59 and "aggregate" in text:  # CommandNotFound
        return CdcError(
            ErrorKind.UNSUPPORTED,
            f"MongoDB {doing}: the server cannot open this change stream: {text}",
            "a wire-compatible server (mongo-java-server) has collection streams only: list one "
            "collection (`collections: [db.c]`, `--collection db.c`) per source; mongod 4.0+ has all",
        )
    if isinstance(exc, errors.ConfigurationError | errors.InvalidURI):
        return CdcError(ErrorKind.CONFIG, f"MongoDB {doing}: {text}", "check the connection string")
    if isinstance(exc, errors.ConnectionFailure | errors.ServerSelectionTimeoutError | errors.NetworkTimeout):
        return CdcError(ErrorKind.CONNECTION, f"MongoDB {doing}: {text}", "the reader reconnects and resumes")
    if isinstance(exc, errors.OperationFailure) and exc.has_error_label("ResumableChangeStreamError"):
        return CdcError(ErrorKind.CONNECTION, f"MongoDB {doing}: {text}", "the reader reconnects and resumes")
    return CdcError(ErrorKind.INTERNAL, f"MongoDB {doing}: {type(exc).__name__}: {text}", "")


def replica_set(client: pymongo.MongoClient[dict[str, Any]]) -> tuple[str, str]:
    """(replica set name, replicaSetId) as far as the server tells ("" when unknown)."""
    try:
        hello = client.admin.command("isMaster")
    except errors.PyMongoError as exc:
        raise map_error(exc, "asking the server's role") from exc
    name = str(hello.get("setName") or "")
    if hello.get("msg") == "isdbgrid":
        name = name or "mongos"
    set_id = ""
    if name and name != "mongos":
        try:
            config = client.admin.command("replSetGetConfig")["config"]
            set_id = str((config.get("settings") or {}).get("replicaSetId") or "")
        except errors.PyMongoError:
            set_id = ""  # no clusterMonitor: the name alone
    return name, set_id


def server_identity(client: pymongo.MongoClient[dict[str, Any]], uri_hosts: str) -> tuple[str, str]:
    """(identity stamped on positions, replica set name for `source.rs`).

    A replica set: `rs:<name>:<replicaSetId>` (the id is made once when the set is initiated: another
    set with the same name differs). A server that reports no set (mongos, mongo-java-server): the
    hosts of the URI, as other readers use the database's URL without credentials.
    """
    name, set_id = replica_set(client)
    if name and name != "mongos":
        return (f"rs:{name}:{set_id}" if set_id else f"rs:{name}"), name
    return f"mongodb://{uri_hosts}", name


def uri_hosts(uri: str) -> str:
    """host:port list of a URI, without user, password, database or options."""
    rest = uri.split("://", 1)[-1]
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    return rest.rsplit("@", 1)[-1]


def _target(client: pymongo.MongoClient[dict[str, Any]], scope: Scope) -> Any:
    if scope.collection and scope.database:
        return client[scope.database][scope.collection]
    if scope.database:
        return client[scope.database]
    return client


def open_stream(
    client: pymongo.MongoClient[dict[str, Any]],
    scope: Scope,
    *,
    start: MongoResumeToken | None,
    start_after: Mapping[str, Any] | None = None,
    full_document: str,
    full_document_before_change: str,
    batch_size: int,
    max_await_ms: int,
) -> ChangeStream[Any]:
    """A change stream resuming after `start` (its token, or at its operation time when it has none)."""
    kwargs: dict[str, Any] = {"batch_size": batch_size, "max_await_time_ms": max_await_ms}
    if full_document != "default":
        kwargs["full_document"] = full_document
    if full_document_before_change != "off":
        kwargs["full_document_before_change"] = full_document_before_change
    if start_after is not None:
        kwargs["start_after"] = start_after
    elif start is not None and start.token:
        kwargs["resume_after"] = {"_data": start.token}
    elif start is not None:
        kwargs["start_at_operation_time"] = Timestamp(start.ts, start.inc)
    pipeline = [{"$match": scope.match}] if scope.match else []
    try:
        return _target(client, scope).watch(pipeline, **kwargs)
    except errors.PyMongoError as exc:
        raise map_error(exc, f"opening the change stream on {scope.describe()}") from exc


def start_point(client: pymongo.MongoClient[dict[str, Any]], scope: Scope, server: str) -> MongoResumeToken:
    """Where a stream opened now starts: the initial aggregate's postBatchResumeToken (mongod 4.0.7+),
    else its operationTime. Taken before a snapshot, it is the snapshot's hand-off point."""
    spec: dict[str, Any] = {}
    if scope.database is None:
        spec["allChangesForCluster"] = True
    db = client[scope.database] if scope.database else client.admin
    command: dict[str, Any] = {
        "aggregate": scope.collection if scope.collection else 1,
        "pipeline": [{"$changeStream": spec}],
        "cursor": {"batchSize": 0},
    }
    try:
        reply = db.command(command)
        cursor = reply.get("cursor") or {}
        if cursor.get("id"):
            db.command({"killCursors": scope.collection or "$cmd.aggregate", "cursors": [cursor["id"]]})
    except errors.PyMongoError as exc:
        raise map_error(exc, f"opening the change stream on {scope.describe()}") from exc
    token = (cursor.get("postBatchResumeToken") or {}).get("_data")
    if isinstance(token, str) and token:
        ts, inc = token_time(token) or _time_of(reply)
        return MongoResumeToken(server, token=token, ts=ts, inc=inc)
    ts, inc = _time_of(reply)
    if not ts:
        raise CdcError(
            ErrorKind.UNSUPPORTED,
            f"the server gave neither a resume token nor an operation time for {scope.describe()}",
            "use MongoDB 4.0.7 or later as a replica set",
        )
    return MongoResumeToken(server, ts=ts, inc=inc)


def _time_of(reply: Mapping[str, Any]) -> tuple[int, int]:
    op_time = reply.get("operationTime")
    if isinstance(op_time, Timestamp):
        return op_time.time, op_time.inc
    return 0, 0


def iterate(stream: ChangeStream[Any], doing: str) -> Iterator[Mapping[str, Any] | None]:
    """The stream's changes, None whenever a batch came back empty (the server had nothing more)."""
    while stream.alive:
        try:
            change = stream.try_next()
        except errors.PyMongoError as exc:
            raise map_error(exc, doing) from exc
        yield change
