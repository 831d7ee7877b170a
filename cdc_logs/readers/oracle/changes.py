"""ChangeStream: V$LOGMNR_CONTENTS rows in SCN order -> envelopes and heartbeats in commit order. Pure.

Fed the rows of one mining window at a time (`feed(row)`, then `end_window(scn)`), it yields what the
pipeline gets:

  * a transaction enters the buffer (txbuffer.py) with its first DML row of a captured table, at
    that row's SCN, not at its START row: a transaction that never touches a captured table (an
    unrelated batch, a session left open for days) then never holds back the restart SCN. Each
    DML row of a captured table (its CSF pieces joined, rows.py) is held there under its XID,
    unparsed; START rows are not needed (the contents query still returns them: they are ignored);
  * a DML row with ROLLBACK=1 undoes the last held change of its transaction to the same table and
    ROW_ID (a partial rollback: a statement undone inside a transaction that goes on), or failing
    that the table's last change logged without a ROW_ID; an undo row seen twice (same RS_ID and
    SSN) is applied once;
  * ROLLBACK drops the transaction; COMMIT emits it (a COMMIT or ROLLBACK of a transaction that is
    not in the buffer held no captured change: nothing to do); every change parsed (redo_sql.py), converted
    (convert.py) and positioned. Commits at one SCN are emitted in XID order, so the order of
    transactions is (commit SCN, XID) on every run;
  * a transaction ordered at or before the resume position (`resume`) is dropped, not emitted: after
    a restart from the restart SCN the transactions already delivered are mined again, and skipped.

Positions (`OracleScn`, cdc_logs/position.py): the events of a transaction carry its commit SCN and
XID with `inside` and their place (1, 2, ...); its last event is the boundary, the resume point
(commit SCN, XID, restart SCN), where the restart SCN is the first captured change's SCN of the
oldest transaction still open then (or the commit SCN itself): a restart mines from there, and
every change of a captured table of a transaction still open is at or after it. `end_window(scn)`
gives a `Heartbeat` at the window's end when asked, so a source whose tables are quiet still moves
its stored position.

A change that cannot be parsed or converted is an `Undecodable` in its place in the transaction
(the dead-letter file gets its SQL_REDO); nothing is skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson

from cdc_logs.envelope import ChangeEvent, Heartbeat, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import OracleScn
from cdc_logs.readers.oracle import rows as R
from cdc_logs.readers.oracle.convert import EventBuilder, TxContext
from cdc_logs.readers.oracle.redo_sql import parse
from cdc_logs.readers.oracle.rows import Continuations, LogRow
from cdc_logs.readers.oracle.schema import TableInfo
from cdc_logs.readers.oracle.txbuffer import TxBuffer

log = get_logger(__name__)

Item = ChangeEvent | Heartbeat | Undecodable
TableLookup = Callable[[str, str], TableInfo]


#: The ROW_ID LogMiner shows for a change it has no row address for.
NO_ROW_ID = "AAAAAAAAAAAAAAAAAA"


def _row_key(table: str, row_id: str) -> str:
    """What a partial rollback matches on: the table and the ROW_ID (ROW_IDs are per table)."""
    return f"{table}/{row_id or NO_ROW_ID}"


def order_key(scn: int, xid: str) -> tuple[int, int, str, int]:
    """A committed transaction's place, comparable with `OracleScn.sort_key()` of a resume point."""
    return (scn, 0, xid, 1)


