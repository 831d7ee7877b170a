"""SQL apply: an event the target refuses costs that event only, never a valid one beside it.

A batch is one transaction. When one of its events is refused (a value the target column would
round, a label its ENUM lacks), the transaction rolls back, and on Postgres that includes the
CREATE TABLE or ADD COLUMN `auto_create` ran for the valid events before it; the pipeline then
writes the batch in halves to isolate the refused event (delivery.py). These tests run a real
`cdc-logs run` from the stack's Postgres to a Postgres target (transactional DDL) and to the stack's
MariaDB (DDL commits at once), and check on the targets that exactly the refused event is
dead-lettered, with the reason and the fix, and every valid one is applied.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.integration.test_sql_apply_typed import mariadb, my_args, pg_source, start, targets

pytestmark = pytest.mark.integration


@pytest.fixture
def names(pg_dsn: str, mariadb_dsn: str, unique_name: str) -> Iterator[str]:
    """A unique name: the source tables `<name>` and `<name>_n`, the slot, the publication, the
    Postgres target schema and the MariaDB tables carry it; all dropped afterwards."""
    name = unique_name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for _ in range(50):  # the slot stays active for a moment after the pipeline exits
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (name,)
            ).fetchone()
            if not row or not row[0]:
                break
            time.sleep(0.2)
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
            (name,),
        )
        conn.execute(f"DROP PUBLICATION IF EXISTS {name}")
        conn.execute(f"DROP TABLE IF EXISTS public.{name}, public.{name}_n, public.{name}_applied")
        conn.execute(f"DROP TYPE IF EXISTS public.{name}_mood")
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    with mariadb(mariadb_dsn) as cur:
        cur.execute(f"DROP TABLE IF EXISTS `{name}`, `{name}_n`, `{name}_applied`")


def pg_ids(pg_dsn: str, schema: str, table: str) -> dict[int, tuple[object, ...]]:
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY id').fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def my_ids(mariadb_dsn: str, table: str) -> dict[int, tuple[object, ...]]:
    with mariadb(mariadb_dsn) as cur:
        cur.execute(f"SELECT * FROM `{table}` ORDER BY id")
        return {r["id"]: tuple(v for k, v in r.items() if k != "id") for r in cur.fetchall()}


def missing_ok(check):  # type: ignore[no-untyped-def]
    """`check`, False while the target table does not exist yet."""

    def run() -> bool:
        with contextlib.suppress(Exception):
            return bool(check())
        return False

    return run


def test_a_refused_row_does_not_cost_the_valid_rows_of_its_transaction(
    pg_dsn: str, mariadb_dsn: str, names: str, tmp_path: Path
) -> None:
    """The review's repro: in ONE source transaction, a column added and a row using it, then a
    column widened and a row only the wider column holds. And a table whose first transaction
    creates it on the target, with the same widening. Before the fix the Postgres target kept the
    rolled-back table and column in its cache and dead-lettered the valid rows too (`relation ...
    does not exist`, `column "c" ... does not exist`)."""
    name, new = names, f"{names}_n"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{name} (id int PRIMARY KEY, amount numeric(5,2))")
        conn.execute(f"INSERT INTO public.{name} VALUES (1, 1.5)")
        conn.execute(f"CREATE TABLE public.{new} (id int PRIMARY KEY, amount numeric(5,2))")
    source = {**pg_source(pg_dsn, name), "tables": [f"public.{name}", f"public.{new}"]}
    pipeline = start(tmp_path, name, source, targets(pg_dsn, mariadb_dsn, name))
    try:
        pipeline.wait(
            missing_ok(lambda: pg_ids(pg_dsn, name, name) and my_ids(mariadb_dsn, name)), "the snapshot"
        )
        with psycopg.connect(pg_dsn) as conn, conn.transaction():
            conn.execute(f"ALTER TABLE public.{name} ADD COLUMN c int")
            conn.execute(f"INSERT INTO public.{name} VALUES (2, 2.5, 20)")
            conn.execute(f"ALTER TABLE public.{name} ALTER COLUMN amount TYPE numeric(10,2)")
            conn.execute(f"INSERT INTO public.{name} VALUES (3, 12345.67, 30)")
        with psycopg.connect(pg_dsn) as conn, conn.transaction():
            conn.execute(f"INSERT INTO public.{new} VALUES (1, 1.5)")
            conn.execute(f"ALTER TABLE public.{new} ALTER COLUMN amount TYPE numeric(10,2)")
            conn.execute(f"INSERT INTO public.{new} VALUES (2, 12345.67)")
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO public.{new} VALUES (3, 3.5)")  # the sentinel: later, applied
        pipeline.wait(
            missing_ok(lambda: 3 in pg_ids(pg_dsn, name, new) and 3 in my_ids(mariadb_dsn, new)),
            "the sentinel on both targets",
        )
    finally:
        pipeline.stop()
    log = pipeline.log()
    assert pipeline.proc.returncode == 0, log[-4000:]
    for sink in ("pg_target", "mariadb_target"):
        refused = pipeline.dead_letters(sink)
        got = [(r["envelope"]["source"]["table"], r["envelope"]["after"]["id"]) for r in refused]
        assert got == [(name, 3), (new, 2)], (sink, [r["reason"] for r in refused])
        for record in refused:
            assert "12345.67 does not fit numeric(5,2)" in record["reason"], record
            assert "ALTER TABLE" in record["hint"] and "NUMERIC(10, 2)" in record["hint"], record
    want = {1: (Decimal("1.50"), None), 2: (Decimal("2.50"), 20)}
    assert pg_ids(pg_dsn, name, name) == want == my_ids(mariadb_dsn, name)
    want_new = {1: (Decimal("1.50"),), 3: (Decimal("3.50"),)}
    assert pg_ids(pg_dsn, name, new) == want_new == my_ids(mariadb_dsn, new)


def test_an_enum_label_added_at_the_source_is_refused_naming_the_alter(
    pg_dsn: str, mariadb_dsn: str, names: str, tmp_path: Path
) -> None:
    """`ALTER TYPE mood ADD VALUE 'ecstatic'` at the source: the MariaDB target's ENUM lacks it.
    The row is refused before MariaDB sees it, naming the exact ALTER that adds the label and keeps
    the column's NOT NULL and default (never run by cdc-logs: the target is the user's); once the user
    has run it, the label is applied without a restart."""
    name = names
    db = my_args(mariadb_dsn)["database"]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TYPE public.{name}_mood AS ENUM ('sad', 'ok', 'happy')")
        conn.execute(f"CREATE TABLE public.{name} (id int PRIMARY KEY, m {name}_mood NOT NULL)")
        conn.execute(f"INSERT INTO public.{name} VALUES (1, 'ok')")
    pipeline = start(tmp_path, name, pg_source(pg_dsn, name), targets(pg_dsn, mariadb_dsn, name)[1:])
    try:
        pipeline.wait(missing_ok(lambda: 1 in my_ids(mariadb_dsn, name)), "the snapshot")
        with mariadb(mariadb_dsn) as cur:  # NOT NULL with a default, as a user would make it
            cur.execute(
                f"ALTER TABLE `{name}` MODIFY COLUMN m ENUM('sad','ok','happy') NOT NULL DEFAULT 'ok'"
            )
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"ALTER TYPE public.{name}_mood ADD VALUE 'ecstatic'")
            with conn.transaction():
                conn.execute(f"INSERT INTO public.{name} VALUES (2, 'ecstatic')")
                conn.execute(f"INSERT INTO public.{name} VALUES (3, 'happy')")
        pipeline.wait(lambda: 3 in my_ids(mariadb_dsn, name), "the valid row")
        pipeline.wait(lambda: len(pipeline.dead_letters("mariadb_target")) == 1, "the refused row")
        (refused,) = pipeline.dead_letters("mariadb_target")
        assert refused["envelope"]["after"] == {"id": 2, "m": "ecstatic"}
        assert "'ecstatic' is not a label of the target's ENUM('sad', 'ok', 'happy')" in refused["reason"]
        labels = "ENUM('sad','ok','happy','ecstatic')"
        fix = f"ALTER TABLE {db}.{name} MODIFY COLUMN m {labels} NOT NULL DEFAULT 'ok'"
        assert fix in refused["hint"], refused["hint"]
        with mariadb(mariadb_dsn) as cur:
            assert my_ids(mariadb_dsn, name) == {1: ("ok",), 3: ("happy",)}  # nothing changed by cdc-logs
            cur.execute(fix)  # the user applies the fix
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO public.{name} VALUES (4, 'ecstatic')")
        pipeline.wait(lambda: 4 in my_ids(mariadb_dsn, name), "the new label, once the target has it")
    finally:
        pipeline.stop()
    assert pipeline.proc.returncode == 0, pipeline.log()[-4000:]
    assert my_ids(mariadb_dsn, name) == {1: ("ok",), 3: ("happy",), 4: ("ecstatic",)}
    assert len(pipeline.dead_letters("mariadb_target")) == 1
