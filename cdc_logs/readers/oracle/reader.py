"""OracleReader: LogMiner over explicitly added redo logs, one SCN window at a time.

`open()` connects (connection.py), reads the database's DBID (the server identity on positions) and
the captured tables' columns. `stream(start)`:

  start None, no start_scn  yield Heartbeat(current SCN, restart = the oldest open transaction's
                            start SCN from V$TRANSACTION), so transactions open now are delivered
                            whole, and a later run resumes here;
  start None, start_scn N   the same from SCN N (transactions open at N are delivered from N on);
  start None, snapshot on   instead of that Heartbeat, every captured table as of that SCN (op "r",
                            snapshot.py), its last row the resume point; then the stream after it;
  start OracleScn           the DBID must match; mine again from its restart SCN and drop the
                            transactions ordered at or before it (changes.py).

Then, while not stopped: the database's current SCN, as it was `redo_flush_lag_s` ago (FlushedScn:
redo newer than that may still be in the log buffer), bounds the next window (logs.WindowSizer adapts
its width), the window's log files are listed and chosen (logs.select_logs), LogMiner mines them
(connection.LogMinerSession.mine) and the rows go through the ChangeStream (transaction buffer,
commit order, positions). A log switch during a window (LogSwitched) lists the logs again and mines
the window again, skipping the rows already fed from it (the same redo gives the same rows in the
same order); a window too large for the server's memory is mined in a smaller one. A heartbeat
closes a window every `heartbeat_interval_s`, so quiet tables still move the stored position.

Oracle keeps no per-consumer state (no slot): `commit()` only records the position. The archived
logs from the stored restart SCN on must be kept until cdc-logs has read them (docs/sources/oracle.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from cdc_logs.envelope import Heartbeat
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import OracleScn, Position
from cdc_logs.readers.base import Reader, SnapshotProgress, StreamItem, idle_pause
from cdc_logs.readers.oracle.changes import ChangeStream
from cdc_logs.readers.oracle.connection import Identity, LogSwitched, WindowTooLarge
from cdc_logs.readers.oracle.convert import EventBuilder
from cdc_logs.readers.oracle.logs import WindowSizer, archived_logs, online_logs, select_logs
from cdc_logs.readers.oracle.rows import LogRow
from cdc_logs.readers.oracle.schema import CatalogColumn, TableInfo, table_info
from cdc_logs.readers.oracle.snapshot import SnapshotEvents, select_sql
from cdc_logs.readers.oracle.txbuffer import TxBuffer

log = get_logger(__name__)
_RETRIES = 5  # log switches in a row before the window's failure is raised


class Session(Protocol):
    """What the reader needs of a connection (connection.LogMinerSession; a replay in the tests)."""

    def identity(self) -> Identity: ...
    def current_scn(self) -> int: ...
    def oldest_open_scn(self) -> int | None: ...
    def list_logs(self, start: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...
    def table_columns(self, owner: str, table: str) -> list[CatalogColumn]: ...
    def mine(self, files: Any, start: int, end: int, tables: Any) -> Iterator[dict[str, Any]]: ...
    def snapshot_rows(self, sql: str, scn: int) -> Iterator[tuple[Any, ...]]: ...
    def close(self) -> None: ...


def split_table(name: str) -> tuple[str, str]:
    """OWNER.TABLE as LogMiner names it: unquoted parts upper-cased, "Quoted" ones kept."""
    parts = [p.strip() for p in name.split(".")]
    if len(parts) != 2 or not all(parts):
        raise CdcError(ErrorKind.CONFIG, f"table {name!r} must be OWNER.TABLE", "e.g. HR.EMPLOYEES")
    return tuple(p[1:-1] if len(p) > 1 and p[0] == p[-1] == '"' else p.upper() for p in parts)  # type: ignore[return-value]


class OracleReader(Reader):
    """See the module docstring; arguments mirror `OracleSourceConfig` (docs/sources/oracle.md)."""

    connector = "oracle"

    def __init__(
        self,
        session_factory: Callable[[], Session],
        tables: list[str],
        *,
        pipeline_name: str,
        start_scn: int | None = None,
        snapshot: bool = False,
        poll_interval_s: float = 1.0,
        window: WindowSizer | None = None,
        max_tx_memory_bytes: int = 64 << 20,
        heartbeat_interval_s: float = 10.0,
        idle_tick_s: float = 0.5,
        redo_flush_lag_s: float = 5.0,
    ) -> None:
        if not tables:
            raise CdcError(ErrorKind.CONFIG, "the oracle source needs tables", "add `tables: [OWNER.TABLE]`")
        self.session_factory = session_factory
        self.tables = [split_table(t) for t in tables]
        self.pipeline_name = pipeline_name
        self.start_scn = start_scn
        self.snapshot = snapshot
        self._snapshot: SnapshotEvents | None = None
        self.poll_interval_s = poll_interval_s
        self.window = window or WindowSizer()
        self.max_tx_memory_bytes = max_tx_memory_bytes
        self.heartbeat_interval_s = heartbeat_interval_s
        self.idle_tick_s = idle_tick_s
        self.redo_flush_lag_s = redo_flush_lag_s
        self._session: Session | None = None
        self._identity: Identity | None = None
        self._infos: dict[tuple[str, str], TableInfo] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self.committed: OracleScn | None = None
        self.windows = 0  # windows mined (for logs and tests)
        self.mined_to = 0  # the last SCN of the last window mined
        self.log_switches = 0

    # -- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        self._stop.clear()
        self._session = self.session_factory()
        try:
            self._identity = self._session.identity()
            for owner, table in self.tables:
                self._info(owner, table)
        except BaseException:
            self.close()
            raise

    def server_identity(self) -> str:
        if self._identity is None:
            raise CdcError(ErrorKind.USAGE, "OracleReader.server_identity() called before open()")
        return self._identity.dbid

    def stop(self) -> None:
        self._stop.set()

    def snapshot_progress(self) -> list[SnapshotProgress]:
        snap = self._snapshot
        return list(snap.progress) if snap is not None and not all(p.done for p in snap.progress) else []

    def commit(self, position: Position) -> None:
        """Record that everything up to `position` is durable (Oracle holds nothing for a reader)."""
        if isinstance(position, OracleScn) and self._identity and position.server == self._identity.dbid:
            self.committed = position

    def close(self) -> None:
        self._stop.set()
        session, self._session = self._session, None
        if session is not None:
            session.close()

    # -- catalog -------------------------------------------------------------------------------------
    def _info(self, owner: str, table: str) -> TableInfo:
        key = (owner, table)
        info = self._infos.get(key)
        if info is None:
            assert self._session is not None and self._identity is not None
            columns = self._session.table_columns(owner, table)
            if not columns:
                raise CdcError(
                    ErrorKind.NOT_FOUND,
                    f"table {owner}.{table} does not exist or is not visible to this user",
                    "check the name (OWNER.TABLE, upper case unless created quoted) and GRANT SELECT on it",
                )
            version = self._versions.get(key, 0) + 1
            self._versions[key] = version
            info = self._infos[key] = table_info(self._identity.name, owner, table, columns, version)
        return info

    def _forget(self, owner: str, table: str) -> None:
        self._infos.pop((owner, table), None)

    # -- streaming -----------------------------------------------------------------------------------
    def _resume_point(self, start: Position | None) -> Iterator[StreamItem | OracleScn]:
        assert self._session is not None and self._identity is not None
        dbid = self._identity.dbid
        if start is not None:
            if not isinstance(start, OracleScn):
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"stored position {start.encode()} is not an Oracle position",
                    "reset the offsets of this source (`cdc-logs offsets reset -c <pipeline.yaml>`)",
                )
            if start.server != dbid:
                raise CdcError(
                    ErrorKind.SERVER_MISMATCH,
                    f"the stored position was taken on the database with DBID {start.server}, but the DSN "
                    f"reaches DBID {dbid} (another database, or one recreated)",
                    "if that is intended, `cdc-logs offsets reset -c <pipeline.yaml>` and run again",
                )
            yield start
            return
        if self.start_scn is not None:
            point = OracleScn(dbid, scn=self.start_scn, restart=self.start_scn + 1)
        else:
            current = self._session.current_scn()
            oldest = self._session.oldest_open_scn()
            restart = current + 1 if oldest is None else min(oldest, current + 1)
            point = OracleScn(dbid, scn=current, restart=restart)
        if self.snapshot:
            log.info("oracle: snapshot", scn=point.scn, restart=point.restart, tables=len(self.tables))
            snap = SnapshotEvents(
                EventBuilder(self.pipeline_name, self._identity.name), dbid, point.scn, point.restart
            )
            self._snapshot = snap
            session = self._session
            infos = [self._info(o, t) for o, t in self.tables]
            yield from snap.events(
                infos, lambda info: session.snapshot_rows(select_sql(info), point.scn), self._stop.is_set
            )
            if self._stop.is_set() or not all(p.done for p in snap.progress):
                return  # stopped: no position past the snapshot was given, it is taken again
            log.info("oracle: snapshot done", rows=sum(p.rows for p in snap.progress))
        else:
            log.info("oracle: starting", scn=point.scn, restart=point.restart)
            yield Heartbeat(point)
        yield point

    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        session, identity = self._session, self._identity
        if session is None or identity is None:
            raise CdcError(ErrorKind.USAGE, "OracleReader.stream() called before open()")
        point: OracleScn | None = None
        for item in self._resume_point(start):
            if isinstance(item, OracleScn):
                point = item
            else:
                yield item
        if point is None:
            return  # stopped during the snapshot
        buffer = TxBuffer(self.max_tx_memory_bytes)
        changes = ChangeStream(
            EventBuilder(self.pipeline_name, identity.name),
            buffer,
            identity.dbid,
            {f"{o}.{t}" for o, t in self.tables},
            self._info,
            resume=point,
            on_ddl=self._forget,
        )
        try:
            yield from self._follow(session, changes)
        finally:
            buffer.clear()

    def _follow(self, session: Session, changes: ChangeStream) -> Iterator[StreamItem]:
        mined_to = self.mined_to = changes.mined_to
        next_tick = time.monotonic() + self.idle_tick_s
        last_beat = time.monotonic()
        flushed = FlushedScn(self.redo_flush_lag_s)
        while not self._stop.is_set():
            current = flushed.sample(session.current_scn(), time.monotonic())
            if current <= mined_to:
                next_tick = yield from idle_pause(
                    self._stop, self.poll_interval_s, self.idle_tick_s, next_tick
                )
                continue
            end = self.window.end(mined_to, current)
            fed = 0
            attempts = 0
            while True:
                try:
                    for item in self._mine(session, changes, mined_to, end, skip=fed):
                        if item is _FED:
                            fed += 1
                            continue
                        yield item
                        next_tick = time.monotonic() + self.idle_tick_s
                    break
                except LogSwitched as exc:
                    attempts += 1
                    self.log_switches += 1
                    if attempts > _RETRIES:
                        raise CdcError(
                            ErrorKind.CONNECTION,
                            f"oracle: the redo logs of SCN {mined_to + 1} to {end} kept changing while "
                            f"being mined ({exc})",
                            "it is retried; check the log switch rate and the archiver",
                        ) from None
                    log.info("oracle: log switch during a window; mining it again", end=end, fed=fed)
                except WindowTooLarge as exc:
                    if fed or not self.window.shrink():
                        raise CdcError(
                            ErrorKind.CONNECTION,
                            f"oracle: the server ran out of memory mining SCN {mined_to + 1} to {end} "
                            f"({exc})",
                            "raise the server's PGA/shared pool or lower `max_window_scns`; it is retried",
                        ) from None
                    end = self.window.end(mined_to, current)
            if self._stop.is_set():
                return  # the window is not finished: its pending commits are not emitted
            self.windows += 1
            caught_up = end >= current
            now = time.monotonic()
            # While catching up, a window without events ends with a heartbeat rather than an idle
            # tick: an idle tick means "nothing to read" to a one-time pipeline, which then stops.
            beat = now - last_beat >= self.heartbeat_interval_s or (now >= next_tick and not caught_up)
            for item in changes.end_window(end, heartbeat=beat):
                yield item
                next_tick = time.monotonic() + self.idle_tick_s
            if beat:
                last_beat = time.monotonic()
            mined_to = self.mined_to = end
            self.window.done(end, current)
            if caught_up and time.monotonic() >= next_tick:
                yield None
                next_tick = time.monotonic() + self.idle_tick_s

    def _mine(
        self, session: Session, changes: ChangeStream, start: int, end: int, skip: int
    ) -> Iterator[Any]:
        """Feed the rows of window (start, end] past the first `skip`; yields what the stream yields and
        `_FED` after each row fed (the caller counts them, for a retry)."""
        online, archived = session.list_logs(start)
        files = select_logs(online_logs(online), archived_logs(archived), start, end)
        rows = session.mine(files, start, end, self.tables)
        try:
            for index, record in enumerate(rows):
                if index < skip:
                    continue
                yield from changes.feed(LogRow.from_record(record))
                yield _FED
                if self._stop.is_set():
                    return
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()


_FED = object()


class FlushedScn:
    """The highest SCN whose redo is surely on disk: the current SCN sampled at least `lag_s` ago.

    LogMiner reads redo files, and the log writer flushes the redo buffer at every commit and at least
    every three seconds: a change made before SCN S was sampled is in the files `lag_s` later, but a
    window ending at the current SCN could pass over a change of an open transaction still in the
    buffer, which its commit would then emit without it. (Debezium commits to a flush table instead;
    that writes to the user's database, which cdc-logs does not.) `lag_s` 0 takes the current SCN.
    """

    def __init__(self, lag_s: float) -> None:
        self.lag_s = lag_s
        self._samples: list[tuple[float, int]] = []
        self._safe = 0

    def sample(self, scn: int, now: float) -> int:
        if self.lag_s <= 0:
            return scn
        self._samples.append((now, scn))
        while self._samples and self._samples[0][0] <= now - self.lag_s:
            self._safe = max(self._safe, self._samples.pop(0)[1])
        return self._safe
