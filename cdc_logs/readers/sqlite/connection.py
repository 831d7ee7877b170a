"""SQLite I/O helpers: opening the database for capture, table metadata, transactions.

The writers are other processes, so every connection runs in WAL mode (readers never block the writer,
the writer never blocks readers) with a busy timeout (our own short writes, trigger installs and trims,
wait for the writer's lock instead of failing). Connections are in autocommit mode (`isolation_level=None`)
so no read transaction is left open between polls: an open read transaction would stop WAL checkpoints
and make the -wal file grow without bound. Transactions are explicit, via the helpers below.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cdc_logs.errors import CdcError, ErrorKind

#: How long our own writes wait for another process's write lock.
BUSY_TIMEOUT_MS = 10_000

#: Names SQLite accepts for the rowid; the first one the table does not use as a column is taken.
_ROWID_NAMES = ("rowid", "_rowid_", "oid")


def path_from_dsn(dsn: str) -> str:
    """Accept a plain path or a SQLAlchemy-style URL (`sqlite:///rel.db`, `sqlite:////abs.db`)."""
    for prefix in ("sqlite+pysqlite:///", "sqlite:///", "file:"):
        if dsn.startswith(prefix):
            return dsn[len(prefix) :].split("?", 1)[0]
    return dsn


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (table, column, trigger name)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


class InvalidText(bytes):
    """A TEXT value that is not valid UTF-8 (SQLite stores whatever bytes it is given), kept raw."""


def lenient_text(raw: bytes) -> str | InvalidText:
    """The connection's text factory: one bad value must not fail the whole query (Python's default
    raises for the statement), so it comes back as InvalidText and the reader dead-letters its row."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidText(raw)


def invalid_columns(row: dict[str, object]) -> list[str]:
    return [name for name, value in row.items() if isinstance(value, InvalidText)]


def connect(path: str) -> sqlite3.Connection:
    """Open an existing database file for capture (never creates one: a typo must not go unnoticed)."""
    file = Path(path)
    if file.is_dir():
        raise CdcError(
            ErrorKind.CONFIG,
            f"{path!r} is a directory, not a SQLite database file",
            "point the source at the database file itself (`--dsn sqlite:///path/to/file.db`)",
        )
    if not file.is_file():
        raise CdcError(
            ErrorKind.NOT_FOUND,
            f"SQLite database file {path!r} does not exist",
            "check the path (`--dsn sqlite:///path/to/file.db`); the reader does not create databases",
        )
    try:
        # mode=rw refuses to create the file if it disappears between the check and the open.
        conn = sqlite3.connect(
            f"{file.resolve().as_uri()}?mode=rw",
            uri=True,
            isolation_level=None,
            # The pipeline opens the reader in one thread and streams it in another; the reader makes
            # sure only one thread uses the connection at a time.
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.text_factory = lenient_text
        mode = _enable_wal(conn)
    except sqlite3.Error as exc:
        raise CdcError(
            ErrorKind.CONNECTION,
            f"cannot open SQLite database {path!r}: {exc}",
            "check the file's permissions (the reader writes its change table into it)",
        ) from exc
    if str(mode).lower() != "wal":
        conn.close()
        raise CdcError(
            ErrorKind.UNSUPPORTED,
            f"SQLite database {path!r} cannot use WAL mode (journal_mode is {mode})",
            "use a database on a local file system (WAL needs shared memory; not :memory: or network shares)",
        )
    return conn


def _enable_wal(conn: sqlite3.Connection) -> str:
    """Switch the database to WAL (persistent: done once per file), waiting out busy writers.

    The switch needs a moment with no open transaction and does not go through the busy handler,
    so retry until the busy timeout instead of failing next to an active writer.
    """
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while mode.lower() != "wal":
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    return mode


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Take the write lock up front (IMMEDIATE), so a check-then-write cannot race another writer."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass(frozen=True, slots=True)
class TableInfo:
    """What the triggers and the converter need to know about one captured table."""

    name: str  # as stored in sqlite_master (SQLite names are case-insensitive)
    columns: tuple[str, ...]
    types: tuple[str, ...]  # declared types, for the fingerprint only
    key: tuple[str, ...]  # primary-key columns in key order; empty = keyed by rowid
    rowid: str | None  # how to address the rowid when `key` is empty (None: no rowid reachable)


def normalize_table(name: str) -> str:
    """`main.t` and `t` name the same table (attached databases are not captured)."""
    schema, dot, table = name.partition(".")
    return table if dot and schema.lower() == "main" else name


def table_info(conn: sqlite3.Connection, table: str, path: str) -> TableInfo:
    """Read a table's columns and primary key (PRAGMA table_info); NOT_FOUND if it does not exist."""
    row = conn.execute(
        "SELECT name, type FROM sqlite_master WHERE name = ? COLLATE NOCASE AND type IN ('table', 'view')",
        (table,),
    ).fetchone()
    if row is None:
        raise CdcError(
            ErrorKind.NOT_FOUND,
            f"table {table!r} does not exist in SQLite database {path!r}",
            "create the table first, or fix the name passed with `--table` / `tables:`",
        )
    name, kind = row
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0] or ""
    if kind != "table" or sql.upper().startswith("CREATE VIRTUAL"):
        raise CdcError(
            ErrorKind.UNSUPPORTED,
            f"{name!r} in {path!r} is a {'virtual table' if kind == 'table' else kind}: "
            "SQLite cannot put AFTER triggers on it",
            "capture the underlying table instead",
        )
    cols = conn.execute(f"PRAGMA table_info({quote_ident(name)})").fetchall()
    # Each row: (cid, name, type, notnull, dflt_value, pk); pk is the 1-based position in the key.
    columns = tuple(c[1] for c in cols)
    key = tuple(c[1] for c in sorted((c for c in cols if c[5]), key=lambda c: c[5]))
    lowered = {c.lower() for c in columns}
    rowid = next((r for r in _ROWID_NAMES if r not in lowered), None)
    return TableInfo(name=name, columns=columns, types=tuple(c[2] for c in cols), key=key, rowid=rowid)


def schema_version(conn: sqlite3.Connection) -> int:
    """Bumped by SQLite on every schema change, by any process: a cheap 'did DDL happen' check."""
    return int(conn.execute("PRAGMA schema_version").fetchone()[0])
