"""The initial snapshot: every document of the watched collections, read after the stream's start point.

The resume point is taken first (connection.start_point), then each collection is read in `_id`
order. A document changed after that point is read in its later state and its changes are streamed
again afterwards: duplicates are possible, a gap is not. The read is not one point-in-time view (a
plain `find`, as Debezium's MongoDB snapshot does); the stream from the earlier point brings every
document to its final state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pymongo
from pymongo import errors

from cdc_logs.readers.base import SnapshotProgress
from cdc_logs.readers.mongo.connection import SYSTEM_DATABASES, Scope, map_error


def collections(client: pymongo.MongoClient[dict[str, Any]], scope: Scope) -> list[tuple[str, str]]:
    """(db, collection) pairs the snapshot reads, in a stable order."""
    if scope.collections:
        return [(name.split(".", 1)[0], name.split(".", 1)[1]) for name in scope.collections]
    try:
        dbs = [scope.database] if scope.database else sorted(client.list_database_names())
        out: list[tuple[str, str]] = []
        for db in dbs:
            if db in SYSTEM_DATABASES:
                continue
            names = client[db].list_collection_names(filter={"type": "collection"})
            out.extend((db, name) for name in sorted(names) if not name.startswith("system."))
        return out
    except errors.PyMongoError as exc:
        raise map_error(exc, "listing the collections to snapshot") from exc


def read(
    client: pymongo.MongoClient[dict[str, Any]],
    pairs: list[tuple[str, str]],
    progress: dict[str, SnapshotProgress],
    batch_size: int,
) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """Every document of every collection, in `_id` order per collection."""
    for db, coll in pairs:
        name = f"{db}.{coll}"
        state = progress.setdefault(name, SnapshotProgress(name))
        try:
            state.estimate = client[db][coll].estimated_document_count()
            cursor = client[db][coll].find({}, batch_size=batch_size, sort=[("_id", 1)])
            for document in cursor:
                state.rows += 1
                yield db, coll, document
        except errors.PyMongoError as exc:
            raise map_error(exc, f"reading {name} for the snapshot") from exc
        state.done = True
