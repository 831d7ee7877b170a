"""Which redo log files a mining window needs, and how wide the next window is. Pure: no I/O.

Continuous mining is gone from Oracle 19c on, so the reader adds the log files of each SCN window
itself (DBMS_LOGMNR.ADD_LOGFILE). `select_logs` picks them from V$LOG/V$LOGFILE (online logs) and
V$ARCHIVED_LOG rows: per (thread, sequence) the archived copy when there is one (an online log
can be overwritten as soon as it is archived), else the online log; only logs that overlap the window
(NEXT_CHANGE# > start and FIRST_CHANGE# <= end). It refuses a window whose redo is not all there:
the first log must begin at or before the window's first SCN (else the archived logs holding it were
deleted: the position is lost), and each thread's sequences must follow each other without a gap.

A log switch during a window (the online log archived, then reused, between listing and mining)
makes LogMiner fail on that file; the reader lists the logs again and mines the same window again
(reader.py), which this module's choice of the archived copy makes succeed.

`WindowSizer` adapts the window: it doubles (up to `max_size`) while the reader is behind the
database's current SCN, and halves (down to `min_size`) once it has caught up, or when a window's
mining fails for lack of memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cdc_logs.errors import CdcError, ErrorKind

#: NEXT_CHANGE# of the current online log (Oracle writes the highest SCN, or NULL).
OPEN_END = 2**64 - 1


@dataclass(frozen=True, slots=True)
class LogFile:
    name: str
    thread: int
    sequence: int
    first_scn: int
    next_scn: int  # exclusive; OPEN_END for the current online log
    archived: bool  # an archived copy (False: an online redo log member)

    def overlaps(self, start: int, end: int) -> bool:
        """Holds redo of some SCN in (start, end] (its own range is [first_scn, next_scn))."""
        return self.next_scn > start + 1 and self.first_scn <= end


def online_logs(rows: Iterable[dict[str, Any]]) -> list[LogFile]:
    """V$LOG x V$LOGFILE rows (MEMBER, THREAD#, SEQUENCE#, FIRST_CHANGE#, NEXT_CHANGE#, STATUS);
    UNUSED groups hold no redo."""
    out = []
    for row in rows:
        if str(row.get("STATUS") or "").upper() == "UNUSED" or row.get("FIRST_CHANGE#") is None:
            continue
        nxt = row.get("NEXT_CHANGE#")
        out.append(
            LogFile(
                str(row["MEMBER"]),
                int(row["THREAD#"]),
                int(row["SEQUENCE#"]),
                int(row["FIRST_CHANGE#"]),
                OPEN_END if nxt is None else int(nxt),
                False,
            )
        )
    return out


def archived_logs(rows: Iterable[dict[str, Any]]) -> list[LogFile]:
    """V$ARCHIVED_LOG rows (NAME, THREAD#, SEQUENCE#, FIRST_CHANGE#, NEXT_CHANGE#, STATUS); only
    available ones (STATUS 'A', a name)."""
    return [
        LogFile(
            str(row["NAME"]),
            int(row["THREAD#"]),
            int(row["SEQUENCE#"]),
            int(row["FIRST_CHANGE#"]),
            int(row["NEXT_CHANGE#"]),
            True,
        )
        for row in rows
        if row.get("NAME") and str(row.get("STATUS") or "A").upper() == "A"
    ]


def select_logs(online: list[LogFile], archived: list[LogFile], start: int, end: int) -> list[LogFile]:
    """The files to add for mining SCNs (start, end]; see the module docstring."""
    chosen: dict[tuple[int, int], LogFile] = {}
    for log in archived:
        chosen.setdefault((log.thread, log.sequence), log)
    for log in online:
        chosen.setdefault((log.thread, log.sequence), log)  # only when no archived copy exists
    wanted = sorted(
        (f for f in chosen.values() if f.overlaps(start, end)),
        key=lambda f: (f.thread, f.sequence),
    )
    # A log whose NEXT_CHANGE# is exactly start + 1 holds nothing of the window; one ending after does.
    if not wanted:
        raise _lost(start, "no online or archived redo log holds it")
    by_thread: dict[int, list[LogFile]] = {}
    for f in wanted:
        by_thread.setdefault(f.thread, []).append(f)
    if min(f.first_scn for f in wanted) > start + 1:
        raise _lost(start, "the oldest available log begins after it")
    for thread, files in by_thread.items():
        for before, after in itertools.pairwise(files):
            if after.sequence != before.sequence + 1:
                raise CdcError(
                    ErrorKind.POSITION_LOST,
                    f"redo thread {thread} misses log sequence {before.sequence + 1} "
                    f"(between SCN {before.next_scn} and {after.first_scn})",
                    "restore the missing archived log, or `cdc-logs offsets reset` and take a new snapshot",
                )
    return wanted


def _lost(start: int, why: str) -> CdcError:
    return CdcError(
        ErrorKind.POSITION_LOST,
        f"the redo from SCN {start + 1} is no longer available: {why} (archived logs deleted?)",
        "keep archived logs until cdc-logs has read them (RMAN retention); to go on, `cdc-logs offsets "
        "reset` and start again (changes made meanwhile are not delivered)",
    )


@dataclass
class WindowSizer:
    """The number of SCNs the next window spans; see the module docstring."""

    size: int = 20_000
    min_size: int = 1_000
    max_size: int = 100_000

    def __post_init__(self) -> None:
        if not 1 <= self.min_size <= self.max_size:
            raise ValueError("window sizes need 1 <= min_size <= max_size")
        self.size = max(self.min_size, min(self.size, self.max_size))

    def end(self, start: int, current: int) -> int:
        """The last SCN of the window after `start`, never past the database's current SCN."""
        return min(start + self.size, current)

    def done(self, end: int, current: int) -> None:
        """A window ending at `end` was mined while the database was at `current`."""
        if current - end > self.size:
            self.size = min(self.size * 2, self.max_size)
        elif end >= current:
            self.size = max(self.size // 2, self.min_size)

    def shrink(self) -> bool:
        """Halve after a failure; False when already at the minimum."""
        if self.size <= self.min_size:
            return False
        self.size = max(self.size // 2, self.min_size)
        return True
