"""What to poll and the SELECTs that poll it, per mode (Kafka Connect JDBC source semantics).

  incrementing            WHERE id > :id                                   ORDER BY id
  timestamp               WHERE ts > :ts                                   ORDER BY ts
  timestamp+incrementing  WHERE ts > :ts OR (ts = :ts AND id > :id)        ORDER BY ts, id

each with `LIMIT batch_size`, plus `ts <= <database clock - lag>` when a safety lag is set. A custom
`query` is wrapped as a subquery (`SELECT * FROM (<query>) AS _cdc_q WHERE ...`), so it needs no
watermark predicate of its own; `:last_sync` / `:last_id` in it are still bound, for queries written
in the seed proposal's style (`WHERE created_at > :last_sync`).

A table's columns are selected as columns.py reads them (some as the database's text rendering), so
the watermark columns are also selected on their own (`__cdc_ts`, `__cdc_id`), as the driver returns
them, and those values are what is bound back. SQLite stores timestamps as text in whatever format the
writer used, and a value read back as a datetime is re-rendered in SQLAlchemy's own format when bound:
the two need not compare equal. So on SQLite the watermark columns are selected and bound raw (no type
at all): the comparisons then run in the same (text) order as the ORDER BY, and resuming never skips
a row.
"""

from __future__ import annotations

import datetime as dt
import difflib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.polling.columns import ColumnRead, catalog_types, column_reads

Mode = Literal["timestamp", "incrementing", "timestamp+incrementing"]
MODES: tuple[str, ...] = ("timestamp", "incrementing", "timestamp+incrementing")

RAW_TS = "__cdc_ts"
RAW_ID = "__cdc_id"
#: Bound to :last_sync / :last_id in a custom query before the first row has been seen.
INITIAL_TS = dt.datetime(1970, 1, 1)
INITIAL_ID = -(2**63)


@dataclass(frozen=True, slots=True)
class PolledTable:
    """One polled table, or one custom query (then `name` only labels its events).

    Unset fields fall back to the PollingReader's defaults.

    Args:
        name: `table` or `schema.table`.
        timestamp_column: modification-time column (modes `timestamp`, `timestamp+incrementing`).
        incrementing_column: strictly increasing id column (modes `incrementing`, `timestamp+...`).
        key_columns: the event key; default: the table's primary key (a custom query: the
            incrementing column).
        soft_delete_column: a row whose value here is not NULL, false or 0 is emitted as a delete.
        query: a custom SELECT to poll instead of the table (must return the watermark columns).
        mode: `timestamp`, `incrementing` or `timestamp+incrementing`.
    """

    name: str
    mode: str | None = None
    timestamp_column: str | None = None
    incrementing_column: str | None = None
    key_columns: Sequence[str] | None = None
    soft_delete_column: str | None = None
    query: str | None = None


