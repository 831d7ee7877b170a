"""Source positions: totally ordered per source, encoded to a string for the offset store.

Every position is stamped with the identity of the server it came from (Postgres system identifier,
MySQL server_uuid / MariaDB server_id+domain, SQLite file id, the polled database's URL without
credentials, the Kafka cluster id), so a pipeline refuses to resume against a different server.
Comparing positions from two servers is an error, not a silent answer.

`encode()` gives a compact JSON text (readable in `cdc-logs offsets show`); `decode()` reverses it
for every registered position type.

**event**: every change event carries a position, also in the middle of a transaction, and no two
stream events of a source share one (docs/event-contract.md). A position is a resume point (the
fields of its type) plus `event`, the number of change events *past* that resume point, as
Debezium's MySQL offsets count them: `event=0` is the resume point itself (a transaction boundary or
a heartbeat), `event=k` the k-th event after it. Positions order by (resume point, event). Only
boundary positions are ever committed, so a reader resumes from `event=0` positions only.

**lane**: positions are totally ordered within a lane. A database log is one lane; a bus source with
partitions has one lane per partition, and its positions compare only within their lane.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import orjson

from cdc_logs.errors import CdcError, ErrorKind

_TYPES: dict[str, type[Position]] = {}
_P = TypeVar("_P", bound="Position")
_SCALARS = (str, int, float, bool, type(None))


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def position_type(kind: str) -> type[Position]:
    """The position class registered under `kind` (e.g. "pg_lsn", "binlog")."""
    try:
        return _TYPES[kind]
    except KeyError:
        raise CdcError(ErrorKind.CONFIG, f"unknown position type {kind!r}") from None


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def _fields_dict(position: Position) -> dict[str, Any]:
    """{"type": kind, field: value...}, as {"type", **asdict()} gives it: without asdict's deep copy
    when every value is a scalar or a tuple of scalars (asdict was a fifth of a Kafka sink's time,
    which writes each event's position into a header)."""
    data: dict[str, Any] = {"type": position.kind}
    for name in _field_names(type(position)):
        value = getattr(position, name)
        if value.__class__ is tuple:
            if not all(isinstance(v, _SCALARS) for v in value):
                return {"type": position.kind, **asdict(position)}
        elif not isinstance(value, _SCALARS):
            return {"type": position.kind, **asdict(position)}
        data[name] = value
    return data


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
    event: int = field(default=0, kw_only=True)
    # Log readers with incremental snapshots (readers/incremental.py) carry their state on resume
    # points: the running snapshot's progress as compact JSON ("" when none runs) and the tables the
    # run captured (so the next start sees tables added to the config). Not part of the order.
    incremental: str = field(default="", kw_only=True)
    captured: tuple[str, ...] = field(default=(), kw_only=True)

    def sort_key(self) -> tuple[Any, ...]:
        """The resume point's order (without `event`)."""
        raise NotImplementedError

    def order_key(self) -> tuple[Any, ...]:
        """The full order within a lane: the resume point, then the events past it."""
        return (*self.sort_key(), self.event)

    def lane(self) -> str:
        """The ordering lane this position belongs to ("" for a source with one log)."""
        return ""

    def lane_key(self) -> tuple[Any, ...]:
        """Order within `lane()` (the replay guard compares these)."""
        return self.order_key()

    def replayable_event(self) -> bool:
        """Whether a replay gives each event past the resume point the same `event` number again.
        When not (polling: rows sharing a timestamp are numbered in their order at read time, and
        that order can change between runs), only the resume point may be compared."""
        return True

    def at_event(self, event: int) -> Position:
        """This resume point with `event` events past it."""
        # A shallow copy and one field set: dataclasses.replace re-runs __init__ (3x slower), and
        # readers call this per event.
        # copy.copy goes through __reduce_ex__ (a third of a MariaDB event's position cost): the
        # instance dict copied directly is the same shallow copy.
        moved = object.__new__(type(self))
        state = moved.__dict__
        state.update(self.__dict__)
        state.pop("_lane_key", None)
        state["event"] = event
        return moved

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
        return self.order_key() < self._comparable(other).order_key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Position) or other.kind != self.kind or other.server != self.server:
            return False
        return self.order_key() == other.order_key()

    def __hash__(self) -> int:
        return hash((self.kind, self.server, self.order_key()))

    def to_dict(self) -> dict[str, Any]:
        data = _fields_dict(self)
        if not self.event:
            del data["event"]  # a resume point: written as before `event` existed
        if not self.incremental:
            del data["incremental"]  # written as before incremental snapshots existed
        if not self.captured:
            del data["captured"]
        else:
            data["captured"] = list(self.captured)
        return data

    def encode(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        if "captured" in data:
            captured = data["captured"]
            if not isinstance(captured, list | tuple) or not all(isinstance(t, str) for t in captured):
                raise TypeError("field 'captured' must be a list of table names")
            data = {**data, "captured": tuple(captured)}
        position = cls(**data)
        position._check_types()
        return position

    def _check_types(self) -> None:
        """Refuse a decoded position whose fields have the wrong types (hand-edited offsets)."""
        self._check_event()
        if not isinstance(self.incremental, str):
            raise TypeError(f"field 'incremental' must be a string, got {self.incremental!r}")
        for name, expected in self._field_types().items():
            value = getattr(self, name)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise TypeError(f"field {name!r} must be {expected}, got {value!r}")

    def _field_types(self) -> dict[str, Any]:
        return {"server": str}

    def _check_event(self) -> None:
        if not isinstance(self.event, int) or isinstance(self.event, bool) or self.event < 0:
            raise TypeError(f"field 'event' must be a non-negative int, got {self.event!r}")

    def describe(self) -> str:
        """Short human form for logs and tables."""
        return str(self.sort_key()) + self._event_suffix()

    def _event_suffix(self) -> str:
        text = f" +{self.event} events" if self.event else ""
        return text + " (incremental snapshot running)" if self.incremental else text

    def bare(self) -> Position:
        """Without the reader's state: the event's place alone (message headers, stable event ids)."""
        return self.with_state("", ())

    def with_state(self, incremental: str, captured: tuple[str, ...]) -> Position:
        """This position carrying a reader's incremental-snapshot state (see the fields above)."""
        if self.incremental == incremental and self.captured == captured:
            return self
        # Per resume point while a reader stamps them: a dict copy, not copy.copy (3x slower).
        moved = object.__new__(type(self))
        fields = moved.__dict__
        fields.update(self.__dict__)
        fields["incremental"], fields["captured"] = incremental, captured
        fields.pop("_lane_key", None)
        return moved


def kinds() -> list[str]:
    """The `type` of every registered position."""
    return sorted(_TYPES)


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
    """Postgres WAL position.

    A resume point (`change` 0) is the commit end LSN of the last complete transaction, or the LSN
    of a heartbeat. An event inside a transaction has `lsn` = the transaction's commit LSN,
    `change` = the LSN of its own WAL record (Debezium's `lsn_commit` and `lsn`) and `event` = its
    place among the events of that record (an update of the primary key is two events): unique,
    stable on replay, whatever the table filter, and ordered between the previous transaction's end
    and this one's.
    """

    kind: ClassVar[str] = "pg_lsn"
    lsn: int = 0
    change: int = 0

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "lsn": int, "change": int}

    def sort_key(self) -> tuple[Any, ...]:
        return (self.lsn, self.change)

    def to_dict(self) -> dict[str, Any]:
        if self.incremental or self.captured or type(self) is not Lsn:
            data = super().to_dict()
            if not self.change:
                del data["change"]
            return data
        # An event's position (every Kafka record's header): the same keys in the same order, built
        # directly (the generic path was half of the header's cost).
        data = {"type": "pg_lsn", "server": self.server}
        if self.event:
            data["event"] = self.event
        data["lsn"] = self.lsn
        if self.change:
            data["change"] = self.change
        return data

    def describe(self) -> str:
        text = format_lsn(self.lsn)
        if self.change:
            text += f" (change {format_lsn(self.change)})"
        return text + self._event_suffix()


