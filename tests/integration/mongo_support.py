"""Teardown for tests that write to the stack's MongoDB (mongo-java-server).

mongo-java-server keeps its oplog in memory and never trims it: every change a test makes stays there
(and every change stream scans all of it) until the server restarts, so test runs add up until its
heap is full (seen: OutOfMemoryError after a few matrix runs, at -Xmx512m). A test removes what it
made: its collection, its database once empty, and their oplog entries. A real mongod refuses writes
to `local.oplog.rs` (it trims the capped oplog itself): that refusal is ignored.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pymongo import errors


def drop_and_trim(client: Any, db: str, collection: str) -> None:
    """Drop `db.collection` (and `db` when nothing is left in it) and its oplog entries."""
    client[db][collection].drop()
    dropped_db = not client[db].list_collection_names()
    if dropped_db:
        client.drop_database(db)
    with contextlib.suppress(errors.OperationFailure):
        oplog = client.local["oplog.rs"]
        oplog.delete_many({"ns": f"{db}.{collection}"})
        commands = [collection, "system.indexes", "system.namespaces"] if dropped_db else [collection]
        oplog.delete_many({"ns": f"{db}.$cmd", "o.drop": {"$in": commands}})
