"""SQL apply with `auto_create` from a real source: typed target columns, values that round-trip exactly.

Issue 12's done-when line: a Postgres table with timestamp, numeric, jsonb, uuid and bytea columns (and
the other common types), captured by cdc-logs' own Postgres reader in a real `cdc-logs run` (a
subprocess with a pipeline YAML), applied to a Postgres target schema and to the stack's MariaDB
`test` database at once. Judged on the targets, read back with their own drivers (psycopg, PyMySQL):

  * each target column's type in information_schema is the source's (or the documented nearest
    equivalent on MariaDB: docs/sinks.md#sql-column-types), never text or an integer for a timestamp;
  * every value equals the source's as a Python value; the few representation changes MariaDB forces
    (a timestamptz stored as UTC DATETIME, an interval as microseconds, booleans as 0/1, a time of
    day as a duration, JSON as its text) are asserted explicitly, value by value;
  * rows present before the pipeline starts (the snapshot) and rows inserted, updated and deleted
    while it streams; an `ALTER TABLE ... ADD COLUMN` adds a typed column on both targets.

test_schema_changes_other_than_add_column_are_reported: a value a target column left too narrow
would round is refused naming the ALTER that fixes it (the event is dead-lettered, never rounded);
a column changed to another kind is reported; dropped and renamed columns are kept and reported.
test_mariadb_datetime3_to_postgres: the issue's original complaint, a DATETIME(3) column created as
an integer of epoch milliseconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import psycopg.rows
import pymysql
import pymysql.cursors
import pytest
import yaml
from psycopg.types.json import Json, Jsonb

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.UTC

# -- the source table ------------------------------------------------------------------------------
SOURCE_DDL = """CREATE TABLE public.{t} (
  id int PRIMARY KEY,
  ts timestamp, ts3 timestamp(3), tstz timestamptz, tstz2 timestamptz(2),
  n20 numeric(20,5), n numeric, jb jsonb, js json, u uuid, b bytea,
  d date, tm time, tm3 time(3), iv interval, flag boolean, txt text, vc varchar(40),
  r real, dbl double precision, tags text[], mood {t}_mood, big numeric(70,10), fine numeric(40,35))"""
COLUMNS = (
    "ts", "ts3", "tstz", "tstz2", "n20", "n", "jb", "js", "u", "b", "d", "tm", "tm3", "iv", "flag", "txt",
    "vc", "r", "dbl", "tags", "mood", "big", "fine",
)  # fmt: skip

NESTED = {"ключ": {"emoji": "😀 \u00e9\u0301", "arr": [1, 2.5, None, True, '\\"q"']}, "a": "", "z": {}}
ROWS: dict[int, dict[str, Any]] = {
    1: {  # ordinary values
        "ts": dt.datetime(2024, 3, 10, 12, 34, 56, 123456),
        "ts3": dt.datetime(2024, 3, 10, 12, 34, 56, 789000),
        "tstz": dt.datetime(
            2024, 3, 10, 12, 34, 56, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
        ),
        "tstz2": dt.datetime(2024, 3, 10, 23, 59, 59, 990000, tzinfo=UTC),
        "n20": Decimal("12345.67890"),
        "n": Decimal("3.14159265358979323846264338327950288419716939937510"),
        "jb": Jsonb({"b": 1, "a": [1, 2, {"c": None}]}),
        "js": Json({"b": 1, "a": [1, 2]}),
        "u": uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
        "b": b"\x00\x01binary\xff",
        "d": dt.date(2024, 2, 29),
        "tm": dt.time(12, 34, 56, 123456),
        "tm3": dt.time(1, 2, 3, 456000),
        "iv": dt.timedelta(days=3, hours=4, minutes=5, seconds=6, microseconds=789012),
        "flag": True,
        "txt": "plain text",
        "vc": "short",
        "r": 1.5,
        "dbl": 0.1,
        "tags": ["a", "b c", ""],
        "mood": "happy",
        "big": Decimal("123456789012345678901234567890123456789012345678901234567890.0123456789"),
        "fine": Decimal("0.12345678901234567890123456789012345"),
    },
    2: dict.fromkeys(COLUMNS),  # a NULL in each column
    3: {  # the low ends
        "ts": dt.datetime(1, 1, 1),
        "ts3": dt.datetime(1, 1, 1, 0, 0, 0, 1000),
        "tstz": dt.datetime(1, 1, 1, tzinfo=UTC),
        "tstz2": dt.datetime(1, 1, 1, 0, 0, 0, 10000, tzinfo=UTC),
        "n20": Decimal("-999999999999999.99999"),
        "n": Decimal("-0.000000000000000000000000000000000000000000000001"),
        "jb": Jsonb({}),
        "js": Json([]),
        "u": uuid.UUID(int=0),
        "b": b"",
        "d": dt.date(1, 1, 1),
        "tm": dt.time(0, 0),
        "tm3": dt.time(0, 0, 0, 1000),
        "iv": -dt.timedelta(microseconds=1),
        "flag": False,
        "txt": "",
        "vc": "",
        "r": -3.25,
        "dbl": -1e-300,
        "tags": [],
        "mood": "sad",
        "big": Decimal("-1E-10"),
        "fine": Decimal("-99999.99999999999999999999999999999999999"),
    },
    4: {  # the high ends, every byte value, nested unicode
        "ts": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        "ts3": dt.datetime(9999, 12, 31, 23, 59, 59, 999000),
        "tstz": dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "tstz2": dt.datetime(9999, 12, 31, 23, 59, 59, 990000, tzinfo=UTC),
        "n20": Decimal("999999999999999.99999"),
        "n": Decimal("12345678901234567890123456789012345678901234567890.123456789012345678901234567890"),
        "jb": Jsonb(NESTED),
        "js": Json(NESTED),
        "u": uuid.UUID(int=2**128 - 1),
        "b": bytes(range(256)),
        "d": dt.date(9999, 12, 31),
        "tm": dt.time(23, 59, 59, 999999),
        "tm3": dt.time(23, 59, 59, 999000),
        "iv": dt.timedelta(days=99999, hours=23, minutes=59, seconds=59, microseconds=999999),
        "flag": True,
        "txt": "ünïcödé 😀\n'quotes' \"double\" \\ back\tslash",
        "vc": "x" * 39 + "é",
        "r": 3.4028234663852886e38,
        "dbl": 1.7976931348623157e308,
        "tags": ["😀", "NULL", "a,b", '"q"'],
        "mood": "happy",
        "big": Decimal("9" * 60 + "." + "9" * 10),
        "fine": Decimal("0.00000000000000000000000000000000001"),
    },
}
# json keeps its text exactly (spacing, key order, duplicate keys); jsonb normalises it
JSON_TEXT = '{"b":1,  "a" : [1,2], "b": 2}'

# What the targets' columns must be (information_schema), per source column.
PG_TYPES = {
    "id": "integer", "ts": "timestamp without time zone(6)", "ts3": "timestamp without time zone(3)",
    "tstz": "timestamp with time zone(6)", "tstz2": "timestamp with time zone(2)", "n20": "numeric(20,5)",
    "n": "numeric", "jb": "jsonb", "js": "json", "u": "uuid", "b": "bytea", "d": "date",
    "tm": "time without time zone(6)", "tm3": "time without time zone(3)", "iv": "interval",
    "flag": "boolean", "txt": "text", "vc": "character varying(40)", "r": "real", "dbl": "double precision",
    "tags": "ARRAY(_text)", "mood": "text", "added_n": "numeric(12,4)", "big": "numeric(70,10)",
    "fine": "numeric(40,35)", "added_ts": "timestamp without time zone(3)", "added_j": "jsonb",
}  # fmt: skip
MARIADB_TYPES = {
    "id": "int(11)", "ts": "datetime(6)", "ts3": "datetime(3)", "tstz": "datetime(6)", "tstz2": "datetime(2)",
    "n20": "decimal(20,5)", "n": "longtext", "jb": "longtext json", "js": "longtext json", "u": "uuid",
    "b": "longblob", "d": "date", "tm": "time(6)", "tm3": "time(3)", "iv": "bigint(20)", "flag": "tinyint(1)",
    "txt": "longtext", "vc": "varchar(40)", "r": "double", "dbl": "double", "tags": "longtext json",
    "mood": "enum('sad','happy')", "big": "longtext", "fine": "longtext", "added_n": "decimal(12,4)",
    "added_ts": "datetime(3)", "added_j": "longtext json",
}  # fmt: skip


# -- servers -----------------------------------------------------------------------------------------
def my_args(dsn: str) -> dict[str, Any]:
    parts = urlsplit(dsn)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or "test",
        "charset": "utf8mb4",
        "autocommit": True,
    }


@contextlib.contextmanager
def mariadb(dsn: str) -> Iterator[Any]:
    conn = pymysql.connect(**my_args(dsn))
    try:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            yield cur
    finally:
        conn.close()


def pg_rows(dsn: str, query: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(query)
        return list(cur.fetchall())


def my_rows(dsn: str, query: str, *args: Any) -> list[dict[str, Any]]:
    with mariadb(dsn) as cur:
        cur.execute(query, args)
        return list(cur.fetchall())


@dataclass
class Pipeline:
    """One `cdc-logs run` subprocess and where it writes."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    dead: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, check: Callable[[], bool], what: str, limit: float = 120) -> None:
        deadline = time.monotonic() + limit
        last: Exception | None = None
        while True:
            try:
                if check():
                    return
                last = None
            except (psycopg.Error, pymysql.Error) as exc:  # a table not created yet
                last = exc
            if self.proc.poll() is not None:
                pytest.fail(
                    f"cdc-logs run exited ({self.proc.returncode}) waiting for {what}:\n{self.log()[-4000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what} ({last}):\n{self.log()[-4000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def dead_letters(self, sink: str) -> list[dict[str, Any]]:
        path = self.dead / f"{sink}.deadletter.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def start(tmp: Path, name: str, source: dict[str, Any], destinations: list[dict[str, Any]]) -> Pipeline:
    config = {
        "name": name,
        "source": source,
        "destinations": destinations,
        "offsets": {"type": "sqlite", "path": str(tmp / "offsets.db")},
        "sync": {
            "batch": {"max_events": 200, "max_wait_ms": 100},
            "retry": {"max_attempts": 3, "initial_backoff_ms": 200, "max_backoff_ms": 1000},
            "dead_letters": {"enabled": True, "dir": str(tmp / "dead")},
            "fanout": {"spool_dir": str(tmp / "spool")},
        },
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = tmp / "run.log"
    with open(log_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_logs", "run", "-c", str(path)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    return Pipeline(proc, log_path, tmp / "dead")


def pg_source(pg_dsn: str, name: str) -> dict[str, Any]:
    return {
        "type": "postgresql",
        "dsn": pg_dsn,
        "tables": [f"public.{name}"],
        "slot": name,
        "publication": name,
        "snapshot": True,
        "heartbeat_interval_ms": 1000,
    }


def targets(pg_dsn: str, mariadb_dsn: str, name: str) -> list[dict[str, Any]]:
    parts = urlsplit(mariadb_dsn)
    return [
        {
            "name": "pg_target",
            "type": "postgresql",
            "url": pg_dsn,
            "schema": name,
            "table": "{table}",
            "auto_create": True,
            "applied_table": f"{name}_applied",
        },
        {
            "name": "mariadb_target",
            "type": "mariadb",
            "url": f"mysql+pymysql://{parts.netloc}{parts.path}?charset=utf8mb4",
            "schema": parts.path.lstrip("/") or "test",
            "table": "{table}",
            "auto_create": True,
            "applied_table": f"{name}_applied",
        },
    ]


@pytest.fixture
def pg_setup(pg_dsn: str, mariadb_dsn: str, unique_name: str) -> Iterator[str]:
    """The source table's name; drops everything named after it afterwards (source, slot,
    publication, the Postgres target schema, the MariaDB tables)."""
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
        conn.execute(f"DROP TABLE IF EXISTS public.{name}, public.{name}_applied")
        conn.execute(f"DROP TYPE IF EXISTS public.{name}_mood")
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    with mariadb(mariadb_dsn) as cur:
        cur.execute(f"DROP TABLE IF EXISTS `{name}`, `{name}_applied`")


def pg_insert(conn: psycopg.Connection[Any], table: str, row_id: int, row: dict[str, Any]) -> None:
    cols = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    conn.execute(f"INSERT INTO {table} (id, {cols}) VALUES (%s, {marks})", [row_id, *row.values()])


# -- reading back ------------------------------------------------------------------------------------
def source_state(pg_dsn: str, name: str) -> dict[int, dict[str, Any]]:
    rows = pg_rows(
        pg_dsn,
        "SELECT t.*, js::text AS js_text, jb::text AS jb_text, n::text AS n_text, big::text AS big_text,"
        " fine::text AS fine_text,"
        f" (to_jsonb(t) -> 'added_j')::text AS added_j_text FROM public.{name} t",
    )
    return {r["id"]: r for r in rows}


def pg_target_state(pg_dsn: str, name: str) -> dict[int, dict[str, Any]]:
    rows = pg_rows(pg_dsn, f'SELECT *, js::text AS js_text, n::text AS n_text FROM "{name}"."{name}"')
    return {r["id"]: r for r in rows}


def pg_plain_state(pg_dsn: str, name: str) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in pg_rows(pg_dsn, f'SELECT * FROM "{name}"."{name}"')}


def my_target_state(mariadb_dsn: str, name: str) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in my_rows(mariadb_dsn, f"SELECT * FROM `{name}`")}


def on_both(pg_dsn: str, mariadb_dsn: str, name: str, ids: set[int]) -> Callable[[], bool]:
    """A check: both targets hold exactly the rows `ids`."""

    def check() -> bool:
        on_pg = {r["id"] for r in pg_rows(pg_dsn, f'SELECT id FROM "{name}"."{name}"')}
        return on_pg == ids == {r["id"] for r in my_rows(mariadb_dsn, f"SELECT id FROM `{name}`")}

    return check


# An interval with months arrives as Debezium's MicroDuration: a month is 30.4375 days (docs/sinks.md,
# note 3), where psycopg reads the source's years as 365 days and months as 30. Row 8 holds one.
MONTHS = {8: dt.timedelta(days=13 * 30.4375 + 2)}


def micros(delta: dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def expected_on_mariadb(column: str, value: Any, src: dict[str, Any]) -> Any:
    """The source value as PyMySQL reads it back from the MariaDB column (docs/sinks.md lists why)."""
    if value is None:
        return None
    if column in ("tstz", "tstz2"):  # no zoned type: DATETIME holding UTC
        return value.astimezone(UTC).replace(tzinfo=None)
    if column in ("tm", "tm3"):  # PyMySQL reads TIME as a duration (MariaDB TIME spans ±838 h)
        return dt.timedelta(
            hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
        )
    if column == "iv":  # no interval type: BIGINT microseconds (Debezium's MicroDuration)
        return micros(MONTHS.get(src["id"], value))
    if column == "flag":  # BOOLEAN is TINYINT(1)
        return int(value)
    if column in ("jb", "js", "added_j"):  # JSON is LONGTEXT + json_valid(): Postgres' own text, kept as is
        return src[f"{column}_text"]
    if column in ("n", "big", "fine"):  # no DECIMAL holds these (65 digits, 30 after the point): text
        return src[f"{column}_text"]
    if column == "tags":  # arrays: JSON text
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if column == "u":  # MariaDB's UUID comes back as its text
        return str(value)
    return value


def compare(
    source: dict[int, dict[str, Any]], target: dict[int, dict[str, Any]], expect: Callable[..., Any]
) -> list[str]:
    problems = []
    if set(source) != set(target):
        problems.append(f"ids: source {sorted(source)} target {sorted(target)}")
    for row_id in sorted(set(source) & set(target)):
        src, dst = source[row_id], target[row_id]
        for column in [c for c in src if not c.endswith("_text") and c != "id"]:
            want, got = expect(column, src[column], src), dst.get(column)
            if column == "tags" and isinstance(got, str):
                got = json.dumps(json.loads(got), ensure_ascii=False, separators=(", ", ": "))
            if type(want) is not type(got) or want != got:
                problems.append(
                    f"row {row_id} {column}: source {src[column]!r} -> expected {want!r}, got {got!r}"
                )
    return problems


def expected_on_postgres(column: str, value: Any, src: dict[str, Any]) -> Any:
    if value is None:
        return None
    if column == "tstz" or column == "tstz2":  # the session's zone may differ: compare instants
        return value
    if column == "iv":
        return MONTHS.get(src["id"], value)
    if column == "mood":  # an enum has no type on the target (its name and labels are not sent): text
        return str(value)
    return value


def pg_types(pg_dsn: str, schema: str, table: str) -> dict[str, str]:
    rows = pg_rows(
        pg_dsn,
        "SELECT column_name, data_type, udt_name, character_maximum_length, numeric_precision, numeric_scale,"
        " datetime_precision FROM information_schema.columns"
        f" WHERE table_schema = '{schema}' AND table_name = '{table}'",
    )
    out = {}
    for r in rows:
        kind = r["data_type"]
        if kind == "ARRAY":
            kind = f"ARRAY({r['udt_name']})"
        elif kind.startswith(("timestamp", "time ")):
            kind += f"({r['datetime_precision']})"
        elif kind == "numeric" and r["numeric_precision"] is not None:
            kind += f"({r['numeric_precision']},{r['numeric_scale']})"
        elif r["character_maximum_length"] is not None:
            kind += f"({r['character_maximum_length']})"
        out[r["column_name"]] = kind
    return out


def my_types(mariadb_dsn: str, table: str) -> dict[str, str]:
    db = my_args(mariadb_dsn)["database"]
    rows = my_rows(
        mariadb_dsn,
        "SELECT COLUMN_NAME AS name, COLUMN_TYPE AS type FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        db,
        table,
    )
    checks = my_rows(
        mariadb_dsn,
        "SELECT CONSTRAINT_NAME AS name, CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS"
        " WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
        db,
        table,
    )
    json_columns = {c["name"] for c in checks if c["clause"].startswith("json_valid(")}
    return {r["name"]: r["type"] + (" json" if r["name"] in json_columns else "") for r in rows}


# -- the tests -----------------------------------------------------------------------------------------
def test_postgres_types_round_trip_exactly_on_postgres_and_mariadb(
    pg_dsn: str, mariadb_dsn: str, pg_setup: str, tmp_path: Path
) -> None:
    name = pg_setup
    table = f"public.{name}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TYPE public.{name}_mood AS ENUM ('sad', 'happy')")
        conn.execute(SOURCE_DDL.format(t=name))
        for row_id in (1, 2, 3):  # present before the pipeline starts: the snapshot
            pg_insert(conn, table, row_id, ROWS[row_id])
        conn.execute(f"UPDATE {table} SET js = %s::json WHERE id = 1", [JSON_TEXT])
    pipeline = start(tmp_path, name, pg_source(pg_dsn, name), targets(pg_dsn, mariadb_dsn, name))
    try:
        pipeline.wait(on_both(pg_dsn, mariadb_dsn, name, {1, 2, 3}), "the snapshot on both targets")
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            pg_insert(conn, table, 4, ROWS[4])  # streamed
            pg_insert(conn, table, 5, ROWS[1])
            with conn.transaction():
                conn.execute(
                    f"UPDATE {table} SET n20 = n20 + 0.00001, ts = ts + interval '1 microsecond', jb = %s"
                    " WHERE id = 1",
                    [Jsonb(NESTED)],
                )
                conn.execute(
                    f"UPDATE {table} SET b = %s, u = %s WHERE id = 3",
                    [bytes(reversed(range(256))), uuid.UUID(int=1)],
                )
                conn.execute(f"DELETE FROM {table} WHERE id = 5")
            # A column added at the source is added, typed, on both targets; rows after it carry it.
            conn.execute(
                f"ALTER TABLE {table} ADD COLUMN added_n numeric(12,4), ADD COLUMN added_ts timestamp(3),"
                " ADD COLUMN added_j jsonb"
            )
            pg_insert(
                conn,
                table,
                6,
                {
                    **ROWS[4],
                    "added_n": Decimal("-12345678.1234"),
                    "added_ts": dt.datetime(2000, 2, 29, 1, 2, 3, 4000),
                    "added_j": Jsonb(NESTED),
                },
            )
            conn.execute(
                f"UPDATE {table} SET added_n = 0.0001, added_ts = '0001-01-01 00:00:00.001' WHERE id = 1"
            )
            pg_insert(conn, table, 8, {"iv": "1 year 1 mon 2 days"})  # months: see MONTHS
            pg_insert(conn, table, 7, {"ts": None})  # the sentinel
        pipeline.wait(
            on_both(pg_dsn, mariadb_dsn, name, {1, 2, 3, 4, 6, 7, 8}), "the streamed changes on both targets"
        )
    finally:
        pipeline.stop()
    log = pipeline.log()
    assert pipeline.proc.returncode == 0, log[-4000:]
    assert pipeline.dead_letters("pg_target") == [], log[-4000:]
    assert pipeline.dead_letters("mariadb_target") == [], log[-4000:]
    for alarm in ("does not match", "differs from the source", "does not send"):  # no false alarm
        assert alarm not in log, log[-4000:]

    # (a) typed columns, the source's types (the nearest equivalent on MariaDB)
    assert pg_types(pg_dsn, name, name) == PG_TYPES
    assert my_types(mariadb_dsn, name) == MARIADB_TYPES

    # (b) every value, as each driver reads it
    source = source_state(pg_dsn, name)
    assert source[4]["b"] == bytes(range(256)) and source[1]["js_text"] == JSON_TEXT  # the workload did run
    assert (
        source[8]["iv"] == dt.timedelta(days=365 + 30 + 2) != MONTHS[8]
    )  # psycopg: 365-day years, 30-day months
    problems = compare(source, pg_target_state(pg_dsn, name), expected_on_postgres)
    assert not problems, "\n".join(problems)
    pg_target = pg_target_state(pg_dsn, name)
    assert pg_target[1]["js_text"] == JSON_TEXT  # json keeps its very text (spacing, duplicate keys)
    assert pg_target[4]["n_text"] == source[4]["n_text"]  # every digit and the scale
    problems = compare(source, my_target_state(mariadb_dsn, name), expected_on_mariadb)
    assert not problems, "\n".join(problems)
    mariadb_target = my_target_state(mariadb_dsn, name)
    assert json.loads(mariadb_target[4]["jb"]) == NESTED  # nested unicode, as JSON
    assert str(mariadb_target[4]["n20"]) == "999999999999999.99999"


def test_schema_changes_other_than_add_column_are_reported(
    pg_dsn: str, mariadb_dsn: str, pg_setup: str, tmp_path: Path
) -> None:
    """Columns widened at the source (numeric(10,2) -> (20,6), timestamp(3) -> (6)) leave the target
    columns too narrow: a value they would round is refused (dead-lettered, naming the column and
    the ALTER that fixes it), a value that fits is applied. A dropped column stays on the target, and
    so does the old name of a renamed one (the new name is added): both reported, never dropped."""
    name = pg_setup
    table = f"public.{name}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id int PRIMARY KEY, amount numeric(10,2), at timestamp(3), gone text)"
        )
        conn.execute(f"INSERT INTO {table} VALUES (1, 12.34, '2024-01-02 03:04:05.678', 'x')")
    pipeline = start(tmp_path, name, pg_source(pg_dsn, name), targets(pg_dsn, mariadb_dsn, name))
    try:
        pipeline.wait(on_both(pg_dsn, mariadb_dsn, name, {1}), "the snapshot on both targets")
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                f"ALTER TABLE {table} ALTER COLUMN amount TYPE numeric(20,6),"
                " ALTER COLUMN at TYPE timestamp(6)"
            )
            conn.execute(
                f"INSERT INTO {table} VALUES (2, 1.123456, '2024-01-02 03:04:05.678', 'y')"
            )  # too fine
            conn.execute(
                f"INSERT INTO {table} VALUES (3, 5.5, '2024-01-02 03:04:05.123456', 'z')"
            )  # too fine
            conn.execute(f"INSERT INTO {table} VALUES (4, 99.99, '2024-01-02 03:04:05.5', 'w')")  # fits
            conn.execute(f"ALTER TABLE {table} DROP COLUMN gone")
            conn.execute(f"INSERT INTO {table} VALUES (5, 1, '2024-01-02')")
            conn.execute(f"ALTER TABLE {table} RENAME COLUMN at TO at2")
            conn.execute(f"INSERT INTO {table} VALUES (6, 2, '2024-01-02 03:04:05.123456')")
            # another kind: reported; a value the numeric target cannot take is refused, one it can is not
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN amount TYPE text")
            conn.execute(f"INSERT INTO {table} VALUES (7, 'seven', NULL), (8, '8.5', NULL)")
        pipeline.wait(
            on_both(pg_dsn, mariadb_dsn, name, {1, 4, 5, 6, 8}), "the rows that fit on both targets"
        )
        pipeline.wait(
            lambda: (
                len(pipeline.dead_letters("pg_target")) == len(pipeline.dead_letters("mariadb_target")) == 3
            ),
            "the refused rows in the dead-letter files",
        )
    finally:
        pipeline.stop()
    log = pipeline.log()
    for sink, timestamp6 in (
        ("pg_target", "TIMESTAMP(6) WITHOUT TIME ZONE"),
        ("mariadb_target", "DATETIME(6)"),
    ):
        refused = pipeline.dead_letters(sink)
        assert [r["envelope"]["after"]["id"] for r in refused] == [2, 3, 7]
        (amount, at, text) = refused
        assert "'amount'" in text["reason"] and "'seven' is not a decimal" in text["reason"], text
        assert "'amount'" in amount["reason"] and "1.123456 does not fit numeric(10,2)" in amount["reason"]
        assert "ALTER TABLE" in amount["hint"] and "NUMERIC(20, 6)" in amount["hint"], amount
        assert "'at'" in at["reason"] and "more than 3 fractional-second digits" in at["reason"]
        assert "ALTER TABLE" in at["hint"] and timestamp6 in at["hint"], at
    # never rounded: the targets hold the values that fit, exactly
    assert pg_plain_state(pg_dsn, name)[4]["amount"] == Decimal("99.99")
    assert my_target_state(mariadb_dsn, name)[4]["at"] == dt.datetime(2024, 1, 2, 3, 4, 5, 500000)
    # the dropped column is kept on the targets (they are the user's), reported once per target
    assert "gone" in pg_plain_state(pg_dsn, name)[5] and "gone" in my_target_state(mariadb_dsn, name)[5]
    assert pg_plain_state(pg_dsn, name)[5]["gone"] is None
    assert log.count("the source does not send these target columns") == 6, log[-4000:]
    assert log.count("mismatch='is decimal, and the source now sends text (TEXT)'") == 2, log[-4000:]
    assert (
        pg_plain_state(pg_dsn, name)[8]["amount"]
        == my_target_state(mariadb_dsn, name)[8]["amount"]
        == Decimal("8.5")
    )
    assert log.count("columns=['gone']") == 2 and log.count("columns=['at', 'gone']") == 4, log[-4000:]
    for row in (pg_plain_state(pg_dsn, name)[6], my_target_state(mariadb_dsn, name)[6]):
        assert row["at"] is None and row["at2"] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456)  # added, typed