@_register
@dataclass(frozen=True, eq=False)
class PgSnapshot(Position):
    """A Postgres initial snapshot in progress: where to resume it by chunk, then stream from `lsn`.

    `lsn` is the slot's consistent point (streaming starts there once the snapshot is done); `done`
    lists the tables read completely; rows of `table` whose primary key is <= `key` (the key values
    as Postgres text) are delivered too. An empty `key` means `table` starts from its first row.
    `rows` counts the rows delivered up to here: it orders the chunks (the key text does not: '10'
    sorts before '9'). Once the snapshot ends, the reader's positions are plain `Lsn`s again.
    """

    kind: ClassVar[str] = "pg_snapshot"
    lsn: int = 0
    done: tuple[str, ...] = ()
    table: str = ""
    key: tuple[str, ...] = ()
    rows: int = 0

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "lsn": int, "table": str, "rows": int}

    def sort_key(self) -> tuple[Any, ...]:
        return (self.lsn, self.rows)

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
            rows=data.get("rows", 0),
            event=data.get("event", 0),
        )
        position._check_types()
        return position

    def describe(self) -> str:
        where = f"after key ({', '.join(self.key)})" if self.key else "from its first row"
        text = f"snapshot at {format_lsn(self.lsn)}: {len(self.done)} tables done, {self.table} {where}"
        return text + self._event_suffix()


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
    # A snapshot taken at this point has not completed: a restart takes the snapshot again, then
    # streams from here (not from its own, later point), so changes made since, such as the delete
    # of a row an earlier attempt delivered, reach the sinks. Committed before the first snapshot row.
    snapshot_pending: bool = False

    def _field_types(self) -> dict[str, Any]:
        return {
            "server": str,
            "file": str,
            "pos": int,
            "gtid": (str, type(None)),
            "flavor": str,
            "snapshot_pending": bool,
        }

    def sort_key(self) -> tuple[Any, ...]:
        stem, _, seq = self.file.rpartition(".")
        # A pending snapshot's point sorts before the same point once the snapshot is done, so the
        # snapshot's final row (at that point) still moves the checkpoint.
        return (stem, int(seq) if seq.isdigit() else 0, self.pos, 0 if self.snapshot_pending else 1)

    def to_dict(self) -> dict[str, Any]:
        if self.incremental or self.captured or type(self) is not BinlogPosition:
            data = super().to_dict()
            if not self.snapshot_pending:
                del data["snapshot_pending"]  # written as before the field existed
            return data
        # An event's position (every Kafka record's header, every MariaDB row): the generic path's
        # keys in its order, built directly (the generic path was two thirds of the encoding).
        data = {"type": "binlog", "server": self.server}
        if self.event:
            data["event"] = self.event
        data["file"] = self.file
        data["pos"] = self.pos
        data["gtid"] = self.gtid
        data["flavor"] = self.flavor
        if self.snapshot_pending:
            data["snapshot_pending"] = self.snapshot_pending
        return data

    def describe(self) -> str:
        text = f"{self.file}:{self.pos}"
        text = f"{text} gtid={self.gtid}" if self.gtid else text
        text = f"{text} (snapshot not finished)" if self.snapshot_pending else text
        return text + self._event_suffix()