@dataclass(slots=True)
class Plan:
    """A PolledTable resolved against the database: its source, watermark columns and key."""

    label: str  # name used in events and positions
    mode: str
    schema: str | None
    table: str
    source: sa.FromClause
    ts: ColumnElement[Any] | None
    inc: ColumnElement[Any] | None
    ts_name: str | None
    inc_name: str | None
    key: tuple[str, ...]
    soft_delete: str | None
    raw: bool  # a table: its watermark columns are also selected on their own (`__cdc_ts`, `__cdc_id`)
    query_params: frozenset[str] = field(default_factory=frozenset)
    ts_is_datetime: bool = False
    reads: tuple[ColumnRead, ...] = ()  # a table: how each column is read (columns.py)

    def _columns(self) -> list[Any]:
        if isinstance(self.source, sa.Table):
            cols: list[Any] = [r.expr.label(r.name) for r in self.reads]
            if self.ts is not None:
                cols.append(self.ts.label(RAW_TS))
            if self.inc is not None:
                cols.append(self.inc.label(RAW_ID))
            return cols
        return [sa.literal_column("*")]

    def _bind(self, column: ColumnElement[Any], value: Any) -> Any:
        # In raw mode `column` is type-coerced to NullType, so the value reaches the driver unchanged.
        return sa.literal(value, column.type)

    def _ordered(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        order = [c for c in (self.ts, self.inc) if c is not None]
        if self.inc is None:  # timestamp mode: a stable order inside one timestamp
            order += [self.source.c[k] for k in self.key if k in self.source.c]
        return stmt.order_by(*order)

    def _upper(self, stmt: sa.Select[Any], lag_s: float, now: Any, dialect: str) -> sa.Select[Any]:
        """Leave out rows newer than the database clock minus the safety lag."""
        if lag_s <= 0 or self.ts is None:
            return stmt
        if dialect == "sqlite":
            # SQLite has no timestamp type: compare as julian days (parses every ISO-8601 text form,
            # read as UTC like SQLite's own 'now').
            return stmt.where(sa.func.julianday(self.ts) <= sa.func.julianday("now", f"-{lag_s} seconds"))
        return stmt.where(self.ts <= self._bind(self.ts, now - dt.timedelta(seconds=lag_s)))

    def after(self, ts: Any, inc: Any, *, lag_s: float, now: Any, dialect: str, limit: int) -> sa.Select[Any]:
        """Rows after the watermark (ts, inc); None components mean 'from the beginning'."""
        stmt = sa.select(*self._columns()).select_from(self.source)
        if self.ts is not None:
            stmt = stmt.where(self.ts.is_not(None))
            if ts is not None and self.inc is not None and inc is not None:
                tsv = self._bind(self.ts, ts)
                later = sa.or_(self.ts > tsv, sa.and_(self.ts == tsv, self.inc > self._bind(self.inc, inc)))
                stmt = stmt.where(later)
            elif ts is not None:
                stmt = stmt.where(self.ts > self._bind(self.ts, ts))
        elif self.inc is not None and inc is not None:
            stmt = stmt.where(self.inc > self._bind(self.inc, inc))
        return self._ordered(self._upper(stmt, lag_s, now, dialect)).limit(limit)

    def group(self, ts: Any) -> sa.Select[Any]:
        """Every row with exactly this timestamp (completes a group a LIMIT cut in two)."""
        assert self.ts is not None
        stmt = sa.select(*self._columns()).select_from(self.source).where(self.ts == self._bind(self.ts, ts))
        return self._ordered(stmt)

    def latest(self) -> sa.Select[Any]:
        """The newest row by watermark order (to start from 'now' without reading existing rows)."""
        order = [c.desc() for c in (self.ts, self.inc) if c is not None]
        stmt = sa.select(*self._columns()).select_from(self.source)
        if self.ts is not None:
            stmt = stmt.where(self.ts.is_not(None))
        return stmt.order_by(*order).limit(1)

    def max_id_through(self, ts: Any, inc: Any) -> sa.Select[Any]:
        """Highest id among rows at or before the watermark: the rows already seen."""
        assert self.ts is not None and self.inc is not None
        tsv = self._bind(self.ts, ts)
        seen = sa.or_(self.ts < tsv, sa.and_(self.ts == tsv, self.inc <= self._bind(self.inc, inc)))
        return sa.select(sa.func.max(self.inc)).select_from(self.source).where(seen)

    def params(self, ts: Any, inc: Any) -> dict[str, Any]:
        """Values for :last_sync / :last_id when a custom query uses them."""
        values = {
            "last_sync": INITIAL_TS if ts is None else ts,
            "last_id": INITIAL_ID if inc is None else inc,
        }
        return {k: v for k, v in values.items() if k in self.query_params}


def _config(message: str, hint: str) -> CdcError:
    return CdcError(ErrorKind.CONFIG, message, hint)


def build_plan(conn: Connection, spec: PolledTable) -> Plan:
    """Reflect the table (or wrap the query) and check every configured column exists."""
    mode = spec.mode or ""
    if mode not in MODES:
        raise _config(f"poll table {spec.name!r}: unknown mode {mode!r}", f"use one of: {', '.join(MODES)}")
    ts_name = spec.timestamp_column if mode != "incrementing" else None
    inc_name = spec.incrementing_column if mode != "timestamp" else None
    if mode != "incrementing" and not ts_name:
        raise _config(
            f"poll table {spec.name!r}: mode {mode} needs a timestamp column", "set `timestamp_column`"
        )
    if mode != "timestamp" and not inc_name:
        raise _config(
            f"poll table {spec.name!r}: mode {mode} needs an incrementing column", "set `incrementing_column`"
        )
    schema, _, table = spec.name.rpartition(".")
    dialect = conn.dialect.name
    if spec.query:
        text = sa.text(spec.query)
        names = [n for n in (ts_name, inc_name) if n]
        source: sa.FromClause = text.columns(*[sa.column(n) for n in names]).subquery("_cdc_q")
        params = frozenset(text.compile().params)
        columns = list(
            conn.execute(
                sa.select(sa.literal_column("*")).select_from(source).limit(0), {k: None for k in params}
            ).keys()
        )
        key = spec.key_columns or ((inc_name,) if inc_name else ())
        raw = False  # a text query's values come back as the driver returns them: already raw
        reads: tuple[ColumnRead, ...] = ()
    else:
        try:
            with warnings.catch_warnings():
                # Types SQLAlchemy does not know are read all the same (columns.py): no warning.
                warnings.filterwarnings("ignore", "Did not recognize type", sa.exc.SAWarning)
                source = sa.Table(table, sa.MetaData(), schema=schema or None, autoload_with=conn)
        except sa.exc.NoSuchTableError as exc:
            where = conn.engine.url.render_as_string(hide_password=True)
            raise CdcError(
                ErrorKind.NOT_FOUND,
                f"table {spec.name!r} does not exist in {where}",
                "create it, or fix the table name of the poll source",
            ) from exc
        columns = [c.name for c in source.columns]
        key = (
            spec.key_columns
            or tuple(c.name for c in source.primary_key.columns)
            or ((inc_name,) if inc_name else ())
        )
        params = frozenset()
        raw = True
        reads = tuple(column_reads(source, conn.dialect, key, catalog_types(conn, schema or None, table)))
    for role, name in (
        ("timestamp", ts_name),
        ("incrementing", inc_name),
        ("soft-delete", spec.soft_delete_column),
        *(("key", k) for k in key),
    ):
        if name and name not in columns:
            close = difflib.get_close_matches(name, columns, n=1)
            raise _config(
                f"poll table {spec.name!r}: {role} column {name!r} is not among its columns {columns}",
                f"fix the {role} column setting" + (f" (did you mean {close[0]!r}?)" if close else ""),
            )
    ts: ColumnElement[Any] | None = source.c[ts_name] if ts_name else None
    inc: ColumnElement[Any] | None = source.c[inc_name] if inc_name else None
    # Whether a clock-based safety lag can apply: date/time columns, text on SQLite (ISO-8601), or
    # unknown (a custom query's columns are untyped).
    time_types: tuple[type, ...] = (sa.DateTime, sa.Date, sa.types.NullType)
    if dialect == "sqlite":
        time_types += (sa.String,)
    ts_is_datetime = ts is not None and isinstance(ts.type, time_types)
    if raw and dialect == "sqlite":
        # Same SQL, but results come back and binds go out as stored (see module docstring).
        ts = sa.type_coerce(ts, sa.types.NullType()) if ts is not None else None
        inc = sa.type_coerce(inc, sa.types.NullType()) if inc is not None else None
    return Plan(
        label=spec.name,
        mode=mode,
        schema=schema or None,
        table=table,
        source=source,
        ts=ts,
        inc=inc,
        ts_name=ts_name,
        inc_name=inc_name,
        key=tuple(key),
        soft_delete=spec.soft_delete_column,
        raw=raw,
        query_params=params,
        ts_is_datetime=ts_is_datetime,
        reads=reads,
    )
