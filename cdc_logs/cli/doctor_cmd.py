"""`cdc-logs doctor --source ... --dsn URL`: preflight checks of a source, each failure with its fix.

Prints one line per check (`ok` or `FAIL`, and the fix under each failure) and exits 1 if any check
failed, 0 otherwise. Each source's checks live beside its reader (`readers/<source>/doctor.py`) and
return a list of `Check(name, ok, detail, fix)`; this module only dispatches and prints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact


def _mysql_checks(source: str, dsn: str, gtid: str | None) -> list[Any]:
    from cdc_logs.readers.mysql import parse_dsn
    from cdc_logs.readers.mysql.doctor import run_checks

    return run_checks(parse_dsn(dsn), source, gtid)


def _pg_checks(_source: str, dsn: str, _position: str | None, tables: list[str] | None = None) -> list[Any]:
    from cdc_logs.readers.postgres.doctor import run_checks

    return run_checks(dsn, tables)


# One entry per source: (source, dsn, position) -> checks.
CHECKERS: dict[str, Callable[[str, str, str | None], list[Any]]] = {
    "mariadb": _mysql_checks,
    "mysql": _mysql_checks,
    "pg": _pg_checks,
    "postgres": _pg_checks,
    "postgresql": _pg_checks,
}


def doctor(
    source: str = typer.Option(..., "--source", "-s", help="Source type: pg | mariadb | mysql."),
    dsn: str | None = typer.Option(
        None, "--dsn", envvar="CDC_DSN", help="Database URL, e.g. mysql://user:pw@host:3306/db; env CDC_DSN."
    ),
    gtid: str | None = typer.Option(
        None,
        "--gtid",
        help="mysql/mariadb: a stored GTID position (from `cdc-logs offsets show`) to check is still in "
        "the binlog.",
    ),
    table: list[str] = typer.Option(
        [],
        "--table",
        "-t",
        help="pg: a captured table to check (repeatable; default: every published table).",
    ),
) -> None:
    """Check that a source is set up for change data capture; print the fix for each failing check."""
    checker = CHECKERS.get(source)
    if checker is None:
        raise CdcError(
            ErrorKind.USAGE,
            f"doctor has no checks for --source {source!r}",
            f"use one of: {', '.join(CHECKERS)}",
        )
    if not dsn:
        raise CdcError(ErrorKind.USAGE, "--dsn is required", "pass --dsn URL or set CDC_DSN")
    checks = _pg_checks(source, dsn, gtid, table) if checker is _pg_checks else checker(source, dsn, gtid)
    failed = 0
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        # A check's detail may quote the server or the DSN: it is printed like any message, redacted.
        print(redact(f"{mark} {check.name}: {check.detail}"))
        if not check.ok:
            failed += 1
            if check.fix:
                print(redact(f"     fix: {check.fix}"))
    # Not "N passed, N failed": CI log readers take that line for a test runner's summary.
    print(f"{len(checks) - failed} of {len(checks)} checks ok" + (f"; {failed} to fix" if failed else ""))
    if failed:
        raise typer.Exit(1)