@_register
@dataclass(frozen=True, eq=False)
class Watermark(Position):
    """Polling / trigger-table position: the values of the watermark columns of the last row read.

    SQLite's change table is one lane (values = (change id,)). A polling source keeps one watermark
    per table, flat in `values` as (table, ts, id) triples; each table is its own lane (`table`
    names it on an event's position), ordered by that table's (ts, id) alone, because tables are
    polled in turns whose interleaving differs from run to run.
    """

    kind: ClassVar[str] = "watermark"
    values: tuple[Any, ...] = field(default_factory=tuple)
    table: str = ""

    def sort_key(self) -> tuple[Any, ...]:
        return tuple(self.values)

    def lane(self) -> str:
        return self.table

    def replayable_event(self) -> bool:
        return not self.table  # SQLite change ids: yes; a polled table's timestamp groups: no

    def lane_key(self) -> tuple[Any, ...]:
        if not self.table:
            return self.order_key()
        cached = self.__dict__.get("_lane_key")  # decoded once per position, not per comparison
        if cached is None:
            cached = self._table_marks()
            object.__setattr__(self, "_lane_key", cached)
        return cached

    def _table_marks(self) -> tuple[Any, ...]:
        from cdc_logs.tagged import decode_mark

        values = self.values
        for i in range(0, len(values) - 2, 3):
            if values[i] == self.table:
                ts, inc = decode_mark(values[i + 1]), decode_mark(values[i + 2])
                return ((ts is not None, ts), (inc is not None, inc), self.event)
        return ((False, None), (False, None), self.event)  # before the table's first row

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        if not isinstance(data.get("values", ()), list | tuple):
            raise TypeError("field 'values' must be a list")
        position = cls(
            server=data["server"],
            values=tuple(data.get("values", ())),
            table=str(data.get("table", "")),
            event=data.get("event", 0),
        )
        position._check_types()
        return position

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if not self.table:
            del data["table"]
        return data

    def describe(self) -> str:
        return ",".join(str(v) for v in self.values) + self._event_suffix()


