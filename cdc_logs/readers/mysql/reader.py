"""MysqlReader: row-based binlog capture for MySQL 8 and MariaDB 10.5+, resumed by GTID.

`open()` checks the server (flavour, binlog settings) and reads its identity: `mysql:<server_uuid>`
or `mariadb:server_id=<n>,domain_id=<d>`, stored with every offset and compared on resume. `stream()`:

* no stored position: a consistent snapshot (snapshot.py) then the binlog from the snapshot's GTID
  position; or, without snapshot, a Heartbeat of the server's current position (so a restart resumes
  from there) and the binlog from it; or the configured start (`gtid_set`, or MariaDB file/pos);
* a stored position: first checks the server still has it (a GTID ahead of the server, a MariaDB
  domain the server never had, or MySQL GTIDs already purged -> POSITION_LOST naming the recovery),
  then resumes by GTID (`auto_position`); a stored position marked `snapshot_pending` (a snapshot
  cut short) takes the snapshot again, then resumes from that position (see `_snapshot`).

The binlog is read by connection.BinlogStream on its own thread, or, when the run starts behind
(`decode_process`), in a second process (decode_process.py) that runs the same stream; this generator
polls either and yields `None` ticks while idle, so `stop()` ends it within `idle_tick_s`.
Checkpoints happen only at transaction ends (convert.py marks the last event of each transaction as
the boundary).
"""

from __future__ import annotations

import random
import threading
import zlib
from collections.abc import Generator, Iterator
from dataclasses import replace
from typing import Any

import pymysql

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, SourceInfo, now_ms
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import BinlogPosition, Position
from cdc_logs.readers.base import LagProbe, Reader, SnapshotProgress, StreamItem
from cdc_logs.readers.incremental import stamp_start
from cdc_logs.readers.mysql.connection import (
    RECOVER_HINT,
    BinlogStream,
    MysqlSettings,
    binlog_end,
    classify,
    connect,
    query_one,
)
from cdc_logs.readers.mysql.convert import BinlogConverter
from cdc_logs.readers.mysql.decode_process import BinlogProcess
from cdc_logs.readers.mysql.gtid import MariadbGtidPosition, MysqlGtidSet
from cdc_logs.readers.mysql.incremental import IncrementalFilter
from cdc_logs.readers.mysql.snapshot import Snapshot

log = get_logger(__name__)

# Binlog bytes past the start position that make `decode_process: auto` run the stream in a second
# process (~10,000 small row changes): a run catching up, not one following a live binlog.
BACKLOG_BYTES = 1 << 20
SERVER_ID_BASE = 1_000_000_000  # far above the ids people give their servers (1, 2, 100...)


def default_server_id(pipeline: str, *, temporary: bool = False) -> int:
    """Stable per pipeline (a restart reuses it; the server drops the stale connection), random for
    `tail` so two tails never collide."""
    if temporary:
        return SERVER_ID_BASE + random.randrange(1_000_000_000)
    return SERVER_ID_BASE + zlib.crc32(pipeline.encode()) % 1_000_000_000


def parse_table(name: str, default_db: str | None) -> tuple[str, str]:
    db, dot, table = name.strip().rpartition(".")
    if not dot:
        if not default_db:
            raise CdcError(
                ErrorKind.CONFIG,
                f"table {name!r} has no database",
                "write tables as db.table, or put the database in the DSN (mysql://u:p@host/db)",
            )
        db = default_db
    return db.strip("`"), table.strip("`")


def mariadb_resume_problem(ours: str, binlog_state: str) -> str | None:
    """Why the server cannot resume MariaDB position `ours` (None: it can). `binlog_state` is
    @@gtid_binlog_state: the last GTID of every (domain, server) in the binlog."""
    state = MariadbGtidPosition.parse(ours)
    newest: dict[int, int] = {}
    for entry in binlog_state.split(","):
        if entry.strip():
            domain, _server, seq = (int(x) for x in entry.strip().split("-"))
            newest[domain] = max(newest.get(domain, 0), seq)
    for gtid in state:
        if gtid.domain not in newest:
            return f"GTID {gtid} is in replication domain {gtid.domain}, which this server's binlog never had"
        if gtid.seq > newest[gtid.domain]:
            return (
                f"GTID {gtid} is ahead of the server (its newest in domain {gtid.domain} is "
                f"seq {newest[gtid.domain]}): was the server restored from an older backup?"
            )
    return None


