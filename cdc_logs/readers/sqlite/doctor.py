"""Preflight checks for a SQLite trigger-capture source, each failing one with the fix that makes it pass.

Used by `cdc-logs doctor --source sqlite --dsn PATH --table t` and `cdc-logs doctor -c pipeline.yaml`.
Read-only: the file is opened with `mode=ro`, so nothing is installed, switched to WAL or trimmed
(the first run does that). What a run needs: the file, write access to it and its directory (the
triggers, the change table and WAL's -wal/-shm files), every table, and, when resuming, the changes
after the stored position still in the change table.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from cdc_logs.errors import CdcError
from cdc_logs.position import Position, Watermark
from cdc_logs.readers.checks import Check, warn
from cdc_logs.readers.sqlite import state
from cdc_logs.readers.sqlite.connection import BUSY_TIMEOUT_MS, TableInfo, normalize_table, table_info
from cdc_logs.readers.sqlite.reader import refuse_own_tables
from cdc_logs.readers.sqlite.triggers import installed_count, trigger_names


def check_source(cfg: Any, stored: Position | None = None) -> list[Check]:
    """The checks for a configured `sqlite` source (`stored`: its committed position, if any)."""
    return run_checks(cfg.path, cfg.tables, cfg.consumer, stored)


def run_checks(
    path: str, tables: list[str], consumer: str | None = None, stored: Position | None = None
) -> list[Check]:
    file = Path(path)
    if file.is_dir():
        fix = "point the source at the database file itself"
        return [Check("database file", False, f"{path!r} is a directory, not a SQLite database file", fix)]
    if not file.is_file():
        return [
            Check(
                "database file",
                False,
                f"{path!r} does not exist",
                "check the path; the reader captures an existing database and never creates one",
            )
        ]
    try:
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        return [Check("database file", False, f"cannot open {path!r}: {exc}", "check the file's permissions")]
    try:
        return _checks(conn, file, path, tables, consumer, stored)
    except sqlite3.DatabaseError as exc:  # "file is not a database", a corrupt page, a lock held too long
        return [
            Check("database file", False, f"{path!r}: {exc}", "point the source at a SQLite database file")
        ]
    finally:
        conn.close()


def _checks(
    conn: sqlite3.Connection,
    file: Path,
    path: str,
    tables: list[str],
    consumer: str | None,
    stored: Position | None,
) -> list[Check]:
    version = conn.execute("SELECT sqlite_version()").fetchone()[0]
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    out = [Check("database file", True, f"{path} (SQLite {version}, journal_mode {mode})")]
    out.append(_write_access(file))
    installed = state.installed(conn)
    for table in tables:
        out.append(_table(conn, table, path, installed))
    if installed:
        out.append(_backlog(conn))
    if stored is not None:
        out.append(_resume(conn, stored, consumer) if installed else _never_captured(stored))
    return out


def _never_captured(stored: Position) -> Check:
    # A position is stored, yet the file has no capture tables: it is not the file the position is from.
    return Check(
        "stored position",
        False,
        f"the position was taken on {stored.server}, and this file has no capture tables (it was "
        "replaced, or cdc-logs' tables were dropped)",
        "reset this source's offsets and snapshot again: `cdc-logs offsets reset -c ...`",
    )


def _write_access(file: Path) -> Check:
    # WAL keeps two files beside the database: the directory must be writable too.
    blocked = [str(p) for p in (file, file.resolve().parent) if not os.access(p, os.W_OK)]
    if blocked:
        return Check(
            "write access",
            False,
            f"not writable by this user: {', '.join(blocked)}",
            "run as a user who may write the database file and its directory: the reader installs "
            "triggers and a change table in the file, and WAL keeps -wal/-shm files beside it",
        )
    return Check("write access", True, "the file and its directory are writable")


def _table(conn: sqlite3.Connection, table: str, path: str, installed: bool) -> Check:
    name = f"table {normalize_table(table)}"
    try:
        refuse_own_tables([table])
        info = table_info(conn, table, path)
    except CdcError as exc:
        return Check(name, False, exc.message, exc.hint)
    triggers = _trigger_state(conn, info, installed)
    if not info.key:
        return warn(
            name,
            f"{len(info.columns)} columns, no primary key: events are keyed by rowid; {triggers}",
            f"add a PRIMARY KEY to {info.name}: VACUUM may renumber rowids, and a sink keyed by "
            "them would then update the wrong rows",
        )
    return Check(name, True, f"{len(info.columns)} columns, key ({', '.join(info.key)}); {triggers}")


def _trigger_state(conn: sqlite3.Connection, info: TableInfo, installed: bool) -> str:
    names = trigger_names(info.name)
    found = installed_count(conn, info.name)
    if found == len(names) and installed:
        return "capture triggers installed"
    if found:
        return f"{found} of {len(names)} capture triggers installed (the next run reinstalls them)"
    return "no capture triggers yet (the first run installs them)"


def _backlog(conn: sqlite3.Connection) -> Check:
    last = state.last_change_id(conn)
    consumers = conn.execute(
        f"SELECT name, value FROM {state.STATE} WHERE kind = 'consumer' ORDER BY value"
    ).fetchall()
    kept = conn.execute(f"SELECT count(*) FROM {state.CHANGES}").fetchone()[0]
    if not consumers:
        return Check("change table", True, f"{kept} changes kept, no consumer registered")
    behind = ", ".join(f"{name!r} {last - int(value)} behind" for name, value in consumers)
    return Check("change table", True, f"{kept} changes kept; consumers: {behind}")


def _resume(conn: sqlite3.Connection, stored: Position, consumer: str | None) -> Check:
    """Can a run resume from the committed position (are the changes after it still kept)?"""
    server = state.server_id(conn)
    if not isinstance(stored, Watermark) or len(stored.values) != 1:
        return Check(
            "stored position",
            False,
            f"{stored.describe()} is not an SQLite change-table position",
            "reset this source's offsets: `cdc-logs offsets reset -c ...`",
        )
    if server is not None and stored.server != server:
        return Check(
            "stored position",
            False,
            f"the position was taken on {stored.server}, this file is {server} (replaced, or its "
            "capture tables were dropped)",
            "reset this source's offsets and snapshot again: `cdc-logs offsets reset -c ...`",
        )
    after = int(stored.values[0])
    trimmed = state.trimmed_through(conn)
    if trimmed > after:
        return Check(
            "stored position",
            False,
            f"changes {after + 1}..{trimmed} were trimmed (another consumer committed them"
            + (f"; is {consumer!r} registered?" if consumer else "")
            + ")",
            "reset this source's offsets and snapshot again: `cdc-logs offsets reset -c ...`",
        )
    return Check("stored position", True, f"resumes after change {after}")
