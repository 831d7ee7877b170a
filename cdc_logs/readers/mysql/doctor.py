"""Preflight checks for a MySQL/MariaDB binlog source, each failing one with the fix that makes it pass.

Used by `cdc-logs doctor --source mariadb|mysql --dsn URL [--gtid POSITION]`. The checks read server
variables and the user's grants; nothing is changed on the server.
"""

from __future__ import annotations

import re
from typing import Any

import pymysql

from cdc_logs.errors import CdcError
from cdc_logs.position import BinlogPosition, Position
from cdc_logs.readers.checks import Check
from cdc_logs.readers.mysql.connection import MysqlSettings, classify, connect, query_one
from cdc_logs.readers.mysql.reader import mariadb_resume_problem, mysql_resume_problem

MIN_RETENTION_S = 24 * 3600


def _variables(conn: pymysql.connections.Connection) -> dict[str, str]:
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL VARIABLES")
        return {str(k).lower(): str(v) for k, v in cur.fetchall()}


def _grants(conn: pymysql.connections.Connection) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SHOW GRANTS")
        return [str(r[0]) for r in cur.fetchall()]


def global_privileges(grants: list[str]) -> set[str]:
    """Privileges granted ON *.* (upper case); ALL PRIVILEGES expands to everything we look for."""
    found: set[str] = set()
    for grant in grants:
        match = re.match(r"GRANT (.+?) ON \*\.\* TO", grant, re.IGNORECASE)
        if match:
            found.update(p.strip().upper() for p in match.group(1).split(","))
    if "ALL PRIVILEGES" in found or "ALL" in found:
        found |= {"SELECT", "REPLICATION SLAVE", "REPLICATION CLIENT", "BINLOG MONITOR", "RELOAD"}
    return found


def _setting(variables: dict[str, str], name: str, want: str, fix: str) -> Check:
    value = variables.get(name)
    ok = value is not None and value.upper() == want
    detail = f"{name} = {value}" if value is not None else f"{name} is not a variable of this server"
    return Check(name, ok, detail, None if ok else fix)


def retention_seconds(variables: dict[str, str]) -> float:
    """Binlog retention in seconds; 0 means binlogs are never purged automatically."""
    seconds = float(variables.get("binlog_expire_logs_seconds") or 0)
    if seconds == 0:
        seconds = float(variables.get("expire_logs_days") or 0) * 86400
    return seconds


def check_source(cfg: Any, stored: Position | None = None) -> list[Check]:
    """The checks for a configured `mariadb`/`mysql` source, and whether its stored GTID can resume;
    with `capture: poll | auto`, the polling checks too (readers/capture.py)."""
    from cdc_logs.readers.mysql.connection import settings_of

    gtid = stored.gtid if isinstance(stored, BinlogPosition) else None
    settings = settings_of(cfg)

    def log_checks() -> list[Check]:
        checks = run_checks(settings, cfg.type, gtid)
        signal = getattr(cfg, "signal_data_collection", None)
        if signal and not (checks and checks[0].name == "connect" and not checks[0].ok):
            from cdc_logs.readers.mysql.incremental import signal_checks
            from cdc_logs.readers.mysql.reader import parse_table

            checks.extend(signal_checks(settings, parse_table(signal, settings.database)))
        return checks

    if getattr(cfg, "capture", "log") == "log":
        return log_checks()
    from cdc_logs.readers.capture import capture_checks, polled_tables
    from cdc_logs.readers.polling.doctor import run_checks as poll_checks

    tables = polled_tables(cfg.tables, cfg.poll)
    return capture_checks(
        cfg.capture,
        log_checks,
        lambda: poll_checks(poll_url(settings), tables),
        tables,
        LOG_NEEDS,
    )


#: The doctor checks binlog capture cannot do without (`capture: auto` polls when one fails).
LOG_NEEDS = frozenset(
    {
        "connect",
        "log_bin",
        "binlog_format",
        "binlog_row_image",
        "binlog_row_metadata",
        "server_id",
        "privileges",
    }
)


def poll_url(settings: MysqlSettings) -> str:
    """The settings as the SQLAlchemy URL `capture: poll` polls through (password included)."""
    from sqlalchemy.engine import URL

    return URL.create(
        "mysql+pymysql",
        username=settings.user,
        password=settings.password or None,
        host=settings.host,
        port=settings.port,
        database=settings.database,
    ).render_as_string(hide_password=False)


def run_checks(settings: MysqlSettings, flavor: str, gtid: str | None = None) -> list[Check]:
    """Every check, in order. A failed connection is one failed check (nothing else can run)."""
    try:
        conn = connect(settings)
    except CdcError as exc:
        return [Check("connect", False, exc.message, exc.hint)]
    try:
        return _checks(conn, settings, flavor, gtid)
    except pymysql.MySQLError as exc:
        error = classify(exc, "running the checks")
        return [Check("queries", False, error.message, error.hint)]
    finally:
        conn.close()


