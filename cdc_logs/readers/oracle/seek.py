"""`cdc-logs offsets set|rewind --scn N / --timestamp T` for an Oracle source, built and checked on
its database (offsets/seek.py dispatches here).

The position is the one the reader's `start_scn` option makes: "every transaction committed after
SCN N", mined from N + 1, stamped with the database's DBID. A transaction that began at or before N
and commits after it is seen only from N + 1 on: its earlier changes are not in the mined range.
Pick an SCN where nothing was open (an `offsets show` restart SCN is one) when that matters; the
docs say so. The SCN must be in the future of nothing and still covered by online or archived redo,
or LogMiner could not mine from it: both are refused, saying why.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import OracleScn
from cdc_logs.readers.oracle.logs import archived_logs, online_logs, select_logs

_TIME_TO_SCN = "SELECT TIMESTAMP_TO_SCN(:ts) AS SCN FROM DUAL"


class OracleSeeker:
    """Builds Oracle positions through an opened reader's session (nothing is written)."""

    def __init__(self, session: Any, dbid: str) -> None:
        self.session = session
        self.dbid = dbid

    @classmethod
    def of(cls, reader: Any) -> OracleSeeker:
        """The seeker on an opened OracleReader's session (reader.py)."""
        return cls(reader._session, reader.server_identity())

    def at_scn(self, scn: int) -> OracleScn:
        if scn < 0:
            raise CdcError(ErrorKind.USAGE, f"--scn {scn} is negative", "give a system change number >= 0")
        current = self.session.current_scn()
        if scn > current:
            raise CdcError(
                ErrorKind.USAGE,
                f"--scn {scn} is ahead of the database (its current SCN is {current})",
                "give an SCN at or below `SELECT CURRENT_SCN FROM V$DATABASE`",
            )
        online, archived = self.session.list_logs(scn)
        # Mining covers SCNs (scn, current]: position_lost (naming the recovery) when no redo holds scn + 1.
        select_logs(online_logs(online), archived_logs(archived), scn, max(current, scn + 1))
        return OracleScn(self.dbid, scn=scn, restart=scn + 1)

    def at_time(self, when: dt.datetime) -> OracleScn:
        """The SCN Oracle maps the time to (TIMESTAMP_TO_SCN: within its undo/flashback retention)."""
        naive_utc = when.astimezone(dt.UTC).replace(tzinfo=None)  # the session runs in UTC (connection.py)
        try:
            rows = self.session.query(_TIME_TO_SCN, {"ts": naive_utc})
        except CdcError as exc:
            raise CdcError(
                ErrorKind.USAGE,
                f"--timestamp {when.isoformat()}: Oracle cannot map it to an SCN ({exc.message})",
                "TIMESTAMP_TO_SCN only knows times within the database's retention (ORA-08180 "
                "beyond it); give --scn instead",
            ) from exc
        return self.at_scn(int(rows[0]["SCN"]))
