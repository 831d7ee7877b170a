"""SQLAlchemy I/O for the polling reader: engine, server identity, database clock, error mapping.

Errors are mapped to CdcError kinds once, here: a database that cannot be reached is CONNECTION
(the pipeline retries with backoff); a bad URL or a missing driver is CONFIG; a query the database
rejects while the connection works is CONFIG too (a wrong column or table name will not fix itself).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from cdc_logs.dsn import sqlalchemy_url
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact
from cdc_logs.pg_conninfo import libpq_option, option_message
from cdc_logs.readers.sqlite.connection import lenient_text
from cdc_logs.sinks.sql_apply.urls import driver_problem, normalize_url

_URL_FORM = "dialect+driver://user:password@host:port/database, e.g. sqlite:///app.db"
# Driver errors that mean the login was refused (not that the server is away): psycopg, PyMySQL.
_AUTH_TEXT = ("password authentication failed", "no password supplied", "Access denied for user")
_AUTH_CODES = (1044, 1045, 1698)  # MySQL/MariaDB: access denied (database, user, socket auth)


def url_problem(url: str) -> str | None:
    """Why `url` is not a SQLAlchemy URL (without repeating it: it holds the password), or None."""
    try:
        parsed = sa.make_url(url)
    except sa_exc.ArgumentError:
        return f"not a SQLAlchemy database URL; write it as {_URL_FORM}"
    except ValueError:  # SQLAlchemy converts the port with int()
        return "the URL's port must be a number from 1 to 65535"
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        return "the URL's port must be a number from 1 to 65535"
    return None


def parse_url(url: str) -> sa.URL:
    """The SQLAlchemy URL; one it cannot parse is a CONFIG error naming the part at fault, not quoting it."""
    problem = url_problem(url)
    if problem is not None:
        raise CdcError(ErrorKind.CONFIG, problem, f"write the poll source's URL as {_URL_FORM}")
    # Plain postgresql:// and mysql:// / mariadb:// get the drivers cdc-logs installs (psycopg 3,
    # PyMySQL), as the SQL destination's do: SQLAlchemy's defaults (psycopg2, MySQLdb) are not installed.
    return cast(sa.URL, sqlalchemy_url(normalize_url(url), "poll source's url"))


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


def create_engine(url: sa.URL, options: Mapping[str, Any] | None = None) -> Engine:
    """The engine of a poll source; `options`: connection_pool's pool settings (cdc_logs/pool.py)."""
    try:
        # pre_ping: a pooled connection dropped by the server is replaced instead of failing a poll.
        engine = sa.create_engine(url, pool_pre_ping=True, **(options or {}))
    except sa_exc.NoSuchModuleError as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            f"no SQLAlchemy dialect for {url.drivername!r}",
            "check the URL's scheme; install the driver extra (e.g. pip install 'cdc-logs[pg]')",
        ) from exc
    except ImportError as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            driver_problem(url.render_as_string(hide_password=True))
            or f"the database driver for {url.drivername!r} is not installed ({exc})",
            "install that driver into cdc-logs' environment, or use a URL whose driver is installed",
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
    """Map a SQLAlchemy error to a CdcError; connection trouble is retryable, the rest is not. A login
    the database refuses is AUTH (an operator fixes it), an option value the driver refuses CONFIG."""
    orig = getattr(exc, "orig", None)
    text = str(orig or exc)
    option = libpq_option(text) if "psycopg" in type(orig).__module__ else None
    if option is not None:  # libpq refused an option of the URL's query before connecting
        return CdcError(
            ErrorKind.CONFIG,
            option_message(option).replace("Postgres DSN's", "poll source URL's"),
            "fix the URL's query parameters (?sslmode=...)",
        )
    code = orig.args[0] if orig is not None and orig.args and isinstance(orig.args[0], int) else None
    if any(t in text for t in _AUTH_TEXT) or code in _AUTH_CODES:
        detail = text.strip().splitlines()[-1].strip() if text.strip() else type(exc).__name__
        return CdcError(
            ErrorKind.AUTH,
            f"{what} ({engine.url.render_as_string(hide_password=True)}): {detail}",
            "check the user and password in the poll source's URL",
        )
    if kind is None:
        transient = isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
        kind = (
            ErrorKind.CONNECTION
            if transient
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError)
            else ErrorKind.CONFIG
        )
    detail = redact(str(getattr(exc, "orig", None) or exc).splitlines()[0])
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
