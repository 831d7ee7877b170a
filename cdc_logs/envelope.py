"""The change envelope: Debezium's JSON shape, whichever reader produced the change.

A `ChangeEvent` serializes to exactly the value a Debezium connector writes with the JSON converter
(schemas disabled): `before`, `after`, `source`, `op`, `ts_ms`, `transaction`. The primary key travels
beside the value (`key`), as Debezium's Kafka key does. Fields Debezium consumers do not know are added
only when they carry something (`unchanged`: columns whose value the source did not send, e.g.
Postgres unchanged TOAST).

Value encoding (documented in docs/envelope.md), as Debezium's defaults where they are readable:
  Decimal            -> string ("12.50", "NaN")         decimal.handling.mode=string
  bytes              -> base64 string                   binary.handling.mode=bytes (JSON converter)
  datetime, tz-aware -> ISO-8601 UTC string "...Z"      io.debezium.time.ZonedTimestamp
  datetime, naive    -> microseconds since the epoch    io.debezium.time.MicroTimestamp
  date               -> days since the epoch            io.debezium.time.Date
  time               -> microseconds since midnight     io.debezium.time.MicroTime
  timedelta          -> microseconds                    io.debezium.time.MicroDuration
  UUID               -> canonical string                io.debezium.data.Uuid
  list / dict        -> JSON array / object             arrays / structs
JSON columns are carried as their JSON text (a string), like io.debezium.data.Json; readers pass them
through unparsed.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from cdc_logs import __version__
from cdc_logs.position import Position
from cdc_logs.schema import TableSchema

_EPOCH_DATE = dt.date(1970, 1, 1)
_EPOCH = dt.datetime(1970, 1, 1)


class Op(StrEnum):
    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # snapshot row
    TRUNCATE = "t"
    MESSAGE = "m"


def _micros(delta: dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_value(value: Any) -> Any:
    """orjson `default`: map Python values orjson cannot (or must not) write natively."""
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else _decimal_special(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return _micros(value - _EPOCH)
        utc = value.astimezone(dt.UTC)
        # isoformat, not strftime: strftime drops the leading zeros of years before 1000.
        naive = utc.replace(tzinfo=None)
        return naive.isoformat(timespec="microseconds" if utc.microsecond else "seconds") + "Z"
    if isinstance(value, dt.date):
        return (value - _EPOCH_DATE).days
    if isinstance(value, dt.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    if isinstance(value, dt.timedelta):
        return _micros(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} in a change envelope")


def _decimal_special(value: Decimal) -> str:
    if value.is_nan():
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


_OPTS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    """Serialize with the envelope's value encoding."""
    return orjson.dumps(obj, default=encode_value, option=_OPTS)


@dataclass(slots=True)
class SourceInfo:
    """The `source` block: where a change came from. `extra` holds per-connector fields (lsn, gtid...)."""

    connector: str
    name: str
    db: str
    table: str
    schema: str | None = None
    ts_ms: int = 0
    snapshot: str = "false"  # "true" | "first" | "last" | "false" as Debezium writes it
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": __version__,
            "connector": self.connector,
            "name": self.name,
            "ts_ms": self.ts_ms,
            "snapshot": self.snapshot,
            "db": self.db,
        }
        if self.schema is not None:
            out["schema"] = self.schema
        out["table"] = self.table
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceInfo:
        known = {"version", "connector", "name", "ts_ms", "snapshot", "db", "schema", "table"}
        snapshot = data.get("snapshot", "false")
        return cls(
            connector=data.get("connector", ""),
            name=data.get("name", ""),
            db=data.get("db", ""),
            table=data.get("table") or data.get("collection") or "",
            schema=data.get("schema"),
            ts_ms=int(data.get("ts_ms") or 0),
            snapshot=str(snapshot).lower() if isinstance(snapshot, bool) else str(snapshot),
            extra={k: v for k, v in data.items() if k not in known},
        )

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else f"{self.db}.{self.table}"


@dataclass(slots=True)
class Transaction:
    """Debezium's transaction block: the transaction id and the event's order within it."""

    id: str
    total_order: int
    data_collection_order: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "total_order": self.total_order,
            "data_collection_order": self.data_collection_order,
        }


