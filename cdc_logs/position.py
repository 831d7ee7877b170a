"""Source positions: totally ordered per source, encoded to a string for the offset store.

Every position is stamped with the identity of the server it came from (Postgres system identifier,
MySQL server_uuid / MariaDB server_id+domain, Oracle DBID, Mongo replica set id, SQLite file id), so a
pipeline refuses to resume against a different server. Comparing positions from two servers is an
error, not a silent answer.

`encode()` gives a compact JSON text (readable in `cdc-logs offsets show`); `decode()` reverses it
for every registered position type.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

import orjson

from cdc_logs.errors import CdcError, ErrorKind

_TYPES: dict[str, type[Position]] = {}
_P = TypeVar("_P", bound="Position")
_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def _register(cls: type[_P]) -> type[_P]:
    _TYPES[cls.kind] = cls
    return cls


@functools.total_ordering
@dataclass(frozen=True)
class Position:
    """Base of every position. Subclasses define `kind` and `sort_key()`."""

    kind: ClassVar[str] = ""
    server: str

    def sort_key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _comparable(self, other: object) -> Position:
        if not isinstance(other, Position) or other.kind != self.kind:
            raise TypeError(f"cannot compare {self!r} with {other!r}")
        if other.server != self.server:
            raise CdcError(
                ErrorKind.SERVER_MISMATCH,
                f"positions come from different servers ({self.server} vs {other.server})",
                "the source now points at another server: reset the offsets (`cdc-logs offsets reset`)",
            )
        return other

    def __lt__(self, other: object) -> bool:
        return self.sort_key() < self._comparable(other).sort_key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Position) or other.kind != self.kind or other.server != self.server:
            return False
        return self.sort_key() == other.sort_key()

    def __hash__(self) -> int:
        return hash((self.kind, self.server, self.sort_key()))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, **asdict(self)}

    def encode(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        position = cls(**data)
        position._check_types()
        return position

    def _check_types(self) -> None:
        """Refuse a decoded position whose fields have the wrong types (hand-edited offsets)."""
        for name, expected in self._field_types().items():
            value = getattr(self, name)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise TypeError(f"field {name!r} must be {expected}, got {value!r}")

    def _field_types(self) -> dict[str, Any]:
        return {"server": str}

    def describe(self) -> str:
        """Short human form for logs and tables."""
        return str(self.sort_key())


def decode(text: str) -> Position:
    """Decode any position encoded by `Position.encode()`."""
    try:
        data = orjson.loads(text)
        kind = data.pop("type")
        cls = _TYPES[kind]
        return cls.from_dict(data)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CdcError(
            ErrorKind.DECODE,
            f"stored offset is not a valid position: {text[:200]!r} ({exc})",
            "inspect it with `cdc-logs offsets show` and fix it with `cdc-logs offsets set` or `reset`",
        ) from exc


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    match = _LSN.fullmatch(text.strip())
    if match is None:
        raise CdcError(ErrorKind.USAGE, f"not an LSN: {text!r}", "write an LSN as X/Y in hex, e.g. 0/16B3748")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


@_register
@dataclass(frozen=True, eq=False)
class Lsn(Position):
    """Postgres WAL position. `lsn` is the commit end LSN of the last complete transaction."""

    kind: ClassVar[str] = "pg_lsn"
    lsn: int = 0

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "lsn": int}

    def sort_key(self) -> tuple[Any, ...]:
        return (self.lsn,)

    def describe(self) -> str:
        return format_lsn(self.lsn)


@_register
@dataclass(frozen=True, eq=False)
class PgSnapshot(Position):
    """A Postgres initial snapshot in progress: where to resume it by chunk, then stream from `lsn`.

    `lsn` is the slot's consistent point (streaming starts there once the snapshot is done); `done`
    lists the tables read completely; rows of `table` whose primary key is <= `key` (the key values
    as Postgres text) are delivered too. An empty `key` means `table` starts from its first row.
    Once the snapshot ends, the reader's positions are plain `Lsn`s again.
    """

    kind: ClassVar[str] = "pg_snapshot"
    lsn: int = 0
    done: tuple[str, ...] = ()
    table: str = ""
    key: tuple[str, ...] = ()

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "lsn": int, "table": str}

    def sort_key(self) -> tuple[Any, ...]:
        # Orders chunks of one snapshot only (the reader never compares positions across snapshots).
        return (self.lsn, len(self.done), self.table, self.key)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        for name in ("done", "key"):
            value = data.get(name, ())
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"field {name!r} must be a list of strings")
        position = cls(
            server=data["server"],
            lsn=data.get("lsn", 0),
            done=tuple(data.get("done", ())),
            table=data.get("table", ""),
            key=tuple(data.get("key", ())),
        )
        position._check_types()
        return position

    def describe(self) -> str:
        where = f"after key ({', '.join(self.key)})" if self.key else "from its first row"
        return f"snapshot at {format_lsn(self.lsn)}: {len(self.done)} tables done, {self.table} {where}"


@_register
@dataclass(frozen=True, eq=False)
class BinlogPosition(Position):
    """MySQL/MariaDB binlog position: file/pos for order and display, GTID text for resume.

    `gtid` is a MySQL GTID set (`uuid:1-5`) or a MariaDB GTID position (`0-1-42`), as text; its logic
    lives in `cdc_logs.readers.mysql.gtid`.
    """

    kind: ClassVar[str] = "binlog"
    file: str = ""
    pos: int = 0
    gtid: str | None = None
    flavor: str = "mysql"

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "file": str, "pos": int, "gtid": (str, type(None)), "flavor": str}

    def sort_key(self) -> tuple[Any, ...]:
        stem, _, seq = self.file.rpartition(".")
        return (stem, int(seq) if seq.isdigit() else 0, self.pos)

    def describe(self) -> str:
        text = f"{self.file}:{self.pos}"
        return f"{text} gtid={self.gtid}" if self.gtid else text


@_register
@dataclass(frozen=True, eq=False)
class Scn(Position):
    """Oracle System Change Number of the last committed transaction (commit SCN)."""

    kind: ClassVar[str] = "oracle_scn"
    scn: int = 0

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "scn": int}

    def sort_key(self) -> tuple[Any, ...]:
        return (self.scn,)


@_register
@dataclass(frozen=True, eq=False)
class ResumeToken(Position):
    """MongoDB change stream resume token; cluster time orders it, the token resumes it."""

    kind: ClassVar[str] = "mongo_resume"
    cluster_time: int = 0  # (seconds << 32) | increment
    token: str = ""  # the token's _data (hex keystring)

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "cluster_time": int, "token": str}

    def sort_key(self) -> tuple[Any, ...]:
        return (self.cluster_time, self.token)


@_register
@dataclass(frozen=True, eq=False)
class Watermark(Position):
    """Polling / trigger-table position: the values of the watermark columns of the last row read."""

    kind: ClassVar[str] = "watermark"
    values: tuple[Any, ...] = field(default_factory=tuple)

    def sort_key(self) -> tuple[Any, ...]:
        return tuple(self.values)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        if not isinstance(data.get("values", ()), list | tuple):
            raise TypeError("field 'values' must be a list")
        position = cls(server=data["server"], values=tuple(data.get("values", ())))
        position._check_types()
        return position

    def describe(self) -> str:
        return ",".join(str(v) for v in self.values)


@_register
@dataclass(frozen=True, eq=False)
class KafkaOffsets(Position):
    """Consumer position over Debezium topics: next offset per `topic:partition`."""

    kind: ClassVar[str] = "kafka"
    offsets: tuple[tuple[str, int], ...] = ()

    def sort_key(self) -> tuple[Any, ...]:
        return (sum(o for _, o in self.offsets), self.offsets)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        position = cls(
            server=data["server"], offsets=tuple((str(k), int(v)) for k, v in data.get("offsets", ()))
        )
        position._check_types()
        return position
