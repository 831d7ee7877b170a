"""Replication slots and publications: inspect, create, drop, advance; the checks before streaming.

All on a normal connection (SQL functions), so the CLI (`cdc-logs slots ...`, `publications ...`)
and the reader share them. A slot pins WAL until it is dropped: `lag_bytes` (WAL written since the
slot's confirmed_flush_lsn) and `wal_status` show how much, and an invalidated slot (`lost`, after
max_slot_wal_keep_size) can never be read again: the reader stops with SLOT_LOST and the recovery
commands in the hint.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import format_lsn
from cdc_logs.readers.postgres import catalog
from cdc_logs.readers.postgres.catalog import TableInfo
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


@dataclass(frozen=True, slots=True)
class PublicationInfo:
    name: str
    all_tables: bool
    operations: str
    tables: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tables": list(self.tables)}


def list_publications(conn: psycopg.Connection[Any]) -> list[PublicationInfo]:
    rows = _exec(
        conn,
        "SELECT p.pubname, p.puballtables, concat_ws(',', CASE WHEN pubinsert THEN 'insert' END, "
        "CASE WHEN pubupdate THEN 'update' END, CASE WHEN pubdelete THEN 'delete' END, "
        "CASE WHEN pubtruncate THEN 'truncate' END), "
        "coalesce((SELECT array_agg(format('%I.%I', t.schemaname, t.tablename) ORDER BY 1) "
        "FROM pg_publication_tables t WHERE t.pubname = p.pubname), '{}') "
        "FROM pg_publication p ORDER BY p.pubname",
        None,  # no parameters: the % of format() is literal
        "listing publications",
    )
    return [PublicationInfo(str(r[0]), bool(r[1]), str(r[2]), tuple(r[3])) for r in rows]


def get_publication(conn: psycopg.Connection[Any], name: str) -> PublicationInfo | None:
    return next((p for p in list_publications(conn) if p.name == name), None)


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


def ensure_publication(
    conn: psycopg.Connection[Any], name: str, tables: Sequence[str], *, all_tables: bool
) -> PublicationInfo:
    """Create the publication if missing; add captured tables it lacks (a table list grew)."""
    pub = get_publication(conn, name)
    if pub is None:
        create_publication(conn, name, tables, all_tables=all_tables)
    elif not pub.all_tables:
        if all_tables:
            raise CdcError(
                ErrorKind.CONFIG,
                f"publication {name!r} lists tables, but the source asks for all tables",
                f"drop it (`cdc-logs publications drop {name} --dsn URL`) or name another `publication:`",
            )
        have = set(pub.tables)
        missing = [t for t in tables if t not in have]
        if missing:
            add_tables(conn, name, missing)
    info = get_publication(conn, name)
    assert info is not None
    return info


def prepare_capture(
    conn: psycopg.Connection[Any], publication: str, names: Sequence[str], *, all_tables: bool, fresh: bool
) -> tuple[list[TableInfo], bool]:
    """Resolve the captured tables, refuse those that cannot publish updates and deletes, and make
    sure the publication exists and covers them; returns (tables, whether the publication was created).

    Postgres decodes with the catalog as it was when each change was made, so the publication must
    exist before the slot's start (the reader creates the slot after this)."""
    created = False
    if all_tables:
        if get_publication(conn, publication) is None:
            create_publication(conn, publication, [], all_tables=True)
            created = True
        names = catalog.publication_tables(conn, publication)
    tables = catalog.resolve_tables(conn, names)
    for table in tables:
        problem = table.identity_problem()
        fix = f"ALTER TABLE {table.sql_name} REPLICA IDENTITY FULL"
        if problem and all_tables:
            # FOR ALL TABLES publishes it anyway: refusing to start would not help the application.
            log.warning(
                "table cannot publish updates and deletes", table=table.qualified, problem=problem, fix=fix
            )
        elif problem:
            raise CdcError(
                ErrorKind.CONFIG,
                f"{table.qualified}: {problem} (publishing it would make the application's "
                "UPDATE and DELETE statements fail)",
                f"{fix} (or add a primary key)",
            )
    if not all_tables:
        if fresh:
            drop_publication(conn, publication, missing_ok=True)
        created = get_publication(conn, publication) is None
        ensure_publication(conn, publication, [t.sql_name for t in tables], all_tables=False)
    return tables, created
