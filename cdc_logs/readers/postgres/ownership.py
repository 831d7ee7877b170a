"""What cdc-logs owns on a Postgres server, and the checks before streaming.

The rule: cdc-logs alters or drops only what it created itself. A publication it creates carries a
marker in `COMMENT ON PUBLICATION`, written in the same transaction as `CREATE PUBLICATION` (so no
unmarked copy can exist):

  cdc-logs:owned pipeline=<name> slot=<slot>; ...        a pipeline's publication (kept; cdc-logs
                                                         adds the tables the source grows to capture)
  cdc-logs:temporary backend_pid=<pid> backend_start=<t>; ...   the publication of a `tail` without
                                                         `--slot`, dropped when that tail exits

Any other publication is the user's: used as it is, never altered, never dropped. If it does not
publish a captured table, the reader stops with CONFIG naming the `ALTER PUBLICATION` that fixes it.

A temporary publication names the session that made it (the reader's normal connection, which lives
as long as the reader). A `tail` killed with SIGKILL cannot drop its publication; the next reader to
start on the database (`drop_abandoned_publications`) drops every temporary publication whose session
is gone from pg_stat_activity, and only those. A session that cannot be seen (another role, without
pg_read_all_stats) counts as alive. Temporary slots need none of this: the server drops them with
their session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.readers.postgres import catalog, slots
from cdc_logs.readers.postgres.catalog import TableInfo
from cdc_logs.readers.postgres.connection import map_error, quote_ident, quote_literal

log = get_logger(__name__)

_STARTED = """to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _rows(conn: psycopg.Connection[Any], query: str, params: Any, doing: str) -> list[tuple[Any, ...]]:
    try:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []
    except psycopg.Error as exc:
        raise map_error(exc, doing) from exc


def owned_comment(pipeline: str, slot: str) -> str:
    return (
        f"cdc-logs:owned pipeline={pipeline} slot={slot}; created by cdc-logs, which adds the tables "
        "its source captures. Drop it with the slot when the pipeline is retired."
    )


def temporary_comment(conn: psycopg.Connection[Any]) -> str:
    """The marker naming this connection's session (its backend pid and start time)."""
    pid, started = _rows(
        conn,
        f"SELECT pid, {_STARTED} FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        None,
        "reading this session's backend",
    )[0]
    return (
        f"cdc-logs:temporary backend_pid={pid} backend_start={started}; created by cdc-logs tail, dropped "
        "when it exits, or by the next cdc-logs start once that session is gone."
    )


def create_own_publication(
    conn: psycopg.Connection[Any],
    name: str,
    tables: Sequence[str],
    *,
    all_tables: bool,
    temporary: bool,
    pipeline: str = "tail",
    slot: str = "",
) -> None:
    """CREATE PUBLICATION and its ownership marker, in one transaction."""
    comment = temporary_comment(conn) if temporary else owned_comment(pipeline, slot or name)
    try:
        with conn.transaction():
            slots.create_publication(conn, name, tables, all_tables=all_tables)
            marker = quote_literal(conn, comment)
            conn.execute(f"COMMENT ON PUBLICATION {quote_ident(conn, name)} IS {marker}")
    except psycopg.Error as exc:
        raise map_error(exc, f"marking publication {name!r} as cdc-logs's") from exc


def _session_alive(conn: psycopg.Connection[Any], pid: int, started: str) -> bool:
    rows = _rows(
        conn,
        f"SELECT backend_start IS NULL OR {_STARTED} = %s FROM pg_stat_activity WHERE pid = %s",
        (started, pid),
        "looking up the session of a temporary publication",
    )
    # No row: the session ended. NULL backend_start: not visible to this role, so assume alive.
    return bool(rows) and bool(rows[0][0])


def _comment(conn: psycopg.Connection[Any], name: str) -> str | None:
    rows = _rows(
        conn,
        "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s",
        (name,),
        f"reading the comment of publication {name!r}",
    )
    return rows[0][0] if rows else None


def _drop_if_marked(conn: psycopg.Connection[Any], name: str, comment: str) -> bool:
    """Drop `name` if it still carries `comment` (it may have been dropped or remade meanwhile)."""
    if _comment(conn, name) != comment:
        return False
    slots.drop_publication(conn, name, missing_ok=True)
    return True