@_register
@dataclass(frozen=True, eq=False)
class KafkaOffsets(Position):
    """Consumer position over Kafka topics: next offset per `topic:partition`.

    A partition is a lane: `partition` names the one the event's record came from, and the replay
    guard orders events by that partition's offset only (partitions interleave differently on every
    run). The order of whole positions (sum of offsets) is only for display.
    """

    kind: ClassVar[str] = "kafka"
    offsets: tuple[tuple[str, int], ...] = ()
    partition: str = ""

    def sort_key(self) -> tuple[Any, ...]:
        return (sum(o for _, o in self.offsets), self.offsets)

    def lane(self) -> str:
        return self.partition

    def lane_key(self) -> tuple[Any, ...]:
        cached = self.__dict__.get("_lane_key")
        if cached is None:
            offset = next((o for name, o in self.offsets if name == self.partition), 0)
            cached = (offset, self.event)
            object.__setattr__(self, "_lane_key", cached)
        return cached

    def describe(self) -> str:
        """The record's own partition and offset when known, else every partition's next offset."""
        offsets = dict(self.offsets)
        if self.partition in offsets:
            return f"{self.partition}@{offsets[self.partition]}" + self._event_suffix()
        return ", ".join(f"{name}@{offset}" for name, offset in self.offsets) or "start"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        position = cls(
            server=data["server"],
            offsets=tuple((str(k), int(v)) for k, v in data.get("offsets", ())),
            partition=str(data.get("partition", "")),
            event=data.get("event", 0),
        )
        position._check_types()
        return position