def _checks(conn: Any, settings: MysqlSettings, flavor: str, gtid: str | None) -> list[Check]:
    cnf = f"readers/{flavor}/cdc.cnf"
    variables = _variables(conn)
    version = variables.get("version", "?")
    mariadb = "mariadb" in version.lower()
    checks = [Check("connect", True, f"{settings.describe()}: {version}")]
    actual = "mariadb" if mariadb else "mysql"
    checks.append(
        Check(
            "flavor",
            actual == flavor,
            f"the server is {actual}",
            None if actual == flavor else f"use --source {actual} (type: {actual} in the config)",
        )
    )
    checks.append(_setting(variables, "log_bin", "ON", f"set log_bin in the server config ({cnf}); restart"))
    checks.append(
        _setting(variables, "binlog_format", "ROW", "SET GLOBAL binlog_format = 'ROW' and in " + cnf)
    )
    checks.append(
        _setting(variables, "binlog_row_image", "FULL", "SET GLOBAL binlog_row_image = 'FULL' and in " + cnf)
    )
    checks.append(
        _setting(
            variables,
            "binlog_row_metadata",
            "FULL",
            "SET GLOBAL binlog_row_metadata = 'FULL' and in " + cnf + " (column names come from it)",
        )
    )
    if mariadb:
        checks.append(
            _setting(variables, "gtid_strict_mode", "ON", "SET GLOBAL gtid_strict_mode = 1 and in " + cnf)
        )
    else:
        checks.append(
            _setting(variables, "gtid_mode", "ON", f"gtid_mode = ON, enforce_gtid_consistency = ON ({cnf})")
        )
    server_id = variables.get("server_id", "0")
    checks.append(
        Check(
            "server_id",
            server_id not in ("0", ""),
            f"server server_id = {server_id}",
            None if server_id not in ("0", "") else f"set server_id to a non-zero value ({cnf})",
        )
    )
    retention = retention_seconds(variables)
    ok = retention == 0 or retention >= MIN_RETENTION_S
    detail = (
        "binlogs are never purged automatically" if retention == 0 else f"binlogs kept {retention / 3600:g} h"
    )
    fix = None if ok else "keep binlogs at least a day: SET GLOBAL binlog_expire_logs_seconds = 604800"
    checks.append(Check("binlog retention", ok, detail, fix))
    if gtid is not None:
        checks.append(_position_check(conn, mariadb, gtid))
    checks.append(_privileges(_grants(conn), mariadb))
    return checks


def _position_check(conn: Any, mariadb: bool, gtid: str) -> Check:
    """Is a stored position still in the binlog (has the pipeline lagged past the retention)?"""
    try:
        if mariadb:
            (state,) = query_one(conn, "SELECT @@gtid_binlog_state")
            problem = mariadb_resume_problem(gtid, str(state or ""))
        else:
            executed, purged = query_one(conn, "SELECT @@global.gtid_executed, @@global.gtid_purged")
            problem = mysql_resume_problem(gtid, str(executed or ""), str(purged or ""))
    except CdcError as exc:
        return Check("stored position", False, exc.message, exc.hint)
    if problem:
        return Check(
            "stored position",
            False,
            problem,
            "reset the offsets and re-snapshot: `cdc-logs offsets reset -c ...`",
        )
    return Check("stored position", True, f"{gtid} can be resumed")


def _privileges(grants: list[str], mariadb: bool) -> Check:
    have = global_privileges(grants)
    client = {"REPLICATION CLIENT", "BINLOG MONITOR"}  # MariaDB 10.5+ renamed it BINLOG MONITOR
    flavor = "mariadb" if mariadb else "mysql"
    missing = [p for p in ("REPLICATION SLAVE", "SELECT") if p not in have]
    if not have & client:
        missing.append("BINLOG MONITOR" if mariadb else "REPLICATION CLIENT")
    # SELECT on the captured databases only is enough (the snapshot reads just those tables).
    per_db = [g for g in grants if re.search(r"\b(SELECT|ALL PRIVILEGES)\b.* ON `[^`]+`\.", g)]
    if missing == ["SELECT"] and per_db:
        return Check("privileges", True, "REPLICATION SLAVE and CLIENT on *.*; SELECT on some databases only")
    if not missing:
        return Check("privileges", True, "REPLICATION SLAVE, REPLICATION CLIENT and SELECT on *.*")
    return Check(
        "privileges",
        False,
        f"missing on *.*: {', '.join(missing)}",
        f"GRANT {', '.join(missing)} ON *.* TO the CDC user (see readers/{flavor}/setup.sql)",
    )