@dataclass(slots=True)
class ChangeEvent:
    """One row change. `position`, `boundary` and `schema` are for the pipeline and never serialized
    into the envelope (docs/event-contract.md has the rules every reader follows).

    `boundary` is True when the event's position is a resume point (the last event of its source
    transaction): only such a position may be checkpointed (resuming mid-transaction could skip the
    rest of it). `schema` describes the row's columns (cdc_logs.schema), shared by reference.
    """

    op: Op
    source: SourceInfo
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    key: dict[str, Any] | None = None
    ts_ms: int = 0
    transaction: Transaction | None = None
    unchanged: tuple[str, ...] = ()
    position: Position | None = None
    boundary: bool = True
    content: dict[str, Any] | None = None  # op "m": logical decoding message prefix/content
    encoded: bytes | None = field(default=None, repr=False, compare=False)  # cached to_json()
    schema: TableSchema | None = field(default=None, repr=False, compare=False)  # the table's columns
    # MongoDB (Debezium's MongoDB shape): `before`/`after` are written as JSON text, and the update's
    # `updateDescription` is added. In memory they stay objects, so row sinks apply documents.
    text_documents: bool = False
    update_description: dict[str, Any] | None = None
    # `after` is the whole row (a MongoDB document): a column absent from it, and not listed in
    # `unchanged`, has no value, so row sinks write NULL there (the SQL sink); without this flag an
    # absent column is one the source did not send, and the target keeps its value.
    whole_row: bool = False
    # The unwrap transform's Flattening (transforms/unwrap.py): to_json() writes the flattened row.
    flat: Any = field(default=None, repr=False, compare=False)
    # One half of a primary-key change (the delete of the old key or the create of the new one, as
    # Debezium emits it): routes keep the two together (route.py). Never serialized.
    key_change: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "before": _text(self.before) if self.text_documents else self.before,
            "after": _text(self.after) if self.text_documents else self.after,
            "source": self.source.to_dict(),
            "op": self.op._value_,  # not .value: an enum property, 4x slower per event
            "ts_ms": self.ts_ms,
            "transaction": self.transaction.to_dict() if self.transaction else None,
        }
        if self.unchanged:
            out["unchanged"] = list(self.unchanged)
        if self.content is not None:
            out["message"] = self.content
        if self.update_description is not None or self.text_documents:
            # Debezium's MongoDB shape has the field in every event: null unless an update sent one
            out["updateDescription"] = self.update_description
        return out

    def to_json(self) -> bytes:
        """The envelope as JSON bytes (after unwrap: the flattened row, `null` for a null value); cached,
        so sinks and batching serialize each event once.

        Transforms run before the first call; nothing may change the event after it.
        """
        if self.encoded is None:
            self.encoded = dumps(self.to_dict() if self.flat is None else self.flat.value(self))
        return self.encoded

    def key_json(self) -> bytes | None:
        return dumps(self.key) if self.key is not None else None

    @property
    def row(self) -> dict[str, Any] | None:
        """The row state after the change (before, for a delete)."""
        return self.after if self.after is not None else self.before

    @classmethod
    def from_dict(cls, data: dict[str, Any], key: dict[str, Any] | None = None) -> ChangeEvent:
        """Read a Debezium JSON value (schema wrapper already removed) into a ChangeEvent."""
        tx = data.get("transaction")
        return cls(
            op=Op(data["op"]),
            source=SourceInfo.from_dict(data.get("source") or {}),
            before=data.get("before"),
            after=data.get("after"),
            key=key,
            ts_ms=int(data.get("ts_ms") or 0),
            transaction=Transaction(str(tx["id"]), int(tx["total_order"]), int(tx["data_collection_order"]))
            if tx
            else None,
            unchanged=tuple(data.get("unchanged") or ()),
            content=data.get("message"),
        )


def _text(document: dict[str, Any] | None) -> str | None:
    """A document as JSON text (Debezium's MongoDB `after`), or None."""
    return None if document is None else dumps(document).decode()


@dataclass(slots=True)
class Undecodable:
    """A change the reader could not decode (invalid UTF-8, a value out of any range, an unknown
    encoding). It goes to the dead-letter file, never to sinks and never into the log with its data;
    its position moves the checkpoint past it once the dead letter is durable, like any event's.

    `raw` is what the source held (for the operator to repair and replay), `reason` names the column
    and the problem without the value. `hint` replaces the usual one, and `origin` adds facts of the
    source to the dead-letter record (a Kafka record's topic, partition, offset and key)."""

    position: Position
    table: str
    reason: str
    boundary: bool = True
    raw: bytes | None = field(default=None, repr=False)
    hint: str | None = None
    origin: dict[str, Any] | None = field(default=None, repr=False)


@dataclass(slots=True)
class Heartbeat:
    """A position with no data: lets an idle or filtered source checkpoint so it does not pin its log."""

    position: Position
    boundary: bool = True


def now_ms() -> int:
    return time.time_ns() // 1_000_000
