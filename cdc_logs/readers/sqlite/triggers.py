"""The capture triggers: DDL, (re)installation when a table's columns change, and removal.

For each captured table three AFTER triggers (INSERT, UPDATE, DELETE) append one row per changed row
to `_cdc_changes`, inside the writer's own transaction, so a change is visible to the reader exactly
when the writer commits it, and in commit order.

Rows are recorded as JSON objects built with json_object over the table's columns. json_object
cannot carry everything losslessly, so two column types are written as tagged arrays (a row value
is otherwise never an array: text that looks like JSON is still written as a JSON string):
  BLOB -> ["x", "<hex>"]    json_object refuses blobs
  REAL -> ["f", "<text>"]   json_object prints 15 significant digits; printf('%!.18g') round-trips
                            (and prints the infinities as "Inf" / "-Inf")
  TEXT -> text || ''        a value a JSON function produced (`INSERT ... VALUES (json('{}'))`) still
                            carries SQLite's JSON subtype in NEW, and json_object would embed it as
                            JSON instead of a string: the concatenation drops the subtype
`convert.decode_row` turns them back into bytes and float. Tables without a primary key also record
the rowid (member `__cdc_rowid`), which becomes the event key.

Each install is recorded in `_cdc_state` with a fingerprint of the column list: when it differs (an
ALTER TABLE ADD/RENAME COLUMN), the triggers are dropped and recreated so later events carry the new
columns. Changes written between the DDL and the reinstall carry the old column list.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.readers.sqlite import state
from cdc_logs.readers.sqlite.connection import (
    TableInfo,
    connect,
    normalize_table,
    path_from_dsn,
    quote_ident,
    quote_literal,
    table_info,
    write_transaction,
)

log = get_logger(__name__)

#: Bump when the generated trigger SQL changes: existing installs are then replaced on next start.
TRIGGER_VERSION = 2  # 2: TEXT drops a JSON subtype
#: Member under which rowid-keyed tables record their rowid.
ROWID_MEMBER = "__cdc_rowid"
#: SQLite functions take at most 127 arguments by default; json_object takes two per column.
_PAIRS_PER_CALL = 60
#: ms since the epoch; julianday('now') is fixed for the whole statement, so all rows of one
#: statement share a timestamp. (unixepoch('subsec') needs SQLite 3.42.)
_NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"

_SUFFIX = {"c": "ins", "u": "upd", "d": "del"}
_EVENT = {"c": "INSERT", "u": "UPDATE", "d": "DELETE"}


def trigger_names(table: str) -> list[str]:
    return [f"_cdc_{table}_{suffix}" for suffix in _SUFFIX.values()]


def fingerprint(info: TableInfo) -> str:
    """Identifies the installed trigger SQL: changes whenever the columns, key or trigger code change."""
    text = repr((TRIGGER_VERSION, info.columns, info.types, info.key, info.rowid))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _value(ref: str) -> str:
    return (
        f"CASE typeof({ref}) WHEN 'real' THEN json_array('f', printf('%!.18g', {ref}))"
        f" WHEN 'blob' THEN json_array('x', hex({ref})) WHEN 'text' THEN {ref} || '' ELSE {ref} END"
    )


def row_json(info: TableInfo, prefix: str) -> str:
    """SQL expression building the JSON object of NEW or OLD (prefix)."""
    pairs = [(col, _value(f"{prefix}.{quote_ident(col)}")) for col in info.columns]
    if not info.key and info.rowid:
        pairs.append((ROWID_MEMBER, f"{prefix}.{info.rowid}"))
    first, rest = pairs[:_PAIRS_PER_CALL], pairs[_PAIRS_PER_CALL:]
    expr = "json_object(" + ", ".join(f"{quote_literal(c)}, {v}" for c, v in first) + ")"
    # Wide tables: add the remaining members with json_insert (json_patch would drop NULL members).
    for start in range(0, len(rest), _PAIRS_PER_CALL):
        chunk = rest[start : start + _PAIRS_PER_CALL]
        if any('"' in c for c, _ in chunk):
            raise CdcError(
                ErrorKind.UNSUPPORTED,
                f"table {info.name!r}: column names containing '\"' are supported only in the first "
                f"{_PAIRS_PER_CALL} columns",
                "rename the column",
            )
        members = ", ".join(quote_literal('$."' + c + '"') + ", " + v for c, v in chunk)
        expr = f"json_insert({expr}, {members})"
    return expr


def trigger_sql(info: TableInfo) -> list[str]:
    """CREATE TRIGGER statements for one table."""
    out = []
    for op, name in zip(_SUFFIX, trigger_names(info.name), strict=True):
        before = row_json(info, "OLD") if op in ("u", "d") else "NULL"
        after = row_json(info, "NEW") if op in ("c", "u") else "NULL"
        out.append(
            f"CREATE TRIGGER {quote_ident(name)} AFTER {_EVENT[op]} ON {quote_ident(info.name)}"
            f" FOR EACH ROW BEGIN INSERT INTO {state.CHANGES}(tbl, op, before, after, ts_ms)"
            f" VALUES ({quote_literal(info.name)}, '{op}', {before}, {after}, {_NOW_MS}); END"
        )
    return out


def installed_count(conn: sqlite3.Connection, table: str) -> int:
    """How many of `table`'s capture triggers exist (all of them: len(trigger_names(table)))."""
    names = trigger_names(table)
    marks = ",".join("?" * len(names))
    found = conn.execute(
        f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})", names
    ).fetchone()[0]
    return int(found)


