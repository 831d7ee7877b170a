"""PostgresReader: logical replication (pgoutput) over the walsender protocol, with snapshot hand-off.

`open()` connects twice (a normal connection for the catalog, publication, snapshot and heartbeats;
a replication connection for the slot and the stream), checks the captured tables and the slot, and
creates the publication when missing. `stream(start)`:

  start None, snapshot on   create the slot with an exported snapshot (or, if the slot exists
                            already, read a fresh snapshot), yield the rows (op "r"), then stream
                            from the slot's consistent point;
  start None, snapshot off  create the slot if missing, yield Heartbeat(its start), stream;
  start PgSnapshot          resume the snapshot at its next chunk, then stream from its LSN;
  start Lsn                 stream from it (the slot must still exist and be usable).

Positions are `Lsn(system identifier, commit end LSN)`. `commit()` only records the LSN; the
replication connection's feedback thread sends it as the flush LSN. When nothing is in flight (no
open transaction, everything yielded committed), keepalives are confirmed as they come, and a
heartbeat message (`pg_logical_emit_message`, every `heartbeat_interval_s`) gives the pipeline a
position to commit, so a slot whose tables are quiet does not pin WAL.

While a backlog drains, decoding moves to a second process (`decode_process`, decode_process.py):
this thread keeps the connection and sends it the raw messages, and yields what comes back, in order.

`temporary=True` (tail without a slot name): a TEMPORARY slot, which the server drops with the
connection; when the publication is missing, one of our own, dropped by `close()`. An existing
publication is used as it is; cdc-logs alters or drops only what it created (ownership.py), and
`open()` first drops the publications of tails that were killed before they could.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import psycopg

from cdc_logs.envelope import Heartbeat
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import Lsn, PgSnapshot, Position, format_lsn
from cdc_logs.readers.base import LagProbe, Reader, SnapshotProgress, StreamItem
from cdc_logs.readers.incremental import stamp_start
from cdc_logs.readers.postgres import catalog, ownership, slots
from cdc_logs.readers.postgres.changes import HEARTBEAT_PREFIX, ChangeStream
from cdc_logs.readers.postgres.connection import (
    ReplicationStream,
    connect,
    map_error,
    plugin_options,
    quote_ident,
)
from cdc_logs.readers.postgres.convert import EventBuilder
from cdc_logs.readers.postgres.decode_process import DecodeProcess
from cdc_logs.readers.postgres.incremental import IncrementalFilter
from cdc_logs.readers.postgres.pgoutput import Relation
from cdc_logs.readers.postgres.schema import ColumnFacts
from cdc_logs.readers.postgres.snapshot import Snapshot
from cdc_logs.readers.postgres.txbuffer import StreamBuffers
from cdc_logs.readers.postgres.types import TypeRegistry
from cdc_logs.readers.postgres.walproto import Keepalive
from cdc_logs.readers.worker_process import usable_cpus

log = get_logger(__name__)

# XLogData messages read back to back (the socket never ran dry) before decoding moves to a second
# process: a backlog of a few hundred milliseconds, never a lightly loaded stream (decode_process.py).
DECODE_PROCESS_AFTER = 5_000
# `auto` splits only with this many usable CPUs: the walsender, this process and the decode process
# each want one, and on 2 cores shared with the database the split's own CPU (~4-5 us per change) cost
# as much as it freed, or more under load (docs/benchmarks.md, Profile).
DECODE_PROCESS_MIN_CPUS = 4


class PostgresReader(Reader):
    """See the module docstring; arguments mirror `PostgresSourceConfig` (docs/sources/postgres.md)."""

    connector = "postgresql"

    def __init__(
        self,
        dsn: str,
        tables: list[str],
        *,
        pipeline_name: str,
        slot: str | None = None,
        publication: str | None = None,
        all_tables: bool = False,
        temporary: bool = False,
        snapshot: bool = False,
        heartbeat_interval_s: float = 10.0,
        binary: bool = False,
        messages: bool = True,
        max_tx_memory_bytes: int = 32 << 20,
        snapshot_chunk_rows: int = 10_000,
        logical_decoding_work_mem: str | None = None,
        status_interval_s: float = 10.0,
        idle_tick_s: float = 0.5,
        signal_table: str | None = None,
        incremental_chunk_size: int = 1024,
        incremental_parallel: int = 1,
        snapshot_new_tables: bool = False,
        decode_process: str = "auto",
    ) -> None:
        if not tables and not all_tables:
            raise CdcError(ErrorKind.CONFIG, "the postgres source needs tables", "add `--table schema.t`")
        if not temporary and not slot:
            raise CdcError(ErrorKind.CONFIG, "a persistent postgres source needs a slot name", "set `slot:`")
        self.dsn = dsn
        self.table_names = list(tables)
        self.pipeline_name = pipeline_name
        suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.temporary = temporary and not slot
        self.slot = slot or f"cdc_logs_tail_{suffix}"
        # A slot named cdc_logs_* (the default, and temporary ones) reads the publication of that name.
        self.publication = publication or (
            self.slot if self.slot.startswith("cdc_logs_") else f"cdc_logs_{self.slot}"
        )
        self.all_tables = all_tables
        self.snapshot = snapshot
        self.heartbeat_interval_s = heartbeat_interval_s
        self.binary = binary
        self.messages = messages
        self.max_tx_memory_bytes = max_tx_memory_bytes
        self.snapshot_chunk_rows = snapshot_chunk_rows
        self.logical_decoding_work_mem = logical_decoding_work_mem
        self.status_interval_s = status_interval_s
        self.idle_tick_s = idle_tick_s
        self.signal_table = signal_table
        self.incremental_chunk_size = incremental_chunk_size
        self.incremental_parallel = incremental_parallel
        self.snapshot_new_tables = snapshot_new_tables
        self.decode_process = decode_process
        self._decoding: ChangeStream | DecodeProcess | None = None
        self._spawned: DecodeProcess | None = None  # the decode process, once started (decode_process.py)
        self._serialize_early = False
        self._cpus_to_split = usable_cpus() >= DECODE_PROCESS_MIN_CPUS
        self._isnap: IncrementalFilter | None = None
        self._meta: psycopg.Connection[Any] | None = None
        self._meta_lock = threading.RLock()
        self._repl: ReplicationStream | None = None
        self._snapshot_conn: psycopg.Connection[Any] | None = None
        self._progress: list[SnapshotProgress] = []
        self._system_id: str | None = None
        self._dbname = ""
        self._tables: list[catalog.TableInfo] = []
        self._publication_created = False
        self._stop = threading.Event()
        self._committed = 0

    def serialize_early(self) -> None:
        self._serialize_early = True

    # -- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> None:
        self._stop.clear()
        self._committed = 0
        try:
            self._meta = connect(self.dsn, application_name=f"cdc-logs {self.pipeline_name}")
            options = (
                f"-c logical_decoding_work_mem={self.logical_decoding_work_mem}"
                if self.logical_decoding_work_mem
                else ""
            )
            self._repl = ReplicationStream(
                self.dsn,
                application_name=f"cdc-logs {self.pipeline_name}",
                options=options,
                status_interval_s=self.status_interval_s,
            )
            system = self._repl.identify_system()
            self._system_id, self._dbname = system.system_id, system.dbname
            with self._meta_lock:
                ownership.drop_abandoned_publications(self._meta)
                self._prepare_tables(self._meta)
                slots.check_slot(slots.get_slot(self._meta, self.slot), self.slot, self._dbname)
        except BaseException:
            self.close()
            raise

    def _prepare_tables(self, meta: psycopg.Connection[Any]) -> None:
        # The signal table is read from the log like a captured table: it must be in the publication
        # (added when the publication is cdc-logs's own, refused with the fix when it is the user's).
        names = list(self.table_names)
        if self.signal_table and not self.all_tables and self.signal_table not in names:
            names.append(self.signal_table)
        tables, created = ownership.prepare_capture(
            meta,
            self.publication,
            names,
            all_tables=self.all_tables,
            temporary=self.temporary,  # created here: dropped by close()
            pipeline=self.pipeline_name,
            slot=self.slot,
        )
        if self.signal_table:
            signal = catalog.resolve_tables(meta, [self.signal_table])[0]
            self.signal_table = signal.qualified
            tables = [t for t in tables if t.oid != signal.oid]
        self._tables = tables
        self._publication_created = self._publication_created or created

    def server_identity(self) -> str:
        if self._system_id is None:
            raise CdcError(ErrorKind.USAGE, "PostgresReader.server_identity() called before open()")
        return self._system_id

    def stop(self) -> None:
        self._stop.set()

    def commit(self, position: Position) -> None:
        """Record that everything up to `position` is durable (thread-safe; sent by the feedback thread)."""
        if not isinstance(position, Lsn) or position.server != self._system_id:
            return  # snapshot chunks keep the slot where it is; foreign positions are ignored
        if position.lsn > self._committed:
            self._committed = position.lsn
        repl = self._repl
        if repl is not None:
            repl.confirm(position.lsn)

    def close(self) -> None:
        self._stop.set()
        repl, self._repl = self._repl, None
        if repl is not None:
            repl.close()  # a temporary slot goes away with this connection
        snap, self._snapshot_conn = self._snapshot_conn, None
        if snap is not None:
            with contextlib.suppress(Exception):
                snap.close()
        with self._meta_lock:
            meta, self._meta = self._meta, None
            if self.temporary and self._publication_created:
                self._drop_own_publication(meta)
            if meta is not None:
                with contextlib.suppress(Exception):
                    meta.close()

    def _drop_own_publication(self, meta: psycopg.Connection[Any] | None) -> None:
        fresh = None
        try:
            if meta is None or meta.closed or meta.broken:  # e.g. after a server restart
                meta = fresh = connect(self.dsn, application_name=f"cdc-logs {self.pipeline_name}")
            ownership.drop_own_publication(meta, self.publication)
            self._publication_created = False
        except CdcError as exc:
            log.warning(
                "could not drop the temporary publication; the next cdc-logs start on this database drops it",
                error=exc.message,
                fix=f"cdc-logs publications drop {self.publication} --dsn URL",
            )
        finally:
            if fresh is not None:
                with contextlib.suppress(Exception):
                    fresh.close()

    # -- streaming ---------------------------------------------------------------------------------
    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        repl, meta = self._repl, self._meta
        if repl is None or meta is None or self._system_id is None:
            raise CdcError(ErrorKind.USAGE, "PostgresReader.stream() called before open()")
        builder = self._builder()
        if isinstance(start, Lsn) and start.server == self._system_id:
            self._committed = start.lsn  # it came from the offset store: durable already
        captured = tuple(sorted(t.qualified for t in self._tables)) if self.snapshot_new_tables else ()
        lsn = yield from stamp_start(
            self._start(repl, meta, builder, start), captured, lambda p: isinstance(p, Lsn)
        )
        if lsn is None or self._stop.is_set():
            return
        yield from self._follow(repl, builder, lsn, start if isinstance(start, Lsn) else None)

    def _builder(self) -> EventBuilder:
        registry = TypeRegistry()

        def key_lookup(relation: Relation) -> tuple[str, ...]:
            with self._meta_lock:
                assert self._meta is not None
                return catalog.primary_key(self._meta, relation.oid)

        def learn(relation: Relation) -> None:
            with self._meta_lock:
                assert self._meta is not None
                catalog.learn_types(self._meta, registry, relation)

        def facts(relation: Relation) -> dict[str, ColumnFacts]:
            with self._meta_lock:
                assert self._meta is not None
                return catalog.column_facts(self._meta, relation.oid)

        return EventBuilder(
            pipeline=self.pipeline_name,
            db=self._dbname,
            registry=registry,
            binary=self.binary,
            key_lookup=key_lookup,
            learn_types=learn,
            facts_lookup=facts,
        )

    def _check_start(self, start: Position) -> None:
        if not isinstance(start, Lsn | PgSnapshot):
            raise CdcError(
                ErrorKind.CONFIG,
                f"stored position {start.encode()} is not a Postgres position",
                "reset the offsets of this source (`cdc-logs offsets reset -c <pipeline.yaml>`)",
            )
        if start.server != self._system_id:
            raise CdcError(
                ErrorKind.SERVER_MISMATCH,
                f"the stored position was taken on cluster {start.server}, but the DSN reaches cluster "
                f"{self._system_id} (restored from a backup, failed over, or another server)",
                "if that is intended, `cdc-logs offsets reset -c <pipeline.yaml>` and run again "
                "(a new snapshot)",
            )

    def _start(
        self,
        repl: ReplicationStream,
        meta: psycopg.Connection[Any],
        builder: EventBuilder,
        start: Position | None,
    ) -> Generator[StreamItem, None, int | None]:
        """Yield the snapshot (if any) or the start heartbeat; return the LSN to stream from."""
        assert self._system_id is not None
        server = self._system_id
        if start is not None:
            self._check_start(start)
            if self.temporary:
                log.warning("temporary slot: changes made while disconnected are not replayed")
                created = repl.create_slot(self.slot, temporary=True, export_snapshot=False)
                return created.consistent_point
            with self._meta_lock:
                slot = slots.get_slot(meta, self.slot)
            if slot is None:
                raise slots.missing_slot_error(self.slot)
            slots.check_slot(slot, self.slot, self._dbname)
            if isinstance(start, PgSnapshot):
                done = yield from self._snapshot(meta, builder, start.lsn, None, start)
                return start.lsn if done else None
            assert isinstance(start, Lsn)
            return start.lsn
        with self._meta_lock:
            existing = None if self.temporary else slots.get_slot(meta, self.slot)
        if existing is not None:
            lsn = existing.confirmed_flush or 0
            log.info(
                "postgres slot exists; starting at its confirmed position",
                slot=self.slot,
                lsn=format_lsn(lsn),
            )
            if self.snapshot:
                # No exported snapshot for an existing slot: a fresh one, after the slot's position.
                done = yield from self._snapshot(meta, builder, lsn, None, None)
                return lsn if done else None
            yield Heartbeat(Lsn(server, lsn))
            return lsn
        created = repl.create_slot(self.slot, temporary=self.temporary, export_snapshot=self.snapshot)
        log.info(
            "postgres slot created",
            slot=self.slot,
            temporary=self.temporary,
            consistent_point=format_lsn(created.consistent_point),
        )
        if self.snapshot:
            done = yield from self._snapshot(
                meta, builder, created.consistent_point, created.snapshot_name, None
            )
            return created.consistent_point if done else None
        yield Heartbeat(Lsn(server, created.consistent_point))
        return created.consistent_point

    def snapshot_progress(self) -> list[SnapshotProgress]:
        isnap = self._isnap
        return list(self._progress) + (isnap.progress() if isnap is not None else [])

    def _snapshot(
        self,
        meta: psycopg.Connection[Any],
        builder: EventBuilder,
        lsn: int,
        snapshot_name: str | None,
        resume: PgSnapshot | None,
    ) -> Generator[StreamItem, None, bool]:
        """Yield the snapshot; return True when it completed (False: stopped)."""
        assert self._system_id is not None

        def learn(table: catalog.TableInfo) -> None:
            with self._meta_lock:
                catalog.learn_types(meta, builder.registry, table.relation())

        # A connection of its own: the snapshot transaction stays open while `meta` serves lookups.
        conn = connect(self.dsn, application_name=f"cdc-logs {self.pipeline_name} snapshot")
        self._snapshot_conn = conn  # close() ends it too: its open transaction holds table locks
        try:
            snap = Snapshot(
                conn,
                self._tables,
                builder,
                server=self._system_id,
                lsn=lsn,
                snapshot_name=snapshot_name,
                resume=resume,
                chunk_rows=self.snapshot_chunk_rows,
                learn_types=learn,
                stopped=self._stop.is_set,
            )
            self._progress = snap.progress
            emitted = 0
            for event in snap.events():
                emitted += 1
                yield event
            if snap.complete and emitted == 0:
                yield Heartbeat(Lsn(self._system_id, lsn))  # empty tables: still mark the snapshot done
            log.info("postgres snapshot done" if snap.complete else "postgres snapshot stopped", rows=emitted)
            return snap.complete
        finally:
            self._snapshot_conn = None
            with contextlib.suppress(Exception):
                conn.close()

    def _follow(
        self, repl: ReplicationStream, builder: EventBuilder, lsn: int, start: Lsn | None
    ) -> Iterator[StreamItem]:
        assert self._system_id is not None
        buffers = StreamBuffers(self.max_tx_memory_bytes)
        tables = None if self.all_tables else {t.qualified for t in self._tables}
        if tables is not None and self.signal_table:
            tables.add(self.signal_table)
        changes = ChangeStream(builder, buffers, self._system_id, tables=tables, messages=self.messages)
        self._decoding = changes
        isnap = self._isnap = self._incremental(builder, changes, start)
        assert self._meta is not None
        opts = plugin_options(
            repl.server_version, quote_ident(self._meta, self.publication), binary=self.binary
        )
        repl.start(self.slot, lsn, opts)
        log.info("postgres streaming", slot=self.slot, start=format_lsn(lsn), proto=opts["proto_version"])
        changes.last_boundary = lsn
        spawned: DecodeProcess | None = None  # started, not yet decoding (auto: until it is ready)
        if self.decode_process == "on":
            spawned = self._spawned = self._spawn_decode_process(builder, changes)
            self._decoding = self._hand_over(spawned, builder, changes)
        if isnap.snapshots.chunk_due():
            isnap.read_chunk()  # a snapshot the resume point carries, or tables new to the config
        next_tick = time.monotonic() + self.idle_tick_s
        next_heartbeat = time.monotonic() + self.heartbeat_interval_s
        busy = 0  # XLogData messages read in a row without the socket running dry
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if self.heartbeat_interval_s > 0 and now >= next_heartbeat:
                    self._emit_heartbeat()
                    next_heartbeat = now + self.heartbeat_interval_s
                if now >= next_tick:
                    yield None
                    next_tick = time.monotonic() + self.idle_tick_s
                if self._decoding is not changes:
                    for item in self._remote_step(repl):
                        if isnap.passthrough(item):
                            yield item
                        else:
                            yield from isnap.process(item)
                        next_tick = time.monotonic() + self.idle_tick_s
                    continue
                msg = repl.read(min(self.idle_tick_s, 0.25))
                if msg is None:
                    busy = 0
                    continue
                if type(msg) is Keepalive:
                    if not changes.in_flight and self._committed >= changes.last_boundary:
                        repl.idle_confirm(msg)
                    if msg.reply_requested:
                        repl.send_status()
                    continue
                for change in changes.feed(msg.wal_start, msg.payload):  # type: ignore[union-attr]
                    if isnap.passthrough(change):
                        yield change  # type: ignore[misc]
                    else:
                        yield from isnap.process(change)
                    next_tick = time.monotonic() + self.idle_tick_s
                busy += 1
                if spawned is None:
                    if busy >= DECODE_PROCESS_AFTER and self.decode_process == "auto" and self._cpus_to_split:
                        spawned = self._spawned = self._spawn_decode_process(builder, changes)  # a backlog
                elif not changes.in_flight and spawned.ready:
                    # Started up while we decoded inline; at a transaction boundary it takes over.
                    self._decoding = self._hand_over(spawned, builder, changes)
        finally:
            buffers.clear()
            if spawned is not None:
                spawned.close()
            self._decoding = self._spawned = None

    def _spawn_decode_process(self, builder: EventBuilder, changes: ChangeStream) -> DecodeProcess:
        return DecodeProcess(
            {
                "dsn": self.dsn,
                "pipeline": self.pipeline_name,
                "db": builder.db,
                "binary": self.binary,
                "server": changes.server,
                "tables": None if changes.tables is None else sorted(changes.tables),
                "messages": self.messages,
                "max_tx_memory_bytes": self.max_tx_memory_bytes,
                "serialize": self._serialize_early,
            }
        )

    @staticmethod
    def _hand_over(process: DecodeProcess, builder: EventBuilder, changes: ChangeStream) -> DecodeProcess:
        process.begin(builder.export_state(), changes.last_boundary, builder.schemas())
        return process

    def _remote_step(self, repl: ReplicationStream) -> list[Any]:
        """One round with the decode process: send what the socket has (without waiting), then take the
        items that are back (waiting on both the socket and the process when there is neither)."""
        remote = self._decoding
        assert isinstance(remote, DecodeProcess)
        got = False
        while not remote.full:
            msg = repl.read(0.0)
            if msg is None:
                break
            got = True
            if type(msg) is Keepalive:
                if not remote.in_flight and self._committed >= remote.last_boundary:
                    repl.idle_confirm(msg)
                if msg.reply_requested:
                    repl.send_status()
                continue
            remote.submit(msg.wal_start, msg.payload)  # type: ignore[union-attr]
        remote.flush()
        wait = 0.0 if got else min(self.idle_tick_s, 0.25)
        return remote.take(wait, None if remote.full else repl.socket)

    def _incremental(
        self, builder: EventBuilder, changes: ChangeStream, start: Lsn | None
    ) -> IncrementalFilter:
        def meta() -> psycopg.Connection[Any]:
            if self._meta is None:
                raise CdcError(ErrorKind.USAGE, "the reader is closed")
            return self._meta

        isnap = IncrementalFilter(
            meta,
            self._meta_lock,
            self._tables,
            builder,
            signal_table=self.signal_table,
            chunk_size=self.incremental_chunk_size,
            parallel=self.incremental_parallel,
            record_captured=self.snapshot_new_tables,
            lsn=lambda: (self._decoding or changes).last_boundary,
        )
        isnap.resume(start)
        return isnap

    def _emit_heartbeat(self) -> None:
        with self._meta_lock:
            meta = self._meta
            if meta is None:
                return
            try:
                meta.execute("SELECT pg_logical_emit_message(false, %s, %s)", (HEARTBEAT_PREFIX, self.slot))
            except psycopg.Error as exc:
                raise map_error(exc, "emitting a heartbeat message") from exc

    def lag_probe(self) -> LagProbe | None:
        """Slot lag from pg_replication_slots, on a connection of its own (lag.py)."""
        from cdc_logs.readers.postgres.lag import SlotLagProbe

        return SlotLagProbe(self.dsn, self.slot, self.pipeline_name)
