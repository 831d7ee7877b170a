"""Preflight checks for an Oracle LogMiner source, each failing one with the statement that fixes it.

Used by `cdc-logs doctor --source oracle --dsn URL [--table OWNER.T]` and `cdc-logs doctor -c
pipeline.yaml`. `gather` runs read-only queries (connection.py; a query that fails is kept as its
error, it is a verdict too); `verdicts` turns their results into checks without I/O, so that logic
is tested on recorded query results (tests/unit/test_oracle_doctor.py). Nothing is changed on the
server. Checked: ARCHIVELOG mode; minimal supplemental logging, and ALL COLUMNS (or, with a warning,
PRIMARY KEY) logging for each table; FLASHBACK on each table when a snapshot is configured; the
LogMiner privileges (LOGMINING, SELECT ANY TRANSACTION,
EXECUTE on DBMS_LOGMNR, SELECT on the V$ views it reads); the tables; an archive destination named in
the config; and a stored position (same DBID, its restart SCN still in the available redo).
"""

from __future__ import annotations

import contextlib
from typing import Any

from cdc_logs.errors import CdcError
from cdc_logs.position import OracleScn, Position
from cdc_logs.readers.checks import Check, warn

Results = dict[str, list[dict[str, Any]] | CdcError]

#: V$ views probed with a query that returns no row (V$LOGMNR_* need a LogMiner session: by grant).
PROBED_VIEWS = (
    "V$DATABASE",
    "V$LOG",
    "V$LOGFILE",
    "V$ARCHIVED_LOG",
    "V$ARCHIVE_DEST_STATUS",
    "V$TRANSACTION",
)
GRANTED_VIEWS = ("V_$LOGMNR_CONTENTS", "V_$LOGMNR_LOGS")
_DICTIONARY_ROLES = {"SELECT_CATALOG_ROLE", "DBA"}
_DICTIONARY_PRIVS = {"SELECT ANY DICTIONARY"}


def _sql_user(results: Results) -> str:
    rows = results.get("user")
    return str(rows[0]["U"]) if isinstance(rows, list) and rows else "<user>"


def gather(session: Any, tables: list[tuple[str, str]], with_dest: bool) -> Results:
    """Run the doctor's queries (I/O); every failure is kept as its CdcError."""
    q = session.try_query
    results: Results = {
        "user": q("SELECT USER AS U FROM DUAL"),
        "database": q(
            "SELECT DBID, NAME, LOG_MODE, SUPPLEMENTAL_LOG_DATA_MIN, SUPPLEMENTAL_LOG_DATA_PK, "
            "SUPPLEMENTAL_LOG_DATA_ALL FROM V$DATABASE"
        ),
        "privileges": q("SELECT PRIVILEGE FROM SESSION_PRIVS"),
        "roles": q("SELECT ROLE FROM SESSION_ROLES"),
        "grants": q(
            "SELECT TABLE_NAME, PRIVILEGE FROM ALL_TAB_PRIVS WHERE TABLE_SCHEMA = 'SYS' AND TABLE_NAME IN "
            "('DBMS_LOGMNR', 'V_$LOGMNR_CONTENTS', 'V_$LOGMNR_LOGS')"
        ),
        "oldest_redo": q(
            "SELECT MIN(FIRST_CHANGE#) AS SCN FROM (SELECT FIRST_CHANGE# FROM V$LOG WHERE STATUS <> 'UNUSED' "
            "UNION ALL SELECT FIRST_CHANGE# FROM V$ARCHIVED_LOG WHERE STATUS = 'A' AND NAME IS NOT NULL)"
        ),
    }
    for view in PROBED_VIEWS:
        results[f"view:{view}"] = q(f"SELECT COUNT(*) AS N FROM {view} WHERE 1 = 0")
    in_pdb = getattr(session, "in_pdb", contextlib.nullcontext)
    for owner, table in tables:
        with in_pdb():
            results[f"table:{owner}.{table}"] = q(
                "SELECT OWNER, TABLE_NAME FROM ALL_TABLES WHERE OWNER = :o AND TABLE_NAME = :t",
                {"o": owner, "t": table},
            )
            results[f"tableprivs:{owner}.{table}"] = q(
                "SELECT PRIVILEGE FROM ALL_TAB_PRIVS WHERE TABLE_SCHEMA = :o AND TABLE_NAME = :t",
                {"o": owner, "t": table},
            )
            results[f"loggroups:{owner}.{table}"] = q(
                "SELECT LOG_GROUP_TYPE FROM ALL_LOG_GROUPS WHERE OWNER = :o AND TABLE_NAME = :t",
                {"o": owner, "t": table},
            )
    if with_dest:
        results["archive_dest"] = q("SELECT DEST_NAME, DESTINATION, STATUS FROM V$ARCHIVE_DEST")
    return results


def _column(results: Results, name: str, column: str) -> set[str]:
    rows = results.get(name)
    if not isinstance(rows, list):
        return set()
    return {str(r[column]).upper() for r in rows if r.get(column) is not None}