def drop_abandoned_publications(conn: psycopg.Connection[Any]) -> list[str]:
    """Drop the temporary publications whose tail session is gone (a tail killed with SIGKILL);
    return their names. Publications without the temporary marker are never touched."""
    dropped: list[str] = []
    for name, comment in slots.publication_comments(conn).items():
        match = slots.TEMPORARY_MARKER.match(comment or "")
        if comment is None or match is None or _session_alive(conn, int(match["pid"]), match["start"]):
            continue
        try:
            if _drop_if_marked(conn, name, comment):
                dropped.append(name)
                log.info("removed a publication left by a cdc-logs tail that is gone", publication=name)
        except CdcError as exc:  # e.g. another role's: only its owner may drop it
            log.warning(
                "could not remove a publication left by a cdc-logs tail that is gone",
                publication=name,
                error=exc.message,
                fix=f"cdc-logs publications drop {name} --dsn URL (as its owner)",
            )
    return dropped


def drop_own_publication(conn: psycopg.Connection[Any], name: str) -> bool:
    """Drop a temporary publication this process created, if it is still the one it marked."""
    comment = _comment(conn, name)
    if comment is None or slots.owner_of(comment) != "cdc-logs tail":
        return False
    return _drop_if_marked(conn, name, comment)


def _display_ident(conn: psycopg.Connection[Any], name: str) -> str:
    """An identifier quoted only when SQL needs it, for hints a user copies."""
    return str(_rows(conn, "SELECT quote_ident(%s)", (name,), "quoting an identifier")[0][0])


def prepare_capture(
    conn: psycopg.Connection[Any],
    publication: str,
    names: Sequence[str],
    *,
    all_tables: bool,
    temporary: bool,
    pipeline: str,
    slot: str,
) -> tuple[list[TableInfo], bool]:
    """Resolve the captured tables, refuse those that cannot publish updates and deletes, and make
    sure the publication covers them; returns (tables, whether this call created the publication).

    A missing publication is created (and marked as cdc-logs's); a user's publication is used as it
    is, and refused with the fix when it lacks a table; cdc-logs's own pipeline publication gets
    the missing tables added. Postgres decodes with the catalog as it was when each change was made,
    so the publication must exist before the slot's start (the reader creates the slot after this)."""
    existing = slots.get_publication(conn, publication)
    created = False
    if all_tables:
        if existing is None:
            create_own_publication(
                conn, publication, [], all_tables=True, temporary=temporary, pipeline=pipeline, slot=slot
            )
            created = True
        elif not existing.all_tables:
            raise CdcError(
                ErrorKind.CONFIG,
                f"publication {publication!r} lists tables, but the source asks for all tables",
                "name a publication FOR ALL TABLES (`publication:` / --publication), or leave it out "
                "and cdc-logs creates its own",
            )
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
    if all_tables:
        return tables, created
    wanted = [t.sql_name for t in tables]
    if existing is None:
        create_own_publication(
            conn, publication, wanted, all_tables=False, temporary=temporary, pipeline=pipeline, slot=slot
        )
        return tables, True
    have = set(existing.tables)
    missing = [t for t in wanted if t not in have]
    if missing and not existing.all_tables:
        if existing.owner == "cdc-logs":
            slots.add_tables(conn, publication, missing)
            log.info("added tables to the pipeline's publication", publication=publication, tables=missing)
        else:
            pub_sql = _display_ident(conn, publication)
            raise CdcError(
                ErrorKind.CONFIG,
                f"publication {publication!r} does not publish {', '.join(missing)}; it is not "
                "cdc-logs's, so cdc-logs uses it as it is and will not alter it",
                f"ALTER PUBLICATION {pub_sql} ADD TABLE {', '.join(missing)}; (as its owner), or capture "
                "only the tables it publishes, or leave out the publication and cdc-logs makes its own",
            )
    absent = [op for op in ("insert", "update", "delete") if op not in existing.operations.split(",")]
    if absent:
        log.warning(
            "the publication leaves out some operations: they will not be captured",
            publication=publication,
            not_published=absent,
        )
    return tables, False
