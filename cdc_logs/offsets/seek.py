"""Friendly positions for `cdc-logs offsets set|rewind`: `--lsn`, `--gtid`, `--binlog`, `--scn`,
`--timestamp`, `--by`, or the position JSON of `offsets show --json`.

`resolve()` turns exactly one selector into the position the source's reader resumes from, built and
checked on the source's own server by the reader's seek module (readers/postgres/seek.py,
readers/mysql/seek.py): same Position type, same encoding, the server identity the reader stamps.
A selector a source cannot honour is refused, saying what that source can do instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import dataclass, fields
from typing import Any

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import (
    BinlogPosition,
    Lsn,
    OracleScn,
    PgSnapshot,
    Position,
    format_lsn,
    parse_lsn,
)

_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Target:
    """What the user asked for: exactly one field is set."""

    lsn: str | None = None
    gtid: str | None = None
    binlog: str | None = None
    scn: str | None = None
    timestamp: str | None = None
    by: str | None = None
    position: str | None = None  # JSON, checked by the CLI's parser first

    def chosen(self, allowed: tuple[str, ...], also: tuple[str, ...] = ()) -> tuple[str, str]:
        """The one selector given; `also`: flags the command maps onto these (rewind's --to), named
        in the errors too."""
        given = [(f.name, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None]
        flags = ", ".join(f"--{name}" for name in (*also, *allowed))
        if len(given) != 1:
            problem = "no position given" if not given else f"{len(given)} positions given"
            raise CdcError(ErrorKind.USAGE, f"{problem}: give exactly one of {flags}")
        name, value = given[0]
        if name not in allowed:
            raise CdcError(ErrorKind.USAGE, f"--{name} is not accepted here: give one of {flags}")
        return name, value


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 (`2026-11-01T00:00Z`, `2026-11-01 00:00:00+02:00`, a date); no zone means UTC."""
    raw = text.strip()
    try:
        when = dt.datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise CdcError(
            ErrorKind.USAGE,
            f"--timestamp {text!r} is not an ISO 8601 time",
            "write it like 2026-11-01T00:00Z or 2026-11-01T00:00:00+01:00 (no zone: UTC)",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def parse_duration(text: str) -> dt.timedelta:
    """`90s`, `10m`, `1h30m`, `2d`."""
    compact = "".join(text.split()).lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise CdcError(
            ErrorKind.USAGE, f"--by {text!r} is not a duration", "write it like 90s, 10m, 1h30m or 2d"
        )
    return dt.timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


def _parse_scn(text: str) -> int:
    if not text.strip().isdigit():
        raise CdcError(
            ErrorKind.USAGE,
            f"--scn {text!r} is not a system change number",
            "give a whole number, e.g. from `SELECT CURRENT_SCN FROM V$DATABASE` or `offsets show`",
        )
    return int(text)


def _parse_binlog(text: str) -> tuple[str, int]:
    file, sep, pos = text.strip().rpartition(":")
    if not sep or not file or not pos.isdigit():
        raise CdcError(
            ErrorKind.USAGE,
            f"--binlog {text!r} is not file:pos",
            "write it like mariadb-bin.000003:1234 (`SHOW BINARY LOGS`, `SHOW BINLOG EVENTS`)",
        )
    return file, int(pos)


def _unsupported(flag: str, source: str, source_type: str, can: str) -> CdcError:
    return CdcError(
        ErrorKind.USAGE,
        f"--{flag} is not supported by source {source!r} (type {source_type}): {can}",
        "copy its position from `cdc-logs offsets show -c <pipeline.yaml> --json`, edit it, and give it "
        "as --position",
    )


# What sources without a seek module can do, by source type.
_WATERMARK = (
    "its position is the last row read (each polled table's timestamp and id), so `--position` with "
    "those values moves it; there is no log to search by LSN, GTID or time"
)
_KAFKA = (
    "its position is the next offset per topic partition (`--position`); Kafka's own "
    "`kafka-consumer-groups --reset-offsets --to-datetime` moves a consumer group by time"
)
_CAN = {
    "sqlite": "its position is the id of the last row of its change table read (`--position` with "
    "another id moves it); the change table records no time, so there is no --timestamp",
    "poll": _WATERMARK,
    "polling": _WATERMARK,
    "query": _WATERMARK,
    "kafka": _KAFKA,
    "debezium": _KAFKA,
}


class Seeker:
    """The reader-side builder for one source, opened on its server (see the module doc)."""

    def __init__(self, source_cfg: Any, pipeline: str, source: str) -> None:
        from cdc_logs.build import build_reader

        self.source, self.type = source, str(source_cfg.type)
        self.reader = build_reader(source_cfg, pipeline)
        self.impl: Any = None
        self._opened = False
        from cdc_logs.readers.mysql.reader import MysqlReader
        from cdc_logs.readers.postgres.reader import PostgresReader

        if isinstance(self.reader, PostgresReader):
            from cdc_logs.readers.postgres.seek import PostgresSeeker

            self.impl = PostgresSeeker(self.reader, source)  # the reader is not opened: nothing created
        elif isinstance(self.reader, MysqlReader):
            from cdc_logs.readers.mysql.seek import MysqlSeeker

            self.reader.open()  # only checks (flavour, binlog settings, tables) and reads the identity
            self._opened = True
            self.impl = MysqlSeeker(self.reader)
        elif self.type == "oracle":
            from cdc_logs.readers.oracle.seek import OracleSeeker

            self.reader.open()  # a session and the catalog of the captured tables: nothing is written
            self._opened = True
            self.impl = OracleSeeker.of(self.reader)

    def close(self) -> None:
        if self._opened:
            with contextlib.suppress(Exception):
                self.reader.close()

    def __enter__(self) -> Seeker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building --------------------------------------------------------------------------------
    def build(self, name: str, value: str, current: Position | None) -> Position:
        """The position for `--name value` (`current`: the stored one, for `--by`)."""
        from cdc_logs.readers.mysql.seek import MysqlSeeker
        from cdc_logs.readers.oracle.seek import OracleSeeker
        from cdc_logs.readers.postgres.seek import NO_TIME, PostgresSeeker

        impl = self.impl
        if isinstance(impl, OracleSeeker):
            if name == "scn":
                return impl.at_scn(_parse_scn(value))
            if name == "timestamp":
                return impl.at_time(parse_time(value))
            raise _unsupported(name, self.source, self.type, "an Oracle source is positioned by --scn")
        if name == "scn":
            raise _unsupported("scn", self.source, self.type, "an SCN positions Oracle sources only")
        if isinstance(impl, PostgresSeeker):
            if name == "lsn":
                return impl.at_lsn(parse_lsn(value), current)
            if name in ("timestamp", "by"):
                raise CdcError(ErrorKind.USAGE, f"--{name}: {NO_TIME}", "give --lsn instead")
            raise _unsupported(name, self.source, self.type, "a Postgres source is positioned by --lsn")
        if isinstance(impl, MysqlSeeker):
            if name == "gtid":
                return impl.at_gtid(value)
            if name == "binlog":
                return impl.at_binlog(*_parse_binlog(value))
            if name == "timestamp":
                return impl.at_time(parse_time(value))
            if name == "by":
                impl.require_time_search()
                return impl.at_time(self._time_of(current) - parse_duration(value))
            raise _unsupported(name, self.source, self.type, "a binlog source is positioned by --gtid")
        can = _CAN.get(self.type, "it is positioned by `--position` only")
        raise _unsupported(name, self.source, self.type, can)

    def _time_of(self, current: Position | None) -> dt.datetime:
        if not isinstance(current, BinlogPosition):
            raise CdcError(
                ErrorKind.USAGE,
                "--by needs a committed binlog position to count back from, and there is none",
                "give --timestamp or --gtid instead",
            )
        epoch = self.impl.time_of(current)
        when = dt.datetime.fromtimestamp(epoch, dt.UTC) if epoch is not None else dt.datetime.now(dt.UTC)
        return when

    def check(self, position: Position, current: Position | None = None) -> Position:
        """Check a position given as JSON against the server, as the built ones are."""
        from cdc_logs.readers.mysql.seek import MysqlSeeker
        from cdc_logs.readers.postgres.seek import PostgresSeeker

        if isinstance(self.impl, PostgresSeeker):
            return self.impl.check(position, current)
        if isinstance(self.impl, MysqlSeeker) and isinstance(position, BinlogPosition):
            return self.impl.check(position, locate=False)
        return position


def is_before(to: Position, current: Position) -> bool | None:
    """Whether `to` is at or before `current` (a rewind); None when they cannot be compared."""
    if isinstance(to, Lsn | PgSnapshot) and isinstance(current, Lsn | PgSnapshot):
        return bool(to.lsn <= current.lsn)
    if isinstance(to, BinlogPosition) and isinstance(current, BinlogPosition) and to.flavor == current.flavor:
        from cdc_logs.readers.mysql.gtid import MariadbGtidPosition, MysqlGtidSet

        if to.flavor == "mariadb":
            mine = MariadbGtidPosition.parse(current.gtid or "")
            return all(mine.covers(g) for g in MariadbGtidPosition.parse(to.gtid or ""))
        return bool(MysqlGtidSet.parse(to.gtid or "").issubset(MysqlGtidSet.parse(current.gtid or "")))
    if isinstance(to, OracleScn) and isinstance(current, OracleScn):
        return bool(to.scn <= current.scn)
    return None


def describe(position: Position | None) -> str:
    if position is None:
        return "(no committed position: the next run starts over)"
    if isinstance(position, Lsn) and not position.change and not position.event:
        return format_lsn(position.lsn)
    return position.describe()
