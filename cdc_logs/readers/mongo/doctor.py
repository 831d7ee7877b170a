"""Preflight checks for a MongoDB change-stream source, each failing one with the fix that makes it pass.

Used by `cdc-logs doctor --source mongo --dsn URI [--collection db.c]` and `cdc-logs doctor -c
pipeline.yaml`. Read-only. What a run needs: a replica set or a sharded cluster (change streams read
the oplog), a change stream it may open on what is captured, an oplog window longer than any outage
the pipeline should survive, pre-images where `full_document_before_change` asks for them, and, when
resuming, the stored resume point still inside the oplog.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pymongo
from pymongo import errors

from cdc_logs.errors import CdcError
from cdc_logs.position import MongoResumeToken, Position
from cdc_logs.readers.checks import Check, warn
from cdc_logs.readers.mongo.connection import Scope, connect, map_error, open_stream, replica_set

MIN_WINDOW_S = 24 * 3600  # an oplog window shorter than a day: a weekend outage loses the position


def check_source(cfg: Any, stored: Position | None = None) -> list[Check]:
    """The checks for a configured `mongodb` source (`stored`: its committed position, if any)."""
    try:
        client = connect(cfg.uri.get_secret_value(), timeout_ms=5000)
    except CdcError as exc:
        return [Check("connection", False, exc.message, exc.hint)]
    try:
        scope = Scope.of(list(cfg.collections), cfg.database)
        return _checks(client, scope, cfg, stored)
    finally:
        client.close()


def _checks(
    client: pymongo.MongoClient[dict[str, Any]], scope: Scope, cfg: Any, stored: Position | None
) -> list[Check]:
    out: list[Check] = []
    try:
        version = str(client.server_info().get("version", "?"))
    except errors.PyMongoError as exc:
        version = f"? ({type(exc).__name__})"
    name, set_id = replica_set(client)
    if name == "mongos":
        out.append(Check("replica set", True, f"MongoDB {version}, a sharded cluster (mongos)"))
    elif name:
        out.append(
            Check(
                "replica set",
                True,
                f"MongoDB {version}, replica set {name!r}" + (f" ({set_id})" if set_id else ""),
            )
        )
    else:
        out.append(
            warn(
                "replica set",
                f"MongoDB {version} reports no replica set (a standalone, or a wire-compatible server)",
                "change streams need a replica set: run mongod with --replSet rs0 and rs.initiate() "
                "(a single node is enough); the change stream check below says whether this server has one",
            )
        )
    out.append(_stream(client, scope, cfg))
    out.append(_window(client))
    for name_ in scope.collections:
        out.append(_collection(client, name_, cfg))
    if stored is not None:
        out.append(_resume(client, scope, cfg, stored))
    return out


def _stream(client: pymongo.MongoClient[dict[str, Any]], scope: Scope, cfg: Any) -> Check:
    try:
        stream = open_stream(
            client, scope, start=None, full_document="default", full_document_before_change="off",
            batch_size=1, max_await_ms=10,
        )  # fmt: skip
        stream.try_next()
        stream.close()
    except CdcError as exc:
        return Check("change stream", False, f"on {scope.describe()}: {exc.message}", exc.hint)
    return Check("change stream", True, f"opened on {scope.describe()}")


def _window(client: pymongo.MongoClient[dict[str, Any]]) -> Check:
    """The oplog's time span (first to last entry): how long the pipeline may stop and still resume."""
    try:
        oplog = client.local["oplog.rs"]
        first = oplog.find_one({}, sort=[("$natural", 1)], projection={"ts": 1})
        last = oplog.find_one({}, sort=[("$natural", -1)], projection={"ts": 1})
    except errors.PyMongoError as exc:
        return warn(
            "oplog window",
            f"cannot read local.oplog.rs ({type(exc).__name__}: {str(exc)[:200]})",
            "grant clusterMonitor (or read on local) to see the window; the stream itself does not need it",
        )
    if not first or not last:
        return warn("oplog window", "local.oplog.rs is empty or missing", "run on a replica set member")
    # never negative: a server whose $natural order is not time order (mongo-java-server after the
    # tests' oplog trims) would print "-0.0 h"
    span = max(0, last["ts"].time - first["ts"].time)
    age = time.time() - last["ts"].time
    ago = f"{age:.0f} s ago" if age < 3600 else f"{age / 3600:.1f} h ago"
    since = dt.datetime.fromtimestamp(first["ts"].time, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    detail = f"{span / 3600:.1f} h of oplog (first entry {since}, last entry {ago})"
    if span < MIN_WINDOW_S:
        return warn(
            "oplog window",
            detail,
            "an outage longer than this loses the resume point (then a new snapshot is needed): enlarge "
            "the oplog (replSetResizeOplog size or minRetentionHours); a young oplog shows a short span too",
        )
    return Check("oplog window", True, detail)


def _collection(client: pymongo.MongoClient[dict[str, Any]], name: str, cfg: Any) -> Check:
    db, coll = name.split(".", 1)
    try:
        # the name compared here too: mongo-java-server ignores the filter and lists every collection
        infos = [i for i in client[db].list_collections(filter={"name": coll}) if i.get("name") == coll]
    except errors.PyMongoError as exc:
        err = map_error(exc, f"looking up {name}")
        return Check(f"collection {name}", False, err.message, err.hint)
    if not infos:
        return warn(
            f"collection {name}",
            "does not exist (yet)",
            "check the name; its changes appear once it is created",
        )
    options = infos[0].get("options") or {}
    images = bool((options.get("changeStreamPreAndPostImages") or {}).get("enabled"))
    wants = cfg.full_document_before_change != "off" or cfg.full_document in ("whenAvailable", "required")
    fix = (
        f'db.runCommand({{collMod: "{coll}", changeStreamPreAndPostImages: {{enabled: true}}}}) on {db} '
        "(MongoDB 6.0+)"
    )
    if wants and not images:
        required = cfg.full_document_before_change == "required" or cfg.full_document == "required"
        detail = "pre- and post-images are off, but the source asks for them"
        return (
            Check(f"collection {name}", False, detail, fix)
            if required
            else warn(f"collection {name}", detail + " (whenAvailable: before/after stay null)", fix)
        )
    return Check(f"collection {name}", True, f"pre- and post-images {'on' if images else 'off'}")


def _resume(client: pymongo.MongoClient[dict[str, Any]], scope: Scope, cfg: Any, stored: Position) -> Check:
    if not isinstance(stored, MongoResumeToken):
        fix = "`cdc-logs offsets reset -c <pipeline.yaml>` and run again (a new snapshot)"
        return Check("stored position", False, f"{stored.encode()} is not a MongoDB resume token", fix)
    try:
        stream = open_stream(
            client, scope, start=stored, full_document="default", full_document_before_change="off",
            batch_size=1, max_await_ms=10,
        )  # fmt: skip
        stream.try_next()
        stream.close()
    except CdcError as exc:
        return Check("stored position", False, exc.message, exc.hint)
    except errors.PyMongoError as exc:
        err = map_error(exc, "resuming")
        return Check("stored position", False, err.message, err.hint)
    return Check("stored position", True, f"{stored.describe()} can be resumed")