def mysql_resume_problem(ours: str, executed: str, purged: str) -> str | None:
    """Why the server cannot resume MySQL GTID set `ours` (None: it can)."""
    mine = MysqlGtidSet.parse(ours)
    ahead = mine - MysqlGtidSet.parse(executed)
    if ahead:
        return f"GTIDs {ahead} were never executed on this server"
    missing = MysqlGtidSet.parse(purged) - mine
    if missing:
        return f"GTIDs {missing} were purged from the binlog before this pipeline read them"
    return None


class MysqlReader(Reader):
    """Capture row changes of MySQL/MariaDB tables from the binlog (see the module doc).

    Args:
        settings: where to connect (connection.parse_dsn builds it from a DSN).
        tables: `db.table` names (a bare name takes the DSN's database). Empty: every table of `schemas`.
        schemas: capture whole databases (alternative or addition to `tables`).
        flavor: "mariadb" or "mysql"; must match the server.
        server_id: this client's replication id, unique among the server's replicas and consumers.
        snapshot: first run (no stored position): emit every existing row (op "r") first.
        start_gtid / start_file, start_pos: first run without snapshot: start here, not at the end.
        heartbeat_s: server heartbeat period; also how often a moved position is reported while only
            other tables change.
    """

    def __init__(
        self,
        settings: MysqlSettings,
        tables: list[str],
        *,
        pipeline_name: str,
        flavor: str = "mariadb",
        schemas: list[str] | None = None,
        server_id: int | None = None,
        temporary: bool = False,
        snapshot: bool = False,
        start_gtid: str | None = None,
        start_file: str | None = None,
        start_pos: int | None = None,
        heartbeat_s: float = 5.0,
        snapshot_chunk_size: int = 2000,
        idle_tick_s: float = 0.5,
        max_reconnects: int = 5,
        signal_table: str | None = None,
        incremental_chunk_size: int = 1024,
        incremental_parallel: int = 1,
        snapshot_new_tables: bool = False,
        decode_process: str = "auto",
    ) -> None:
        if flavor not in ("mysql", "mariadb"):
            raise CdcError(ErrorKind.CONFIG, f"unknown flavor {flavor!r}", 'use "mysql" or "mariadb"')
        if not tables and not schemas:
            raise CdcError(ErrorKind.CONFIG, f"the {flavor} source needs tables", "add `--table db.table`")
        self.settings = settings
        self.flavor = flavor
        self.connector = flavor  # Debezium: "mysql"; its MariaDB connector writes "mariadb"
        self.tables = [parse_table(t, settings.database) for t in tables]
        self.schemas = list(schemas or [])
        self.pipeline_name = pipeline_name
        self.server_id = server_id or default_server_id(pipeline_name, temporary=temporary)
        self.snapshot = snapshot
        self.start_gtid = start_gtid if start_gtid not in (None, "", "auto") else None
        self.start_file, self.start_pos = start_file, start_pos
        self.heartbeat_s = heartbeat_s
        self.snapshot_chunk_size = snapshot_chunk_size
        self.idle_tick_s = idle_tick_s
        self.max_reconnects = max_reconnects
        self.signal_table = parse_table(signal_table, settings.database) if signal_table else None
        self.incremental_chunk_size = incremental_chunk_size
        self.incremental_parallel = incremental_parallel
        self.snapshot_new_tables = snapshot_new_tables
        self._isnap: IncrementalFilter | None = None
        self._server: str | None = None
        self._stop = threading.Event()
        self.decode_process = decode_process
        self._serialize_early = False
        self._stream: BinlogStream | BinlogProcess | None = None

    def serialize_early(self) -> None:
        self._serialize_early = True

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        self._stop.clear()
        conn = connect(self.settings)
        try:
            version, server_id, log_bin, fmt, metadata = query_one(
                conn,
                "SELECT VERSION(), @@server_id, @@log_bin, @@binlog_format, @@binlog_row_metadata",
            )
            mariadb = "mariadb" in str(version).lower()
            if mariadb != (self.flavor == "mariadb"):
                actual = "mariadb" if mariadb else "mysql"
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"the server is {version}, but the source type is {self.flavor}",
                    f"use `type: {actual}` (or `--source {actual}`)",
                )
            problems = []
            if str(log_bin) not in ("1", "ON"):
                problems.append("log_bin is off")
            if str(fmt).upper() != "ROW":
                problems.append(f"binlog_format is {fmt}, not ROW")
            if str(metadata).upper() != "FULL":
                problems.append(
                    f"binlog_row_metadata is {metadata}, not FULL (column names would be missing)"
                )
            if mariadb:
                (domain,) = query_one(conn, "SELECT @@gtid_domain_id")
                self._server = f"mariadb:server_id={server_id},domain_id={domain}"
            else:
                uuid, gtid_mode = query_one(conn, "SELECT @@server_uuid, @@gtid_mode")
                if str(gtid_mode).upper() != "ON":
                    problems.append(f"gtid_mode is {gtid_mode}, not ON (positions are resumed by GTID)")
                self._server = f"mysql:{uuid}"
            if problems:
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"{self.settings.describe()} is not set up for binlog CDC: " + "; ".join(problems),
                    f"see readers/{self.flavor}/cdc.cnf; `cdc-logs doctor --source {self.flavor}` checks all",
                )
        except pymysql.MySQLError as exc:
            raise classify(exc, f"checking {self.settings.describe()}") from exc
        finally:
            conn.close()
        if not self.tables:  # whole schemas: the list is fixed at open (new tables need a restart)
            self.tables = self._schema_tables()
        else:
            self._check_tables_exist()
        if self.signal_table is not None:
            self._check_tables_exist([self.signal_table])
            # Its rows are signals, never changes (also when a captured schema holds it).
            self.tables = [t for t in self.tables if t != self.signal_table]

    def server_identity(self) -> str:
        if self._server is None:
            raise CdcError(ErrorKind.USAGE, "MysqlReader.server_identity() called before open()")
        return self._server

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.stop()

    def close(self) -> None:
        self._stop.set()
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    # -- streaming -------------------------------------------------------------------------------
    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        server = self.server_identity()
        # snapshot_new_tables: the start heartbeat and the snapshot's end name the captured tables too
        captured = tuple(sorted(f"{db}.{t}" for db, t in self.tables)) if self.snapshot_new_tables else ()

        def streamable(p: Position) -> bool:
            return isinstance(p, BinlogPosition) and not p.snapshot_pending

        if isinstance(start, BinlogPosition) and start.snapshot_pending:
            # A snapshot begun at `start` was cut short: take it again, then stream from `start`.
            position = yield from stamp_start(
                self._snapshot(server, self._check_start(start)), captured, streamable
            )
            if position is None:
                return  # stopped mid-snapshot again: the next run starts it over, still from `start`
        elif start is None:
            if self.snapshot and not (self.start_gtid or self.start_file):
                position = yield from stamp_start(self._snapshot(server, None), captured, streamable)
                if position is None:
                    return  # stopped mid-snapshot: the next run starts it over (see _snapshot)
            else:
                position = self._first_position(server)
                yield Heartbeat(position.with_state("", captured) if captured else position)
        else:
            position = self._check_start(start)
        # The signal table is read from the binlog like a captured table (its rows never go out).
        read = set(self.tables) | ({self.signal_table} if self.signal_table else set())
        converter_args: dict[str, Any] = {
            "flavor": self.flavor,
            "connector": self.connector,
            "pipeline_name": self.pipeline_name,
            "start": position,
            "tables": read,
            "heartbeat_s": self.heartbeat_s,
        }
        isnap = self._isnap = IncrementalFilter(
            self.settings,
            self.tables,
            flavor=self.flavor,
            connector=self.connector,
            pipeline_name=self.pipeline_name,
            signal_table=self.signal_table,
            chunk_size=self.incremental_chunk_size,
            parallel=self.incremental_parallel,
            record_captured=self.snapshot_new_tables,
        )
        isnap.resume(start if isinstance(start, BinlogPosition) and not start.snapshot_pending else None)
        stream_args: dict[str, Any] = {
            "settings": self.settings,
            "server_id": self.server_id,
            "flavor": self.flavor,
            "only_schemas": sorted({db for db, _ in read}),
            "only_tables": sorted({t for _, t in read}),
            "heartbeat_s": self.heartbeat_s,
            "max_reconnects": self.max_reconnects,
        }
        end = self._binlog_end()
        stream: BinlogStream | BinlogProcess
        # `state`: what the loop below reads of the converter (server idle, position): the converter on
        # our thread, or its mirror when it runs in the decode process.
        state: BinlogConverter | BinlogProcess
        if self.decode_process == "on" or (self.decode_process == "auto" and _backlog(position, end)):
            stream = state = BinlogProcess(stream_args, converter_args, serialize=self._serialize_early)
        else:
            state = BinlogConverter(**converter_args)
            stream = BinlogStream(handler=state, **stream_args)
        self._stream = stream
        log.info("binlog streaming", server_id=self.server_id, gtid=position.gtid, file=position.file)
        caught_up = False
        stream.start()
        try:
            if self._stop.is_set():
                return
            if isnap.snapshots.chunk_due() and self.signal_table is not None:
                isnap.read_chunk()  # a snapshot the resume point carries, or tables new to the config
            while not self._stop.is_set():
                # Idle only once the log's end as of the start was read (or the server said it had
                # nothing more): before that, a quiet spell is the server still seeking the GTID in a
                # large binlog, or skipping other tables' transactions, and a one_time run would end
                # having delivered nothing. Looked at before the poll: the items of the transaction
                # that reached the end are queued by then.
                reached = caught_up or state.server_idle or _at_or_after(state.position, end)
                items = stream.poll(self.idle_tick_s)
                if items is None:
                    caught_up = reached
                    if caught_up:
                        yield None
                else:
                    for item in items:
                        if isnap.passthrough(item):
                            yield item
                        else:
                            yield from isnap.process(item)
        finally:
            stream.close()
            isnap.close()

    def _binlog_end(self) -> tuple[str, int]:
        """The binlog's end (file, pos) now; ("", 0), which every position is at, if unknown."""
        try:
            conn = connect(self.settings)
        except CdcError:
            return ("", 0)  # the stream's own connection reports the problem
        try:
            return binlog_end(conn)
        except pymysql.MySQLError:
            return ("", 0)
        finally:
            conn.close()

    def _first_position(self, server: str) -> BinlogPosition:
        """Where a first run without snapshot starts: the configured start, or the current end."""
        conn = connect(self.settings)
        try:
            if self.start_gtid:
                return BinlogPosition(server=server, gtid=self.start_gtid, flavor=self.flavor)
            if self.start_file:
                if self.flavor != "mariadb":
                    raise CdcError(
                        ErrorKind.UNSUPPORTED,
                        "starting a MySQL source at binlog_filename/binlog_position is not supported",
                        "give `binlog_config.gtid_set` (a GTID set) instead",
                    )
                pos = self.start_pos or 4
                (gtid,) = query_one(conn, "SELECT BINLOG_GTID_POS(%s, %s)", (self.start_file, pos))
                if gtid is None:
                    raise CdcError(
                        ErrorKind.POSITION_LOST,
                        f"binlog position {self.start_file}:{pos} is not in the server's binlog",
                        "check `SHOW BINARY LOGS`; give an existing file, or set gtid_set: auto",
                    )
                return BinlogPosition(
                    server=server, file=self.start_file, pos=pos, gtid=gtid, flavor="mariadb"
                )
            if self.flavor == "mariadb":
                (gtid,) = query_one(conn, "SELECT @@gtid_binlog_pos")
            else:
                (gtid,) = query_one(conn, "SELECT @@global.gtid_executed")
                gtid = "".join(str(gtid).split())
            with conn.cursor() as cur:
                try:
                    cur.execute("SHOW BINARY LOG STATUS")  # MySQL 8.4 removed SHOW MASTER STATUS
                except pymysql.err.ProgrammingError:
                    cur.execute("SHOW MASTER STATUS")
                row = cur.fetchone()
            file, pos = (str(row[0]), int(row[1])) if row else ("", 0)
            return BinlogPosition(server=server, file=file, pos=pos, gtid=str(gtid or ""), flavor=self.flavor)
        except pymysql.MySQLError as exc:
            raise classify(exc, "reading the binlog position") from exc
        finally:
            conn.close()

    def _check_start(self, start: Position) -> BinlogPosition:
        if not isinstance(start, BinlogPosition) or start.flavor != self.flavor:
            raise CdcError(
                ErrorKind.CONFIG,
                f"stored position {start.encode()} is not a {self.flavor} binlog position",
                "reset the offsets of this source (`cdc-logs offsets reset -c <pipeline.yaml>`)",
            )
        conn = connect(self.settings)
        try:
            if self.flavor == "mariadb":
                (state,) = query_one(conn, "SELECT @@gtid_binlog_state")
                problem = mariadb_resume_problem(start.gtid or "", str(state or ""))
            else:
                executed, purged = query_one(conn, "SELECT @@global.gtid_executed, @@global.gtid_purged")
                problem = mysql_resume_problem(start.gtid or "", str(executed or ""), str(purged or ""))
        except pymysql.MySQLError as exc:
            raise classify(exc, "checking the stored GTID position") from exc
        finally:
            conn.close()
        if problem:
            raise CdcError(
                ErrorKind.POSITION_LOST, f"cannot resume at {start.describe()}: {problem}", RECOVER_HINT
            )
        return start

    def _snapshot(
        self, server: str, since: BinlogPosition | None
    ) -> Generator[StreamItem, None, BinlogPosition | None]:
        """Emit every row as op "r"; returns the position to stream from (None: stopped midway).

        The first attempt commits its consistent point, marked pending, before any row. An attempt
        after a kill (`since`: that pending point) reads the table as it is now, but its rows and the
        stream carry on from `since`: a row an earlier attempt delivered and that was deleted since
        is not in this snapshot, and only the stream from `since` delivers that delete. Changes the
        snapshot already shows are then streamed again (at-least-once).
        """
        with Snapshot(
            self.settings,
            flavor=self.flavor,
            server=server,
            tables=self.tables,
            chunk_size=self.snapshot_chunk_size,
        ) as snap:
            if since is None:
                since = snap.position
                yield Heartbeat(replace(since, snapshot_pending=True))
            position = replace(since, snapshot_pending=False)
            extra = {"server_id": 0, "gtid": None, "file": position.file, "pos": position.pos, "row": 0}
            rows = snap.rows()
            current = next(rows, None)
            if current is None:
                yield Heartbeat(position)
            first = True
            while current is not None:
                if self._stop.is_set():
                    return None  # incomplete: no boundary went out, so nothing commits
                following = next(rows, None)
                last = following is None
                info, row = current
                source = SourceInfo(
                    self.connector,
                    self.pipeline_name,
                    info.schema,
                    info.table,
                    ts_ms=now_ms(),
                    snapshot="last" if last else "first" if first else "true",
                    extra=dict(extra),
                )
                key = {k: row.get(k) for k in info.key} if info.key else None
                yield ChangeEvent(
                    Op.READ,
                    source,
                    None,
                    row,
                    key,
                    now_ms(),
                    position=position,
                    boundary=last,
                    schema=info.table_schema,
                )
                current, first = following, False
        log.info("snapshot done", position=position.describe())
        return position

    def snapshot_progress(self) -> list[SnapshotProgress]:
        isnap = self._isnap
        return isnap.progress() if isnap is not None else []

    def _check_tables_exist(self, tables: list[tuple[str, str]] | None = None) -> None:
        """A table that does not exist is NOT_FOUND now, not a stream that stays silent forever."""
        tables = self.tables if tables is None else tables
        conn = connect(self.settings)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES"
                    " WHERE (TABLE_SCHEMA, TABLE_NAME) IN (" + ", ".join(["(%s, %s)"] * len(tables)) + ")",
                    [part for pair in tables for part in pair],
                )
                found = {(str(s), str(t)) for s, t in cur.fetchall()}
        except pymysql.MySQLError as exc:
            raise classify(exc, "checking the captured tables") from exc
        finally:
            conn.close()
        missing = [f"{s}.{t}" for s, t in tables if (s, t) not in found]
        if missing:
            raise CdcError(
                ErrorKind.NOT_FOUND,
                f"table(s) {', '.join(missing)} do not exist on {self.settings.describe()}",
                "create them first, or fix the names passed with `--table` / `tables:` (db.table)",
            )

    def _schema_tables(self) -> list[tuple[str, str]]:
        conn = connect(self.settings)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES"
                    " WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN %s ORDER BY 1, 2",
                    (tuple(self.schemas),),
                )
                return [(str(s), str(t)) for s, t in cur.fetchall()]
        finally:
            conn.close()

    def lag_probe(self) -> LagProbe | None:
        """Binlog lag from SHOW BINARY LOGS and the committed file:pos, on a connection of its own."""
        from cdc_logs.readers.mysql.lag import BinlogLagProbe

        return BinlogLagProbe(self.settings)


def _backlog(position: BinlogPosition, end: tuple[str, int]) -> bool:
    """Whether the binlog holds more than `BACKLOG_BYTES` past `position` (or a later file): a backlog
    worth a second core. A start at a configured GTID has no file: its place is unknown, and a run
    told where to start is catching up. An unknown end counts as no backlog."""
    if not end[0]:
        return False
    if not position.file:
        return True
    if end[0] != position.file:
        return end[0] > position.file
    return end[1] - (position.pos or 0) > BACKLOG_BYTES


def _at_or_after(position: BinlogPosition, end: tuple[str, int]) -> bool:
    """Whether `position` (file:pos) is at or past `end`; binlog file names of one server differ only
    in their zero-padded number, so they compare as text."""
    return (position.file or "", position.pos or 0) >= end
