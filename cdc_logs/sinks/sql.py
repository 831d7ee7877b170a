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
from typing import Any, Literal
from urllib.parse import quote

import sqlalchemy as sa
from pydantic import ConfigDict, Field, SecretStr, model_validator
from sqlalchemy import exc as sa_exc

from cdc_logs import registry
from cdc_logs.configmodel import SinkConfigBase
from cdc_logs.dsn import sqlalchemy_url
from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.redact import redact
from cdc_logs.pool import ConnectionPoolConfig, engine_options
from cdc_logs.position import decode
from cdc_logs.sinks import sql_fit
from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.dedup import Marker, ReplayGuard, owner, targeted
from cdc_logs.sinks.routing import check_template, render, source_label
from cdc_logs.sinks.sql_types import Binder, ddl_type, flavor, guess_type, json_serializer

log = get_logger(__name__)


def _not_pipeline_noise(record: logging.LogRecord) -> bool:
    """psycopg warns "error ignored terminating <psycopg.Pipeline ...>" when it leaves a pipeline
    after an error it raises anyway (the sink reports that one, classified): a raw duplicate line."""
    return not str(record.msg).startswith("error ignored terminating")


if _not_pipeline_noise not in logging.getLogger("psycopg").filters:
    logging.getLogger("psycopg").addFilter(_not_pipeline_noise)

_EPOCH = dt.datetime(1970, 1, 1)


# A URL without a driver gets the one cdc-logs installs: SQLAlchemy's defaults (psycopg2, MySQLdb)
# are not installed, and the MariaDB source and `scripts/stack env` write plain mysql:// URLs.
_PLAIN = {
    "postgresql://": "postgresql+psycopg://",
    "postgres://": "postgresql+psycopg://",
    "mysql://": "mysql+pymysql://",
    "mariadb://": "mysql+pymysql://",
}
# Driver name in a URL (dialect+driver://) -> the package that provides its module.
_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary] (installed with cdc-logs)",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "pymysql": "pymysql (installed with cdc-logs)",
    "mysqldb": "mysqlclient",
    "mysqlconnector": "mysql-connector-python",
    "mariadbconnector": "mariadb",
    "oracledb": "oracledb (installed with cdc-logs)",
    "cx_oracle": "cx_Oracle",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}


def normalize_url(url: str) -> str:
    """Plain postgresql:// and mysql:// / mariadb:// URLs use the drivers this project installs
    (psycopg 3, PyMySQL), not SQLAlchemy's defaults (psycopg2, MySQLdb)."""
    for plain, driver in _PLAIN.items():
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def driver_problem(url: str) -> str | None:
    """Why the database driver `url` selects cannot be loaded (not installed), or None.

    A missing driver is a configuration error, never a transient one: retrying cannot install it."""
    try:
        dialect = sa.make_url(url).get_dialect()
    except sa_exc.NoSuchModuleError:
        scheme = url.partition("://")[0]
        return f"SQLAlchemy has no dialect {scheme!r} (is its plugin package installed?)"
    except (sa_exc.ArgumentError, ValueError):
        return None  # an unparsable URL: sqlalchemy_url() says what is wrong with it
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        driver = getattr(dialect, "driver", "") or ""
        package = _DRIVER_PACKAGES.get(driver, driver or "its driver")
        return (
            f"the URL's driver {driver!r} ({dialect.name}) cannot be loaded ({exc.msg or exc}): "
            f"pip install {package.split(' ')[0]!r} into cdc-logs' environment, or write the URL as "
            f"{_suggested(dialect.name)}"
        )
    return None


def _suggested(dialect: str) -> str:
    if dialect in ("mysql", "mariadb"):
        return "mysql+pymysql:// (or plain mysql://: PyMySQL, installed with cdc-logs)"
    if dialect == "postgresql":
        return "postgresql+psycopg:// (or plain postgresql://: psycopg 3, installed with cdc-logs)"
    return "one whose driver is installed"


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


# -- config ----------------------------------------------------------------------------------------
_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


