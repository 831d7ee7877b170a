"""Rows of V$LOGMNR_CONTENTS as the reader selects them, and the joining of CSF continuations.

`LogRow` holds the columns the reader uses, named as in the view; `LogRow.from_record(dict)` reads
a row given by column name (what connection.py fetches, and what the recorded fixtures under
tests/fixtures/oracle/ hold). `Continuations` joins a SQL_REDO longer than 4000 bytes, which LogMiner
splits over consecutive rows with CSF=1 on every piece but the last. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

from cdc_logs.errors import CdcError, ErrorKind

# OPERATION_CODE values (Oracle's documented LogMiner codes).
INSERT: Final = 1
DELETE: Final = 2
UPDATE: Final = 3
DDL: Final = 5
START: Final = 6
COMMIT: Final = 7
ROLLBACK: Final = 36
UNSUPPORTED: Final = 255  # a change LogMiner cannot render (no SQL_REDO): dead-lettered, not skipped
DML_CODES: Final = frozenset({INSERT, DELETE, UPDATE})
#: Selected by the mining query for the captured tables (besides START, COMMIT and ROLLBACK).
TABLE_CODES: Final = (INSERT, DELETE, UPDATE, DDL, UNSUPPORTED)

#: The columns of V$LOGMNR_CONTENTS the reader selects (XID as RAWTOHEX), in this order.
COLUMNS: Final = (
    "SCN",
    "START_SCN",
    "COMMIT_SCN",
    "XID",
    "OPERATION_CODE",
    "OPERATION",
    "SEG_OWNER",
    "TABLE_NAME",
    "SQL_REDO",
    "CSF",
    "ROLLBACK",
    "RS_ID",
    "SSN",
    "ROW_ID",
    "TIMESTAMP",
)


@dataclass(slots=True)
class LogRow:
    scn: int
    xid: str
    operation_code: int
    operation: str = ""
    start_scn: int | None = None
    commit_scn: int | None = None
    seg_owner: str | None = None
    table_name: str | None = None
    sql_redo: str | None = None
    csf: int = 0
    rollback: int = 0
    rs_id: str = ""
    ssn: int = 0
    row_id: str = ""
    ts_ms: int = 0

    @property
    def table(self) -> str:
        return f"{self.seg_owner}.{self.table_name}"

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LogRow:
        """A row by V$LOGMNR_CONTENTS column name; TIMESTAMP a datetime (server) or ISO text (fixtures)."""
        try:
            stamp = record.get("TIMESTAMP")
            if isinstance(stamp, str):
                stamp = dt.datetime.fromisoformat(stamp)
            ts_ms = 0
            if isinstance(stamp, dt.datetime):
                # LogMiner's TIMESTAMP is the database's local time without a zone; taken as UTC, as
                # Debezium does with its default settings (docs/sources/oracle.md).
                aware = stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
                ts_ms = int(aware.timestamp() * 1000)
            return cls(
                scn=int(record["SCN"]),
                xid=str(record.get("XID") or ""),
                operation_code=int(record["OPERATION_CODE"]),
                operation=str(record.get("OPERATION") or ""),
                start_scn=_int(record.get("START_SCN")),
                commit_scn=_int(record.get("COMMIT_SCN")),
                seg_owner=record.get("SEG_OWNER"),
                table_name=record.get("TABLE_NAME"),
                sql_redo=record.get("SQL_REDO"),
                csf=int(record.get("CSF") or 0),
                rollback=int(record.get("ROLLBACK") or 0),
                rs_id=str(record.get("RS_ID") or "").strip(),
                ssn=int(record.get("SSN") or 0),
                row_id=str(record.get("ROW_ID") or ""),
                ts_ms=ts_ms,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CdcError(
                ErrorKind.DECODE,
                f"a V$LOGMNR_CONTENTS row lacks or mistypes a column ({type(exc).__name__}: {exc})",
                "the mining query and this cdc-logs version do not match; report it",
            ) from None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


class Continuations:
    """Joins SQL_REDO pieces: a row with CSF=1 continues in the next row of the same transaction."""

    def __init__(self) -> None:
        self._pending: dict[str, LogRow] = {}

    def feed(self, row: LogRow) -> LogRow | None:
        """The complete row once its last piece arrives (None while pieces are pending)."""
        pending = self._pending.pop(row.xid, None)
        if pending is not None:
            if row.operation_code != pending.operation_code:
                raise CdcError(
                    ErrorKind.DECODE,
                    f"SQL_REDO continued (CSF=1) at SCN {pending.scn} of transaction {row.xid} is "
                    f"followed by operation {row.operation_code} at SCN {row.scn}, not its next piece",
                    "LogMiner returned an incomplete statement; report it with the SCN range",
                )
            pending.sql_redo = (pending.sql_redo or "") + (row.sql_redo or "")
            pending.csf = row.csf
            row = pending
        if row.csf:
            self._pending[row.xid] = row
            return None
        return row

    def __len__(self) -> int:
        return len(self._pending)

    def drop(self, xid: str) -> None:
        self._pending.pop(xid, None)
