"""Incremental snapshot on the stack's MariaDB, asked for with `cdc-logs snapshot` while `cdc-logs run`
streams into the SQL apply sink (a schema of its own on the stack's Postgres) and an updater thread
keeps changing the table: afterwards the target table equals the source table, row for row.

Everything created (MariaDB tables, the Postgres schema and marker table) is removed afterwards.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tests.integration.conftest import mariadb_dsn, pg_dsn, unique_name  # noqa: F401 - fixtures
from tests.integration.test_incremental_snapshot_pg import SIGNAL_DDL, Run

pymysql = pytest.importorskip("pymysql")
psycopg = pytest.importorskip("psycopg")

ROWS = 50_000


def maria(dsn: str) -> Any:
    parts = urlsplit(dsn)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/") or "test",
        autocommit=True,
    )


@pytest.fixture
def setup(mariadb_dsn: str, pg_dsn: str, unique_name: str) -> Iterator[str]:  # noqa: F811
    uid = unique_name
    db = maria(mariadb_dsn)
    target = psycopg.connect(pg_dsn, autocommit=True)
    try:
        with db.cursor() as cur:
            cur.execute(f"CREATE TABLE {uid} (id bigint PRIMARY KEY, v bigint NOT NULL, pad varchar(20))")
            cur.execute(SIGNAL_DDL.format(f"{uid}_signal"))
        target.execute(f"CREATE SCHEMA {uid}_sink")
        yield uid
    finally:
        with db.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {uid}, {uid}_signal")
        db.close()
        target.execute(f"DROP SCHEMA IF EXISTS {uid}_sink CASCADE")
        with contextlib.suppress(psycopg.Error):
            target.execute(f"DROP TABLE IF EXISTS {uid}_applied")
        target.close()


class Updater(threading.Thread):
    def __init__(self, dsn: str, table: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.table = dsn, table
        self.rng = random.Random(1414)
        self.halt = threading.Event()
        self.changes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        value, next_id = 10_000_000, ROWS + 1
        try:
            db = maria(self.dsn)
            with db.cursor() as cur:
                while not self.halt.is_set():
                    cur.execute("BEGIN")
                    for _ in range(self.rng.randint(1, 8)):
                        value += 1
                        pick = self.rng.random()
                        if pick < 0.85:
                            key = self.rng.randint(1, ROWS)
                            cur.execute(f"UPDATE {self.table} SET v = %s WHERE id = %s", (value, key))
                        elif pick < 0.95:
                            cur.execute(f"INSERT INTO {self.table} VALUES (%s, %s, 'new')", (next_id, value))
                            next_id += 1
                        else:
                            cur.execute(
                                f"DELETE FROM {self.table} WHERE id = %s", (self.rng.randint(1, ROWS),)
                            )
                        self.changes += 1
                    cur.execute("COMMIT")
                    time.sleep(0.002)
            db.close()
        except BaseException as exc:
            self.error = exc


def test_cdc_logs_snapshot_on_mariadb_while_updates_run(
    mariadb_dsn: str,  # noqa: F811
    pg_dsn: str,  # noqa: F811
    setup: str,
    tmp_path: Path,
) -> None:
    uid = setup
    database = urlsplit(mariadb_dsn).path.lstrip("/") or "test"
    db = maria(mariadb_dsn)
    with db.cursor() as cur:
        cur.execute(f"INSERT INTO {uid} SELECT seq, seq, CONCAT('row ', seq) FROM seq_1_to_{ROWS}")
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
name: {uid}
source:
  type: mariadb
  dsn: "{mariadb_dsn}"
  tables: [{database}.{uid}]
  snapshot: false
  signal_data_collection: {database}.{uid}_signal
  heartbeat_interval_ms: 500
destination:
  type: postgresql
  url: "{pg_dsn}"
  schema: {uid}_sink
  auto_create: true
  applied_table: {uid}_applied
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync:
  batch: {{max_events: 2000, max_wait_ms: 50}}
"""
    )
    run = Run(config, tmp_path, "run")
    updater = Updater(mariadb_dsn, uid)
    try:
        run.wait_for("binlog streaming", timeout=60)
        updater.start()
        time.sleep(0.5)
        started = time.monotonic()
        ask = subprocess.run(
            [sys.executable, "-m", "cdc_logs", "snapshot", f"{database}.{uid}", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ask.returncode == 0, ask.stderr
        assert "execute" not in ask.stderr
        run.wait_for("incremental snapshot finished", timeout=240)
        seconds = time.monotonic() - started
        updater.halt.set()
        updater.join(30)
        assert updater.error is None, updater.error
        with db.cursor() as cur:
            cur.execute(f"INSERT INTO {uid} VALUES (0, -1, 'sentinel')")
        with psycopg.connect(pg_dsn, autocommit=True) as target:
            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(psycopg.Error):
                    if target.execute(f"SELECT 1 FROM {uid}_sink.{uid} WHERE id = 0").fetchone():
                        break
                assert run.proc.poll() is None, run.text()[-4000:]
                assert time.monotonic() < deadline, "the sentinel never reached the target"
                time.sleep(0.2)
            got = dict(target.execute(f"SELECT id, v FROM {uid}_sink.{uid}").fetchall())
        run.stop()
    finally:
        updater.halt.set()
        if run.proc.poll() is None:
            run.proc.kill()
    with db.cursor() as cur:
        cur.execute(f"SELECT id, v FROM {uid}")
        want = {int(k): int(v) for k, v in cur.fetchall()}
        cur.execute(f"SELECT COUNT(*) FROM {uid}_signal")
        (left,) = cur.fetchone()
    db.close()
    missing = sorted(set(want) - set(got))[:10]
    extra = sorted(set(got) - set(want))[:10]
    stale = sorted(k for k in want if k in got and got[k] != want[k])[:10]
    assert not missing and not extra and not stale, f"missing {missing}, extra {extra}, stale {stale}"
    assert updater.changes > 100
    assert left == 1, f"{left} signal rows left: the watermark rows should be deleted, the request kept"
    print(f"\nMariaDB {ROWS}-row incremental snapshot: {seconds:.1f} s, {updater.changes} concurrent changes")


def test_sigkill_mid_snapshot_on_mariadb_resumes_and_ends_equal(
    mariadb_dsn: str,  # noqa: F811
    setup: str,
    tmp_path: Path,
) -> None:
    import signal as signals

    from tests.integration.test_incremental_snapshot_pg import replay

    uid, rows = setup, 20_000
    database = urlsplit(mariadb_dsn).path.lstrip("/") or "test"
    out = tmp_path / "out" / "changes.jsonl"
    db = maria(mariadb_dsn)
    with db.cursor() as cur:
        cur.execute(f"INSERT INTO {uid} SELECT seq, seq, CONCAT('row ', seq) FROM seq_1_to_{rows}")
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
name: {uid}
source:
  type: mariadb
  dsn: "{mariadb_dsn}"
  tables: [{database}.{uid}]
  snapshot: false
  signal_data_collection: {database}.{uid}_signal
  incremental_snapshot_chunk_size: 500
  heartbeat_interval_ms: 500
destination: {{type: file, path: {out}}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync:
  queue_size: 2000
  batch: {{max_events: 200, max_wait_ms: 50}}
"""
    )
    first = Run(config, tmp_path, "first")
    updater = Updater(mariadb_dsn, uid)
    second: Run | None = None
    try:
        first.wait_for("binlog streaming", timeout=60)
        updater.start()
        ask = subprocess.run(
            [sys.executable, "-m", "cdc_logs", "snapshot", f"{database}.{uid}", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ask.returncode == 0, ask.stderr
        deadline = time.monotonic() + 120
        while not (out.exists() and out.read_bytes().count(b'"snapshot":"incremental"') >= 6000):
            assert first.proc.poll() is None, first.text()[-4000:]
            assert time.monotonic() < deadline, "the snapshot never got going"
            time.sleep(0.05)
        first.proc.send_signal(signals.SIGKILL)
        first.proc.wait(10)
        before_kill = out.read_bytes().count(b'"snapshot":"incremental"')
        second = Run(config, tmp_path, "second")
        second.wait_for("incremental snapshot resumes", timeout=90)
        second.wait_for("incremental snapshot finished", timeout=180)
        updater.halt.set()
        updater.join(30)
        assert updater.error is None, updater.error
        with db.cursor() as cur:
            cur.execute(f"INSERT INTO {uid} VALUES (0, -1, 'sentinel')")
        deadline = time.monotonic() + 120
        while b'"pad":"sentinel"' not in out.read_bytes()[-100_000:]:
            assert second.proc.poll() is None, second.text()[-4000:]
            assert time.monotonic() < deadline, "the sentinel never reached the sink"
            time.sleep(0.2)
        second.stop()
    finally:
        updater.halt.set()
        for run in (first, second):
            if run is not None and run.proc.poll() is None:
                run.proc.kill()
    got, snaps = replay(out)
    with db.cursor() as cur:
        cur.execute(f"SELECT id, v FROM {uid}")
        want = {int(k): int(v) for k, v in cur.fetchall()}
    db.close()
    stale = sorted(k for k in want if got.get(k) != want[k])[:10]
    extra = sorted(set(got) - set(want))[:10]
    assert not stale and not extra, f"missing or stale {stale}, extra {extra}"
    ids = [e["after"]["id"] for e in snaps]
    again = len(ids) - len(set(ids))
    assert again < before_kill / 2, f"{again} snapshot rows came twice (of {before_kill} before the kill)"


def test_doctor_checks_the_signal_table(mariadb_dsn: str, setup: str) -> None:  # noqa: F811
    from cdc_logs.readers.mysql.connection import parse_dsn
    from cdc_logs.readers.mysql.incremental import signal_checks

    settings = parse_dsn(mariadb_dsn)
    database = settings.database or "test"
    (good,) = signal_checks(settings, (database, f"{setup}_signal"))
    assert good.ok, good.detail
    (missing,) = signal_checks(settings, (database, f"{setup}_nosuch"))
    assert not missing.ok and "CREATE TABLE" in (missing.fix or "")
    (wrong,) = signal_checks(settings, (database, setup))  # the data table: not Debezium's columns
    assert not wrong.ok and "not Debezium's" in wrong.detail


def test_a_table_added_to_the_config_is_snapshotted_on_the_next_start_mariadb(
    mariadb_dsn: str,  # noqa: F811
    setup: str,
    tmp_path: Path,
) -> None:
    from tests.integration.test_incremental_snapshot_pg import replay

    uid = setup
    added = f"{uid}_added"
    database = urlsplit(mariadb_dsn).path.lstrip("/") or "test"
    out = tmp_path / "out" / "changes.jsonl"
    db = maria(mariadb_dsn)
    with db.cursor() as cur:
        cur.execute(f"CREATE TABLE {added} (id bigint PRIMARY KEY, v bigint NOT NULL, pad varchar(20))")
        cur.execute(f"INSERT INTO {added} SELECT seq, seq, 'old' FROM seq_1_to_2000")
    try:
        text = f"""
name: {uid}
source:
  type: mariadb
  dsn: "{mariadb_dsn}"
  tables: [{database}.{uid}]
  snapshot: false
  snapshot_new_tables: true
  signal_data_collection: {database}.{uid}_signal
  heartbeat_interval_ms: 500
destination: {{type: file, path: {out}}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
"""
        config = tmp_path / "pipeline.yaml"
        config.write_text(text)
        first = Run(config, tmp_path, "first")
        first.wait_for("binlog streaming", timeout=60)
        with db.cursor() as cur:
            cur.execute(f"INSERT INTO {uid} VALUES (1, 1, 'first')")  # a committed position
        deadline = time.monotonic() + 60
        while not (out.exists() and b'"first"' in out.read_bytes()):
            assert time.monotonic() < deadline and first.proc.poll() is None, first.text()[-3000:]
            time.sleep(0.1)
        time.sleep(1.0)
        first.stop()
        config.write_text(
            text.replace(f"tables: [{database}.{uid}]", f"tables: [{database}.{uid}, {database}.{added}]")
        )
        second = Run(config, tmp_path, "second")
        try:
            second.wait_for("tables added to the source since the last run", timeout=60)
            second.wait_for("incremental snapshot finished", timeout=90)
            with db.cursor() as cur:
                cur.execute(f"INSERT INTO {uid} VALUES (0, -1, 'sentinel')")
            deadline = time.monotonic() + 60
            while b'"sentinel"' not in out.read_bytes():
                assert time.monotonic() < deadline and second.proc.poll() is None, second.text()[-3000:]
                time.sleep(0.1)
            second.stop()
        finally:
            if second.proc.poll() is None:
                second.proc.kill()
        _, snaps = replay(out)
        assert {e["source"]["table"] for e in snaps} == {added}
        assert sorted(e["after"]["id"] for e in snaps) == list(range(1, 2001))
    finally:
        with db.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {added}")
        db.close()


def test_a_composite_text_key_is_read_in_chunks_exactly_once_mariadb(mariadb_dsn: str, setup: str) -> None:  # noqa: F811
    """The MySQL reader alone: keys (varchar, int) kept as text and compared by the server with the
    column's collation, chunks of 4, an additional condition; the watermark rows are deleted."""
    import orjson

    from cdc_logs.envelope import ChangeEvent
    from cdc_logs.readers.mysql.connection import parse_dsn
    from cdc_logs.readers.mysql.reader import MysqlReader

    uid = setup
    table = f"{uid}_ck"
    database = urlsplit(mariadb_dsn).path.lstrip("/") or "test"
    words = ["apple", "b'q", "zeta", "é", "10", "9", " space", "a,b", "Ärger"]
    db = maria(mariadb_dsn)
    with db.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (a varchar(20), b int, v int, PRIMARY KEY (a, b))")
        for w in words:
            for b in range(3):
                cur.execute(f"INSERT INTO {table} VALUES (%s, %s, %s)", (w, b, b))
    reader = MysqlReader(
        parse_dsn(mariadb_dsn),
        [f"{database}.{table}"],
        pipeline_name=uid,
        temporary=True,
        signal_table=f"{database}.{uid}_signal",
        incremental_chunk_size=4,
    )
    data = orjson.dumps(
        {
            "data-collections": [f"{database}.{table}"],
            "type": "incremental",
            "additional-conditions": [{"data-collection": f"{database}.{table}", "filter": "b < 2"}],
        }
    ).decode()
    got: list[tuple[str, int]] = []
    try:
        reader.open()
        stream = reader.stream(None)
        next(stream)
        with db.cursor() as cur:
            cur.execute(f"INSERT INTO {uid}_signal VALUES ('ck', 'execute-snapshot', %s)", (data,))
        deadline, started = time.monotonic() + 60, False
        while True:
            assert time.monotonic() < deadline, got
            item = next(stream)
            started = started or bool(reader.snapshot_progress())
            if isinstance(item, ChangeEvent) and item.op.value == "r":
                got.append((item.after["a"], item.after["b"]))
            if started and not reader.snapshot_progress() and item is not None and item.boundary:
                break
    finally:
        reader.close()
        with db.cursor() as cur:
            cur.execute(f"SELECT id FROM {uid}_signal")
            left = [r[0] for r in cur.fetchall()]
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        db.close()
    assert sorted(got) == sorted((w, b) for w in words for b in range(2))
    assert len(got) == len(set(got))
    assert left == ["ck"], left


def test_a_filter_with_percent_signs_works_and_a_failing_filter_leaves_only_its_table_out_mariadb(
    mariadb_dsn: str,  # noqa: F811
    setup: str,
) -> None:
    """`%` in a condition (LIKE 'upd%', id % 2) reaches the server as itself in the chunk query with
    bound keys; a condition failing at run time (a subquery of two rows) leaves its table out with a
    logged error and the stream goes on (both used to kill the reader for good)."""
    import orjson

    from cdc_logs.envelope import ChangeEvent
    from cdc_logs.readers.mysql.connection import parse_dsn
    from cdc_logs.readers.mysql.reader import MysqlReader

    uid = setup
    pct, bad = f"{uid}_pct", f"{uid}_bad"
    database = urlsplit(mariadb_dsn).path.lstrip("/") or "test"
    db = maria(mariadb_dsn)
    with db.cursor() as cur:
        for t in (pct, bad):
            cur.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, pad varchar(20))")
            for i in range(1, 21):
                cur.execute(f"INSERT INTO {t} VALUES (%s, %s)", (i, f"upd-{i}" if i % 3 == 0 else "new"))
    reader = MysqlReader(
        parse_dsn(mariadb_dsn),
        [f"{database}.{pct}", f"{database}.{bad}"],
        pipeline_name=uid,
        temporary=True,
        signal_table=f"{database}.{uid}_signal",
        incremental_chunk_size=2,
    )
    data = orjson.dumps(
        {
            "data-collections": [f"{database}.{bad}", f"{database}.{pct}"],
            "type": "incremental",
            "additional-conditions": [
                {"data-collection": f"{database}.{bad}", "filter": "id = (SELECT 1 UNION SELECT 2)"},
                {"data-collection": f"{database}.{pct}", "filter": "pad LIKE 'upd%' AND id % 2 = 0"},
            ],
        }
    ).decode()
    got: list[tuple[str, int]] = []
    try:
        reader.open()
        stream = reader.stream(None)
        next(stream)
        with db.cursor() as cur:
            cur.execute(f"INSERT INTO {uid}_signal VALUES ('pct', 'execute-snapshot', %s)", (data,))
        deadline, started = time.monotonic() + 60, False
        while True:
            assert time.monotonic() < deadline, got
            item = next(stream)
            started = started or bool(reader.snapshot_progress())
            if isinstance(item, ChangeEvent) and item.op.value == "r":
                got.append((item.source.table, item.after["id"]))
            if started and not reader.snapshot_progress() and item is not None and item.boundary:
                break
    finally:
        reader.close()
        with db.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {pct}, {bad}")
        db.close()
    assert sorted(got) == [(pct, 6), (pct, 12), (pct, 18)]


def test_cdc_logs_snapshot_refuses_a_missing_signal_table_with_its_ddl(
    mariadb_dsn: str,  # noqa: F811
    setup: str,
    tmp_path: Path,
) -> None:
    uid = setup
    database = urlsplit(mariadb_dsn).path.lstrip("/") or "test"
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
name: {uid}
source:
  type: mariadb
  dsn: "{mariadb_dsn}"
  tables: [{database}.{uid}]
  signal_data_collection: {database}.{uid}_nope
destination: {{type: stdout}}
"""
    )
    result = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "snapshot", uid, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"CREATE TABLE {database}.{uid}_nope (id varchar(42)" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_first_one_time_run_with_no_events_still_records_the_captured_tables_mariadb(
    mariadb_dsn: str,  # noqa: F811
    setup: str,
    tmp_path: Path,
) -> None:
    """snapshot_new_tables: a first `one_time` run that delivers nothing stores a position naming the
    captured tables all the same, so a table added afterwards is snapshotted on the next start."""
    from tests.integration.test_incremental_snapshot_pg import replay

    uid = setup
    added = f"{uid}_added"
    database = urlsplit(mariadb_dsn).path.lstrip("/") or "test"
    out = tmp_path / "out" / "changes.jsonl"
    db = maria(mariadb_dsn)
    with db.cursor() as cur:
        cur.execute(f"CREATE TABLE {added} (id bigint PRIMARY KEY, v bigint NOT NULL, pad varchar(20))")
        cur.execute(f"INSERT INTO {added} SELECT seq, seq, 'old' FROM seq_1_to_30")
    try:
        text = f"""
name: {uid}
source:
  type: mariadb
  dsn: "{mariadb_dsn}"
  tables: [{database}.{uid}]
  snapshot: false
  snapshot_new_tables: true
  signal_data_collection: {database}.{uid}_signal
  heartbeat_interval_ms: 500
destination: {{type: file, path: {out}}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
"""
        config = tmp_path / "pipeline.yaml"
        config.write_text(
            text.replace("heartbeat_interval_ms: 500", "heartbeat_interval_ms: 600000")
            + "sync: {mode: one_time}\n"
        )
        first = subprocess.run(
            [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert first.returncode == 0, first.stderr[-4000:]
        config.write_text(
            text.replace(f"tables: [{database}.{uid}]", f"tables: [{database}.{uid}, {database}.{added}]")
        )
        second = Run(config, tmp_path, "second")
        try:
            second.wait_for("tables added to the source since the last run", timeout=60)
            second.wait_for("incremental snapshot finished", timeout=60)
            with db.cursor() as cur:
                cur.execute(f"INSERT INTO {uid} VALUES (0, -1, 'sentinel')")
            deadline = time.monotonic() + 60
            while not (out.exists() and b'"sentinel"' in out.read_bytes()):
                assert time.monotonic() < deadline and second.proc.poll() is None, second.text()[-3000:]
                time.sleep(0.1)
            second.stop()
        finally:
            if second.proc.poll() is None:
                second.proc.kill()
        _, snaps = replay(out)
        assert sorted(e["after"]["id"] for e in snaps) == list(range(1, 31))
    finally:
        with db.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {added}")
        db.close()
