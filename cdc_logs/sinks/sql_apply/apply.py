"""SQL apply sink (SQLAlchemy): keeps target tables equal to the source tables.

Each change is applied to the target table rendered from `schema` / `table` (default: the source's
own schema and table name): c/r/u upsert on the target's primary key (INSERT ... ON CONFLICT DO
UPDATE on Postgres and SQLite, ON DUPLICATE KEY UPDATE on MySQL/MariaDB, UPDATE-then-INSERT
elsewhere), d deletes by key, t truncates (`apply_truncate`). An update that changes the primary key
deletes the old row first. Columns the source did not send (the envelope's `unchanged`: Postgres
unchanged TOAST) are left out of the UPDATE, so the target keeps its value instead of getting NULL.
An event whose `after` is the whole row (`whole_row`: a MongoDB document) also sets the nullable
target columns it lacks to NULL: a field removed by $unset or a replace is gone, not unchanged.

A batch is one transaction, and so is its replay marker: table `cdc_applied` holds, per pipeline,
destination, target table and source table, the last applied source position (dedup.py has the
rule), written in the same transaction as the rows. It lives in the configured `schema` when that is
one fixed schema, else in the connection's default schema. Rows of the previous format (keyed by
destination name and source table only, in the default schema) are never used: they cannot say which
pipeline wrote them, and trusting another pipeline's would skip changes (at-least-once instead). A
replayed batch is therefore skipped, not re-applied. When the transaction fails, every table, binder
and report cached inside it is dropped: Postgres and SQLite roll back the DDL `auto_create` ran in
it, and the pipeline retries the batch in halves to isolate a refused event (delivery.py), which
must not cost the valid events beside it. Logical decoding messages (op m) belong to no table:
skipped, without a marker.

Values: the envelope carries Debezium's JSON encodings; the event's table schema says which
(sql_types.py turns them back into typed values: epoch milliseconds or microseconds into timestamps,
decimal strings into exact decimals, JSON text into JSON where the target has a JSON type, ...). A
value the target cannot hold goes, with that one event, to the dead-letter file.

`auto_create` creates a missing target table from the source's column types (the event's schema;
the primary key from the event key) and adds columns that appear later (sql_types.ddl_type has the
mapping per dialect, docs/sinks.md the table). Events without a schema fall back to types guessed
from the first row. Nothing else on a target table is ever changed, as with Debezium's JDBC sink
(`schema.evolution=basic`): other schema changes at the source are reported, and values a target
column would round (or an ENUM label it lacks) are refused naming the ALTER that fixes it
(sql_fit.py). Schemas are never created: a missing one is an operator error naming CREATE SCHEMA.

URLs without a driver get the ones cdc-logs installs (psycopg 3, PyMySQL); a driver that is not
installed is a configuration error, never a transient one.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from cdc_logs.dsn import sqlalchemy_url
from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.redact import redact
from cdc_logs.pool import ConnectionPoolConfig, engine_options
from cdc_logs.position import decode
from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.dedup import Marker, ReplayGuard, owner, targeted
from cdc_logs.sinks.routing import check_template, render, source_label
from cdc_logs.sinks.sql_apply import sql_fit
from cdc_logs.sinks.sql_apply.sql_types import Binder, ddl_type, flavor, guess_type, json_serializer
from cdc_logs.sinks.sql_apply.urls import driver_problem, normalize_url

log = get_logger(__name__)


def _not_pipeline_noise(record: logging.LogRecord) -> bool:
    """psycopg warns "error ignored terminating <psycopg.Pipeline ...>" when it leaves a pipeline
    after an error it raises anyway (the sink reports that one, classified): a raw duplicate line."""
    return not str(record.msg).startswith("error ignored terminating")


if _not_pipeline_noise not in logging.getLogger("psycopg").filters:
    logging.getLogger("psycopg").addFilter(_not_pipeline_noise)

_EPOCH = dt.datetime(1970, 1, 1)


def _marker_table(name: str, schema: str | None) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("sink", sa.String(200), primary_key=True),  # <pipeline>/<destination name>
        sa.Column("source_table", sa.String(500), primary_key=True),  # <target>|<source table key>
        sa.Column("position", sa.Text, nullable=False),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )


class SqlSink(Sink):
    def __init__(
        self,
        url: str,
        *,
        table: str = "{table}",
        target_schema: str | None = "{schema}",
        auto_create: bool = False,
        apply_truncate: bool = True,
        applied_table: str = "cdc_applied",
        name: str = "sql",
        connection_pool: ConnectionPoolConfig | None = None,
        pipeline: str = "cdc",
    ) -> None:
        check_template(table, "table")
        self.connection_pool = connection_pool  # engine pool settings, rows per upsert (pool.py)
        if target_schema:
            check_template(target_schema, "schema")
        self.url = normalize_url(url)
        self.table_template = table
        self.schema_template = target_schema
        self.auto_create = auto_create
        self.apply_truncate = apply_truncate
        self.name = name
        self._engine: sa.Engine | None = None
        self._tables: dict[tuple[str | None, str], sa.Table] = {}
        self._binders: dict[tuple[object, ...], Binder] = {}
        self._reported: set[tuple[object, ...]] = set()  # (table, schema) pairs already checked
        # Reports made inside the running transaction: logged once it commits, dropped if it rolls
        # back (they may describe a table or column the rollback undid).
        self._reports: dict[tuple[object, ...], tuple[Binder, set[str], ChangeEvent]] = {}
        # Tables auto_create made, said once: a refused batch is retried in halves, and on Postgres
        # each retry creates the table again inside its transaction.
        self._created: set[str] = set()
        self._said_messages = False
        # Warnings already given, by table and what they say: sources without a fixed schema
        # (MongoDB documents) bring a new table schema with each document shape.
        self._warned: set[tuple[object, ...]] = set()
        self._guard = ReplayGuard(self._marker_key)
        self.owner = owner(pipeline, name)  # the `sink` column of this sink's markers
        fixed = target_schema if target_schema and "{" not in target_schema else None
        self._applied = _marker_table(applied_table, fixed)
        # Where the previous format kept markers (the default schema), to say they are not used.
        self._legacy = self._applied if fixed is None else _marker_table(applied_table, None)

    def _marker_key(self, event: ChangeEvent) -> str | None:
        schema, table = self._target(event)
        return targeted(f"{schema or ''}.{table}", event)

    # -- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> None:
        url = sqlalchemy_url(self.url, "SQL destination's url")
        problem = driver_problem(self.url)
        if problem is not None:
            raise CdcError(  # a missing driver: retrying cannot install it
                ErrorKind.CONFIG,
                f"SQL destination {self.name!r}: {problem}",
                "install that driver, or use one cdc-logs installs (plain postgresql:// or mysql://)",
            )
        try:
            self._engine = sa.create_engine(
                url,
                pool_pre_ping=True,
                json_serializer=json_serializer,
                **engine_options(self.connection_pool, url),
            )
            with self._engine.begin() as conn:
                if self.schema_template and "{" not in self.schema_template:
                    self._check_schema(conn, self.schema_template)  # one fixed schema: say it now
                self._applied.create(conn, checkfirst=True)
                rows = conn.execute(sa.select(self._applied).where(self._applied.c.sink == self.owner))
                self._guard.markers = {r.source_table: Marker(decode(r.position), r.complete) for r in rows}
                self._legacy_markers(conn)
        except sa_exc.SQLAlchemyError as exc:
            self._engine = None
            raise self._error(exc, f"cannot open {redact(self.url)}") from exc
        except CdcError:
            self._engine = None
            raise

    def _legacy_markers(self, conn: sa.Connection) -> None:
        """Say once that markers of the previous format are there and not used (docs/sinks.md)."""
        if not sa.inspect(conn).has_table(self._legacy.name, schema=self._legacy.schema):
            return
        count = conn.execute(
            sa.select(sa.func.count()).select_from(self._legacy).where(self._legacy.c.sink == self.name)
        ).scalar()
        if count:
            log.info(
                "replay markers of the previous format found and not used: they do not say which "
                "pipeline wrote them; the changes since this pipeline's checkpoint are applied again "
                "(the target ends the same)",
                sink=self.name,
                table=self._legacy.fullname,
                rows=count,
                fix=f"once every pipeline runs this version: DELETE FROM {self._legacy.fullname} "
                f"WHERE sink = '{self.name}'",
            )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- writing -----------------------------------------------------------------------------------
    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if not batch:
            return
        if self._engine is None:
            self.open()
        assert self._engine is not None
        fresh, changed = self._guard.plan([e for e in batch if not self._message(e)])
        if not fresh and not changed:
            return
        for attempt in (1, 2):
            cached = bool(self._tables)
            self._reports = {}
            try:
                self._transaction(fresh, changed)
                break
            except BaseException as exc:
                # The transaction rolled back, and with it any CREATE TABLE / ADD COLUMN it ran
                # (Postgres and SQLite DDL is transactional): nothing cached from inside it may
                # survive, or the retry (the halves of the batch, when an event is refused) would
                # write to a table or column that is not there and dead-letter valid rows.
                self._tables.clear()
                self._binders.clear()
                self._reports = {}
                error = self._failure(exc, len(fresh))
                if attempt == 1 and cached and error is not None and error.kind is ErrorKind.SINK_REJECTED:
                    # Refused against tables reflected by an earlier batch: the user may have fixed
                    # the target since (the ALTER a refusal names). Judge once more as it is now.
                    continue
                if error is None or error is exc:
                    raise
                raise error from exc
        self._guard.committed(changed)
        for key, (binder, sent, event) in self._reports.items():  # about committed tables only
            self._reported.add(key)
            self._report(binder, sent, event)
        self._reports = {}

    def _failure(self, exc: BaseException, count: int) -> CdcError | None:
        """`exc` from a batch's transaction as the CdcError to raise; None: raise it as it is."""
        if isinstance(exc, CdcError):
            return exc
        if isinstance(exc, sa_exc.SQLAlchemyError):
            return self._error(exc, f"applying {count} changes failed")
        if isinstance(exc, OverflowError | ValueError | TypeError):  # the driver cannot bind a value
            return CdcError(
                ErrorKind.SINK_REJECTED,
                f"applying {count} changes failed: a value cannot be sent ({type(exc).__name__})",
                "widen the target column's type, or drop or mask the column with a transform",
            )
        return None

    def _transaction(self, fresh: list[ChangeEvent], changed: dict[str, Marker]) -> None:
        assert self._engine is not None
        with self._engine.begin() as conn:
            pending = _Upserts(
                self._upsert, self.connection_pool.batch_insert_size if self.connection_pool else None
            )
            for event in fresh:
                self._apply(conn, event, pending)
            pending.flush(conn)
            if changed:
                now = dt.datetime.now(dt.UTC)
                rows = [
                    {
                        "sink": self.owner,
                        "source_table": k,
                        "position": m.position.encode(),
                        "complete": m.complete,
                        "updated_at": now,
                    }
                    for k, m in changed.items()
                ]
                self._upsert(conn, self._applied, rows, ["position", "complete", "updated_at"])

    def _message(self, event: ChangeEvent) -> bool:
        """A logical decoding message (op m) belongs to no table: nothing to apply, and no replay
        marker either (it would name a table `<db>..`). Skipped, said once."""
        if event.op is not Op.MESSAGE:
            return False
        if not self._said_messages:
            self._said_messages = True
            log.info(
                "logical decoding messages (op m) are not applied to SQL tables: skipped",
                sink=self.name,
                fix="send them to a stream destination (Kafka, file, ...) if you need them",
            )
        return True

    def _apply(self, conn: sa.Connection, event: ChangeEvent, pending: _Upserts) -> None:
        table = self._table(conn, event)
        if event.op is Op.TRUNCATE or event.op is Op.DELETE:
            pending.flush(conn)  # statements of other shapes run after the queued upserts
        if event.op is Op.TRUNCATE:
            if self.apply_truncate:
                conn.execute(
                    sa.delete(table) if conn.dialect.name == "sqlite" else sa.text(_truncate(conn, table))
                )
            return
        pk = [c.name for c in table.primary_key.columns] or list(event.key or ())
        if not pk:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"target table {table.fullname} has no primary key and {source_label(event)} sends none",
                "add a primary key to the target table",
            )
        if event.op is Op.DELETE:
            self._delete(conn, table, pk, {**(event.before or {}), **(event.key or {})}, event)
            return
        assert event.after is not None
        before = event.before or {}
        if all(c in before for c in pk) and any(before[c] != event.after.get(c) for c in pk):
            pending.flush(conn)
            self._delete(conn, table, pk, before, event)  # the key changed: move the row
        table = self._with_columns(conn, table, event.after, event)
        row = self._binder(conn, table, event).row(event.after)
        if event.whole_row:
            row.update(_cleared(table, row, pk, event.unchanged))
        pending.add(conn, table, row, [c for c in row if c not in pk], tuple(row.get(c) for c in pk))

    def _binder(self, conn: sa.Connection, table: sa.Table, event: ChangeEvent) -> Binder:
        # Keyed by the schema's content (table and version), not its address: a freed schema's address
        # can be reused by another, and a spilled batch comes back with equal copies.
        schema = event.schema
        key = (table.fullname, schema.fingerprint) if schema is not None else (table.fullname,)
        binder = self._binders.get(key)
        if binder is None or binder.table is not table:
            if len(self._binders) >= 1024:
                self._binders.clear()
            columns = {c.name: c for c in schema.columns} if schema is not None else {}
            binder = self._binders[key] = Binder(table, columns, conn.dialect.name)
            binder.alter = functools.partial(_alter, conn.dialect, table)
            for name in binder.misfits:
                binder.fixes[name] = binder.alter(name, self._column_type(event, name, conn.dialect))
            if schema is not None and key not in self._reported:
                self._reports[key] = (binder, set(columns) | set(event.row or ()), event)
        return binder

    def _report(self, binder: Binder, sent: set[str], event: ChangeEvent) -> None:
        """Say once per table version what the target no longer matches (sql_fit.py): the target is
        the user's, so it is never altered beyond added columns."""
        table = binder.table.fullname
        for name, why in binder.misfits.items():
            if (table, name, why) in self._warned:
                continue
            self._warned.add((table, name, why))
            log.warning(
                "target column does not match the source's: values it would change are refused"
                if binder.refuses(name)
                else "target column's type differs from the source's: values are written as it takes them",
                sink=self.name,
                table=table,
                column=name,
                mismatch=why,
                fix=binder.fixes[name],
            )
        kept = sql_fit.dropped(binder.table, sent)
        if kept and not event.whole_row:  # a whole document's missing fields are cleared (_cleared)
            log.warning(
                "the source does not send these target columns (dropped or renamed at the source, or the "
                "target's own): kept; rows written from now on leave them NULL or their default",
                sink=self.name,
                table=table,
                source=source_label(event),
                columns=kept,
                fix="drop or rename them on the target if they are gone for good",
            )

    def _delete(
        self, conn: sa.Connection, table: sa.Table, pk: list[str], row: dict[str, Any], event: ChangeEvent
    ) -> None:
        missing = [c for c in pk if c not in row]
        if missing:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"{source_label(event)}: a delete without the key column(s) {missing} of {table.fullname}",
                "make the target's primary key the source's key, or set REPLICA IDENTITY FULL at the source",
            )
        binder = self._binder(conn, table, event)
        where = sa.and_(*(table.c[c] == binder.value(c, row[c]) for c in pk))
        conn.execute(sa.delete(table).where(where))

    def _upsert(
        self, conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], update: list[str]
    ) -> None:
        pk = [c.name for c in table.primary_key.columns]
        dialect = conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            from sqlalchemy.dialects.postgresql import insert as pg_insert
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
            if update:
                stmt = stmt.on_conflict_do_update(
                    index_elements=pk, set_={c: stmt.excluded[c] for c in update}
                )
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=pk)
            conn.execute(stmt, rows)
        elif dialect in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert as my_insert

            my_stmt = my_insert(table)
            cols = update or pk  # a no-op update keeps ON DUPLICATE KEY valid
            conn.execute(my_stmt.on_duplicate_key_update({c: my_stmt.inserted[c] for c in cols}), rows)
        else:
            # Portable fallback: UPDATE, and INSERT when no row has the key.
            for row in rows:
                where = sa.and_(*(table.c[c] == row[c] for c in pk))
                if (
                    update
                    and conn.execute(
                        sa.update(table).where(where).values({c: row[c] for c in update})
                    ).rowcount
                ):
                    continue
                if conn.execute(sa.select(sa.literal(1)).select_from(table).where(where)).first() is None:
                    conn.execute(sa.insert(table).values(row))

    # -- target tables -----------------------------------------------------------------------------
    def _target(self, event: ChangeEvent) -> tuple[str | None, str]:
        schema = render(self.schema_template, event, None) if self.schema_template else None
        return schema, render(self.table_template, event, None)

    def _table(self, conn: sa.Connection, event: ChangeEvent) -> sa.Table:
        schema, name = self._target(event)
        table = self._tables.get((schema, name))
        if table is not None:
            return table
        exists = sa.inspect(conn).has_table(name, schema=schema)
        if not exists and schema is not None:
            self._check_schema(conn, schema)
        if exists:
            table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)
        elif self.auto_create and event.row is not None and event.key:
            row, key = event.row, event.key
            names = [c.name for c in event.schema.columns] if event.schema is not None else list(row)
            # autoincrement=False: the keys come from the source. An AUTO_INCREMENT key (MySQL,
            # MariaDB) would store a row with key 0 under the next free number.
            columns = [
                sa.Column(
                    c,
                    self._column_type(event, c, conn.dialect),
                    primary_key=c in key,
                    nullable=c not in key,
                    autoincrement=False,
                )
                for c in dict.fromkeys([*key, *names])
            ]
            table = sa.Table(name, sa.MetaData(), *columns, schema=schema)
            try:
                table.create(conn, checkfirst=True)
            except sa_exc.DBAPIError as exc:
                if not _created_meanwhile(exc):
                    raise
                # Another writer created it between the check and the CREATE (a parallel worker of
                # this destination, parallel.py): the retried batch finds it and uses it.
                raise CdcError(
                    ErrorKind.SINK_TRANSIENT,
                    f"target table {table.fullname} was created by another writer at the same time",
                    "the batch is retried against it",
                ) from exc
            if table.fullname not in self._created:
                self._created.add(table.fullname)
                log.info("created target table", table=table.fullname, sink=self.name)
        elif self.auto_create and event.row is not None:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"target table {f'{schema}.' if schema else ''}{name} for {source_label(event)} is missing "
                "and cannot be created: the event has no key (auto_create makes the key the primary key)",
                "give the source a key (a bus/MQTT source: key_fields), or create the table yourself",
            )
        else:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"target table {f'{schema}.' if schema else ''}{name} for {source_label(event)} is missing",
                "create it, point destination.table/schema at it, or set destination.auto_create: true",
            )
        for column in table.c:
            if isinstance(column.type, sa.JSON) and not column.type.none_as_null:
                # None is SQL NULL, not the JSON text null (a fresh type: its bind processor is
                # cached per type object)
                json_type = column.type.copy()
                json_type.none_as_null = True
                column.type = json_type
        self._tables[(schema, name)] = table
        return table

    def _check_schema(self, conn: sa.Connection, schema: str) -> None:
        """A NOT_FOUND error when target schema `schema` does not exist, naming the statement that
        creates it. cdc-logs creates tables (auto_create), never schemas or databases: where a
        schema lives, who owns it and what it is granted is the operator's decision. Without this,
        every event would be refused (dead-lettered) one by one with the database's own message."""
        if sa.inspect(conn).has_schema(schema):
            return
        quoted = conn.dialect.identifier_preparer.quote(schema)
        mysql_like = conn.dialect.name in ("mysql", "mariadb")
        create = f"CREATE DATABASE {quoted}" if mysql_like else f"CREATE SCHEMA {quoted}"
        raise CdcError(
            ErrorKind.NOT_FOUND,
            f"SQL destination {self.name!r}: target {'database' if mysql_like else 'schema'} {schema!r} "
            "does not exist (cdc-logs creates tables, never schemas)",
            f"run `{create}` on the target (auto_create needs the sink's user to have CREATE there), "
            "or set destination.schema to an existing one",
        )

    def _with_columns(
        self, conn: sa.Connection, table: sa.Table, row: dict[str, Any], event: ChangeEvent
    ) -> sa.Table:
        """`table` holding every column of `row`: new ones are added (auto_create) or refused, never
        silently dropped."""
        extra = [c for c in row if c not in table.c]
        if not extra:
            return table
        if not self.auto_create:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"target table {table.fullname} has no column(s) {extra} sent by {source_label(event)}",
                "add the columns to the target table (a column renamed at the source: rename it there), "
                "drop them with a transform, or set auto_create: true",
            )
        for column in extra:
            column_type = self._column_type(event, column, conn.dialect)
            ddl = sa.schema.CreateColumn(sa.Column(column, column_type)).compile(dialect=conn.dialect)
            try:
                conn.execute(sa.text(f"ALTER TABLE {_qualified(conn, table)} ADD COLUMN {ddl}"))
            except sa_exc.DBAPIError as exc:
                if not _created_meanwhile(exc):
                    raise
                raise CdcError(  # another writer added it first (a parallel worker): retry with it
                    ErrorKind.SINK_TRANSIENT,
                    f"column {column} of {table.fullname} was added by another writer at the same time",
                    "the batch is retried against it",
                ) from exc
        self._tables.pop((table.schema, table.name), None)
        return self._table(conn, event)

    @staticmethod
    def _column_type(event: ChangeEvent, name: str, target: sa.Dialect) -> sa.types.TypeEngine[Any]:
        """The type `auto_create` gives column `name`: from the source's schema, else from the value."""
        key, dialect = name in (event.key or {}), target.name
        column = event.schema.column(name) if event.schema is not None else None
        if column is not None:
            version = tuple(int(v) for v in target.server_version_info or () if isinstance(v, int))
            return ddl_type(column, flavor(target), key=key, version=version)
        value = (event.row or {}).get(name)
        if key and isinstance(value, str) and dialect in ("mysql", "mariadb"):
            return sa.String(255)  # MySQL cannot index a TEXT key column
        return guess_type(value, dialect)

    def _error(self, exc: sa_exc.SQLAlchemyError, what: str) -> CdcError:
        transient = isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError)
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            transient = True
        detail = redact(str(getattr(exc, "orig", None) or exc)).splitlines()[0]
        if transient:
            return CdcError(ErrorKind.SINK_TRANSIENT, f"{what}: {detail}", "the batch is retried")
        return CdcError(
            ErrorKind.SINK_REJECTED,
            f"{what}: {detail}",
            "the target refused the data: compare its columns and constraints with the source's",
        )


