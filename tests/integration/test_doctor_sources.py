"""`cdc-logs doctor` for every reader: from flags and from a pipeline file, as a user runs it.

SQLite and polling-over-SQLite need no server; polling over Postgres and `-c` for the log readers use
the stack's Postgres and MariaDB. Each case is a setup a user really gets wrong, and the check that
must name it.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg

from cdc_logs.readers.sqlite import state


def doctor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc_logs", "doctor", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def lines(result: subprocess.CompletedProcess[str], mark: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(mark)]


def make_db(path: Path, *ddl: str) -> None:
    with sqlite3.connect(path) as conn:
        for statement in ddl:
            conn.execute(statement)


def run_once(cwd: Path, config: str) -> None:
    (cwd / "p.yaml").write_text(config)
    result = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "run", "-c", "p.yaml"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_sqlite_from_flags_names_each_problem(tmp_path: Path) -> None:
    make_db(
        tmp_path / "app.db", "CREATE TABLE orders(id INTEGER PRIMARY KEY, v TEXT)", "CREATE TABLE log(a, b)"
    )
    result = doctor(
        "--source", "sqlite", "--dsn", "app.db", "-t", "orders", "-t", "log", "-t", "nope", cwd=tmp_path
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert lines(result, "ok   table orders")[0].endswith(
        "no capture triggers yet (the first run installs them)"
    )
    assert lines(result, "warn table log"), result.stdout  # keyed by rowid: works, but VACUUM can renumber
    assert "add a PRIMARY KEY to log" in result.stdout
    assert "FAIL table nope: table 'nope' does not exist" in result.stdout
    assert result.stdout.rstrip().endswith(
        "4 of 5 checks ok (1 with a warning); 1 to fix"
    )  # file, access, 3 tables
    # read-only: no triggers, no change table, no WAL switch
    with sqlite3.connect(tmp_path / "app.db") as conn:
        assert not state.installed(conn)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_sqlite_not_a_database_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not sqlite at all " * 100)
    bad = doctor("--source", "sqlite", "--dsn", "notes.db", "-t", "t", cwd=tmp_path)
    assert bad.returncode == 1 and "FAIL database file" in bad.stdout, bad.stdout + bad.stderr
    directory = doctor("--source", "sqlite", "--dsn", str(tmp_path), "-t", "t", cwd=tmp_path)
    assert "is a directory, not a SQLite database file" in directory.stdout, directory.stdout
    missing = doctor("--source", "sqlite", "--dsn", "gone.db", "-t", "t", cwd=tmp_path)
    assert missing.returncode == 1 and "FAIL database file: 'gone.db' does not exist" in missing.stdout
    assert not (tmp_path / "gone.db").exists()


SQLITE_PIPELINE = """
name: docsq
source: {type: sqlite, path: app.db, tables: [orders], snapshot: true}
destination: {type: file, path: out.jsonl}
sync: {mode: one_time}
"""


def test_sqlite_config_checks_the_stored_position(tmp_path: Path) -> None:
    make_db(
        tmp_path / "app.db",
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO orders VALUES (1, 'a')",
    )
    run_once(tmp_path, SQLITE_PIPELINE)
    ok = doctor("-c", "p.yaml", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok   stored position: resumes after change" in ok.stdout
    assert "capture triggers installed" in ok.stdout

    # Another reader of the file trims changes this pipeline has not read (its consumer was dropped).
    with sqlite3.connect(tmp_path / "app.db", isolation_level=None) as conn:
        conn.execute("INSERT INTO orders VALUES (2, 'b')")
        state.forget_consumer(conn, "docsq")
    trimmed = doctor("-c", "p.yaml", cwd=tmp_path)
    assert trimmed.returncode == 1
    assert "FAIL stored position: changes" in trimmed.stdout and "were trimmed" in trimmed.stdout
    assert "cdc-logs offsets reset" in trimmed.stdout

    # The database file recreated at the same path: the stored position belongs to the old one,
    # before a run has touched the new file and after one installed its capture tables.
    (tmp_path / "app.db").unlink()
    make_db(tmp_path / "app.db", "CREATE TABLE orders(id INTEGER PRIMARY KEY, v TEXT)")
    fresh = doctor("-c", "p.yaml", cwd=tmp_path)
    assert fresh.returncode == 1
    assert "FAIL stored position: the position was taken on sqlite:" in fresh.stdout
    assert "this file has no capture tables" in fresh.stdout
    with sqlite3.connect(tmp_path / "app.db", isolation_level=None) as conn:
        state.ensure_schema(conn)
    replaced = doctor("-c", "p.yaml", cwd=tmp_path)
    assert replaced.returncode == 1
    assert "FAIL stored position: the position was taken on sqlite:" in replaced.stdout


def test_config_without_a_run_creates_no_offset_store(tmp_path: Path) -> None:
    make_db(tmp_path / "app.db", "CREATE TABLE orders(id INTEGER PRIMARY KEY, v TEXT)")
    (tmp_path / "p.yaml").write_text(SQLITE_PIPELINE)
    result = doctor("-c", "p.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / ".cdc-logs").exists()


POLL_SQLITE = """
name: docpoll
source:
  type: poll
  url: sqlite:///app.db
  safety_lag_ms: {lag}
  tables:
    - {{table: orders, mode: timestamp+incrementing, timestamp_column: updated_at, incrementing_column: id}}
    - {{table: events, mode: incrementing, incrementing_column: seq, soft_delete_column: deleted}}
    - {{table: orders, mode: incrementing, incrementing_column: missing_col}}
