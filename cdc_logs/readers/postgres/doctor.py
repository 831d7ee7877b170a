"""Preflight checks for a Postgres logical replication source, each failing one with its fix.

Used by `cdc-logs doctor --source pg --dsn URL [--table schema.t ...]`. Read-only: settings, the
role's privileges, slot and sender headroom, invalidated slots, and the replica identity of the
captured tables (without --table: every table of every publication).
"""

from __future__ import annotations

from typing import Any

import psycopg

from cdc_logs.errors import CdcError
from cdc_logs.position import Position
from cdc_logs.readers.checks import Check, warn
from cdc_logs.readers.postgres import catalog, slots
from cdc_logs.readers.postgres.connection import ReplicationStream, connect, map_error, protocol_version


def check_source(cfg: Any, stored: Position | None = None) -> list[Check]:
    """The checks for a configured `pg` source (its slot's own state says where it resumes, the signal
    table's shape and publication when one is configured); with `capture: poll | auto`, the polling
    checks too (readers/capture.py)."""

    def log_checks() -> list[Check]:
        checks = run_checks(cfg.dsn.get_secret_value(), cfg.tables or None, cfg.slot)
        signal = getattr(cfg, "signal_data_collection", None)
        if signal and checks and checks[0].ok:
            from cdc_logs.readers.postgres.incremental import signal_checks

            publication = cfg.publication
            if publication is None and cfg.slot:  # as the reader derives it (reader.py)
                publication = cfg.slot if cfg.slot.startswith("cdc_logs_") else f"cdc_logs_{cfg.slot}"
            conn = connect(cfg.dsn.get_secret_value(), application_name="cdc-logs doctor")
            try:
                checks.extend(signal_checks(conn, signal, publication))
            except psycopg.Error as exc:
                error = map_error(exc, "checking the signal table")
                checks.append(Check("signal table", False, error.message, error.hint))
            finally:
                conn.close()
        return checks

    if getattr(cfg, "capture", "log") == "log":
        return log_checks()
    from cdc_logs.readers.capture import capture_checks, polled_tables
    from cdc_logs.readers.polling.doctor import run_checks as poll_checks

    tables = polled_tables(cfg.tables, cfg.poll)
    return capture_checks(
        cfg.capture,
        log_checks,
        lambda: poll_checks(poll_url(cfg.dsn.get_secret_value()), tables),
        tables,
        LOG_NEEDS,
    )


#: The checks log capture cannot do without (`capture: auto` polls when one fails; readers/capture.py).
LOG_NEEDS = frozenset(
    {
        "connect",
        "wal_level",
        "REPLICATION privilege",
        "replication connection",
        "free replication slots",
        "free wal senders",
    }
)


def poll_url(dsn: str) -> str:
    """A libpq dsn (URL or key=value) as the SQLAlchemy URL `capture: poll` polls through."""
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy.engine import URL

    parts = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    return URL.create(
        "postgresql+psycopg",
        username=parts.pop("user", None),
        password=parts.pop("password", None),
        host=parts.pop("host", None),
        port=int(parts.pop("port")) if "port" in parts else None,
        database=parts.pop("dbname", None),
        query=parts,
    ).render_as_string(hide_password=False)


def run_checks(dsn: str, tables: list[str] | None = None, own_slot: str | None = None) -> list[Check]:
    try:
        conn = connect(dsn, application_name="cdc-logs doctor")
    except CdcError as exc:
        return [Check("connect", False, exc.message, exc.hint)]
    try:
        return [
            Check("connect", True, f"server {conn.info.server_version}"),
            *_checks(conn, dsn, tables, own_slot),
        ]
    except psycopg.Error as exc:
        error = map_error(exc, "running the checks")
        return [Check("queries", False, error.message, error.hint)]
    finally:
        conn.close()


