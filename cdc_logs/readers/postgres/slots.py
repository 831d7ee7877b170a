"""Replication slots and publications: inspect, create, drop, advance.

All on a normal connection (SQL functions), so the CLI (`cdc-logs slots ...`, `publications ...`)
and the reader share them. A slot pins WAL until it is dropped: `lag_bytes` (WAL written since the
slot's confirmed_flush_lsn) and `wal_status` show how much, and an invalidated slot (`lost`, after
max_slot_wal_keep_size) can never be read again: the reader stops with SLOT_LOST and the recovery
commands in the hint. Which publications cdc-logs may alter or drop, and the checks before
streaming, are in ownership.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import format_lsn
from cdc_logs.readers.postgres.connection import map_error, quote_ident

log = get_logger(__name__)

_SLOTS_QUERY = """
SELECT slot_name, plugin, slot_type, database, temporary, active, active_pid,
       restart_lsn::text, confirmed_flush_lsn::text,
       CASE WHEN confirmed_flush_lsn IS NOT NULL
            THEN (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint END,
       wal_status, safe_wal_size
FROM pg_replication_slots
"""


@dataclass(frozen=True, slots=True)
class SlotInfo:
    slot_name: str
    plugin: str | None
    slot_type: str
    database: str | None
    temporary: bool
    active: bool
    active_pid: int | None
    restart_lsn: str | None
    confirmed_flush_lsn: str | None
    lag_bytes: int | None
    wal_status: str | None
    safe_wal_size: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def confirmed_flush(self) -> int | None:
        if not self.confirmed_flush_lsn:
            return None
        hi, _, lo = self.confirmed_flush_lsn.partition("/")
        return (int(hi, 16) << 32) | int(lo, 16)


def _exec(conn: psycopg.Connection[Any], query: str, params: Any, doing: str) -> list[tuple[Any, ...]]:
    try:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []
    except psycopg.Error as exc:
        raise map_error(exc, doing) from exc


def list_slots(conn: psycopg.Connection[Any]) -> list[SlotInfo]:
    rows = _exec(conn, _SLOTS_QUERY + " ORDER BY slot_name", None, "listing replication slots")
    return [SlotInfo(*r) for r in rows]


def get_slot(conn: psycopg.Connection[Any], name: str) -> SlotInfo | None:
    rows = _exec(conn, _SLOTS_QUERY + " WHERE slot_name = %s", (name,), f"reading slot {name!r}")
    return SlotInfo(*rows[0]) if rows else None


def recreate_hint(slot: str) -> str:
    return (
        f"`cdc-logs slots drop {slot} --dsn URL`, then `cdc-logs offsets reset -c <pipeline.yaml>` and run "
        "again: a new slot and a new snapshot (changes made meanwhile cannot be recovered from the log)"
    )


def check_slot(slot: SlotInfo | None, name: str, dbname: str) -> None:
    """Refuse a slot that cannot serve this reader (lost, another plugin or database)."""
    if slot is None:
        return
    if slot.wal_status == "lost":
        raise CdcError(
            ErrorKind.SLOT_LOST,
            f"replication slot {name!r} was invalidated: the WAL it needed is gone "
            "(it fell behind by more than max_slot_wal_keep_size)",
            recreate_hint(name),
        )
    if slot.slot_type != "logical" or slot.plugin != "pgoutput":
        raise CdcError(
            ErrorKind.CONFIG,
            f"slot {name!r} is a {slot.slot_type} slot with plugin {slot.plugin!r}, "
            "not a pgoutput logical slot",
            "choose another `slot:` name, or drop this slot if nothing uses it (`cdc-logs slots drop`)",
        )
    if slot.database and slot.database != dbname:
        raise CdcError(
            ErrorKind.CONFIG,
            f"slot {name!r} belongs to database {slot.database!r}, but the DSN names {dbname!r}",
            "a logical slot is per database: use another `slot:` name for this database",
        )


def missing_slot_error(name: str) -> CdcError:
    return CdcError(
        ErrorKind.NOT_FOUND,
        f"replication slot {name!r} does not exist, but the pipeline has a committed position in it "
        "(dropped by hand, or the server was replaced)",
        f"changes since then are not in any slot: `cdc-logs slots create {name} --dsn URL`, "
        "`cdc-logs offsets reset -c <pipeline.yaml>`, then run again to take a new snapshot",
    )


def create_slot(conn: psycopg.Connection[Any], name: str) -> SlotInfo:
    if get_slot(conn, name) is not None:
        raise CdcError(ErrorKind.USAGE, f"slot {name!r} already exists", "see `cdc-logs slots inspect`")
    _exec(
        conn,
        "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
        (name,),
        f"creating replication slot {name!r}",
    )
    created = get_slot(conn, name)
    assert created is not None
    return created


def drop_slot(conn: psycopg.Connection[Any], name: str, *, force: bool = False, wait_s: float = 10.0) -> None:
    slot = get_slot(conn, name)
    if slot is None:
        raise CdcError(ErrorKind.NOT_FOUND, f"slot {name!r} does not exist", "see `cdc-logs slots list`")
    if slot.active:
        if not force:
            raise CdcError(
                ErrorKind.USAGE,
                f"slot {name!r} is in use by process {slot.active_pid}",
                "stop the consumer first, or add --force to terminate it and drop the slot",
            )
        _exec(conn, "SELECT pg_terminate_backend(%s)", (slot.active_pid,), "terminating the slot's walsender")
        deadline = time.monotonic() + wait_s
        while (current := get_slot(conn, name)) is not None and current.active:
            if time.monotonic() > deadline:
                raise CdcError(ErrorKind.TIMEOUT, f"slot {name!r} is still active after {wait_s}s", "retry")
            time.sleep(0.1)
    _exec(conn, "SELECT pg_drop_replication_slot(%s)", (name,), f"dropping replication slot {name!r}")


def advance_slot(conn: psycopg.Connection[Any], name: str, lsn: int | None = None) -> str:
    """Move the slot's confirmed position forward (to `lsn`, or to the current end of WAL).

    Everything before it is skipped for good: consumers of the slot never see those changes.
    """
    target = format_lsn(lsn) if lsn is not None else None
    rows = _exec(
        conn,
        "SELECT end_lsn::text FROM pg_replication_slot_advance("
        "%s, coalesce(%s::pg_lsn, pg_current_wal_lsn()))",
        (name, target),
        f"advancing replication slot {name!r}",
    )
    return str(rows[0][0])


# -- publications -----------------------------------------------------------------------------------


# What cdc-logs writes in COMMENT ON PUBLICATION for the publications it creates (ownership.py).
# Only a publication carrying one of these markers is ever altered or dropped by cdc-logs.
OWNED_MARKER = re.compile(r"^cdc-logs:owned pipeline=\S+ slot=\S+;")
TEMPORARY_MARKER = re.compile(r"^cdc-logs:temporary backend_pid=(?P<pid>\d+) backend_start=(?P<start>\S+);")


def owner_of(comment: str | None) -> str:
    """`cdc-logs` (a pipeline's own publication), `cdc-logs tail` (a temporary one) or `user`."""
    if comment and OWNED_MARKER.match(comment):
        return "cdc-logs"
    if comment and TEMPORARY_MARKER.match(comment):
        return "cdc-logs tail"
    return "user"


@dataclass(frozen=True, slots=True)
class PublicationInfo:
    name: str
    all_tables: bool
    operations: str
    tables: tuple[str, ...]
    comment: str | None = None

    @property
    def owner(self) -> str:
        return owner_of(self.comment)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tables": list(self.tables), "owner": self.owner}


_PUBLICATIONS_QUERY = """
SELECT pubname, puballtables,
       concat_ws(',', CASE WHEN pubinsert THEN 'insert' END, CASE WHEN pubupdate THEN 'update' END,
                 CASE WHEN pubdelete THEN 'delete' END, CASE WHEN pubtruncate THEN 'truncate' END),
       obj_description(oid, 'pg_publication')
FROM pg_publication
WHERE %(name)s::text IS NULL OR pubname = %(name)s
ORDER BY pubname
"""
_PUBLICATION_TABLES_QUERY = (
    "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_publication_tables WHERE pubname = %s ORDER BY 1"
)


def _dropped_meanwhile(exc: psycopg.Error) -> bool:
    """pg_publication_tables looks the publication up again: dropped since, it fails with
    `publication ... does not exist` or `cache lookup failed for publication`."""
    return isinstance(exc, psycopg.errors.UndefinedObject) or (
        isinstance(exc, psycopg.errors.InternalError_) and "cache lookup failed for publication" in str(exc)
    )


def _publications(conn: psycopg.Connection[Any], name: str | None) -> list[PublicationInfo]:
    """The publications (one, or all), each with its tables. Read one by one, so a publication that
    another session drops meanwhile is left out instead of failing the whole listing."""
    doing = f"reading publication {name!r}" if name else "listing publications"
    found: list[PublicationInfo] = []
    for pub, all_tables, operations, comment in _exec(conn, _PUBLICATIONS_QUERY, {"name": name}, doing):
        try:
            tables = tuple(str(r[0]) for r in conn.execute(_PUBLICATION_TABLES_QUERY, (pub,)).fetchall())
        except psycopg.Error as exc:
            if _dropped_meanwhile(exc):
                continue
            raise map_error(exc, doing) from exc
        found.append(PublicationInfo(str(pub), bool(all_tables), str(operations), tables, comment))
    return found


def list_publications(conn: psycopg.Connection[Any]) -> list[PublicationInfo]:
    return _publications(conn, None)


def get_publication(conn: psycopg.Connection[Any], name: str) -> PublicationInfo | None:
    found = _publications(conn, name)
    return found[0] if found else None


def publication_comments(conn: psycopg.Connection[Any]) -> dict[str, str | None]:
    """Every publication's name and comment: the catalog only, so concurrent drops cannot fail it."""
    rows = _exec(
        conn,
        "SELECT pubname, obj_description(oid, 'pg_publication') FROM pg_publication ORDER BY 1",
        None,
        "listing publications",
    )
    return {str(r[0]): r[1] for r in rows}


def _table_list(conn: psycopg.Connection[Any], tables: Sequence[str]) -> str:
    # Names were resolved by catalog.resolve_tables: quote each part as an identifier.
    return ", ".join(".".join(quote_ident(conn, p) for p in _split(t)) for t in tables)


def _split(qualified: str) -> list[str]:
    """`schema.table` as printed by format('%I.%I') back into its two identifiers."""
    parts, current, quoted, i = [], "", False, 0
    while i < len(qualified):
        ch = qualified[i]
        if ch == '"':
            if quoted and qualified[i + 1 : i + 2] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return parts


def create_publication(
    conn: psycopg.Connection[Any], name: str, tables: Sequence[str], *, all_tables: bool = False
) -> None:
    if all_tables:
        target = "FOR ALL TABLES"
    elif tables:
        target = "FOR TABLE " + _table_list(conn, tables)
    else:
        raise CdcError(
            ErrorKind.USAGE, "a publication needs tables or all_tables", "pass --table or --all-tables"
        )
    _exec(
        conn, f"CREATE PUBLICATION {quote_ident(conn, name)} {target}", None, f"creating publication {name!r}"
    )


def add_tables(conn: psycopg.Connection[Any], name: str, tables: Sequence[str]) -> None:
    _exec(
        conn,
        f"ALTER PUBLICATION {quote_ident(conn, name)} ADD TABLE {_table_list(conn, tables)}",
        None,
        f"adding tables to publication {name!r}",
    )


def drop_publication(conn: psycopg.Connection[Any], name: str, *, missing_ok: bool = False) -> None:
    exists = "IF EXISTS " if missing_ok else ""
    _exec(conn, f"DROP PUBLICATION {exists}{quote_ident(conn, name)}", None, f"dropping publication {name!r}")