class SqlSinkConfig(SinkConfigBase):
    """Apply changes to SQL tables (upsert / delete / truncate) through SQLAlchemy."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "postgresql",
                    "url": "postgresql://cdc:${ANALYTICS_PASSWORD}@analytics.internal:5432/analytics",
                }
            ]
        }
    )

    type: Literal["sql", "postgresql", "postgres", "mysql", "mariadb", "sqlite"] = Field(
        description="Selects this destination. `sql` needs `url`; the database names may instead build the "
        "URL from host, port, database, username and password with that database's driver (psycopg, "
        "PyMySQL; sqlite: `database` is the file)."
    )
    url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL of the target database (postgresql:// uses psycopg 3, mysql:// and "
        "mariadb:// PyMySQL: the drivers cdc-logs installs); when set, the "
        "fields below are ignored. A secret: never logged. Also accepted as `dsn`.",
        examples=["postgresql://cdc:${ANALYTICS_PASSWORD}@analytics.internal:5432/analytics"],
    )
    host: str = Field(
        "127.0.0.1", description="Database host, when `url` is not set.", examples=["analytics.internal"]
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Database port, when `url` is not set. Default: the driver's (5432, 3306).",
        examples=[5432],
    )
    database: str | None = Field(
        None,
        description="Database name (sqlite: the file path), when `url` is not set; then required, except "
        "for postgresql/postgres, where libpq's default applies (PGDATABASE, else the user name), as the "
        "seed's multi-destination example gives only host and table.",
        examples=["analytics"],
    )
    username: str | None = Field(None, description="User, when `url` is not set.", examples=["cdc"])
    password: SecretStr | None = Field(
        None,
        description="Password of `username`, when `url` is not set. A secret: never logged.",
        examples=["${ANALYTICS_PASSWORD}"],
    )
    table: str = Field(
        "{table}",
        description="Target table per event, from {prefix} {db} {schema} {table} {op} {connector}, or one "
        "fixed table for every source table.",
        examples=["{schema}_{table}", "unified_events"],
    )
    target_schema: str | None = Field(
        "{schema}",
        alias="schema",
        description="Target schema per event (a template, as `table`); null: the connection's default "
        "schema, which is the default for SQLite targets. For MySQL sources {schema} is the database. It "
        "must exist: cdc-logs creates tables, never schemas (a missing one stops the run naming CREATE "
        "SCHEMA).",
        examples=["replica", None],
    )
    auto_create: bool = Field(
        False,
        description="Create a missing target table from the source's column types (primary key from the "
        "event key; types guessed from the values when an event carries no table schema) and add columns "
        "that appear later; false: a missing table or column stops the pipeline naming the fix.",
    )
    apply_truncate: bool = Field(
        True, description="Apply truncate events (TRUNCATE TABLE; DELETE on SQLite); false skips them."
    )
    applied_table: str = Field(
        "cdc_applied",
        description="Table of replay markers (last applied position per pipeline, destination, target table "
        "and source table), written in each batch's transaction; created in `schema` when that is one fixed "
        "schema, else in the connection's default schema.",
        examples=["cdc_applied_shop"],
    )

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict) and "dsn" in data and "url" not in data:
            data = dict(data)
            data["url"] = data.pop("dsn")
        return data

    connection_pool: ConnectionPoolConfig | None = Field(
        None,
        description="Pool of the target's SQLAlchemy engine, and rows per upsert statement: min_connections, "
        "max_connections, connection_timeout, idle_timeout, batch_insert_size (cdc_logs/pool.py; "
        "docs/configuration.md#connection-pools). Default: SQLAlchemy's pool.",
        examples=[{"min_connections": 5, "max_connections": 20, "batch_insert_size": 1000}],
    )

    @model_validator(mode="after")
    def _connection(self) -> SqlSinkConfig:
        # Postgres without a database: libpq's default (PGDATABASE, else the user name), as psql does.
        libpq_default = self.type in ("postgresql", "postgres")
        if self.url is None and (self.type == "sql" or not (self.database or libpq_default)):
            raise ValueError("give `url` (a SQLAlchemy URL), or `database` with host/port/username/password")
        if "target_schema" not in self.model_fields_set and self.sqlalchemy_url().startswith("sqlite"):
            self.target_schema = None  # SQLite has no schemas to mirror
        problem = driver_problem(normalize_url(self.sqlalchemy_url()))
        if problem is not None:  # `config validate` says it, as `run` would
            raise ValueError(problem)
        return self

    def sqlalchemy_url(self) -> str:
        if self.url is not None:
            return self.url.get_secret_value()
        if self.type == "sqlite":
            return f"sqlite:///{self.database}"
        auth = quote(self.username or "", safe="")
        if self.password is not None:
            auth += ":" + quote(self.password.get_secret_value(), safe="")
        port = f":{self.port}" if self.port else ""
        return f"{_DRIVERS[self.type]}://{auth + '@' if auth else ''}{self.host}{port}/{self.database or ''}"


@registry.sink(SqlSinkConfig, capabilities={"state", "ordered", "replay_guard"})
def build(cfg: SqlSinkConfig, ctx: registry.BuildContext) -> SqlSink:
    return SqlSink(
        cfg.sqlalchemy_url(),
        table=cfg.table,
        target_schema=cfg.target_schema,
        auto_create=cfg.auto_create,
        apply_truncate=cfg.apply_truncate,
        applied_table=cfg.applied_table,
        name=cfg.name or cfg.type,
        connection_pool=cfg.connection_pool,
        pipeline=ctx.pipeline,
    )
