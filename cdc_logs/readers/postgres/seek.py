"""Positions a user asks for (`cdc-logs offsets set|rewind`): an LSN, checked against the slot.

The position built is the reader's resume point, `Lsn(system identifier, lsn)`, with the system
identifier read the way the reader reads it (IDENTIFY_SYSTEM on a replication connection). The
reader streams from it with START_REPLICATION: transactions whose commit record starts at or after the
LSN come, the ones before are skipped.

What a logical slot can serve: never anything before its `confirmed_flush_lsn`. Asked to start
earlier, Postgres silently starts at the confirmed point instead (the server logs "... has been
already streamed, forwarding to ..."), so such a position is refused here, with the recovery (a new
slot and a new snapshot). A position past the end of the WAL, on a slot that does not exist (it
could serve nothing before its creation), or on a lost slot is refused too. A time cannot be mapped:
WAL has no time index, and what a slot could replay is bounded by its confirmed point anyway.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Lsn, PgSnapshot, Position, format_lsn
from cdc_logs.readers.postgres import slots
from cdc_logs.readers.postgres.connection import ReplicationStream, connect, map_error, parse_lsn_text
from cdc_logs.readers.postgres.reader import PostgresReader

NO_TIME = (
    "a Postgres source cannot be positioned by time: the WAL has no time index, and a logical slot "
    "can only serve changes after its confirmed point anyway"
)


def new_snapshot_hint(slot: str, source: str) -> str:
    """The recovery when a slot cannot go back: drop it, forget the position, snapshot again."""
    return (
        "a logical slot never goes back. To get those changes again, take a new snapshot: "
        f"`cdc-logs slots drop {slot} --dsn URL`, `cdc-logs offsets reset -c <pipeline.yaml> --source "
        f"{source} --yes`, then `cdc-logs run -c <pipeline.yaml>` with `snapshot: true` on the source "
        "(a new slot, then every row once); or choose a position at or after the confirmed point"
    )


class PostgresSeeker:
    """Builds and checks `Lsn` positions for one Postgres source (its reader, not opened, gives the
    DSN and slot; nothing is created or changed on the server)."""

    def __init__(self, reader: PostgresReader, source: str) -> None:
        self.dsn = reader.dsn
        self.slot = reader.slot
        self.source = source
        repl = ReplicationStream(self.dsn, application_name="cdc-logs offsets")
        try:
            system = repl.identify_system()
        finally:
            repl.close()
        self.server, self.dbname = system.system_id, system.dbname

    def _meta(self) -> psycopg.Connection[Any]:
        return connect(self.dsn, application_name="cdc-logs offsets")

    def at_lsn(self, lsn: int, current: Position | None = None) -> Lsn:
        position = Lsn(self.server, lsn)
        self.check(position, current)
        return position

    def confirmed(self) -> int | None:
        """The slot's confirmed point (None: no slot yet)."""
        with contextlib.closing(self._meta()) as meta:
            slot = slots.get_slot(meta, self.slot)
        return None if slot is None else slot.confirmed_flush

    def check(self, position: Position, current: Position | None = None) -> Position:
        """Refuse a position the slot cannot serve (see the module doc); return it unchanged.

        With `current` (the committed position): the slot's confirmed point may be past it (keepalives
        confirm WAL that held nothing for this slot while nothing was in flight), so a position from
        the committed one onwards is accepted; it resumes exactly as the confirmed point would."""
        if not isinstance(position, Lsn | PgSnapshot):
            raise CdcError(ErrorKind.USAGE, f"{position.describe()} is not a Postgres position")
        if position.server != self.server:
            raise CdcError(
                ErrorKind.SERVER_MISMATCH,
                f"the position is for cluster {position.server}, but the DSN reaches cluster {self.server}",
                "build it on this cluster (`--lsn`)",
            )
        with contextlib.closing(self._meta()) as meta:
            slot = slots.get_slot(meta, self.slot)
            try:
                row = meta.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            except psycopg.Error as exc:
                raise map_error(exc, "reading the current WAL position") from exc
        end = parse_lsn_text(str(row[0])) if row else 0
        if slot is None:
            raise CdcError(
                ErrorKind.NOT_FOUND,
                f"replication slot {self.slot!r} does not exist: a position can only be resumed through "
                "an existing slot, and a new slot serves nothing before its creation",
                "to start at the current end of the WAL, `cdc-logs offsets reset -c <pipeline.yaml> "
                f"--source {self.source} --yes` and run (with `snapshot: true` for every row first)",
            )
        slots.check_slot(slot, self.slot, self.dbname)
        lsn = position.lsn
        if lsn > end:
            raise CdcError(
                ErrorKind.USAGE,
                f"LSN {format_lsn(lsn)} is ahead of the end of the WAL ({format_lsn(end)})",
                "give an LSN the server has written (`SELECT pg_current_wal_lsn()` shows the end)",
            )
        confirmed = slot.confirmed_flush or 0
        floor = confirmed
        if isinstance(current, Lsn) and current.server == self.server:
            floor = min(confirmed, current.lsn)
        if lsn < floor:
            raise CdcError(
                ErrorKind.POSITION_LOST,
                f"slot {self.slot!r} cannot serve LSN {format_lsn(lsn)}: its confirmed point is "
                f"{format_lsn(confirmed)}, and Postgres would silently start there instead (the changes "
                "in between are no longer decoded for this slot)",
                new_snapshot_hint(self.slot, self.source),
            )
        return position