def verdicts(
    results: Results,
    tables: list[tuple[str, str]],
    *,
    supplemental_required: bool = True,
    archive_dest: str | None = None,
    stored: Position | None = None,
    snapshot: bool = False,
) -> list[Check]:
    """The checks from the query results (pure)."""
    user = _sql_user(results)
    checks: list[Check] = []
    db = results.get("database")
    if isinstance(db, CdcError) or not db:
        reason = db.message if isinstance(db, CdcError) else "no row"
        checks.append(
            Check(
                "V$DATABASE",
                False,
                f"cannot read V$DATABASE: {reason}",
                f"GRANT SELECT ON V_$DATABASE TO {user}; (or SELECT_CATALOG_ROLE)",
            )
        )
        row: dict[str, Any] = {}
    else:
        row = db[0]
        checks.append(Check("database", True, f"{row.get('NAME')} (DBID {row.get('DBID')})"))
        mode = str(row.get("LOG_MODE") or "")
        checks.append(
            Check(
                "archivelog",
                mode == "ARCHIVELOG",
                f"log mode is {mode or 'unknown'}",
                None
                if mode == "ARCHIVELOG"
                else "as SYSDBA: SHUTDOWN IMMEDIATE; STARTUP MOUNT; ALTER DATABASE ARCHIVELOG; "
                "ALTER DATABASE OPEN;",
            )
        )
        minimal = str(row.get("SUPPLEMENTAL_LOG_DATA_MIN") or "NO").upper()
        ok = minimal in ("YES", "IMPLICIT")
        checks.append(
            _supplemental(
                "supplemental logging (minimal)",
                ok,
                f"SUPPLEMENTAL_LOG_DATA_MIN = {minimal}",
                "ALTER DATABASE ADD SUPPLEMENTAL LOG DATA;",
                supplemental_required,
            )
        )
    db_all = str(row.get("SUPPLEMENTAL_LOG_DATA_ALL") or "NO").upper() == "YES"
    db_pk = str(row.get("SUPPLEMENTAL_LOG_DATA_PK") or "NO").upper() == "YES"
    for owner, table in tables:
        name = f"{owner}.{table}"
        found = results.get(f"table:{name}")
        if isinstance(found, CdcError) or not found:
            detail = (
                found.message if isinstance(found, CdcError) else "not found, or not visible to this user"
            )
            checks.append(
                Check(f"table {name}", False, detail, f"check the name; GRANT SELECT ON {name} TO {user};")
            )
            continue
        groups = _column(results, f"loggroups:{name}", "LOG_GROUP_TYPE")
        label = f"supplemental logging {name}"
        fix_all = f'ALTER TABLE {owner}."{table}" ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS;'
        if db_all or "ALL COLUMN LOGGING" in groups:
            checks.append(Check(label, True, "ALL COLUMNS"))
        elif db_pk or "PRIMARY KEY LOGGING" in groups:
            checks.append(
                warn(
                    label,
                    "PRIMARY KEY only: updates carry the key and the changed columns, not the whole row",
                    fix_all,
                )
            )
        else:
            checks.append(
                _supplemental(
                    label,
                    False,
                    "none: updates and deletes would lack the key",
                    fix_all,
                    supplemental_required,
                )
            )
    privs = _column(results, "privileges", "PRIVILEGE")
    roles = _column(results, "roles", "ROLE")
    grants = {(str(r["TABLE_NAME"]).upper(), str(r["PRIVILEGE"]).upper()) for r in _rows(results, "grants")}
    if isinstance(results.get("privileges"), CdcError):
        checks.append(Check("privileges", False, "cannot read SESSION_PRIVS", "connect as the capture user"))
    else:
        for priv in ("LOGMINING", "SELECT ANY TRANSACTION", "CREATE SESSION"):
            has = priv in privs or "DBA" in roles
            checks.append(
                Check(
                    f"privilege {priv}",
                    has,
                    "granted" if has else "missing",
                    None if has else f"GRANT {priv} TO {user};",
                )
            )
        execute = (
            ("DBMS_LOGMNR", "EXECUTE") in grants
            or "EXECUTE_CATALOG_ROLE" in roles
            or "DBA" in roles
            or "EXECUTE ANY PROCEDURE" in privs
        )
        checks.append(
            Check(
                "EXECUTE on DBMS_LOGMNR",
                execute,
                "granted" if execute else "missing",
                None if execute else f"GRANT EXECUTE ON DBMS_LOGMNR TO {user};",
            )
        )
    dictionary = bool(roles & _DICTIONARY_ROLES or privs & _DICTIONARY_PRIVS)
    for view in PROBED_VIEWS:
        probe = results.get(f"view:{view}")
        ok = isinstance(probe, list)
        checks.append(
            Check(
                f"SELECT on {view}",
                ok,
                "readable" if ok else str(getattr(probe, "message", "not run")),
                None if ok else f"GRANT SELECT ON {view.replace('V$', 'V_$')} TO {user};",
            )
        )
    for view in GRANTED_VIEWS:
        ok = dictionary or (view, "SELECT") in grants
        shown = view.replace("V_$", "V$")
        checks.append(
            Check(
                f"SELECT on {shown}",
                ok,
                "granted" if ok else "missing",
                None if ok else f"GRANT SELECT ON {view} TO {user};",
            )
        )
    if snapshot:
        for owner, table in tables:
            granted = _column(results, f"tableprivs:{owner}.{table}", "PRIVILEGE")
            ok = "FLASHBACK ANY TABLE" in privs or "DBA" in roles or "FLASHBACK" in granted or owner == user
            checks.append(
                Check(
                    f"FLASHBACK on {owner}.{table}",
                    ok,
                    "granted (the snapshot's flashback query)"
                    if ok
                    else "missing: the snapshot cannot read it",
                    None if ok else f'GRANT FLASHBACK ON {owner}."{table}" TO {user};',
                )
            )
    if archive_dest:
        checks.append(_archive_dest(results, archive_dest))
    if stored is not None:
        checks.append(_stored(results, row, stored))
    return checks


