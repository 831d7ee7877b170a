"""`cdc-logs doctor --source oracle`: from the doctor's queries to its verdicts (readers/oracle/doctor.py).

Recorded query results, not a server (no Oracle server runs here): tests/fixtures/oracle/
doctor_queries.json answers each query `gather` sends; `verdicts` judges them. Variants change one
recorded answer each (NOARCHIVELOG, no supplemental logging, a missing grant, a view not readable).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import OracleScn
from cdc_logs.readers.oracle.doctor import gather, verdicts
from tests.unit.oracle_replay import load

FIXTURE = load("doctor_queries.json")
TABLES = [("HR", "EMP"), ("HR", "JOBS")]


class Answers:
    """Answers `try_query` from the recorded results, and records every query sent."""

    def __init__(self, queries: list[dict[str, Any]]) -> None:
        self.queries = queries
        self.sent: list[str] = []

    def try_query(self, sql: str, binds: dict[str, Any] | None = None) -> list[dict[str, Any]] | CdcError:
        self.sent.append(sql)
        for entry in self.queries:
            if entry["match"] in sql and all(
                (binds or {}).get(k) == v for k, v in entry.get("binds", {}).items()
            ):
                if "error" in entry:
                    return CdcError(ErrorKind(entry["error"]["kind"]), entry["error"]["message"])
                return [dict(r) for r in entry["rows"]]
        raise AssertionError(f"no recorded answer for {sql}")


def judge(change: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    queries = copy.deepcopy(FIXTURE["queries"])
    if change:
        queries.insert(0, change)
    checks = verdicts(
        gather(Answers(queries), TABLES, True), TABLES, archive_dest="/opt/oracle/archive", **kw
    )
    return {c.name: c for c in checks}


def test_a_good_setup_passes_with_a_warning_for_primary_key_logging() -> None:
    checks = judge()
    failed = [c.name for c in checks.values() if not c.ok]
    assert failed == []
    assert checks["archivelog"].detail == "log mode is ARCHIVELOG"
    assert checks["supplemental logging HR.EMP"].mark == "ok"
    jobs = checks["supplemental logging HR.JOBS"]
    assert jobs.mark == "warn" and "(ALL) COLUMNS" in (jobs.fix or "")
    assert checks["SELECT on V$LOGMNR_CONTENTS"].ok  # by SELECT_CATALOG_ROLE
    assert checks["archive destination"].mark == "ok"


def test_noarchivelog_fails_with_the_statements() -> None:
    row = dict(FIXTURE["queries"][1]["rows"][0], LOG_MODE="NOARCHIVELOG")
    check = judge({"match": "FROM V$DATABASE", "rows": [row]})["archivelog"]
    assert not check.ok and "ALTER DATABASE ARCHIVELOG" in (check.fix or "")


def test_no_supplemental_logging_fails_unless_not_required() -> None:
    row = dict(FIXTURE["queries"][1]["rows"][0], SUPPLEMENTAL_LOG_DATA_MIN="NO")
    change = {"match": "FROM V$DATABASE", "rows": [row]}
    groups = {"match": "FROM ALL_LOG_GROUPS", "binds": {"o": "HR", "t": "JOBS"}, "rows": []}
    checks = judge(change)
    assert not checks["supplemental logging (minimal)"].ok
    assert "ADD SUPPLEMENTAL LOG DATA;" in (checks["supplemental logging (minimal)"].fix or "")
    none = judge(groups)["supplemental logging HR.JOBS"]
    assert not none.ok and none.fix == 'ALTER TABLE HR."JOBS" ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS;'
    relaxed = verdicts(
        gather(Answers([change, *FIXTURE["queries"]]), TABLES, False), TABLES, supplemental_required=False
    )
    assert all(c.ok for c in relaxed if c.name.startswith("supplemental"))


@pytest.mark.parametrize(
    ("change", "check", "fix"),
    [
        (
            {
                "match": "FROM SESSION_PRIVS",
                "rows": [{"PRIVILEGE": "CREATE SESSION"}, {"PRIVILEGE": "SELECT ANY TRANSACTION"}],
            },
            "privilege LOGMINING",
            "GRANT LOGMINING TO C##CDC;",
        ),
        (
            {
                "match": "FROM SESSION_PRIVS",
                "rows": [{"PRIVILEGE": "CREATE SESSION"}, {"PRIVILEGE": "LOGMINING"}],
            },
            "privilege SELECT ANY TRANSACTION",
            "GRANT SELECT ANY TRANSACTION TO C##CDC;",
        ),
        (
            {"match": "TABLE_SCHEMA = 'SYS'", "rows": []},
            "EXECUTE on DBMS_LOGMNR",
            "GRANT EXECUTE ON DBMS_LOGMNR TO C##CDC;",
        ),
        (
            {"match": "FROM SESSION_ROLES", "rows": []},
            "SELECT on V$LOGMNR_CONTENTS",
            "GRANT SELECT ON V_$LOGMNR_CONTENTS TO C##CDC;",
        ),
        (
            {
                "match": "FROM V$TRANSACTION WHERE",
                "error": {"kind": "permission", "message": "ORA-00942: table or view does not exist"},
            },
            "SELECT on V$TRANSACTION",
            "GRANT SELECT ON V_$TRANSACTION TO C##CDC;",
        ),
        (
            {"match": "FROM ALL_TABLES", "binds": {"o": "HR", "t": "JOBS"}, "rows": []},
            "table HR.JOBS",
            "check the name; GRANT SELECT ON HR.JOBS TO C##CDC;",
        ),
    ],
)
def test_each_missing_piece_fails_with_its_grant(change: dict[str, Any], check: str, fix: str) -> None:
    checks = judge(change)
    assert not checks[check].ok and checks[check].fix == fix
    failed = [c.name for c in checks.values() if not c.ok]
    # Without SELECT_CATALOG_ROLE both V$LOGMNR views need their own grant.
    assert failed == ([check, "SELECT on V$LOGMNR_LOGS"] if "LOGMNR_CONTENTS" in check else [check])


def test_stored_position_verdicts() -> None:
    assert judge(stored=OracleScn("1339461245", scn=900, restart=850))["stored position"].ok
    lost = judge(stored=OracleScn("1339461245", scn=700, restart=700))["stored position"]
    assert not lost.ok and "older than the oldest available redo (SCN 800)" in lost.detail
    other = judge(stored=OracleScn("42", scn=900, restart=900))["stored position"]
    assert not other.ok and "DBID 42" in other.detail


def test_an_unreadable_v_database_is_one_failure_with_the_grant() -> None:
    change = {
        "match": "FROM V$DATABASE",
        "error": {"kind": "permission", "message": "ORA-00942: table or view does not exist"},
    }
    checks = judge(change)
    assert not checks["V$DATABASE"].ok and "V_$DATABASE" in (checks["V$DATABASE"].fix or "")


def test_a_snapshot_needs_flashback_on_each_table() -> None:
    checks = judge(snapshot=True)
    assert checks["FLASHBACK on HR.EMP"].ok and checks["FLASHBACK on HR.JOBS"].ok  # FLASHBACK ANY TABLE
    privs = next(q for q in FIXTURE["queries"] if q["match"] == "FROM SESSION_PRIVS")
    fewer = [r for r in privs["rows"] if r["PRIVILEGE"] != "FLASHBACK ANY TABLE"]
    checks = judge({"match": "FROM SESSION_PRIVS", "rows": fewer}, snapshot=True)
    assert checks["FLASHBACK on HR.EMP"].ok  # granted on the table
    jobs = checks["FLASHBACK on HR.JOBS"]
    assert not jobs.ok and jobs.fix == 'GRANT FLASHBACK ON HR."JOBS" TO C##CDC;'
    assert "FLASHBACK on HR.EMP" not in judge()  # no snapshot configured: not checked
