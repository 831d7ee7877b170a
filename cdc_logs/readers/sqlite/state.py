"""The capture bookkeeping kept inside the captured database: change table, identity, consumers, trims.

Two tables, created on first use:

  _cdc_changes(id INTEGER PRIMARY KEY AUTOINCREMENT, tbl, op, before, after, ts_ms)
      one row per captured row change, written by the triggers in the writer's own transaction.
      AUTOINCREMENT (not plain rowid) so an id is never reused after a trim: a position stays unique.
  _cdc_state(kind, name, value, updated_ms)
      kind 'meta'     : server_id (random, once per database file), trimmed_through (highest trimmed id)
      kind 'table'    : one row per captured table, value = fingerprint of the installed triggers
      kind 'consumer' : one row per consumer, value = the last change id it has made durable

Rows are trimmed up to the lowest id every registered consumer has committed, so several pipelines
can read the same database as long as each uses its own consumer name. A consumer that never comes
back pins the change table (as an abandoned replication slot pins WAL): `forget_consumer` drops it.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from cdc_logs.envelope import now_ms
from cdc_logs.readers.sqlite.connection import write_transaction

CHANGES = "_cdc_changes"
STATE = "_cdc_state"

_DDL = (
    f"CREATE TABLE IF NOT EXISTS {CHANGES} ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, op TEXT NOT NULL,"
    " before TEXT, after TEXT, ts_ms INTEGER NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {STATE} ("
    " kind TEXT NOT NULL, name TEXT NOT NULL, value, updated_ms INTEGER NOT NULL,"
    " PRIMARY KEY (kind, name))",
)


def _get(conn: sqlite3.Connection, kind: str, name: str) -> Any:
    row = conn.execute(f"SELECT value FROM {STATE} WHERE kind = ? AND name = ?", (kind, name)).fetchone()
    return None if row is None else row[0]


def _put(conn: sqlite3.Connection, kind: str, name: str, value: object) -> None:
    conn.execute(
        f"INSERT INTO {STATE}(kind, name, value, updated_ms) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(kind, name) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
        (kind, name, value, now_ms()),
    )


def installed(conn: sqlite3.Connection) -> bool:
    """Whether the change and state tables exist."""
    found = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)", (CHANGES, STATE)
    ).fetchone()[0]
    return int(found) == 2


def ensure_schema(conn: sqlite3.Connection) -> str:
    """Create the bookkeeping tables if needed and return the database's capture identity."""
    if installed(conn):
        server = _get(conn, "meta", "server_id")
        if server is not None:
            return str(server)
    with write_transaction(conn):
        for ddl in _DDL:
            conn.execute(ddl)
        server = _get(conn, "meta", "server_id")
        if server is None:
            # Random, not derived from the path: a database deleted and recreated at the same path is
            # a different change history, and resuming into it must be refused.
            server = f"sqlite:{uuid.uuid4().hex}"
            _put(conn, "meta", "server_id", server)
            _put(conn, "meta", "trimmed_through", 0)
    return str(server)


def server_id(conn: sqlite3.Connection) -> str | None:
    """The database's capture identity, or None before the first run (read-only)."""
    value = _get(conn, "meta", "server_id") if installed(conn) else None
    return None if value is None else str(value)


def last_change_id(conn: sqlite3.Connection) -> int:
    """The highest change id ever committed (still valid after the rows were trimmed)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (CHANGES,)).fetchone()
    return int(row[0]) if row else 0


def trimmed_through(conn: sqlite3.Connection) -> int:
    """Every change id at or below this one has been deleted."""
    return int(_get(conn, "meta", "trimmed_through") or 0)


def table_fingerprint(conn: sqlite3.Connection, table: str) -> str | None:
    value = _get(conn, "table", table)
    return None if value is None else str(value)


def set_table_fingerprint(conn: sqlite3.Connection, table: str, fingerprint: str | None) -> None:
    """Record (or with None, forget) the triggers installed on `table`; call inside a write transaction."""
    if fingerprint is None:
        conn.execute(f"DELETE FROM {STATE} WHERE kind = 'table' AND name = ?", (table,))
    else:
        _put(conn, "table", table, fingerprint)


def captured_tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute(f"SELECT name FROM {STATE} WHERE kind = 'table' ORDER BY name")]


def consumer_known(conn: sqlite3.Connection, consumer: str) -> bool:
    """Whether `consumer` was registered before (an earlier run or attempt pinned changes for it)."""
    return _get(conn, "consumer", consumer) is not None


def pin_consumer(conn: sqlite3.Connection, consumer: str) -> int:
    """Register `consumer` at the current last change id unless it is registered already.

    Returns the consumer's change id: where it stopped last time (its changes were kept meanwhile,
    like a replication slot's), or now for a new consumer. Called when a reader opens, so changes
    made between open and the first read are kept even if another consumer trims meanwhile.
    """
    with write_transaction(conn):
        conn.execute(
            f"INSERT OR IGNORE INTO {STATE}(kind, name, value, updated_ms) VALUES ('consumer', ?, ?, ?)",
            (consumer, last_change_id(conn), now_ms()),
        )
        return int(_get(conn, "consumer", consumer))


def register_consumer(conn: sqlite3.Connection, consumer: str, last_id: int) -> bool:
    """Pin the change table after `last_id` for `consumer` (its resume point) before reading.

    Returns False, registering nothing, when changes after `last_id` were already trimmed. The check
    and the registration share one write transaction, so no trim can slip in between.
    """
    with write_transaction(conn):
        if trimmed_through(conn) > last_id:
            return False
        _put(conn, "consumer", consumer, last_id)
        return True


def forget_consumer(conn: sqlite3.Connection, consumer: str) -> int:
    """Stop retaining changes for `consumer` (a temporary reader closing, a deleted pipeline).

    Trims what the remaining consumers do not need (everything, when none remain); returns the number
    of change rows deleted.
    """
    with write_transaction(conn):
        conn.execute(f"DELETE FROM {STATE} WHERE kind = 'consumer' AND name = ?", (consumer,))
        return _trim(conn)


def _trim(conn: sqlite3.Connection) -> int:
    low = conn.execute(f"SELECT min(value) FROM {STATE} WHERE kind = 'consumer'").fetchone()[0]
    upto = last_change_id(conn) if low is None else int(low)
    if upto <= trimmed_through(conn):
        return 0
    deleted = conn.execute(f"DELETE FROM {CHANGES} WHERE id <= ?", (upto,)).rowcount
    _put(conn, "meta", "trimmed_through", upto)
    return int(deleted)


def commit_consumer(conn: sqlite3.Connection, consumer: str, last_id: int) -> int:
    """Record that `consumer` made everything up to `last_id` durable; trim what no consumer needs.

    Returns the number of change rows deleted.
    """
    with write_transaction(conn):
        current = _get(conn, "consumer", consumer)
        if current is None or int(current) < last_id:  # never move a consumer backwards here
            _put(conn, "consumer", consumer, last_id)
        return _trim(conn)