def _rows(results: Results, name: str) -> list[dict[str, Any]]:
    rows = results.get(name)
    return rows if isinstance(rows, list) else []


def _supplemental(name: str, ok: bool, detail: str, fix: str, required: bool) -> Check:
    if ok:
        return Check(name, True, detail)
    if not required:
        return warn(name, detail + " (not required: logminer_config.supplemental_logging is false)", fix)
    return Check(name, False, detail, fix)


def _archive_dest(results: Results, path: str) -> Check:
    rows = results.get("archive_dest")
    if isinstance(rows, CdcError):
        return warn(
            "archive destination",
            f"cannot read V$ARCHIVE_DEST: {rows.message}",
            "GRANT SELECT ON V_$ARCHIVE_DEST",
        )
    valid = [r for r in rows or [] if str(r.get("STATUS") or "").upper() == "VALID"]
    want = path.rstrip("/")
    match = [r for r in valid if str(r.get("DESTINATION") or "").rstrip("/") == want]
    if match:
        return Check("archive destination", True, f"{match[0].get('DEST_NAME')} writes to {path}")
    return warn(
        "archive destination",
        f"no valid archive destination writes to {path} (logminer_config.archive_log_dest)",
        f"ALTER SYSTEM SET LOG_ARCHIVE_DEST_1 = 'LOCATION={path}'; or correct archive_log_dest",
    )


def _stored(results: Results, db: dict[str, Any], stored: Position) -> Check:
    if not isinstance(stored, OracleScn):
        return Check(
            "stored position",
            False,
            f"{stored.describe()} is not an Oracle position",
            "cdc-logs offsets reset -c <pipeline.yaml>",
        )
    dbid = str(db.get("DBID") or "")
    if dbid and stored.server != dbid:
        return Check(
            "stored position",
            False,
            f"taken on DBID {stored.server}, the DSN reaches DBID {dbid}",
            "cdc-logs offsets reset -c <pipeline.yaml> (if the database was recreated on purpose)",
        )
    oldest = _rows(results, "oldest_redo")
    first = oldest[0].get("SCN") if oldest else None
    if first is None:
        return warn(
            "stored position",
            f"{stored.describe()}; the available redo could not be read",
            "GRANT SELECT ON V_$ARCHIVED_LOG",
        )
    if stored.restart < int(first):
        return Check(
            "stored position",
            False,
            f"restart SCN {stored.restart} is older than the oldest available redo (SCN {first})",
            "restore the archived logs from that SCN, or `cdc-logs offsets reset` (changes made meanwhile "
            "are lost)",
        )
    return Check("stored position", True, f"{stored.describe()}: its redo is available (from SCN {first})")


def check_source(cfg: Any, stored: Position | None = None) -> list[Check]:
    """`cdc-logs doctor`'s checks of an oracle source config (I/O: connects with the config's DSN)."""
    from cdc_logs.readers.oracle.config import oracle_dsn
    from cdc_logs.readers.oracle.connection import LogMinerSession
    from cdc_logs.readers.oracle.reader import split_table

    try:
        tables = [split_table(t) for t in (getattr(cfg, "tables", None) or [])]
        session = LogMinerSession(
            oracle_dsn(cfg),
            pdb=getattr(cfg, "pdb", None),
            connect_timeout_s=getattr(cfg, "connect_timeout_ms", 10_000) / 1000,
            call_timeout_ms=getattr(cfg, "call_timeout_ms", 600_000),
        )
    except CdcError as exc:
        return [Check("connection", False, exc.message, exc.hint)]
    logminer = getattr(cfg, "logminer_config", None)
    try:
        results = gather(session, tables, bool(logminer and logminer.archive_log_dest))
    finally:
        session.close()
    return [
        Check("connection", True, f"connected to {session.where}"),
        *verdicts(
            results,
            tables,
            supplemental_required=logminer.supplemental_logging if logminer else True,
            archive_dest=logminer.archive_log_dest if logminer else None,
            stored=stored,
            snapshot=bool(getattr(cfg, "snapshot", False)),
        ),
    ]