destination: {{type: stdout}}
"""


def test_poll_over_sqlite(tmp_path: Path) -> None:
    make_db(
        tmp_path / "app.db",
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, updated_at TEXT, v TEXT)",
        "CREATE TABLE events(seq INTEGER, body TEXT, deleted INTEGER)",
        "CREATE INDEX events_seq ON events(seq)",
    )
    (tmp_path / "p.yaml").write_text(POLL_SQLITE.format(lag=0))
    result = doctor("-c", "p.yaml", cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "ok   connect: sqlite:///app.db (sqlite)" in out
    assert "warn orders: index: no index starts with updated_at" in out
    assert "fix: CREATE INDEX orders_updated_at_idx ON orders (updated_at, id)" in out
    assert "ok   events: index: seq leads an index" in out
    assert "warn orders: deletes" in out and "events: deletes" not in out
    assert "warn orders: late commits" in out and "events: late commits" not in out
    assert "FAIL table orders: poll table 'orders': incrementing column 'missing_col' is not among" in out
    assert "(did you mean" not in out  # nothing close to missing_col

    (tmp_path / "p.yaml").write_text(POLL_SQLITE.format(lag=0).replace("missing_col", "idd"))
    assert (
        "fix the incrementing column setting (did you mean 'id'?)"
        in doctor("-c", "p.yaml", cwd=tmp_path).stdout
    )

    (tmp_path / "p.yaml").write_text(POLL_SQLITE.format(lag=5000))
    assert "late commits" not in doctor("-c", "p.yaml", cwd=tmp_path).stdout


def test_poll_over_postgres_and_pg_from_config(tmp_path: Path, pg_dsn: str, unique_name: str) -> None:
    table = f"doc_{unique_name}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, updated_at timestamp, v text)")
        conn.execute(f"CREATE INDEX ON {table} (updated_at, id)")
        conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    try:
        url = pg_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        (tmp_path / "poll.yaml").write_text(
            f"name: dp\nsource:\n  type: poll\n  url: {url}\n  safety_lag_ms: 2000\n  tables:\n"
            f"    - {{table: {table}, mode: timestamp+incrementing, timestamp_column: updated_at, "
            f"incrementing_column: id}}\ndestination: {{type: stdout}}\n"
        )
        poll = doctor("-c", "poll.yaml", cwd=tmp_path)
        assert poll.returncode == 0, poll.stdout + poll.stderr
        assert f"ok   {table}: index: updated_at leads an index" in poll.stdout
        assert ":cdc@" not in poll.stdout and "cdc:cdc" not in poll.stdout  # the password never printed

        (tmp_path / "pg.yaml").write_text(
            f"name: dpg\nsource: {{type: pg, dsn: '{pg_dsn}', tables: [public.{table}]}}\n"
            "destination: {type: stdout}\n"
        )
        pg = doctor("-c", "pg.yaml", cwd=tmp_path)
        assert "ok   wal_level" in pg.stdout, pg.stdout + pg.stderr
        assert f"ok   table public.{table}: replica identity FULL" in pg.stdout
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def test_mariadb_from_config_and_flags(tmp_path: Path, mariadb_dsn: str) -> None:
    (tmp_path / "m.yaml").write_text(
        f"name: dm\nsource: {{type: mariadb, dsn: '{mariadb_dsn}', schemas: [test]}}\n"
        "destination: {type: stdout}\n"
    )
    from_config = doctor("-c", "m.yaml", cwd=tmp_path)
    assert "ok   binlog_format: binlog_format = ROW" in from_config.stdout, (
        from_config.stdout + from_config.stderr
    )
    ahead = doctor("--source", "mariadb", "--dsn", mariadb_dsn, "--gtid", "0-1-999999999", cwd=tmp_path)
    assert ahead.returncode == 1
    assert "FAIL stored position: GTID 0-1-999999999 is ahead of the server" in ahead.stdout


def test_usage_errors(tmp_path: Path) -> None:
    nothing = doctor(cwd=tmp_path)
    assert nothing.returncode == 2 and "doctor needs a pipeline (-c pipeline.yaml)" in nothing.stderr
    poll = doctor("--source", "poll", "--dsn", "sqlite:///x.db", cwd=tmp_path)
    assert poll.returncode == 2 and "cdc-logs doctor -c pipeline.yaml" in poll.stderr
    debezium = doctor("--source", "debezium", "--dsn", "x", cwd=tmp_path)
    assert debezium.returncode == 2