def _one(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def _checks(
    conn: psycopg.Connection[Any], dsn: str, tables: list[str] | None, own_slot: str | None = None
) -> list[Check]:
    out: list[Check] = []
    version = int(conn.info.server_version)
    proto = protocol_version(version)
    out.append(
        Check(
            "server version",
            version >= 140000,
            f"{version // 10000}.{version % 10000}: pgoutput protocol {proto}"
            + (", large transactions streamed" if proto >= 2 else ", no streaming, no logical messages"),
            None if version >= 140000 else "Postgres 14+ streams large transactions and carries heartbeats",
        )
    )
    wal_level = _one(conn, "SHOW wal_level")
    out.append(
        Check(
            "wal_level",
            wal_level == "logical",
            f"wal_level = {wal_level}",
            None if wal_level == "logical" else "ALTER SYSTEM SET wal_level = logical; then restart Postgres",
        )
    )
    max_slots = int(_one(conn, "SHOW max_replication_slots"))
    used_slots = int(_one(conn, "SELECT count(*) FROM pg_replication_slots"))
    out.append(
        Check(
            "free replication slots",
            used_slots < max_slots,
            f"{used_slots} of max_replication_slots = {max_slots} in use",
            None
            if used_slots < max_slots
            else "raise max_replication_slots (restart), or drop unused slots: `cdc-logs slots list`",
        )
    )
    max_senders = int(_one(conn, "SHOW max_wal_senders"))
    used_senders = int(_one(conn, "SELECT count(*) FROM pg_stat_replication"))
    out.append(
        Check(
            "free wal senders",
            used_senders < max_senders,
            f"{used_senders} of max_wal_senders = {max_senders} in use",
            None if used_senders < max_senders else "raise max_wal_senders (restart)",
        )
    )
    keep = str(_one(conn, "SHOW max_slot_wal_keep_size"))
    out.append(
        Check(
            "max_slot_wal_keep_size",
            keep not in ("-1", "-1MB"),
            f"max_slot_wal_keep_size = {keep}"
            + (" (unlimited: an abandoned slot can fill the disk)" if keep in ("-1", "-1MB") else ""),
            None
            if keep not in ("-1", "-1MB")
            else "ALTER SYSTEM SET max_slot_wal_keep_size = '8GB'; SELECT pg_reload_conf();",
        )
    )
    user = _one(conn, "SELECT current_user")
    can = bool(_one(conn, "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"))
    out.append(
        Check(
            "REPLICATION privilege",
            can,
            f"role {user} " + ("may" if can else "may not") + " open replication connections",
            None if can else f"ALTER ROLE {user} REPLICATION;",
        )
    )
    out.append(_replication_login(dsn))
    out.append(_lost_slots([s.slot_name for s in slots.list_slots(conn) if s.wal_status == "lost"], own_slot))
    out.extend(_table_checks(conn, tables))
    return out


def _lost_slots(lost: list[str], own_slot: str | None) -> Check:
    """Invalidated slots on the server. Only the source's own one fails the check: another pipeline's
    lost slot retains no WAL and does not stop this one (on a shared server it is someone else's to
    drop), so it is a warning naming the cleanup."""
    if not lost:
        return Check("invalidated slots", True, "none")
    fix = " ; ".join(f"cdc-logs slots drop {s} --dsn URL" for s in lost)
    if own_slot is not None and own_slot in lost:
        return Check(
            "invalidated slots", False, f"invalidated, this source's own among them: {', '.join(lost)}", fix
        )
    return warn("invalidated slots", f"invalidated (not this source's): {', '.join(lost)}", fix)


def _replication_login(dsn: str) -> Check:
    try:
        repl = ReplicationStream(dsn, application_name="cdc-logs doctor")
    except CdcError as exc:
        return Check("replication connection", False, exc.message, exc.hint or _HBA_FIX)
    try:
        system = repl.identify_system()
        return Check("replication connection", True, f"system identifier {system.system_id}")
    except CdcError as exc:
        return Check("replication connection", False, exc.message, exc.hint)
    finally:
        repl.close()


_HBA_FIX = "allow it in pg_hba.conf: `host replication <user> <client address> scram-sha-256`, then reload"


def _table_checks(conn: psycopg.Connection[Any], tables: list[str] | None) -> list[Check]:
    names = list(tables or [])
    if not names:
        rows = conn.execute(
            "SELECT DISTINCT format('%I.%I', schemaname, tablename) FROM pg_publication_tables ORDER BY 1"
        ).fetchall()
        names = [str(r[0]) for r in rows]
        if not names:
            return [Check("captured tables", True, "none given and no publication yet (pass --table)")]
    out = []
    for name in names:
        try:
            info = catalog.table_info(conn, catalog.table_oid(conn, name))
        except CdcError as exc:
            out.append(Check(f"table {name}", False, exc.message, exc.hint))
            continue
        readable = bool(_one(conn, "SELECT has_table_privilege(%s, 'SELECT')", (info.oid,)))
        problem = info.identity_problem()
        identity = catalog.IDENTITY_NAMES.get(info.replica_identity, info.replica_identity)
        detail = f"replica identity {identity}, primary key ({', '.join(info.primary_key) or 'none'})"
        if problem:
            out.append(
                Check(
                    f"table {info.qualified}",
                    False,
                    problem,
                    f"ALTER TABLE {info.sql_name} REPLICA IDENTITY FULL; (or add a primary key)",
                )
            )
        elif not readable:
            out.append(
                Check(
                    f"table {info.qualified}",
                    False,
                    detail + "; no SELECT privilege (needed for the snapshot)",
                    f"GRANT SELECT ON {info.sql_name} TO <user>;",
                )
            )
        else:
            out.append(Check(f"table {info.qualified}", True, detail))
    return out