def _up_to_date(conn: sqlite3.Connection, info: TableInfo) -> bool:
    if state.table_fingerprint(conn, info.name) != fingerprint(info):
        return False
    return installed_count(conn, info.name) == len(trigger_names(info.name))


def _drop(conn: sqlite3.Connection, table: str) -> None:
    for name in trigger_names(table):
        conn.execute(f"DROP TRIGGER IF EXISTS {quote_ident(name)}")


def ensure_triggers(conn: sqlite3.Connection, table: str, path: str) -> TableInfo:
    """Install the triggers on `table`, or reinstall them if its columns changed; return its info."""
    info = table_info(conn, table, path)
    if _up_to_date(conn, info):
        return info
    with write_transaction(conn):
        # Re-read under the write lock: the table may have changed again, or another reader of the
        # same database may have just done this.
        info = table_info(conn, table, path)
        if _up_to_date(conn, info):
            return info
        previous = state.table_fingerprint(conn, info.name)
        _drop(conn, info.name)
        for sql in trigger_sql(info):
            conn.execute(sql)
        state.set_table_fingerprint(conn, info.name, fingerprint(info))
    if previous is None:
        log.info("sqlite capture triggers installed", table=info.name, columns=list(info.columns))
    else:
        log.warning(
            "sqlite capture triggers reinstalled: the table's columns (or cdc-logs' trigger code) changed",
            table=info.name,
            columns=list(info.columns),
        )
    return info


@dataclass(slots=True)
class CleanupResult:
    """What `cleanup` removed."""

    tables: list[str] = field(default_factory=list)  # tables whose triggers were dropped
    dropped_change_table: bool = False  # no captured table remained: _cdc_changes/_cdc_state dropped


def cleanup(path: str, tables: list[str] | None = None) -> CleanupResult:
    """Drop the capture triggers of `tables` (all captured tables when None).

    When no captured table remains, the change and state tables are dropped too, which discards any
    changes not yet read and the database's capture identity (a later install starts a new history,
    and pipelines resuming from older offsets are refused).
    """
    result = CleanupResult()
    path = path_from_dsn(path)
    conn = connect(path)
    try:
        if not state.installed(conn):
            return result
        with write_transaction(conn):
            recorded = state.captured_tables(conn)
            by_lower = {t.lower(): t for t in recorded}
            wanted = recorded if tables is None else [normalize_table(t) for t in tables]
            for name in wanted:
                canonical = by_lower.get(name.lower(), name)
                _drop(conn, canonical)
                state.set_table_fingerprint(conn, canonical, None)
                result.tables.append(canonical)
            if not state.captured_tables(conn):
                conn.execute(f"DROP TABLE IF EXISTS {state.CHANGES}")
                conn.execute(f"DROP TABLE IF EXISTS {state.STATE}")
                result.dropped_change_table = True
    finally:
        conn.close()
    log.info(
        "sqlite capture removed",
        path=path,
        tables=result.tables,
        change_table_dropped=result.dropped_change_table,
    )
    return result
