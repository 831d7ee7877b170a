"""PollingReader: watermark polling through SQLAlchemy, for databases (or privileges) without log access.

Each poll asks every table for the rows after its watermark (see query.py for the SELECTs per mode),
emits them in watermark order and moves the watermark. It is the Kafka Connect JDBC source model,
with its limits, which no polling design escapes:

  * deletes are invisible unless a soft-delete column is configured; `before` is never known;
  * updates between two polls collapse into one event; insert vs update is a guess (convert.py);
  * a row committed late with a watermark older than one already read is missed: a transaction that
    takes its timestamp (or id) at the start and commits after a later one has been polled. The
    safety lag (`safety_lag_s`) leaves rows younger than the database clock minus the lag unread until
    they are older, which closes that gap for transactions shorter than the lag; `incrementing` mode
    has no clock and so no such protection (sequences hand out ids before commit);
  * rows whose watermark column is NULL are never read.

Positions are boundaries where resuming skips nothing: after every row in `incrementing` and
`timestamp+incrementing` modes, and in `timestamp` mode only after the last row of a timestamp
(resuming from "ts > T" in the middle of the rows sharing T would skip the rest of them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from cdc_logs.envelope import ChangeEvent, Op, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import Position, Watermark
from cdc_logs.readers.base import Reader, StreamItem, idle_pause
from cdc_logs.readers.polling.columns import BadValue
from cdc_logs.readers.polling.connection import (
    check_connect,
    create_engine,
    database_name,
    database_now,
    db_error,
    parse_url,
    server_identity,
)
from cdc_logs.readers.polling.convert import (
    EventFactory,
    Mark,
    parse_position,
    position_values,
    soft_deleted,
    watermark_of,
)
from cdc_logs.readers.polling.query import MODES, Plan, PolledTable, build_plan
from cdc_logs.readers.polling.schema import RowShape

log = get_logger(__name__)

_Item = tuple[dict[str, Any], Any, Any, bool]  # row, ts, id, boundary


class PollingReader(Reader):
    """Poll tables (or custom queries) for rows past a watermark, through any SQLAlchemy URL.

    Args:
        url: SQLAlchemy URL (`postgresql+psycopg://...`, `mysql+pymysql://...`, `sqlite:///f.db`).
        tables: table names (`t`, `schema.t`) or PolledTable entries; unset PolledTable fields take
            the reader-wide defaults below.
        pipeline_name: written to `source.name`.
        mode: `timestamp`, `incrementing` or `timestamp+incrementing` (Kafka Connect JDBC modes).
        timestamp_column, incrementing_column, key_columns, soft_delete_column, mode: defaults for
            the tables that do not set their own.
        snapshot: starting without a position, emit the rows that already exist (True), or start
            from the newest row and emit only later changes (False).
        safety_lag_s: rows whose timestamp is within this many seconds of the database clock are
            left for a later poll (timestamp modes; on SQLite timestamps must be ISO-8601 UTC text).
        poll_interval_s: wait between polls once every table is caught up.
        batch_size: rows per SELECT (a timestamp shared by more rows is still read whole).
        idle_tick_s: an idle tick (`None`) is yielded at this interval while nothing changes.
    """

    connector = "polling"

    def __init__(
        self,
        url: str,
        tables: Sequence[PolledTable | str],
        *,
        pipeline_name: str,
        mode: str = "timestamp+incrementing",
        timestamp_column: str | None = None,
        incrementing_column: str | None = None,
        key_columns: Sequence[str] | None = None,
        soft_delete_column: str | None = None,
        snapshot: bool = True,
        safety_lag_s: float = 0.0,
        poll_interval_s: float = 1.0,
        batch_size: int = 1000,
        idle_tick_s: float = 0.5,
        pool_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not tables:
            raise CdcError(ErrorKind.CONFIG, "the poll source needs at least one table", "add `--table T`")
        self.url = parse_url(url)
        self.pool_options = dict(pool_options or {})  # connection_pool (cdc_logs/pool.py)
        defaults = PolledTable(
            name="",
            mode=mode,
            timestamp_column=timestamp_column,
            incrementing_column=incrementing_column,
            key_columns=tuple(key_columns) if key_columns else None,
            soft_delete_column=soft_delete_column,
        )
        self.specs = [self._resolve(t, defaults) for t in tables]
        for spec in self.specs:
            if spec.mode not in MODES:
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"poll table {spec.name!r}: unknown mode {spec.mode!r}",
                    f"use one of: {', '.join(MODES)}",
                )
        self.pipeline_name = pipeline_name
        self.snapshot = snapshot
        self.safety_lag_s = safety_lag_s
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self.idle_tick_s = idle_tick_s
        self._server = server_identity(self.url)
        self._factory = EventFactory(self._server, pipeline_name, database_name(self.url))
        self._engine: Engine | None = None
        self._plans: list[Plan] = []
        self._marks: dict[str, Mark] = {}
        self._groups: dict[str, list[Any]] = {}
        self._shapes: dict[str, RowShape] = {}
        self._stop = threading.Event()

    @staticmethod
    def _resolve(table: PolledTable | str, defaults: PolledTable) -> PolledTable:
        spec = PolledTable(table) if isinstance(table, str) else table
        return PolledTable(
            name=spec.name,
            mode=spec.mode or defaults.mode,
            timestamp_column=spec.timestamp_column or defaults.timestamp_column,
            incrementing_column=spec.incrementing_column or defaults.incrementing_column,
            key_columns=tuple(spec.key_columns) if spec.key_columns else defaults.key_columns,
            soft_delete_column=spec.soft_delete_column or defaults.soft_delete_column,
            query=spec.query,
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        if self._engine is not None:  # reopened without close()
            self._engine.dispose()
            self._engine = None
        self._stop.clear()
        engine = create_engine(self.url, self.pool_options)
        try:
            check_connect(engine)
            with engine.connect() as conn:
                self._plans = [build_plan(conn, spec) for spec in self.specs]
            db = engine.url.database or ""
            self._shapes = {
                p.label: RowShape(db, p.schema, p.table, p.source, p.key, p.reads) for p in self._plans
            }
            for plan in self._plans:
                if self.safety_lag_s > 0 and plan.ts is not None and not plan.ts_is_datetime:
                    raise CdcError(
                        ErrorKind.CONFIG,
                        f"poll table {plan.label!r}: a safety lag needs a date/time timestamp column, "
                        f"and {plan.ts_name!r} is not one",
                        "set the safety lag to 0 for this source, or use a date/time column",
                    )
        except sa_exc.SQLAlchemyError as exc:
            engine.dispose()
            # Connected fine, so a failing reflection or probe query is a configuration problem.
            raise db_error(exc, engine, "checking the poll source", ErrorKind.CONFIG) from exc
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine

    def server_identity(self) -> str:
        return self._server

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    # -- streaming -------------------------------------------------------------------------------
    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        engine = self._engine
        if engine is None:
            raise CdcError(ErrorKind.USAGE, "PollingReader.stream() called before open()")
        try:
            self._start(engine, start)
            next_tick = time.monotonic() + self.idle_tick_s
            while not self._stop.is_set():
                behind = False
                for plan in self._plans:
                    if self._stop.is_set():
                        return
                    items, full = self._poll(engine, plan)
                    behind |= full
                    for row, ts, inc, boundary in items:
                        yield self._event(plan, row, ts, inc, boundary)
                    if items:
                        next_tick = time.monotonic() + self.idle_tick_s
                if not behind:
                    next_tick = yield from self._pause(next_tick)
        except sa_exc.SQLAlchemyError as exc:
            if self._engine is None:  # closed while stopping
                return
            raise db_error(exc, engine, "polling") from exc

    def _start(self, engine: Engine, start: Position | None) -> None:
        """Set every table's watermark: from the position, from the newest row, or from nothing."""
        self._marks = {plan.label: Mark() for plan in self._plans}
        self._groups = {}  # table -> [watermarks before its open timestamp group, rows so far]
        if start is not None:
            if not isinstance(start, Watermark) or start.server != self._server:
                raise CdcError(
                    ErrorKind.SERVER_MISMATCH,
                    f"stored position {start.encode()} was not taken on {self._server}",
                    "start over with `cdc-logs offsets reset`",
                )
            for label, (ts, inc) in parse_position(start.values).items():
                if label not in self._marks:
                    log.warning("stored watermark for a table no longer polled, ignored", table=label)
                    continue
                self._marks[label] = Mark(ts=ts, inc=inc, max_id=inc, seen=True)
        with engine.connect() as conn:
            for plan in self._plans:
                mark = self._marks[plan.label]
                params = plan.params(mark.ts, mark.inc)
                if mark.seen and plan.ts is not None and plan.inc is not None:
                    # The highest id among the rows already delivered, for the c/u guess.
                    found = conn.execute(plan.max_id_through(mark.ts, mark.inc), params).scalar()
                    mark.max_id = found if found is not None else mark.inc
                elif not mark.seen and not self.snapshot:
                    row = conn.execute(plan.latest(), params).mappings().first()
                    if row is not None:
                        mark.ts, mark.inc = watermark_of(plan, dict(row))
                        mark.max_id, mark.seen = mark.inc, True

    def _poll(self, engine: Engine, plan: Plan) -> tuple[list[_Item], bool]:
        """One SELECT past the watermark; returns rows with their watermark, and whether more wait."""
        mark = self._marks[plan.label]
        dialect = engine.dialect.name
        params = plan.params(mark.ts, mark.inc)
        with engine.connect() as conn:
            now = None
            if self.safety_lag_s > 0 and plan.ts is not None and dialect != "sqlite":
                now = database_now(conn)
            stmt = plan.after(
                mark.ts if mark.seen else None,
                mark.inc if mark.seen else None,
                lag_s=self.safety_lag_s,
                now=now,
                dialect=dialect,
                limit=self.batch_size,
            )
            rows = [dict(r) for r in conn.execute(stmt, params).mappings()]
            full = len(rows) >= self.batch_size
            items = [(row, *watermark_of(plan, row)) for row in rows]
            if full and plan.inc is None and items:
                # LIMIT may have cut the last timestamp's rows in two: read that timestamp whole, so
                # the watermark only ever stands after a complete timestamp.
                last_ts = items[-1][1]
                items = [it for it in items if it[1] != last_ts]
                group = [dict(r) for r in conn.execute(plan.group(last_ts), params).mappings()]
                items += [(row, *watermark_of(plan, row)) for row in group]
        if plan.inc is not None:
            return [(row, ts, inc, True) for row, ts, inc in items], full
        # timestamp mode: a boundary only where the timestamp changes (or at the end).
        out: list[_Item] = []
        for i, (row, ts, inc) in enumerate(items):
            last = i + 1 == len(items) or items[i + 1][1] != ts
            out.append((row, ts, inc, last))
        return out, full

    def _event(
        self, plan: Plan, row: dict[str, Any], ts: Any, inc: Any, boundary: bool
    ) -> ChangeEvent | Undecodable:
        mark = self._marks[plan.label]
        if plan.soft_delete and soft_deleted(row.get(plan.soft_delete)):
            op = Op.DELETE
        elif plan.mode == "timestamp+incrementing" and mark.max_id is not None and inc <= mark.max_id:
            op = Op.UPDATE
        else:
            op = Op.CREATE
        if inc is not None and (mark.max_id is None or inc > mark.max_id):
            mark.max_id = inc
        group = self._groups.get(plan.label)
        if not boundary and group is None:
            # First row of a timestamp group: its rows are numbered past the watermark before it.
            group = self._groups[plan.label] = [position_values(self._plans, self._marks), 0]
        mark.ts, mark.inc, mark.seen = ts, inc, True
        shape = self._shapes[plan.label]
        try:
            values = shape.encode(row)
        except (ValueError, TypeError, OverflowError, UnicodeError) as exc:  # BadValue: a column's
            return self._undecodable(plan, row, exc, boundary, group)
        if boundary:
            self._groups.pop(plan.label, None)
            marks = position_values(self._plans, self._marks)
            return self._factory.event(plan, values, op, marks, True, ts=ts, schema=shape.schema)
        assert group is not None
        group[1] += 1
        return self._factory.event(plan, values, op, group[0], False, group[1], ts=ts, schema=shape.schema)

    def _undecodable(
        self, plan: Plan, row: dict[str, Any], exc: Exception, boundary: bool, group: list[Any] | None
    ) -> Undecodable:
        """A polled row whose values cannot be encoded: for the dead-letter file, in its place."""
        if boundary:
            self._groups.pop(plan.label, None)
            position = Watermark(self._server, position_values(self._plans, self._marks), table=plan.label)
        else:
            assert group is not None
            group[1] += 1
            position = Watermark(self._server, group[0], table=plan.label, event=group[1])
        raw = repr(row).encode("utf-8", "backslashreplace")
        reason = str(exc) if isinstance(exc, BadValue) else type(exc).__name__  # BadValue: no data
        return Undecodable(position, plan.label, reason, boundary=boundary, raw=raw)

    def _pause(self, next_tick: float) -> Generator[None, None, float]:
        return idle_pause(self._stop, self.poll_interval_s, self.idle_tick_s, next_tick)
