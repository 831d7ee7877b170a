"""Binlog events (python-mysql-replication's classes) -> ChangeEvents and Heartbeats.

The only module that touches the library's event and column classes. `BinlogConverter.handle()` takes
one event and returns what the pipeline should see, keeping the transaction state:

* a GTID event (MariaDB `MariadbGtidEvent` / MySQL `GtidEvent`) opens a transaction: its GTID is the
  events' `transaction.id` and `source.gtid`;
* row events become c/u/d events (an update that changes the primary key becomes d + c, as Debezium
  does). Column names come from the TABLE_MAP event's row metadata (`binlog_row_metadata=FULL`), so
  an ALTER TABLE is seen by the next event without parsing DDL;
* XID, a COMMIT/ROLLBACK/XA query, or a standalone DDL query closes the transaction: the GTID position
  advances, and the transaction's last event becomes the boundary carrying the position *after* the
  transaction (file, end pos, executed GTIDs). Every event is held back until the next one arrives,
  because only then is it known whether it was the last. The other events carry their row event's
  binlog offset with `event=k` (the k-th change from that row event), so every event has its own
  position and a replay gives it the same one (docs/event-contract.md);
* a transaction with no captured rows (other tables, DDL) moves the position too, reported as a
  Heartbeat at most every `heartbeat_s`, or on every idle heartbeat of the server (moved or not);
* DDL statements are logged (info for captured schemas), not emitted as events.

After a reconnect the stream replays from the last complete transaction; `restart()` remembers how many
events of the interrupted one were already emitted so the replay does not emit them twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, SourceInfo, Transaction, Undecodable, now_ms
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import BinlogPosition
from cdc_logs.readers.mysql import binlog_values, types
from cdc_logs.readers.mysql.gtid import MariadbGtidPosition, MysqlGtidSet, parse_gtid_text
from cdc_logs.readers.mysql.row_images import RowImages
from cdc_logs.readers.mysql.schema import binlog_schema
from cdc_logs.schema import TableSchema

log = get_logger(__name__)
Item = ChangeEvent | Heartbeat | Undecodable

_MARIADB_FL_STANDALONE = 0x01  # a GTID event flag: the group is one statement with no COMMIT/XID
_END_WORDS = ("COMMIT", "ROLLBACK", "XA PREPARE", "XA COMMIT", "XA ROLLBACK")
_TEXT_TYPES = (FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING, FIELD_TYPE.BLOB)
_ZERO_DATE_TYPES = (
    FIELD_TYPE.DATE,
    FIELD_TYPE.NEWDATE,
    FIELD_TYPE.DATETIME,
    FIELD_TYPE.DATETIME2,
    FIELD_TYPE.TIMESTAMP,
    FIELD_TYPE.TIMESTAMP2,
)
binlog_values.install()  # the library's TIME(fsp) decoding and column nullability (see binlog_values)


def column_converter(column: Any) -> types.Converter | None:
    """The value converter for one binlog column (None: the library's value is already right).

    Converters get the library's non-null values; a NOT NULL temporal column also gets None, which
    there means a zero date (the library decodes those as None): see `zero_date_column`.
    """
    binlog_values.require()
    kind = column.type
    fsp = int(getattr(column, "fsp", 0) or 0)
    nullable = bool(getattr(column, "nullable", True))  # set by binlog_values from the TABLE_MAP
    if kind == FIELD_TYPE.FLOAT:
        return types.float32_value
    if kind == FIELD_TYPE.NEWDECIMAL:
        return types.decimal_value
    if kind == FIELD_TYPE.BIT:
        nbits = int(column.bits)
        return lambda v: types.bit_from_binlog(v, nbits)
    if kind == FIELD_TYPE.SET:
        definition = list(column.set_values or [])
        return lambda v: types.set_value(v, definition)
    if kind in _TEXT_TYPES and column.character_set_name == "binary":
        # BINARY is a STRING column (padded back to its length), VARBINARY a VARCHAR, BLOB a BLOB.
        length = int(getattr(column, "max_length", 0) or 0) if kind == FIELD_TYPE.STRING else 0
        return lambda v: types.binary_value(v, length)
    if kind == FIELD_TYPE.JSON:
        return types.json_text
    if kind == FIELD_TYPE.YEAR:
        return types.year_value
    if kind in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        return lambda v: types.date_value(v, nullable)
    if kind in (FIELD_TYPE.DATETIME, FIELD_TYPE.DATETIME2):
        return lambda v: types.datetime_value(v, fsp, nullable)
    if kind in (FIELD_TYPE.TIMESTAMP, FIELD_TYPE.TIMESTAMP2):
        return lambda v: types.timestamp_value(v, fsp, nullable)
    if kind in (FIELD_TYPE.TIME, FIELD_TYPE.TIME2):
        return types.time_value
    if kind == FIELD_TYPE.GEOMETRY:
        return types.geometry_value
    return None


def zero_date_column(column: Any) -> bool:
    """A NOT NULL DATE/DATETIME/TIMESTAMP: None from the library is a zero date, written as the epoch."""
    return column.type in _ZERO_DATE_TYPES and getattr(column, "nullable", True) is False


@dataclass(slots=True)
class _TableShape:
    """Per TABLE_MAP: converters, SET columns (NULL vs empty set), key columns, and the NOT NULL
    temporal columns whose None is a zero date (converted too)."""

    columns: Any  # the library's column list this shape was built from (identity check)
    converters: list[tuple[str, types.Converter]]
    sets: list[str]
    key: list[str]
    zero_dates: list[tuple[str, types.Converter]] = field(default_factory=list)
    schema: TableSchema | None = None
    signature: list[dict[str, Any]] = field(default_factory=list)  # the columns' attributes, copied
    images: RowImages | None = None  # this definition's row parser; None: the library parses the rows


@dataclass(slots=True)
class _Tx:
    gtid: str | None = None
    explicit: bool = False  # BEGIN seen (MySQL) or a non-standalone MariaDB GTID group
    seen: int = 0  # captured events produced in this transaction, including skipped replays
    skip: int = 0
    orders: dict[tuple[str, str], int] = field(default_factory=dict)


class BinlogConverter:
    """Stateful event conversion for one stream (see the module doc)."""

    only_events: list[type] = [
        MariadbGtidEvent,
        GtidEvent,
        QueryEvent,
        XidEvent,
        XAPrepareEvent,
        WriteRowsEvent,
        UpdateRowsEvent,
        DeleteRowsEvent,
        RotateEvent,
        HeartbeatLogEvent,
    ]

    def __init__(
        self,
        *,
        flavor: str,
        connector: str,
        pipeline_name: str,
        start: BinlogPosition,
        tables: set[tuple[str, str]] | None = None,
        schemas: set[str] | None = None,
        heartbeat_s: float = 5.0,
    ) -> None:
        self.flavor = flavor
        self.connector = connector
        self.pipeline_name = pipeline_name
        self.server = start.server
        self.tables = tables
        self.schemas = schemas
        self.heartbeat_s = heartbeat_s
        self._file = start.file
        self._pos = start.pos
        self._gtid: MariadbGtidPosition | MysqlGtidSet = parse_gtid_text(start.gtid or "", flavor)
        self._position = start
        self._reported = start  # last position handed out (boundary event or heartbeat)
        self._reported_at = time.monotonic()
        self._tx = _Tx()
        self._held: ChangeEvent | Undecodable | None = None
        self._in_row_event = 0
        self._schema: TableSchema | None = None  # of the row event being converted
        self._interrupted: tuple[str, int] | None = None
        self.server_idle = False  # a server heartbeat came: it had nothing more to send (reader.py)
        self._shapes: dict[tuple[str, str], _TableShape] = {}
        self._dispatch = {
            MariadbGtidEvent: self._on_gtid,
            GtidEvent: self._on_gtid,
            QueryEvent: self._on_query,
            XidEvent: self._on_end,
            XAPrepareEvent: self._on_end,
            WriteRowsEvent: self._on_rows,
            UpdateRowsEvent: self._on_rows,
            DeleteRowsEvent: self._on_rows,
            RotateEvent: self._on_rotate,
            HeartbeatLogEvent: self._on_heartbeat,
        }

    # -- StreamHandler ---------------------------------------------------------------------------
    def resume_gtid(self) -> str:
        return self._gtid.format()

    def restart(self) -> None:
        """A new connection replays from `resume_gtid()`: forget the half-read transaction, but remember
        how many of its events went out already."""
        if self._tx.gtid is not None:
            emitted = self._tx.seen - (1 if self._held is not None else 0)
            self._interrupted = (self._tx.gtid, emitted)
        self._held = None
        self._tx = _Tx()

    def handle(self, event: Any) -> list[Item]:
        handler = self._dispatch.get(type(event))
        return handler(event) if handler is not None else []

    @property
    def position(self) -> BinlogPosition:
        """The position after the last complete transaction."""
        return self._position

    # -- events ----------------------------------------------------------------------------------
    def _on_rotate(self, event: Any) -> list[Item]:
        if event.next_binlog:
            self._file = event.next_binlog
        return []

    def _on_gtid(self, event: Any) -> list[Item]:
        out = self._flush_orphan()
        gtid = str(event.gtid)
        explicit = isinstance(event, MariadbGtidEvent) and not (event.flags & _MARIADB_FL_STANDALONE)
        self._tx = _Tx(gtid=gtid, explicit=explicit)
        if self._interrupted is not None and self._interrupted[0] == gtid:
            self._tx.skip = self._interrupted[1]
        self._interrupted = None
        return out

    def _on_query(self, event: Any) -> list[Item]:
        text = event.query.strip()
        upper = text[:12].upper()
        if upper.startswith("BEGIN"):
            self._tx.explicit = True
            return []
        if upper.startswith(("SAVEPOINT", "ROLLBACK TO", "XA START", "XA BEGIN", "XA END")):
            return []
        if upper.startswith(_END_WORDS):
            return self._on_end(event)
        schema = event.schema.decode("utf-8", "replace") if isinstance(event.schema, bytes) else event.schema
        captured = self.schemas is None or schema in self.schemas or any(s in text for s in self.schemas)
        (log.info if captured else log.debug)(
            "DDL in the binlog (applied to later events through the row metadata)",
            schema=schema,
            gtid=self._tx.gtid,
            statement=text[:500],
        )
        if not self._tx.explicit:  # DDL commits implicitly: it is a transaction of its own
            return self._on_end(event)
        return []

    def _on_end(self, event: Any) -> list[Item]:
        if self._tx.gtid is not None:
            if isinstance(self._gtid, MariadbGtidPosition):
                self._gtid = self._gtid.advance(self._tx.gtid)
            else:
                self._gtid = self._gtid.add(self._tx.gtid)
        end = int(event.packet.log_pos or self._pos)
        self._pos = end
        self._position = BinlogPosition(
            server=self.server, file=self._file, pos=end, gtid=self._gtid.format(), flavor=self.flavor
        )
        self._tx = _Tx()
        self._interrupted = None
        held, self._held = self._held, None
        if held is not None:
            held.position = self._position
            held.boundary = True
            self._mark_reported()
            return [held]
        if time.monotonic() - self._reported_at >= self.heartbeat_s:
            return self._heartbeat()
        return []

    def _on_heartbeat(self, _event: Any) -> list[Item]:
        """The server is idle: report the position, moved or not. Moved: filtered transactions are
        consumed. Not moved: the committed position is confirmed current, which keeps the heartbeat and
        checkpoint ages small on a quiet binlog (as Postgres' heartbeat messages do) instead of letting
        them grow until the stale alerts fire."""
        self.server_idle = True
        if self._held is None and self._tx.gtid is None:
            return self._heartbeat()
        return []

    def _heartbeat(self) -> list[Item]:
        self._mark_reported()
        return [Heartbeat(self._position)]

    def _mark_reported(self) -> None:
        self._reported = self._position
        self._reported_at = time.monotonic()

    def _flush_orphan(self) -> list[Item]:
        # A new GTID while an event is held means the previous group never closed (should not happen);
        # emit it as a non-boundary event rather than lose it.
        held, self._held = self._held, None
        return [held] if held is not None else []

    def _on_rows(self, event: Any) -> list[Item]:
        schema, table = event.schema, event.table
        if self.tables is not None and (schema, table) not in self.tables:
            return []
        if self.schemas is not None and self.tables is None and schema not in self.schemas:
            return []
        shape = self._shape(event)
        out: list[Item] = []
        packet = event.packet
        # The row event's own offset; without one (never seen from a real server), the end of the
        # previous event: still past the transaction's start, so positions keep increasing.
        start_pos = int(packet.log_pos) - int(packet.event_size) if packet.log_pos else self._pos
        ts_ms = int(event.timestamp) * 1000
        server_id = int(packet.server_id)
        gtid = self._tx.gtid
        now = now_ms()
        base = BinlogPosition(
            server=self.server, file=self._file, pos=start_pos, gtid=self._position.gtid, flavor=self.flavor
        )
        self._in_row_event = 0  # events made from this row event so far
        self._schema = shape.schema
        rows = shape.images.rows(event) if shape.images is not None else None
        for index, row in enumerate(event.rows if rows is None else rows):
            extra = {"server_id": server_id, "gtid": gtid, "file": self._file, "pos": start_pos, "row": index}
            source = SourceInfo(self.connector, self.pipeline_name, schema, table, ts_ms=ts_ms, extra=extra)
            try:
                self._row(out, event, row, shape, source, now, base)
            except (CdcError, ValueError, TypeError, OverflowError, UnicodeError) as exc:
                if isinstance(exc, CdcError) and exc.kind is not ErrorKind.DECODE:
                    raise
                self._undecodable(out, f"{schema}.{table}", exc, row, base, index)
        return out

    def _row(
        self,
        out: list[Item],
        event: Any,
        row: Any,
        shape: _TableShape,
        source: SourceInfo,
        now: int,
        base: BinlogPosition,
    ) -> None:
        if isinstance(event, UpdateRowsEvent):
            before = _convert(row["before_values"], row.get("before_none_sources"), shape)
            after = _convert(row["after_values"], row.get("after_none_sources"), shape)
            old_key, new_key = _key(shape, before), _key(shape, after)
            if old_key != new_key:
                self._emit(out, Op.DELETE, source, before, None, old_key, now, base)
                self._emit(out, Op.CREATE, source, None, after, new_key, now, base)
            else:
                self._emit(out, Op.UPDATE, source, before, after, new_key, now, base)
        elif isinstance(event, WriteRowsEvent):
            after = _convert(row["values"], row.get("none_sources"), shape)
            self._emit(out, Op.CREATE, source, None, after, _key(shape, after), now, base)
        else:
            before = _convert(row["values"], row.get("none_sources"), shape)
            self._emit(out, Op.DELETE, source, before, None, _key(shape, before), now, base)

    def _undecodable(
        self, out: list[Item], table: str, exc: Exception, row: Any, base: BinlogPosition, index: int
    ) -> None:
        """A row the converters cannot read: held in its place like an event, for the dead-letter file.
        The reason names the problem, never a value (personal data stays out of logs)."""
        tx = self._tx
        tx.seen += 1
        self._in_row_event += 1
        db, _, name = table.partition(".")
        tx.orders[(db, name)] = tx.orders.get((db, name), 0) + 1  # it holds its place in the numbering
        if tx.seen <= tx.skip:
            return
        reason = exc.message if isinstance(exc, CdcError) else f"row {index}: {type(exc).__name__}"
        raw = repr(row).encode("utf-8", "backslashreplace")
        item = Undecodable(base.at_event(self._in_row_event), table, reason, boundary=False, raw=raw)
        if self._held is not None:
            out.append(self._held)
        self._held = item

    def _emit(
        self,
        out: list[Item],
        op: Op,
        source: SourceInfo,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        key: dict[str, Any] | None,
        now: int,
        base: BinlogPosition,
    ) -> None:
        tx = self._tx
        tx.seen += 1
        self._in_row_event += 1
        table = (source.db, source.table)
        tx.orders[table] = tx.orders.get(table, 0) + 1
        if tx.seen <= tx.skip:  # replayed after a reconnect: already emitted
            return
        transaction = Transaction(tx.gtid, tx.seen, tx.orders[table]) if tx.gtid else None
        # Mid-transaction position: the row event's own binlog offset and the event's place in
        # it, so it is unique and the same on replay whatever the table filter (the transaction's
        # last event gets the position after the transaction in `_on_end`).
        position = base.at_event(self._in_row_event)
        event = ChangeEvent(
            op,
            source,
            before,
            after,
            key,
            now,
            transaction,
            position=position,
            boundary=False,
            schema=self._schema,
        )
        if self._held is not None:
            out.append(self._held)
        self._held = event

    def _shape(self, event: Any) -> _TableShape:
        name = (event.schema, event.table)
        shape = self._shapes.get(name)
        if shape is not None:
            if shape.columns is event.columns:
                return shape
            # Every transaction brings a new TABLE_MAP (new column objects): the same definition, every
            # attribute equal, keeps its shape (rebuilding it per transaction was ~7% of the reader).
            signature = [column.__dict__ for column in event.columns]
            if signature == shape.signature:
                shape.columns = event.columns
                return shape
        converters: list[tuple[str, types.Converter]] = []
        sets: list[str] = []
        key: list[str] = []
        zero_dates: list[tuple[str, types.Converter]] = []
        for column in event.columns:
            if not column.name:
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"the binlog has no column names for {name[0]}.{name[1]}",
                    "set binlog_row_metadata=FULL on the server (see readers/mariadb/cdc.cnf); "
                    "`cdc-logs doctor` checks it",
                )
            converter = column_converter(column)
            if converter is not None:
                converters.append((column.name, converter))
                if zero_date_column(column):
                    zero_dates.append((column.name, converter))
            if column.type == FIELD_TYPE.SET:
                sets.append(column.name)
            if column.is_primary:
                key.append(column.name)
        schema = binlog_schema(event.columns, name[0], name[1], self.flavor)
        images = RowImages.for_columns(event.columns, ignore_decode_errors=bool(event._ignore_decode_errors))
        shape = _TableShape(event.columns, converters, sets, key, zero_dates, schema, images=images)
        shape.signature = [dict(column.__dict__) for column in event.columns]
        self._shapes[name] = shape
        return shape


def _convert(
    values: dict[str, Any], none_sources: dict[str, str] | None, shape: _TableShape
) -> dict[str, Any]:
    row = dict(values)
    for name, converter in shape.converters:
        value = row.get(name)
        if value is not None:
            row[name] = converter(value)
    for name in shape.sets:
        # The library reports an empty SET as None; only none_sources tells it from NULL.
        if row.get(name) is None and none_sources and none_sources.get(name) == "empty set":
            row[name] = ""
    for name, converter in shape.zero_dates:
        # A NOT NULL column is never NULL: None is a zero date the library could not decode.
        if row.get(name) is None and name in row:
            row[name] = converter(None)
    return row


def _key(shape: _TableShape, row: dict[str, Any]) -> dict[str, Any] | None:
    if not shape.key:
        return None
    return {name: row.get(name) for name in shape.key}
