"""SQLAlchemy I/O for the polling reader: engine, server identity, database clock, error mapping.

Errors are mapped to CdcError kinds once, here: a database that cannot be reached is CONNECTION
(the pipeline retries with backoff); a bad URL or a missing driver is CONFIG; a query the database
rejects while the connection works is CONFIG too (a wrong column or table name will not fix itself).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.sqlite.connection import lenient_text


def parse_url(url: str) -> sa.URL:
    try:
        return sa.make_url(url)
    except sa_exc.ArgumentError as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            f"not a SQLAlchemy database URL: {_redacted(url)} ({exc})",
            "write it as dialect+driver://user:password@host:port/database, e.g. sqlite:///app.db",
        ) from exc


def _redacted(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "<unparsable URL>"


def server_identity(url: sa.URL) -> str:
    """The URL without user or password: `backend://host:port/database` (SQLite: the absolute path).

    The backend, not the driver, so switching drivers (psycopg2 -> psycopg) keeps the offsets valid.
    """
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ""
        path = database if database in ("", ":memory:") else str(Path(database).resolve())
        return f"sqlite:///{path}"
    port = f":{url.port}" if url.port else ""
    return f"{backend}://{url.host or ''}{port}/{url.database or ''}"


def database_name(url: sa.URL) -> str:
    """`source.db`: the database name (SQLite: the file name)."""
    database = url.database or ""
    return Path(database).name if url.get_backend_name() == "sqlite" else database


def create_engine(url: sa.URL) -> Engine:
    try:
        # pre_ping: a pooled connection dropped by the server is replaced instead of failing a poll.
        engine = sa.create_engine(url, pool_pre_ping=True)
    except sa_exc.NoSuchModuleError as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            f"no SQLAlchemy dialect for {url.drivername!r}",
            "check the URL's scheme; install the driver extra (e.g. pip install 'cdc-logs[pg]')",
        ) from exc
    except ImportError as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            f"the database driver for {url.drivername!r} is not installed ({exc})",
            "install the driver extra, e.g. pip install 'cdc-logs[pg]' or 'cdc-logs[mysql]'",
        ) from exc
    backend = url.get_backend_name()
    if backend == "postgresql":
        sa.event.listen(engine, "connect", _postgres_session)
    elif backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_session)
    return engine


#: The text formats columns.py decodes (dates, intervals, bytea), whatever the server's defaults.
_POSTGRES_SETTINGS = (
    "SET DateStyle = 'ISO, MDY'",
    "SET IntervalStyle = 'postgres'",
    "SET bytea_output = 'hex'",
)


def _postgres_session(dbapi_conn: Any, _record: Any) -> None:
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True
    cursor = dbapi_conn.cursor()
    try:
        for statement in _POSTGRES_SETTINGS:
            cursor.execute(statement)
    finally:
        cursor.close()
        dbapi_conn.autocommit = autocommit


def _sqlite_session(dbapi_conn: Any, _record: Any) -> None:
    # TEXT that is not UTF-8 (SQLite stores any bytes) comes back as InvalidText instead of failing
    # the whole query: that row goes to the dead-letter file.
    dbapi_conn.text_factory = lenient_text


def check_connect(engine: Engine) -> None:
    """Fail early, as CONNECTION (retried), when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa_exc.DBAPIError as exc:
        raise db_error(exc, engine, "cannot connect", ErrorKind.CONNECTION) from exc


def db_error(exc: Exception, engine: Engine, what: str, kind: ErrorKind | None = None) -> CdcError:
    """Map a SQLAlchemy error to a CdcError; connection trouble is retryable, the rest is not."""
    if kind is None:
        transient = isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
        kind = (
            ErrorKind.CONNECTION
            if transient
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError)
            else ErrorKind.CONFIG
        )
    detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    hint = (
        "the reader reconnects and resumes from the last committed watermark"
        if kind is ErrorKind.CONNECTION
        else "check the table, column and query settings of the poll source"
    )
    return CdcError(kind, f"{what} ({engine.url.render_as_string(hide_password=True)}): {detail}", hint)


def database_now(conn: Connection) -> Any:
    """The database's CURRENT_TIMESTAMP: the clock the safety lag is measured against."""
    value = conn.execute(sa.select(sa.func.current_timestamp())).scalar()
    if isinstance(value, str):  # drivers that return text (SQLite does not get here: see query.py)
        value = dt.datetime.fromisoformat(value)
    return value