class ChangeStream:
    """See the module docstring.

    Args:
        builder: makes the events of one change.
        buffer: the open transactions.
        server: the DBID stamped on positions.
        tables: captured tables as OWNER.TABLE.
        lookup: (owner, table) -> TableInfo (the reader reads the catalog; tests give recorded ones).
        resume: the stored resume point: transactions ordered at or before it are dropped.
        on_ddl: called with (owner, table) for a DDL row of a captured table.
    """

    def __init__(
        self,
        builder: EventBuilder,
        buffer: TxBuffer,
        server: str,
        tables: set[str],
        lookup: TableLookup,
        *,
        resume: OracleScn | None = None,
        on_ddl: Callable[[str, str], None] | None = None,
    ) -> None:
        self.builder = builder
        self.buffer = buffer
        self.server = server
        self.tables = tables
        self.lookup = lookup
        self.resume_key = resume.sort_key() if resume is not None else None
        self.on_ddl = on_ddl
        self.continuations = Continuations()
        self._commits: list[LogRow] = []  # COMMIT rows at `_commit_scn`, emitted once the SCN moves on
        self._undone: set[tuple[str, str, int]] = set()  # (xid, RS_ID, SSN) of undo rows applied
        self.mined_to = resume.restart - 1 if resume is not None else 0
        self.skipped = 0  # transactions dropped as already delivered (for logs and tests)

    @property
    def open_transactions(self) -> int:
        return len(self.buffer)

    def restart_scn(self, scn: int) -> int:
        """Where a restart must mine from once everything committed up to `scn` is delivered."""
        oldest = self.buffer.oldest_start()
        return scn if oldest is None else min(oldest, scn)

    # -- rows ----------------------------------------------------------------------------------------
    def feed(self, row: LogRow) -> Iterator[Item]:
        if self._commits and row.scn > self._commits[0].scn:
            yield from self._flush()
        code = row.operation_code
        if code == R.START:
            # Not buffered: the transaction enters the buffer with its first captured change
            # (`_hold`), so one that never touches a captured table holds no restart SCN back.
            return
        if code in R.DML_CODES:
            self._dml(row)
        elif code == R.UNSUPPORTED and row.table in self.tables:
            self._hold(row)  # dead-lettered at its commit, in its place
        elif code == R.COMMIT:
            self._commits.append(row)
        elif code == R.ROLLBACK:
            self.buffer.discard(row.xid)
            self.continuations.drop(row.xid)
            self._forget_undone(row.xid)
        elif code == R.DDL and row.table in self.tables:
            log.warning(
                "oracle: DDL on a captured table; its catalog is read again",
                table=row.table,
                scn=row.scn,
                operation=row.operation,
            )
            if self.on_ddl is not None and row.seg_owner and row.table_name:
                self.on_ddl(row.seg_owner, row.table_name)

    def _dml(self, row: LogRow) -> None:
        if row.table not in self.tables:
            return
        full = self.continuations.feed(row)
        if full is None:
            return
        if full.rollback:
            mark = (full.xid, full.rs_id, full.ssn)
            if mark in self._undone:
                return
            self._undone.add(mark)
            # The change to that row; failing that, the table's last change logged without a ROW_ID
            # (Oracle writes AAAAAAAAAAAAAAAAAA for an insert with LOB columns, and the undo row then
            # names the real one: seen in Debezium's recorded Oracle 23 rollbacks).
            if not (
                self.buffer.undo(full.xid, _row_key(full.table, full.row_id))
                or self.buffer.undo(full.xid, _row_key(full.table, NO_ROW_ID))
            ):
                log.warning(
                    "oracle: a partial-rollback row matches no change held for its transaction",
                    xid=full.xid,
                    scn=full.scn,
                    table=full.table,
                    fix="report it with the SCN: the undone change may be delivered",
                )
            return
        self._hold(full)

    def _hold(self, row: LogRow) -> None:
        record = orjson.dumps(
            [
                row.scn,
                row.operation_code,
                row.seg_owner,
                row.table_name,
                row.sql_redo,
                row.row_id,
                row.rs_id,
                row.ssn,
                row.ts_ms,
            ]
        )
        self.buffer.append(row.xid, row.scn, _row_key(row.table, row.row_id), record)

    def _forget_undone(self, xid: str) -> None:
        if self._undone:
            self._undone = {m for m in self._undone if m[0] != xid}

    # -- commits -------------------------------------------------------------------------------------
    def end_window(self, scn: int, heartbeat: bool = False) -> Iterator[Item]:
        """Everything with an SCN <= `scn` was fed: emit pending commits; a Heartbeat when asked."""
        yield from self._flush()
        if scn > self.mined_to:
            self.mined_to = scn
        if heartbeat and (self.resume_key is None or (scn, 1, "", 1) > self.resume_key):
            yield Heartbeat(OracleScn(self.server, scn=scn, restart=self.restart_scn(scn + 1)))

    def _flush(self) -> Iterator[Item]:
        commits, self._commits = sorted(self._commits, key=lambda r: r.xid), []
        for commit in commits:
            yield from self._commit(commit)

    def _commit(self, commit: LogRow) -> Iterator[Item]:
        xid, scn = commit.xid, commit.scn  # a COMMIT row's SCN is the commit SCN
        self.continuations.drop(xid)
        self._forget_undone(xid)
        if self.resume_key is not None and order_key(scn, xid) <= self.resume_key:
            self.buffer.discard(xid)
            self.skipped += 1
            return
        if xid not in self.buffer:
            return  # nothing of it in the captured tables
        tx = TxContext(xid, scn, commit.ts_ms)
        held: ChangeEvent | Undecodable | None = None
        count = 0
        for record in self.buffer.take(xid):
            for item in self._items(record, tx):
                if held is not None:
                    yield held
                count += 1
                item.position = OracleScn(self.server, scn=scn, xid=xid, inside=True, event=count)
                item.boundary = False
                held = item
        if held is not None:
            held.position = OracleScn(self.server, scn=scn, xid=xid, restart=self.restart_scn(scn))
            held.boundary = True
            yield held

    def _items(self, record: bytes, tx: TxContext) -> list[ChangeEvent | Undecodable]:
        scn, code, owner, table, sql, row_id, rs_id, ssn, ts_ms = orjson.loads(record)
        placeholder = OracleScn(self.server, scn=tx.commit_scn, xid=tx.xid, inside=True)
        try:
            if code == R.UNSUPPORTED:
                raise CdcError(
                    ErrorKind.DECODE,
                    "LogMiner could not render this change (OPERATION UNSUPPORTED)",
                    "a column type LogMiner cannot mine, or the table changed since (docs/sources/oracle.md)",
                )
            redo = parse(sql or "")
            if (redo.owner or owner, redo.table) != (owner, table):
                raise CdcError(
                    ErrorKind.DECODE,
                    f"SQL_REDO names another table than the row's SEG_OWNER.TABLE_NAME ({owner}.{table})",
                    "report it with the SCN",
                )
            info = self.lookup(owner, table)
            return list(self.builder.events(info, redo, tx, scn=scn, rs_id=rs_id, ssn=ssn, ts_ms=ts_ms))
        except CdcError as exc:
            if exc.kind is not ErrorKind.DECODE:
                raise
            reason = f"SCN {scn} ROW_ID {row_id} of transaction {tx.xid}: {exc.message}"
            raw = (sql or "").encode()
            return [Undecodable(placeholder, f"{owner}.{table}", reason, boundary=False, raw=raw)]