@_register
@dataclass(frozen=True, eq=False)
class StreamEntry(Position):
    """Redis Streams: an entry id (`ms`-`seq`) of `stream`.

    The consumer group, not this position, holds where a restart resumes (its last-delivered id and
    each consumer's pending entries list): the stored position is informational, and orders events.

    Entries read with XREADGROUP `>`, and this consumer's own pending entries delivered once, come in
    id order: their lane is the stream, and an entry delivered again keeps its id, so a replay guard
    recognises it exactly. Entries claimed from other consumers (XAUTOCLAIM), or pending ones already
    delivered more than once, come out of id order: each run gives them a lane of their own (`run`),
    ordered by `order`, their place in that run, so a guard never takes them for replays.
    """

    kind: ClassVar[str] = "redis_stream"
    stream: str = ""
    ms: int = 0
    seq: int = 0
    run: str = ""
    order: int = 0

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "stream": str, "ms": int, "seq": int, "run": str, "order": int}

    def sort_key(self) -> tuple[Any, ...]:
        return (self.order, self.ms, self.seq)

    def lane(self) -> str:
        return f"{self.stream}|{self.run}" if self.run else self.stream

    @property
    def entry_id(self) -> str:
        return f"{self.ms}-{self.seq}"

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if not self.run:
            del data["run"], data["order"]
        return data

    def describe(self) -> str:
        text = f"{self.stream}@{self.entry_id}"
        if self.run:
            text += f" (out of order #{self.order}, run {self.run})"
        return text + self._event_suffix()


@_register
@dataclass(frozen=True, eq=False)
class AmqpDelivery(Position):
    """RabbitMQ: delivery `tag` on channel `run` (one per reader connection).

    The broker, not this position, holds the resume state: every message not acknowledged is
    delivered again after a restart (with a new tag). The position is informational and orders one
    channel's deliveries: each channel is its own lane, so a replay guard never compares deliveries
    of two runs (a redelivered message is applied again: at-least-once).
    """

    kind: ClassVar[str] = "rabbitmq"
    queue: str = ""
    run: str = ""
    tag: int = 0

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "queue": str, "run": str, "tag": int}

    def sort_key(self) -> tuple[Any, ...]:
        return (self.tag,)

    def lane(self) -> str:
        return f"{self.queue}|{self.run}"

    def describe(self) -> str:
        return f"{self.queue} delivery {self.tag} (channel {self.run})" + self._event_suffix()


@_register
@dataclass(frozen=True, eq=False)
class MqttPosition(Position):
    """An MQTT source's place in one run: the `seq`-th message of run `run`.

    The broker, not this position, holds the resume state: the persistent session (client id) keeps
    every QoS 1 message not yet acknowledged and delivers it again on the next connection, so a restart
    never resumes "from" a stored position. The position orders a run's messages (the checkpoint
    commits in order, and each committed message is acknowledged) and is stored for display. `run` is
    the run's start time in epoch milliseconds, raised above the stored run's if the clock went back:
    a later run's messages (redeliveries included) always sort after an earlier run's, so a sink's
    replay guard never mistakes them for a replay.
    """

    kind: ClassVar[str] = "mqtt"
    run: int = 0
    seq: int = 0

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "run": int, "seq": int}

    def sort_key(self) -> tuple[Any, ...]:
        return (self.run, self.seq)

    def describe(self) -> str:
        return f"run {self.run} message {self.seq}" + self._event_suffix()


@_register
@dataclass(frozen=True, eq=False)
class NatsSequence(Position):
    """A NATS JetStream message's stream sequence: one lane per stream, ordered by `seq`.

    The durable consumer on the server, not this position, holds the resume state (its ack floor and
    pending acks); a restart continues from the consumer, and the stored sequence is for display and
    for ordering within the stream. A message delivered again (after a crash) has the same sequence
    again, so a sink's replay guard recognises it.
    """

    kind: ClassVar[str] = "nats"
    stream: str = ""
    seq: int = 0

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "stream": str, "seq": int}

    def sort_key(self) -> tuple[Any, ...]:
        return (self.seq,)

    def lane(self) -> str:
        return self.stream

    def describe(self) -> str:
        return f"{self.stream}#{self.seq}" + self._event_suffix()


