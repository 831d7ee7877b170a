"""Walsender CopyData framing for logical replication: XLogData, keepalives, standby status updates.

Reference: PostgreSQL docs, "Streaming Replication Protocol". Pure functions, no I/O:
  'w' XLogData:         Int64 WAL start, Int64 WAL end, Int64 send time, then the pgoutput message
  'k' Primary keepalive: Int64 WAL end, Int64 send time, Byte1 reply requested (1 = answer now)
  'r' Standby status update (client -> server): Int64 write, Int64 flush, Int64 apply LSN,
                         Int64 client clock, Byte1 reply requested
Times are microseconds since 2000-01-01 00:00 UTC (the Postgres epoch).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Final

from cdc_logs.errors import CdcError, ErrorKind

__all__ = [
    "PG_EPOCH_UNIX_US",
    "Keepalive",
    "XLogData",
    "parse_copy_data",
    "pg_now",
    "pg_to_unix_ms",
    "standby_status_update",
]

#: The Postgres epoch (2000-01-01 UTC) in microseconds since the Unix epoch.
PG_EPOCH_UNIX_US: Final = 946_684_800_000_000

_XLOG = struct.Struct(">QQq")
_KEEPALIVE = struct.Struct(">QqB")
_STATUS = struct.Struct(">cQQQqB")


@dataclass(frozen=True, slots=True)
class XLogData:
    wal_start: int  # LSN where this message's WAL data starts (0 for some pgoutput messages)
    wal_end: int  # current end of WAL on the server
    send_time: int  # server clock, microseconds since 2000-01-01
    payload: memoryview  # the pgoutput message: pass to pgoutput.decode_message


@dataclass(frozen=True, slots=True)
class Keepalive:
    wal_end: int
    send_time: int
    reply_requested: bool  # the server wants a standby status update now (wal_sender_timeout)


def _corrupt(what: str, data: memoryview) -> CdcError:
    return CdcError(
        ErrorKind.DECODE,
        f"walsender {what}: {len(data)} bytes is too short or malformed",
        "the replication connection is corrupt; reconnect and resume from the committed LSN",
    )


def parse_copy_data(data: bytes | bytearray | memoryview) -> XLogData | Keepalive:
    """Split one CopyData message from the walsender into XLogData or a keepalive."""
    view = memoryview(data)
    if not view:
        raise _corrupt("empty CopyData", view)
    kind = view[0]
    if kind == 0x77:  # 'w'
        if len(view) < 25:
            raise _corrupt("XLogData", view)
        start, end, sent = _XLOG.unpack_from(view, 1)
        return XLogData(start, end, sent, view[25:])
    if kind == 0x6B:  # 'k'
        if len(view) != 18:
            raise _corrupt("keepalive", view)
        end, sent, reply = _KEEPALIVE.unpack_from(view, 1)
        return Keepalive(end, sent, reply == 1)
    raise CdcError(
        ErrorKind.DECODE,
        f"walsender sent an unknown CopyData message type {kind:#04x} ({len(view)} bytes)",
        "the server speaks a replication protocol this version does not know; upgrade cdc-logs",
    )


def pg_now() -> int:
    """Now, in microseconds since 2000-01-01 UTC (the standby status update's clock)."""
    return time.time_ns() // 1000 - PG_EPOCH_UNIX_US


def pg_to_unix_ms(pg_us: int) -> int:
    """A Postgres timestamp (µs since 2000-01-01) as milliseconds since the Unix epoch (ts_ms)."""
    return (pg_us + PG_EPOCH_UNIX_US) // 1000


def standby_status_update(
    write_lsn: int,
    flush_lsn: int,
    apply_lsn: int,
    *,
    clock: int | None = None,
    reply_requested: bool = False,
) -> bytes:
    """The 'r' message telling the server how far the client has written, flushed and applied.

    For logical slots the server advances confirmed_flush_lsn to `flush_lsn`: pass only a position
    that every sink holds durably. `clock` defaults to now (µs since 2000-01-01).
    """
    for name, lsn in (("write", write_lsn), ("flush", flush_lsn), ("apply", apply_lsn)):
        if not 0 <= lsn < 1 << 64:
            raise CdcError(ErrorKind.INTERNAL, f"standby status update: {name} LSN {lsn} is out of range")
    return _STATUS.pack(
        b"r",
        write_lsn,
        flush_lsn,
        apply_lsn,
        pg_now() if clock is None else clock,
        1 if reply_requested else 0,
    )
