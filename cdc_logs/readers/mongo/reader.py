"""MongoReader: change streams of collections, a database or the whole deployment, through PyMongo.

`stream()` takes the initial snapshot when one is due (snapshot.py), then follows the change stream
from the resume token (connection.py opens it; changes.py turns its documents into events with
transactions grouped; convert.py builds the envelopes). The position is the resume token
(`MongoResumeToken`), stored by the pipeline once every sink holds the events before it: MongoDB
keeps nothing for a reader, so `commit` has nothing to tell the server, and a restart resumes after
the stored token.

Drop, rename, dropDatabase and invalidate (docs/sources/mongo.md):
  * drop / dropDatabase: logged as a warning; a heartbeat at the event moves the checkpoint past it.
    Documents of the dropped collection stay in the sinks (as Debezium does: no delete per document).
  * invalidate (a collection stream after its drop or rename, a database stream after dropDatabase):
    the stream is opened again with `startAfter` the invalidate event, so a collection created again
    under the name is captured again.
  * rename of a collection named in `collections` to a name not in it: stops with an error naming the
    fix (capture the new name); within a database/deployment stream, a rename is only logged.
A resume point the oplog no longer holds stops the reader (POSITION_LOST, with the re-snapshot
command); it never restarts from now.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pymongo

from cdc_logs.envelope import Heartbeat
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import MongoResumeToken, Position
from cdc_logs.readers.base import Reader, SnapshotProgress, StreamItem
from cdc_logs.readers.mongo import snapshot as snap
from cdc_logs.readers.mongo.changes import ChangeAssembler, Control
from cdc_logs.readers.mongo.connection import (
    Scope,
    connect,
    iterate,
    map_error,
    open_stream,
    server_identity,
    start_point,
    uri_hosts,
)
from cdc_logs.readers.mongo.convert import DocumentFormat, EventFactory, token_time

log = get_logger(__name__)


class MongoReader(Reader):
    """Capture document changes through MongoDB change streams.

    Args:
        uri: connection string (a secret: never logged).
        collections: db.collection names; with `database` None and no collections, the deployment.
        database: capture a whole database.
        full_document / full_document_before_change: the change stream's options (config.py).
        document_format: extended_json (Debezium's MongoDB shape) or json (plain documents).
        snapshot: on a first run, emit the existing documents (op r) before streaming.
    """

    connector = "mongodb"

    def __init__(
        self,
        uri: str,
        *,
        collections: list[str],
        database: str | None,
        pipeline_name: str,
        full_document: str = "updateLookup",
        full_document_before_change: str = "off",
        document_format: DocumentFormat = "extended_json",
        snapshot: bool = True,
        batch_size: int = 1000,
        max_await_ms: int = 500,
        heartbeat_interval_s: float = 10.0,
    ) -> None:
        self.uri = uri
        self.scope = Scope.of(collections, database)
        self.pipeline_name = pipeline_name
        self.full_document = full_document
        self.full_document_before_change = full_document_before_change
        self.document_format: DocumentFormat = document_format
        self.snapshot = snapshot
        self.batch_size = batch_size
        self.max_await_ms = max_await_ms
        self.heartbeat_interval_s = heartbeat_interval_s
        self._client: pymongo.MongoClient[dict[str, Any]] | None = None
        self._server: str | None = None
        self._factory: EventFactory | None = None
        self._stop = threading.Event()
        self._progress: dict[str, SnapshotProgress] = {}
        self._committed: MongoResumeToken | None = None
        self._commit_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        self.close()
        self._stop.clear()
        client = connect(self.uri)
        try:
            self._server, replica_set = server_identity(client, uri_hosts(self.uri))
        except BaseException:
            client.close()
            raise
        self._client = client
        self._warn_missing(client)
        self._factory = EventFactory(self._server, self.pipeline_name, replica_set, self.document_format)
        if self.scope.collection and self.scope.database:
            self._factory.default_namespace = (self.scope.database, self.scope.collection)

    def _warn_missing(self, client: Any) -> None:
        """Say which watched collections do not exist: a typo streams nothing, silently otherwise."""
        by_db: dict[str, list[str]] = {}
        for name in self.scope.collections:
            db, coll = name.split(".", 1)
            by_db.setdefault(db, []).append(coll)
        for db, colls in by_db.items():
            try:
                present = set(client[db].list_collection_names())
            except pymongo.errors.PyMongoError:
                continue  # not allowed to list: the change stream check is what counts
            for coll in colls:
                if coll not in present:
                    log.warning(
                        "mongodb collection does not exist (yet)",
                        collection=f"{db}.{coll}",
                        fix="check the name; its changes are captured once it is created",
                    )

    def server_identity(self) -> str:
        if self._server is None:
            raise CdcError(ErrorKind.USAGE, "MongoReader.server_identity() called before open()")
        return self._server

    def stop(self) -> None:
        self._stop.set()

    def commit(self, position: Position) -> None:
        """MongoDB keeps no state for a change stream: the stored position is the resume point."""
        if isinstance(position, MongoResumeToken) and position.server == self._server:
            with self._commit_lock:
                self._committed = position

    def snapshot_progress(self) -> list[SnapshotProgress]:
        return [p for p in list(self._progress.values()) if not p.done]

    def close(self) -> None:
        self._stop.set()
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- streaming -------------------------------------------------------------------------------
    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        client, factory = self._client, self._factory
        if client is None or factory is None:
            raise CdcError(ErrorKind.USAGE, "MongoReader.stream() called before open()")
        resume = self._check_start(start)
        if resume is None or resume.snapshot_pending:
            if resume is None:
                point = start_point(client, self.scope, factory.server)
            else:  # an earlier snapshot did not finish: take it again, stream from its point
                point = MongoResumeToken(factory.server, token=resume.token, ts=resume.ts, inc=resume.inc)
            if self.snapshot:
                yield Heartbeat(
                    MongoResumeToken(
                        point.server, token=point.token, ts=point.ts, inc=point.inc, snapshot_pending=True
                    )
                )
                yield from self._snapshot(client, factory, point)
            else:
                yield Heartbeat(point)  # commit where a first run starts
            resume = point
        try:
            yield from self._follow(client, factory, resume)
        except CdcError:
            if self._client is None:  # closed under us while stopping: not an error
                return
            raise

    def _check_start(self, start: Position | None) -> MongoResumeToken | None:
        if start is None:
            return None
        if not isinstance(start, MongoResumeToken):
            raise CdcError(
                ErrorKind.CONFIG,
                f"stored position {start.encode()} is not a MongoDB resume token",
                "reset the offsets of this source (`cdc-logs offsets reset -c <pipeline.yaml>`)",
            )
        if start.server != self._server:
            raise CdcError(
                ErrorKind.SERVER_MISMATCH,
                f"position was taken on {start.server}, but the source is {self._server}",
                "if the source moved on purpose, `cdc-logs offsets reset -c <pipeline.yaml>` and run again "
                "(a new snapshot)",
            )
        return start

    def _snapshot(
        self, client: pymongo.MongoClient[dict[str, Any]], factory: EventFactory, point: MongoResumeToken
    ) -> Iterator[StreamItem]:
        pairs = snap.collections(client, self.scope)
        self._progress = {}
        rows = snap.read(client, pairs, self._progress, self.batch_size)
        current = next(rows, None)
        if current is None:
            yield Heartbeat(point)
            return
        first = True
        while current is not None:
            if self._stop.is_set():
                return  # unfinished: the pending heartbeat makes the next run take it again
            following = next(rows, None)
            last = following is None
            marker = "last" if last else "first" if first else "true"
            db, coll, document = current
            try:
                yield factory.snapshot_row(db, coll, document, marker, point, last)
            except CdcError as exc:
                if exc.kind is not ErrorKind.DECODE:
                    raise
                from cdc_logs.envelope import Undecodable
                from cdc_logs.readers.mongo.convert import extended_json

                yield Undecodable(
                    point,
                    f"{db}.{coll}",
                    f"snapshot: {exc.message}",
                    boundary=last,
                    raw=extended_json(document).encode(),
                )
            current, first = following, False
        log.info("mongodb snapshot done", collections=len(pairs), streaming_after=point.describe())

    def _follow(
        self, client: pymongo.MongoClient[dict[str, Any]], factory: EventFactory, start: MongoResumeToken
    ) -> Iterator[StreamItem]:
        last: MongoResumeToken = start
        start_after: Mapping[str, Any] | None = None
        next_beat = time.monotonic() + self.heartbeat_interval_s
        doing = f"reading the change stream of {self.scope.describe()}"
        while not self._stop.is_set():
            assembler = ChangeAssembler(factory)
            stream = open_stream(
                client,
                self.scope,
                start=last,
                start_after=start_after,
                full_document=self.full_document,
                full_document_before_change=self.full_document_before_change,
                batch_size=self.batch_size,
                max_await_ms=self.max_await_ms,
            )
            start_after = None
            log.info("mongodb streaming", scope=self.scope.describe(), after=last.describe())
            try:
                for change in iterate(stream, doing):
                    if change is None:
                        for item in assembler.idle():
                            assert not isinstance(item, Control)
                            last = item.position  # type: ignore[assignment]
                            yield item
                        if self.heartbeat_interval_s and time.monotonic() >= next_beat:
                            beat = self._heartbeat(stream.resume_token, last)
                            if beat is not None:
                                last = beat
                                yield Heartbeat(beat)
                            next_beat = time.monotonic() + self.heartbeat_interval_s
                        yield None
                        if self._stop.is_set():
                            return
                        continue
                    for item in assembler.feed(change):
                        if isinstance(item, Control):
                            reopen = self._control(item)
                            if reopen is not None:
                                start_after = reopen
                                break
                            last = item.position
                            yield Heartbeat(item.position)
                            continue
                        if item.boundary:
                            last = item.position  # type: ignore[assignment]
                        yield item
                    if start_after is not None:
                        break
                    if self._stop.is_set() and not assembler.in_transaction:
                        return
            finally:
                stream.close()
            if start_after is None and not self._stop.is_set():
                # The server closed the stream (it is no longer alive): open it again after `last`.
                log.warning(
                    "mongodb change stream closed by the server; opening it again", after=last.describe()
                )

    def _heartbeat(self, token: Any, last: MongoResumeToken) -> MongoResumeToken | None:
        """The stream's latest resume token (postBatchResumeToken) when it is past `last`."""
        data = token.get("_data") if isinstance(token, Mapping) else None
        if not isinstance(data, str) or data == last.token:
            return None
        when = token_time(data)
        if when is None:
            return None
        beat = MongoResumeToken(last.server, token=data, ts=when[0], inc=when[1])
        return beat if last < beat else None

    def _control(self, item: Control) -> Mapping[str, Any] | None:
        """Act on a non-document change; returns the token to reopen the stream after (invalidate)."""
        if item.kind == "invalidate":
            log.warning(
                "mongodb change stream invalidated (its collection or database was dropped or renamed); "
                "opening it again after the invalidate event",
                scope=self.scope.describe(),
            )
            if item.token is None:
                raise CdcError(ErrorKind.INTERNAL, "an invalidate event without a resume token", "")
            return item.token
        if item.kind in ("drop", "dropDatabase"):
            log.warning(
                f"captured {'collection' if item.kind == 'drop' else 'database'} dropped; its documents "
                "stay in the sinks (no delete events), changes after a re-creation are captured",
                namespace=item.namespace,
                at=item.position.describe(),
            )
            return None
        if item.kind == "rename":
            if item.namespace in self.scope.collections and item.target not in self.scope.collections:
                raise CdcError(
                    ErrorKind.NOT_FOUND,
                    f"captured collection {item.namespace} was renamed to {item.target} "
                    f"(at {item.position.describe()}); its changes are no longer captured",
                    f"capture the new name (`collections: [{item.target}]`), then `cdc-logs offsets reset -c "
                    "<pipeline.yaml>` and run again (a new snapshot)",
                )
            log.warning("mongodb collection renamed", namespace=item.namespace, to=item.target)
            return None
        log.debug("mongodb change stream event skipped (not a document change)", kind=item.kind)
        return None


__all__ = ["MongoReader", "map_error"]