def _created_meanwhile(exc: sa_exc.DBAPIError) -> bool:
    """A CREATE TABLE or ADD COLUMN lost a race: the table or column exists now (Postgres duplicate
    table or column, or the unique index of a row type; MySQL 1050/1060; SQLite's messages)."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in ("42P07", "42701", "23505"):
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in (1050, 1060):
        return True
    return "already exists" in str(orig) or "duplicate column name" in str(orig)


class _Upserts:
    """Consecutive upserts of one shape (table, columns), sent as one executemany: the driver
    pipelines them, instead of a round trip per row. A repeated key starts a new group, so one
    multi-row INSERT never touches a row twice (Postgres refuses that in ON CONFLICT DO UPDATE)."""

    def __init__(self, upsert: Any, max_rows: int | None = None) -> None:
        self._upsert = upsert
        self._max_rows = max_rows  # connection_pool.batch_insert_size
        self._shape: tuple[Any, ...] | None = None
        self._rows: list[dict[str, Any]] = []
        self._keys: set[tuple[Any, ...]] = set()
        self._table: sa.Table | None = None
        self._update: list[str] = []

    def add(
        self,
        conn: sa.Connection,
        table: sa.Table,
        row: dict[str, Any],
        update: list[str],
        key: tuple[Any, ...],
    ) -> None:
        shape = (table.schema, table.name, tuple(row))
        full = self._max_rows is not None and len(self._rows) >= self._max_rows
        if shape != self._shape or key in self._keys or full:
            self.flush(conn)
            self._shape, self._table, self._update = shape, table, update
        self._rows.append(row)
        self._keys.add(key)

    def flush(self, conn: sa.Connection) -> None:
        if self._rows and self._table is not None:
            self._upsert(conn, self._table, self._rows, self._update)
        self._shape, self._rows, self._keys, self._table = None, [], set(), None


def _cleared(
    table: sa.Table, row: dict[str, Any], pk: list[str], unchanged: Sequence[str]
) -> dict[str, None]:
    """NULL for the nullable target columns a whole-row event (`ChangeEvent.whole_row`: a MongoDB
    document) lacks: a field removed by $unset or by a replace is gone, not unchanged. Columns the
    event lists as `unchanged` keep their value; NOT NULL columns keep theirs (or their default)."""
    skip = {*row, *pk, *unchanged}
    return {c.name: None for c in table.c if c.name not in skip and c.nullable}


def _qualified(conn: sa.Connection, table: sa.Table) -> str:
    prep = conn.dialect.identifier_preparer
    return prep.format_table(table)


def _alter(dialect: sa.Dialect, table: sa.Table, column: str, column_type: sa.types.TypeEngine[Any]) -> str:
    """The statement that gives a target column `column_type` (the fix a refusal names)."""
    prep = dialect.identifier_preparer
    rendered = column_type.compile(dialect=dialect)
    name, qualified = prep.quote(column), prep.format_table(table)
    if dialect.name == "postgresql":
        return f"ALTER TABLE {qualified} ALTER COLUMN {name} TYPE {rendered}"
    if dialect.name in ("mysql", "mariadb"):
        # MODIFY COLUMN restates the whole column: keep its NOT NULL and default, or it loses them.
        target = table.c.get(column)
        if target is not None and not target.nullable:
            rendered += " NOT NULL"
        default = getattr(getattr(target, "server_default", None), "arg", None)
        if default is not None:
            rendered += f" DEFAULT {default.text if hasattr(default, 'text') else default}"
        return f"ALTER TABLE {qualified} MODIFY COLUMN {name} {rendered}"
    return f"recreate {qualified} with column {name} {rendered} (no ALTER COLUMN here)"


def _truncate(conn: sa.Connection, table: sa.Table) -> str:
    return f"TRUNCATE TABLE {_qualified(conn, table)}"
