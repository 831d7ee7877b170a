"""Preflight checks for a polling source, each failing one with the fix that makes it pass.

Used by `cdc-logs doctor -c pipeline.yaml` (a poll source's table settings live in its config).
Read-only: it connects, reflects each table as a run would (the watermark and key columns must
exist), and warns about what works but will surprise: a watermark column without an index (every
poll scans the table), hard deletes that polling cannot see, and timestamp watermarks without a
safety lag (a transaction that commits late with an earlier timestamp is passed over).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Position
from cdc_logs.readers.checks import Check, warn
from cdc_logs.readers.polling.config import polled_tables
from cdc_logs.readers.polling.connection import check_connect, create_engine, db_error, parse_url
from cdc_logs.readers.polling.query import Plan, PolledTable, build_plan


def check_source(cfg: Any, stored: Position | None = None) -> list[Check]:
    """The checks for a configured `poll` source (`stored` is not needed: any watermark can resume)."""
    return run_checks(cfg.url, polled_tables(cfg), safety_lag_ms=cfg.safety_lag_ms)


def run_checks(url: str, tables: list[PolledTable], *, safety_lag_ms: int = 0) -> list[Check]:
    try:
        engine = create_engine(parse_url(url))
    except CdcError as exc:
        return [Check("connect", False, exc.message, exc.hint)]
    try:
        try:
            check_connect(engine)
        except CdcError as exc:
            return [Check("connect", False, exc.message, exc.hint)]
        out = [
            Check(
                "connect", True, f"{engine.url.render_as_string(hide_password=True)} ({engine.dialect.name})"
            )
        ]
        with engine.connect() as conn:
            for spec in tables:
                out += _table_checks(conn, spec, safety_lag_ms)
        return out
    except sa_exc.SQLAlchemyError as exc:
        error = db_error(exc, engine, "running the checks", ErrorKind.CONFIG)
        return [Check("queries", False, error.message, error.hint)]
    finally:
        engine.dispose()


def _table_checks(conn: sa.Connection, spec: PolledTable, safety_lag_ms: int) -> list[Check]:
    name = f"table {spec.name}" if not spec.query else f"query {spec.name}"
    try:
        plan = build_plan(conn, spec)
    except CdcError as exc:
        return [Check(name, False, exc.message, exc.hint)]
    except sa_exc.SQLAlchemyError as exc:
        conn.rollback()  # the next table's reflection needs a usable transaction (Postgres)
        problem = getattr(exc, "orig", None) or exc
        return [Check(name, False, f"{spec.name}: {problem}", "fix the query or the table's settings")]
    watermark = ", ".join(n for n in (plan.ts_name, plan.inc_name) if n)
    key = f"key ({', '.join(plan.key)})" if plan.key else "no key"
    out = [Check(name, True, f"mode {plan.mode} on ({watermark}), {key}")]
    if not plan.key:
        out.append(
            warn(
                f"{spec.name}: key",
                "events carry no key: a table-mirroring sink cannot match updates to rows",
                "add a primary key, or set `key_columns` for this table",
            )
        )
    if not spec.query:
        out.append(_index_check(conn, plan))
    if not plan.soft_delete:
        out.append(
            warn(
                f"{spec.name}: deletes",
                "polling cannot see rows deleted from the table",
                "set `soft_delete_column` if the application marks deletions, or capture the table from "
                "the log (a pg or mariadb/mysql source), which sees every delete",
            )
        )
    if plan.ts_name and safety_lag_ms == 0:
        out.append(
            warn(
                f"{spec.name}: late commits",
                f"safety_lag_ms is 0: a transaction that commits after rows with a later {plan.ts_name} "
                "were polled is passed over",
                "set `safety_lag_ms` to your longest write transaction (e.g. 5000)",
            )
        )
    return out


def _index_check(conn: sa.Connection, plan: Plan) -> Check:
    """Is the watermark's first column the first column of an index (else every poll scans the table)?"""
    column = plan.ts_name or plan.inc_name
    inspector = sa.inspect(conn)
    leading = {
        (index.get("column_names") or [None])[0]
        for index in inspector.get_indexes(plan.table, schema=plan.schema)
    }
    pk = inspector.get_pk_constraint(plan.table, schema=plan.schema).get("constrained_columns") or []
    if pk:
        leading.add(pk[0])
    if column in leading:
        return Check(f"{plan.label}: index", True, f"{column} leads an index")
    return warn(
        f"{plan.label}: index",
        f"no index starts with {column}: each poll reads the whole table",
        f"CREATE INDEX {plan.table}_{column}_idx ON {plan.label} "
        f"({', '.join(n for n in (plan.ts_name, plan.inc_name) if n)})",
    )
