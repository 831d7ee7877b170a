"""Positions a user asks for (`cdc-logs offsets set|rewind`): a GTID, a binlog file:pos or a time.

Every position built here is the `BinlogPosition` the reader resumes from (`MysqlReader._check_start`),
stamped with the server identity the reader reads at open, and checked against the server first:

* `--gtid`: MariaDB `domain-server-seq[,...]` (the last transaction applied: streaming resumes after it)
  or a MySQL GTID set `uuid:1-N[,...]` (everything in the set counts as applied). Refused when the
  server never had it (ahead of its binlog, an unknown domain) or its binlog no longer holds what
  follows it (purged): the same checks as a resume, plus, for MariaDB, the GTID state at the start of
  the oldest binlog file (`BINLOG_GTID_POS(oldest, 4)`), below which nothing can be replayed.
* `--binlog file:pos` (MariaDB): `BINLOG_GTID_POS(file, pos)`, the GTID state at that point, as the
  reader's own `binlog_filename`/`binlog_position` start does. The point must be a transaction
  boundary (a GTID event's start, the start or end of a file): inside a transaction (at its Table_map
  event, say) the state already counts that transaction, so a resume would skip all of it. Such a
  point is refused, naming the transaction's GTID and the next boundary (`SHOW BINLOG EVENTS` from the
  point, bounded). MySQL resumes only by GTID: refused.
* `--timestamp` (MariaDB, one replication domain): the first transaction whose binlog event time is at
  or after the time. The binlog has no time index, so it is found by a binary search over the domain's
  sequence numbers: each probe is a short non-blocking binlog dump from a GTID state (the server
  seeks to it by itself) reading the next transaction's GTID event and its time.

MariaDB's file/pos of a GTID position come from the same probe (the next transaction's GTID event
starts where the position ends), for display and ordering; the reader resumes by GTID alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

import pymysql

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import BinlogPosition
from cdc_logs.readers.mysql.connection import MysqlSettings, binlog_end, classify, connect, query_one
from cdc_logs.readers.mysql.gtid import MariadbGtidPosition, MysqlGtidSet
from cdc_logs.readers.mysql.reader import (
    MysqlReader,
    default_server_id,
    mariadb_resume_problem,
    mysql_resume_problem,
)

POSITION_HINT = (
    "give a position this server's binlog holds: between the GTID state at the start of its oldest "
    "file (`SHOW BINARY LOGS`, then `SELECT BINLOG_GTID_POS('<oldest file>', 4)`) and "
    "`SELECT @@gtid_binlog_pos` (MySQL: `@@global.gtid_purged` .. `@@global.gtid_executed`); to get "
    "changes the binlog no longer holds, take a new snapshot (`cdc-logs offsets reset -c "
    "<pipeline.yaml> --source NAME`, with `snapshot: true` on the source)"
)


# Events that start a transaction group or stand outside any (a file's header events): a point at their
# start is a transaction boundary. Every other event (Table_map, rows, Query, Xid, ...) is inside one.
_OUTSIDE_TRANSACTIONS = frozenset(
    {"Gtid", "Format_desc", "Gtid_list", "Binlog_checkpoint", "Rotate", "Stop", "Start_encryption"}
)
_SCAN = 1000  # events read after a refused point to name the next boundary


@dataclass(frozen=True)
class NextTransaction:
    """The first transaction after a GTID state: where its GTID event starts, its GTID and time."""

    file: str
    pos: int
    gtid: str
    timestamp: int  # epoch seconds (the binlog event's header time)


def _binlog_files(conn: Any) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        return [str(r[0]) for r in cur.fetchall()]


class MysqlSeeker:
    """Builds and checks positions for one MySQL/MariaDB source (an opened reader gives its settings)."""

    def __init__(self, reader: MysqlReader) -> None:
        self.settings: MysqlSettings = reader.settings
        self.flavor = reader.flavor
        self.server = reader.server_identity()
        self.pipeline = reader.pipeline_name

    # -- the server ------------------------------------------------------------------------------
    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        conn = connect(self.settings)
        try:
            return query_one(conn, sql, args)
        except pymysql.MySQLError as exc:
            raise classify(exc, f"querying {self.settings.describe()}") from exc
        finally:
            conn.close()

    def next_transaction(self, state: str) -> NextTransaction | None:
        """The first transaction the server would send to a replica at GTID `state` (None: none yet).

        Raises POSITION_LOST with the server's words when it refuses the state (purged, diverged)."""
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import GtidEvent, MariadbGtidEvent, RotateEvent

        reader = BinLogStreamReader(
            connection_settings=self.settings.kwargs(database=False),
            server_id=default_server_id(self.pipeline, temporary=True),  # never the pipeline's own
            blocking=False,  # the server ends the dump at the end of its binlog
            auto_position=state,
            is_mariadb=self.flavor == "mariadb",
            only_events=[MariadbGtidEvent, GtidEvent, RotateEvent],
            enable_logging=False,
        )
        file = ""
        try:
            for event in reader:
                if isinstance(event, RotateEvent):
                    file = str(event.next_binlog)
                    continue
                packet = event.packet
                return NextTransaction(
                    file, int(packet.log_pos) - int(packet.event_size), str(event.gtid), int(event.timestamp)
                )
        except pymysql.MySQLError as exc:
            error = classify(exc, f"the server refuses to send its binlog from GTID {state!r}")
            if error.kind is ErrorKind.POSITION_LOST:  # purged, diverged, never written: its own words
                raise CdcError(error.kind, error.message, POSITION_HINT) from exc
            raise error from exc
        finally:
            with contextlib.suppress(Exception):
                reader.close()
        return None

    def _oldest_state(self) -> tuple[str, str]:
        """(oldest binlog file, the MariaDB GTID state at its start: what was purged before it)."""
        conn = connect(self.settings)
        try:
            files = _binlog_files(conn)
            if not files:
                return "", ""
            (state,) = query_one(conn, "SELECT BINLOG_GTID_POS(%s, 4)", (files[0],))
            return files[0], str(state or "")
        except pymysql.MySQLError as exc:
            raise classify(exc, "reading the binlog files") from exc
        finally:
            conn.close()

    # -- positions -------------------------------------------------------------------------------
    def at_gtid(self, text: str) -> BinlogPosition:
        text = "".join(text.split())
        try:
            return self._at_gtid(text)
        except CdcError as exc:
            if exc.kind is not ErrorKind.DECODE:
                raise
            # A GTID typed on the command line: a usage error (exit 2), like a bad LSN or time.
            raise CdcError(ErrorKind.USAGE, f"--gtid {text!r}: {exc.message}", exc.hint) from None

    def _at_gtid(self, text: str) -> BinlogPosition:
        if self.flavor == "mariadb":
            if ":" in text:
                raise CdcError(
                    ErrorKind.USAGE,
                    f"--gtid {text!r} is a MySQL GTID set, but this source is MariaDB",
                    "give a MariaDB GTID position: domain-server-seq, e.g. 0-1-1400 "
                    "(`SELECT @@gtid_binlog_pos` shows the current one)",
                )
            gtid = MariadbGtidPosition.parse(text).format()
        else:
            gtid = MysqlGtidSet.parse(text).format()
        position = BinlogPosition(server=self.server, gtid=gtid, flavor=self.flavor)
        return self.check(position)

    def at_binlog(self, file: str, pos: int) -> BinlogPosition:
        if self.flavor != "mariadb":
            raise CdcError(
                ErrorKind.USAGE,
                "a MySQL source resumes by GTID only: a binlog file:pos cannot be mapped to a position",
                "give `--gtid` with a GTID set (`SELECT @@global.gtid_executed` shows the current one)",
            )
        (gtid,) = self._query("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        if gtid is None:
            raise CdcError(
                ErrorKind.POSITION_LOST,
                f"binlog position {file}:{pos} is not in the server's binlog (or not at an event start)",
                "check `SHOW BINARY LOGS` and `SHOW BINLOG EVENTS IN 'file'` for a file and an event start",
            )
        self._require_boundary(file, pos, str(gtid))
        position = BinlogPosition(server=self.server, file=file, pos=pos, gtid=str(gtid), flavor="mariadb")
        return self.check(position, locate=False)

    def _require_boundary(self, file: str, pos: int, state: str) -> None:
        """Refuse a file:pos inside a transaction (see the module doc)."""
        conn = connect(self.settings)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SHOW BINLOG EVENTS IN %s FROM %s LIMIT {_SCAN}", (file, pos))
                rows = cur.fetchall()
        except pymysql.MySQLError as exc:
            raise CdcError(
                ErrorKind.USAGE,
                f"binlog position {file}:{pos} is not an event start ({exc.args[-1]})",
                f"`SHOW BINLOG EVENTS IN '{file}'` lists where events start; give a GTID event's",
            ) from exc
        finally:
            conn.close()
        if not rows or str(rows[0][2]) in _OUTSIDE_TRANSACTIONS:
            return
        nxt = next((f"{file}:{r[1]}" for r in rows if str(r[2]) in _OUTSIDE_TRANSACTIONS), None)
        after = f"the next boundary is {nxt}" if nxt else f"no boundary in the {_SCAN} events after it"
        raise CdcError(
            ErrorKind.USAGE,
            f"binlog position {file}:{pos} is inside a transaction (at its {rows[0][2]} event; GTID state "
            f"there: {state}): a resume there would skip that whole transaction",
            f"give a transaction boundary: the start of the transaction's GTID event (`SHOW BINLOG EVENTS "
            f"IN '{file}'`) to include it; {after} (it skips the transaction)",
        )

    def require_time_search(self) -> None:
        """Refuse --timestamp / --by where the binlog cannot be searched by time here (MySQL)."""
        if self.flavor != "mariadb":
            raise CdcError(
                ErrorKind.USAGE,
                "--timestamp and --by are supported for MariaDB sources only (a MySQL GTID set at a point "
                "in time needs the whole binlog read)",
                "give `--gtid` with a GTID set instead",
            )

    def at_time(self, when: dt.datetime) -> BinlogPosition:
        """Before the first transaction whose binlog time is at or after `when`."""
        self.require_time_search()
        target = int(when.timestamp())
        (state,) = self._query("SELECT @@gtid_binlog_state")
        newest: dict[int, tuple[int, int]] = {}  # domain -> (seq, server id)
        for entry in str(state or "").split(","):
            if entry.strip():
                domain, server_id, seq = (int(x) for x in entry.strip().split("-"))
                if seq >= newest.get(domain, (-1, 0))[0]:
                    newest[domain] = (seq, server_id)
        if len(newest) != 1:
            raise CdcError(
                ErrorKind.UNSUPPORTED,
                f"--timestamp needs a binlog with one replication domain; this one has {len(newest)} "
                f"({state or 'empty'})",
                "give `--gtid` (one entry per domain) or `--binlog file:pos` instead",
            )
        ((domain, (hi, server_id)),) = newest.items()
        oldest_file, oldest = self._oldest_state()
        start = MariadbGtidPosition.parse(oldest).get(domain)
        lo = start.seq if start is not None else 0

        def state_at(seq: int) -> str:
            return f"{domain}-{server_id}-{seq}" if seq > 0 else ""

        seen: dict[int, NextTransaction | None] = {}

        def after(seq: int) -> NextTransaction | None:
            if seq not in seen:
                seen[seq] = self.next_transaction(state_at(seq))
            return seen[seq]

        def reached(seq: int) -> bool:  # the transaction after `seq` is at or after the time (or none)
            nxt = after(seq)
            return nxt is None or nxt.timestamp >= target

        # Gallop back from the newest (a recent time, the usual rewind, takes a few probes), then
        # bisect. Invariant: reached(hi); not reached(lo) once lo is above the oldest state.
        floor, step = lo, 1
        while hi - step > floor and reached(hi - step):
            hi, step = hi - step, step * 2
        lo = max(floor, hi - step)
        if lo == floor and reached(floor):
            first = after(floor)
            if first is not None and floor > 0 and first.timestamp > target:
                raise CdcError(
                    ErrorKind.POSITION_LOST,
                    f"the binlog starts after {_iso(target)}: its oldest transaction ({first.gtid}) is from "
                    f"{_iso(first.timestamp)}; transactions before it (up to {state_at(floor)}) were purged "
                    f"from the binlog ({oldest_file} is the oldest file)",
                    POSITION_HINT,
                )
            hi = floor
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if reached(mid):
                hi = mid
            else:
                lo = mid
        found, at = hi, after(hi)
        if at is None:  # nothing at or after the time: the current end
            conn = connect(self.settings)
            try:
                file, pos = binlog_end(conn)
                (gtid,) = query_one(conn, "SELECT @@gtid_binlog_pos")
            finally:
                conn.close()
            return BinlogPosition(
                server=self.server, file=file, pos=pos, gtid=str(gtid or ""), flavor="mariadb"
            )
        (gtid,) = self._query("SELECT BINLOG_GTID_POS(%s, %s)", (at.file, at.pos))
        resume = str(gtid) if gtid is not None else state_at(found)
        return BinlogPosition(server=self.server, file=at.file, pos=at.pos, gtid=resume, flavor="mariadb")

    def time_of(self, position: BinlogPosition) -> int | None:
        """The binlog time of the first transaction after `position` (None: none yet)."""
        nxt = self.next_transaction(position.gtid or "")
        return nxt.timestamp if nxt is not None else None

    def check(self, position: BinlogPosition, *, locate: bool = True) -> BinlogPosition:
        """Refuse a position this server cannot resume; with `locate`, fill MariaDB's file/pos in."""
        if position.flavor != self.flavor or position.server != self.server:
            raise CdcError(
                ErrorKind.SERVER_MISMATCH,
                f"position {position.describe()} is for server {position.server} ({position.flavor}), "
                f"but the source reaches {self.server} ({self.flavor})",
                "build the position on this server (`--gtid`, `--binlog`, `--timestamp`)",
            )
        gtid = position.gtid or ""
        if self.flavor == "mariadb":
            (state,) = self._query("SELECT @@gtid_binlog_state")
            problem = mariadb_resume_problem(gtid, str(state or ""))
            if problem is None:
                problem = self._mariadb_purged(gtid)
        else:
            executed, purged = self._query("SELECT @@global.gtid_executed, @@global.gtid_purged")
            problem = mysql_resume_problem(gtid, str(executed or ""), str(purged or ""))
        if problem:
            raise CdcError(
                ErrorKind.POSITION_LOST, f"cannot resume at GTID {gtid!r}: {problem}", POSITION_HINT
            )
        if self.flavor != "mariadb" or not locate:
            return position
        nxt = self.next_transaction(gtid)  # also has the server itself accept the state
        if nxt is not None:
            file, pos = nxt.file, nxt.pos
        else:
            conn = connect(self.settings)
            try:
                file, pos = binlog_end(conn)
            finally:
                conn.close()
        return BinlogPosition(server=self.server, file=file, pos=pos, gtid=gtid, flavor="mariadb")

    def _mariadb_purged(self, gtid: str) -> str | None:
        return mariadb_purged_problem(gtid, *self._oldest_state())


def mariadb_purged_problem(gtid: str, oldest_file: str, oldest_state: str) -> str | None:
    """Why MariaDB cannot replay from GTID position `gtid` because of purged binlog files (None: it
    can). `oldest_state` is the GTID state at the start of the oldest binlog file, `oldest_file`:
    everything up to it is gone, so a position must be at or after it in each of its domains."""
    mine = MariadbGtidPosition.parse(gtid)
    for first in MariadbGtidPosition.parse(oldest_state):
        ours = mine.get(first.domain)
        if ours is None:
            return (
                f"it has no entry for replication domain {first.domain}, whose transactions up to "
                f"{first} were purged from the binlog"
            )
        if ours.seq < first.seq:
            return (
                f"the transactions after {ours} up to {first} were purged from the binlog "
                f"(the oldest file, {oldest_file}, starts at {oldest_state})"
            )
    return None


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")