@pytest.fixture
def mariadb_setup(pg_dsn: str, mariadb_dsn: str, unique_name: str) -> Iterator[str]:
    """The MariaDB source table's name and the Postgres target schema's; drops both afterwards."""
    name = unique_name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with mariadb(mariadb_dsn) as cur:
        cur.execute(f"DROP TABLE IF EXISTS `{name}`")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.execute(f"DROP TABLE IF EXISTS public.{name}_applied")


def test_mariadb_datetime3_to_postgres(
    pg_dsn: str, mariadb_dsn: str, mariadb_setup: str, tmp_path: Path
) -> None:
    """Issue 12's original complaint: `auto_create` made a DATETIME(3) column an integer of epoch
    milliseconds. Now it is timestamp(3), and the values are the source's to the millisecond."""
    name = mariadb_setup
    db = my_args(mariadb_dsn)["database"]
    values = [
        dt.datetime(2024, 1, 2, 3, 4, 5, 678000),
        dt.datetime(1000, 1, 1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999000),
    ]
    with mariadb(mariadb_dsn) as cur:
        cur.execute(
            f"CREATE TABLE `{name}` (id INT PRIMARY KEY, at DATETIME(3), at6 DATETIME(6),"
            " amount DECIMAL(30,10))"
        )
        cur.execute(
            f"INSERT INTO `{name}` VALUES (1, %s, %s, %s)",
            (values[0], values[0], Decimal("12345678901234567890.0123456789")),
        )
    source = {
        "type": "mariadb",
        "dsn": mariadb_dsn,
        "tables": [f"{db}.{name}"],
        "snapshot": True,
        "heartbeat_interval_ms": 1000,
    }
    pipeline = start(tmp_path, name, source, [targets(pg_dsn, mariadb_dsn, name)[0]])
    try:
        with mariadb(mariadb_dsn) as cur:
            cur.execute(
                f"INSERT INTO `{name}` VALUES (2, %s, %s, NULL), (3, %s, %s, -0.0000000001)",
                (values[1], values[1], values[2], values[2]),
            )
        pipeline.wait(lambda: set(pg_plain_state(pg_dsn, name)) == {1, 2, 3}, "the rows on the target")
    finally:
        pipeline.stop()
    assert pipeline.proc.returncode == 0, pipeline.log()[-4000:]
    types = pg_types(pg_dsn, name, name)
    assert types["at"] == "timestamp without time zone(3)", types
    assert types["at6"] == "timestamp without time zone(6)", types
    assert types["amount"] == "numeric(30,10)", types
    rows = pg_plain_state(pg_dsn, name)
    assert [rows[i]["at"] for i in (1, 2, 3)] == values
    assert [rows[i]["at6"] for i in (1, 2, 3)] == values
    assert [rows[i]["amount"] for i in (1, 2, 3)] == [
        Decimal("12345678901234567890.0123456789"),
        None,
        Decimal("-1E-10"),
    ]