@_register
@dataclass(frozen=True, eq=False)
class PulsarMessageId(Position):
    """A Pulsar message id (ledger, entry, batch index) on one topic partition, the lane.

    Informational plus ordering within a run: the subscription's cursor on the broker, moved only by
    the reader's acknowledgements after the sinks hold the data, is where a restart resumes, and the
    broker re-delivers whatever was not acknowledged. A stored position is not used to seek.
    """

    kind: ClassVar[str] = "pulsar"
    topic: str = ""
    ledger: int = -1
    entry: int = -1
    batch: int = -1

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "topic": str, "ledger": int, "entry": int, "batch": int}

    def sort_key(self) -> tuple[Any, ...]:
        return (self.ledger, self.entry, self.batch)

    def lane(self) -> str:
        return self.topic

    def describe(self) -> str:
        if self.ledger < 0:
            return "the subscription's cursor"
        return f"{self.topic}@{self.ledger}:{self.entry}:{self.batch}" + self._event_suffix()


@_register
@dataclass(frozen=True, eq=False)
class OracleScn(Position):
    """Oracle LogMiner position (the server is the database's DBID).

    A resume point names the last transaction emitted in full: its commit SCN `scn` and its `xid`
    (RAWTOHEX of XID), and `restart`, the SCN to mine from again, the start SCN of the oldest
    transaction still open at that point (or `scn` itself when none was). A restart mines from
    `restart` and drops every transaction ordered at or before (`scn`, `xid`): nothing lost, nothing
    repeated. Transactions are emitted in (commit SCN, XID) order. A heartbeat (an idle window) has
    no `xid` and sorts after every transaction committed at its SCN. An event inside a transaction
    has `inside` set (its transaction's commit SCN and XID) and sorts before the transaction's
    boundary.
    """

    kind: ClassVar[str] = "oracle_scn"
    scn: int = 0
    xid: str = ""
    restart: int = 0
    inside: bool = False

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "scn": int, "xid": str, "restart": int, "inside": bool}

    def sort_key(self) -> tuple[Any, ...]:
        # No xid (a heartbeat or a start point): after every transaction committed at this SCN.
        return (self.scn, 0 if self.xid else 1, self.xid, 0 if self.inside else 1)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if not self.inside:
            del data["inside"]
        return data

    def describe(self) -> str:
        text = f"scn {self.scn}" + (f" xid {self.xid}" if self.xid else "")
        text += " (inside)" if self.inside else ""
        return text + f" restart {self.restart}" + self._event_suffix()


@_register
@dataclass(frozen=True, eq=False)
class MongoResumeToken(Position):
    """A MongoDB change stream position: the resume token of the last change, one lane per source.

    `token` is the token's `_data` (hex of a KeyString on mongod, memcmp-ordered, so hex text order is
    log order); `ts`/`inc` are its clusterTime (seconds, increment). A point known only by time (the
    start of a first run before any change: the aggregate reply's `operationTime`) has `token` "": the
    stream resumes with `startAtOperationTime`, which includes changes at that very time (a repeat,
    never a gap) and sorts before every token of that time.

    `snapshot_pending`: an initial snapshot that starts streaming at this point has not finished. A
    restart takes the snapshot again, then streams from here (not from a new, later point), so a
    change made meanwhile (the delete of a document an earlier attempt delivered) is not missed; it
    sorts before the same point with the snapshot done, so the snapshot's final row moves the
    checkpoint.
    """

    kind: ClassVar[str] = "mongo"
    token: str = ""
    ts: int = 0
    inc: int = 0
    snapshot_pending: bool = False

    def _field_types(self) -> dict[str, Any]:
        return {"server": str, "token": str, "ts": int, "inc": int, "snapshot_pending": bool}

    def sort_key(self) -> tuple[Any, ...]:
        return (self.ts, self.inc, self.token, 0 if self.snapshot_pending else 1)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if not self.snapshot_pending:
            del data["snapshot_pending"]
        return data

    def describe(self) -> str:
        text = f"{self.ts}.{self.inc}" + (f" token {self.token}" if self.token else " (operation time)")
        text = f"{text} (snapshot not finished)" if self.snapshot_pending else text
        return text + self._event_suffix()
