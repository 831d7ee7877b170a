"""Incremental snapshots on the stack's Postgres: `cdc-logs run` streams while a signal-table row asks
for a snapshot of a 200,000-row table and an updater thread keeps changing it; the file sink, replayed
in order into a dict, must equal the table afterwards (every update's final state, every insert and
delete). A second test SIGKILLs the run mid-snapshot and checks the restart continues from the last
finished chunk (not from the start) and still ends equal.

Each test creates its own table, signal table, slot and publication and removes them afterwards.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.conftest import pg_dsn, unique_name  # noqa: F401 - fixtures, used by name

psycopg = pytest.importorskip("psycopg")

SIGNAL_DDL = "CREATE TABLE {} (id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048))"


@dataclass
class Names:
    table: str
    signal: str
    slot: str


@pytest.fixture
def names(pg_dsn: str, unique_name: str) -> Iterator[Names]:  # noqa: F811
    n = Names(unique_name, f"{unique_name}_signal", f"cdc_logs_{unique_name}")
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {n.table} (id bigint PRIMARY KEY, v bigint NOT NULL, pad text)")
        db.execute(SIGNAL_DDL.format(n.signal))
        try:
            yield n
        finally:
            row = db.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (n.slot,)
            ).fetchone()
            if row and row[0]:
                db.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                time.sleep(0.5)
            with contextlib.suppress(psycopg.Error):
                db.execute("SELECT pg_drop_replication_slot(%s)", (n.slot,))
            db.execute(f'DROP PUBLICATION IF EXISTS "{n.slot}"')
            db.execute(f"DROP TABLE IF EXISTS {n.table}, {n.signal}")


def load(dsn: str, table: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f"INSERT INTO {table} SELECT g, g, 'row ' || g FROM generate_series(1, {rows}) g")
        db.execute(f"ANALYZE {table}")


def write_config(tmp: Path, dsn: str, n: Names, *, chunk: int, batch: int = 2000) -> Path:
    config = tmp / "pipeline.yaml"
    config.write_text(
        f"""
name: {n.slot.removeprefix("cdc_logs_")}
source:
  type: pg
  dsn: "{dsn}"
  tables: [public.{n.table}]
  slot: {n.slot}
  snapshot: false
  signal_data_collection: public.{n.signal}
  incremental_snapshot_chunk_size: {chunk}
  heartbeat_interval_ms: 500
  status_interval_ms: 500
destination: {{type: file, path: {tmp / "out" / "changes.jsonl"}}}
offsets: {{type: sqlite, path: {tmp / "offsets.db"}}}
sync:
  queue_size: 2000
  batch: {{max_events: {batch}, max_wait_ms: 50}}
"""
    )
    return config


class Run:
    """`cdc-logs run` as a subprocess, its log in a file (a pipe could fill and block it)."""

    def __init__(self, config: Path, tmp: Path, name: str) -> None:
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while what not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"never logged {what!r}:\n" + self.text()[-4000:])
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        assert self.proc.returncode == 0, self.text()[-4000:]


def wait_streaming(dsn: str, slot: str, run: Run, timeout: float = 90) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        deadline = time.monotonic() + timeout
        while not db.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active", (slot,)
        ).fetchone():
            if run.proc.poll() is not None or time.monotonic() > deadline:
                run.proc.kill()
                pytest.fail("the run never started streaming:\n" + run.text()[-4000:])
            time.sleep(0.1)


class Updater(threading.Thread):
    """Small transactions of updates (most), inserts past the loaded keys, and deletes."""

    def __init__(self, dsn: str, table: str, rows: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.dsn, self.table, self.rows = dsn, table, rows
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.changes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        value, next_id = 10_000_000, self.rows + 1
        try:
            with psycopg.connect(self.dsn, autocommit=True) as db:
                while not self.halt.is_set():
                    with db.transaction():
                        for _ in range(self.rng.randint(1, 8)):
                            value += 1
                            pick = self.rng.random()
                            if pick < 0.85:
                                key = self.rng.randint(1, self.rows)
                                db.execute(f"UPDATE {self.table} SET v = %s WHERE id = %s", (value, key))
                            elif pick < 0.95:
                                db.execute(
                                    f"INSERT INTO {self.table} VALUES (%s, %s, 'new')", (next_id, value)
                                )
                                next_id += 1
                            else:
                                key = self.rng.randint(1, self.rows)
                                db.execute(f"DELETE FROM {self.table} WHERE id = %s", (key,))
                            self.changes += 1
                    time.sleep(0.002)
        except BaseException as exc:  # reported by the test
            self.error = exc


def replay(out: Path) -> tuple[dict[int, int], list[dict[str, Any]]]:
    """The sink's file applied in order: (id -> v, the snapshot rows)."""
    state: dict[int, int] = {}
    snaps: list[dict[str, Any]] = []
    for line in out.read_bytes().splitlines():
        event = orjson.loads(line)
        if event["op"] == "d":
            state.pop(event["before"]["id"], None)
            continue
        state[event["after"]["id"]] = event["after"]["v"]
        if event["op"] == "r":
            snaps.append(event)
    return state, snaps


def table_state(dsn: str, table: str) -> dict[int, int]:
    with psycopg.connect(dsn) as db:
        return dict(db.execute(f"SELECT id, v FROM {table}").fetchall())


def settle(dsn: str, table: str, out: Path, run: Run) -> None:
    """Write a sentinel row and wait for it in the sink: everything committed before it is there."""
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f"INSERT INTO {table} VALUES (0, -1, 'sentinel')")
    deadline = time.monotonic() + 120
    while not (out.exists() and b'"pad":"sentinel"' in out.read_bytes()[-200_000:]):
        assert run.proc.poll() is None, run.text()[-4000:]
        assert time.monotonic() < deadline, "the sentinel never reached the sink"
        time.sleep(0.2)


def send_signal(dsn: str, signal_table: str, table: str, sid: str) -> None:
    data = orjson.dumps({"data-collections": [f"public.{table}"], "type": "incremental"}).decode()
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f"INSERT INTO {signal_table} VALUES (%s, 'execute-snapshot', %s)", (sid, data))


def check(dsn: str, n: Names, out: Path) -> tuple[dict[int, int], list[dict[str, Any]]]:
    got, snaps = replay(out)
    want = table_state(dsn, n.table)
    assert snaps, "no snapshot rows reached the sink"
    assert {e["source"]["snapshot"] for e in snaps} == {"incremental"}
    missing = sorted(set(want) - set(got))[:10]
    extra = sorted(set(got) - set(want))[:10]
    wrong = sorted(k for k in want if k in got and got[k] != want[k])[:10]
    assert not missing and not extra and not wrong, f"missing {missing}, extra {extra}, stale {wrong}"
    assert b'"table":"' + n.signal.encode() + b'"' not in out.read_bytes(), "signal rows were emitted"
    return got, snaps


def test_signal_table_snapshot_of_200k_rows_while_updates_run(
    pg_dsn: str,  # noqa: F811
    names: Names,
    tmp_path: Path,
) -> None:
    rows = 200_000
    started = time.monotonic()
    load(pg_dsn, names.table, rows)
    run = Run(write_config(tmp_path, pg_dsn, names, chunk=1024), tmp_path, "run")
    updater = Updater(pg_dsn, names.table, rows, seed=14)
    try:
        wait_streaming(pg_dsn, names.slot, run)
        updater.start()
        time.sleep(0.5)
        send_signal(pg_dsn, names.signal, names.table, "isnap-1")
        snap_start = time.monotonic()
        run.wait_for("incremental snapshot finished", timeout=240)
        snap_seconds = time.monotonic() - snap_start
        updater.halt.set()
        updater.join(30)
        assert updater.error is None, updater.error
        settle(pg_dsn, names.table, tmp_path / "out" / "changes.jsonl", run)
        run.stop()
    finally:
        updater.halt.set()
        if run.proc.poll() is None:
            run.proc.kill()
    got, snaps = check(pg_dsn, names, tmp_path / "out" / "changes.jsonl")
    assert updater.changes > 100, "the updater hardly ran during the snapshot"
    assert len(got) > rows * 0.9
    print(
        f"\n200k incremental snapshot: {snap_seconds:.1f} s snapshot, {time.monotonic() - started:.1f} s "
        f"test, {len(snaps)} snapshot rows, {updater.changes} concurrent changes"
    )


def test_sigkill_mid_snapshot_resumes_from_the_last_finished_chunk(
    pg_dsn: str,  # noqa: F811
    names: Names,
    tmp_path: Path,
) -> None:
    rows, chunk = 30_000, 500
    load(pg_dsn, names.table, rows)
    config = write_config(tmp_path, pg_dsn, names, chunk=chunk, batch=200)
    out = tmp_path / "out" / "changes.jsonl"
    first = Run(config, tmp_path, "first")
    updater = Updater(pg_dsn, names.table, rows, seed=7)
    second: Run | None = None
    try:
        wait_streaming(pg_dsn, names.slot, first)
        updater.start()
        send_signal(pg_dsn, names.signal, names.table, "isnap-kill")
        deadline = time.monotonic() + 120
        while not (out.exists() and out.read_bytes().count(b'"snapshot":"incremental"') >= 8000):
            assert first.proc.poll() is None, first.text()[-4000:]
            assert time.monotonic() < deadline, "the snapshot never got going"
            time.sleep(0.05)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        before_kill = out.read_bytes().count(b'"snapshot":"incremental"')
        assert "incremental snapshot finished" not in first.text()
        second = Run(config, tmp_path, "second")
        second.wait_for("incremental snapshot resumes", timeout=90)
        second.wait_for("incremental snapshot finished", timeout=180)
        updater.halt.set()
        updater.join(30)
        assert updater.error is None, updater.error
        settle(pg_dsn, names.table, out, second)
        second.stop()
    finally:
        updater.halt.set()
        for run in (first, second):
            if run is not None and run.proc.poll() is None:
                run.proc.kill()
    _, snaps = check(pg_dsn, names, out)
    ids = [e["after"]["id"] for e in snaps]
    again = len(ids) - len(set(ids))
    # Rows delivered after the last committed chunk come again; a restart from the first chunk would
    # repeat all `before_kill` of them.
    assert again < before_kill / 2, f"{again} snapshot rows came twice (of {before_kill} before the kill)"


def test_a_table_added_to_the_config_is_snapshotted_on_the_next_start(
    pg_dsn: str,  # noqa: F811
    names: Names,
    tmp_path: Path,
) -> None:
    added = f"{names.table}_added"
    out = tmp_path / "out" / "changes.jsonl"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {added} (id bigint PRIMARY KEY, v bigint NOT NULL, pad text)")
    try:
        load(pg_dsn, names.table, 500)
        load(pg_dsn, added, 3000)
        config = write_config(tmp_path, pg_dsn, names, chunk=1000)
        text = config.read_text().replace("snapshot: false", "snapshot: false\n  snapshot_new_tables: true")
        config.write_text(text)
        first = Run(config, tmp_path, "first")
        wait_streaming(pg_dsn, names.slot, first)
        time.sleep(1.5)  # a heartbeat or two: the committed position names the captured tables
        first.stop()
        config.write_text(
            text.replace(f"tables: [public.{names.table}]", f"tables: [public.{names.table}, public.{added}]")
        )
        second = Run(config, tmp_path, "second")
        try:
            second.wait_for("tables added to the source since the last run", timeout=60)
            second.wait_for("incremental snapshot finished", timeout=60)
            settle(pg_dsn, names.table, out, second)
            second.stop()
        finally:
            if second.proc.poll() is None:
                second.proc.kill()
        events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        snapped = {e["source"]["table"] for e in events if e["op"] == "r"}
        assert snapped == {added}, "only the added table is snapshotted"
        assert sorted(e["after"]["id"] for e in events if e["op"] == "r") == list(range(1, 3001))
        third = Run(config, tmp_path, "third")  # nothing new: no snapshot
        wait_streaming(pg_dsn, names.slot, third)
        time.sleep(1.0)
        third.stop()
        assert "tables added" not in third.text()
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(f"DROP TABLE IF EXISTS {added}")


def test_a_users_publication_without_the_signal_table_is_refused_with_the_fix(
    pg_dsn: str,  # noqa: F811
    names: Names,
) -> None:
    from cdc_logs.errors import CdcError
    from cdc_logs.readers.postgres.connection import connect
    from cdc_logs.readers.postgres.incremental import signal_checks
    from cdc_logs.readers.postgres.reader import PostgresReader

    publication = f"{names.table}_users"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE PUBLICATION {publication} FOR TABLE {names.table}")
    try:
        conn = connect(pg_dsn)
        try:
            checks = {c.name: c for c in signal_checks(conn, f"public.{names.signal}", publication)}
        finally:
            conn.close()
        assert checks["signal table"].ok
        published = checks["signal table published"]
        assert not published.ok and f"ALTER PUBLICATION {publication} ADD TABLE" in (published.fix or "")
        reader = PostgresReader(
            pg_dsn,
            [f"public.{names.table}"],
            pipeline_name=names.table,
            slot=names.slot,
            publication=publication,
            signal_table=f"public.{names.signal}",
        )
        with pytest.raises(CdcError) as info:
            reader.open()
        assert names.signal in info.value.message and "ALTER PUBLICATION" in (info.value.hint or "")
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            tables = db.execute(
                "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (publication,)
            ).fetchall()
        assert tables == [(names.table,)], "the user's publication was altered"
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(f"DROP PUBLICATION IF EXISTS {publication}")


def test_the_reader_keeps_the_event_contract_with_two_tables_in_parallel(
    pg_dsn: str,  # noqa: F811
    names: Names,
) -> None:
    """The reader alone (no pipeline): chunks of 7 rows of two tables per window, updates running,
    every item checked by the event contract checker; the last resume point carries no state."""
    from cdc_logs.envelope import ChangeEvent, Heartbeat
    from cdc_logs.readers.contract import ContractChecker
    from cdc_logs.readers.postgres.reader import PostgresReader

    other = f"{names.table}_b"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {other} (id bigint PRIMARY KEY, v bigint NOT NULL, pad text)")
    load(pg_dsn, names.table, 60)
    load(pg_dsn, other, 25)
    reader = PostgresReader(
        pg_dsn,
        [f"public.{names.table}", f"public.{other}"],
        pipeline_name=names.table,
        temporary=True,
        signal_table=f"public.{names.signal}",
        incremental_chunk_size=7,
        incremental_parallel=2,
        snapshot_new_tables=True,
        heartbeat_interval_s=0,
    )
    items: list[Any] = []
    try:
        reader.open()
        stream = reader.stream(None)
        items.append(next(stream))  # the start heartbeat: the slot exists
        data = orjson.dumps({"data-collections": ["public\\." + names.table + ".*"], "type": "incremental"})
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(f"INSERT INTO {names.signal} VALUES ('par', 'execute-snapshot', %s)", (data.decode(),))
            for key in range(1, 60, 5):
                db.execute(f"UPDATE {names.table} SET v = -v WHERE id = %s", (key,))
            db.execute(f"INSERT INTO {names.table} VALUES (0, -1, 'sentinel')")
        deadline, seen = time.monotonic() + 60, False
        while True:
            assert time.monotonic() < deadline, items[-3:]
            item = next(stream)
            if item is None:
                continue
            items.append(item)
            if isinstance(item, ChangeEvent) and item.after and item.after.get("pad") == "sentinel":
                seen = True
            # The snapshot is over at the first resume point without state after the sentinel (the
            # signal came before it).
            if seen and item.boundary and not item.position.incremental and not reader.snapshot_progress():
                break
    finally:
        reader.close()
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(f"DROP TABLE IF EXISTS {other}")
    violations = ContractChecker().check_all(items)
    assert not violations, violations[:10]
    snaps = [i for i in items if isinstance(i, ChangeEvent) and i.op.value == "r"]
    assert {(e.source.table, e.source.snapshot) for e in snaps} == {
        (names.table, "incremental"),
        (other, "incremental"),
    }
    assert not any(e.boundary for e in snaps)
    assert sorted(e.after["id"] for e in snaps if e.source.table == other) == list(range(1, 26))
    state: dict[int, int] = {}
    for item in items:
        if isinstance(item, ChangeEvent) and item.source.table == names.table:
            state[item.after["id"]] = item.after["v"]
    assert state == {0: -1, **{k: (-k if k % 5 == 1 else k) for k in range(1, 61)}}
    last = next(i for i in reversed(items) if isinstance(i, Heartbeat | ChangeEvent) and i.boundary)
    assert last.position.incremental == ""
    assert last.position.captured == (f"public.{names.table}", f"public.{other}")


def test_cdc_logs_snapshot_stop_ends_a_running_snapshot(
    pg_dsn: str,  # noqa: F811
    names: Names,
    tmp_path: Path,
) -> None:
    """`cdc-logs snapshot` writes execute-snapshot, then `--stop` stop-snapshot; the reader (alone,
    chunks of 5 rows of 20,000) stops after a few chunks and its resume points carry no state."""
    from cdc_logs.envelope import ChangeEvent, Heartbeat
    from cdc_logs.readers.postgres.reader import PostgresReader

    load(pg_dsn, names.table, 20_000)
    config = write_config(tmp_path, pg_dsn, names, chunk=5)
    reader = PostgresReader(
        pg_dsn,
        [f"public.{names.table}"],
        pipeline_name=names.table,
        temporary=True,
        signal_table=f"public.{names.signal}",
        incremental_chunk_size=5,
        heartbeat_interval_s=0,
    )
    items: list[Any] = []

    def cli(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "cdc_logs", "snapshot", *args, "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "signal cdc-logs-" in done.stdout

    try:
        reader.open()
        stream = reader.stream(None)
        items.append(next(stream))
        cli(f"public.{names.table}")
        deadline = time.monotonic() + 60
        while not any(isinstance(i, ChangeEvent) and i.op.value == "r" for i in items):
            assert time.monotonic() < deadline
            items.append(next(stream))
        cli(f"public.{names.table}", "--stop")
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(f"INSERT INTO {names.table} VALUES (0, -1, 'sentinel')")
        while True:
            assert time.monotonic() < deadline, items[-3:]
            item = next(stream)
            items.append(item)
            if isinstance(item, ChangeEvent) and item.after and item.after.get("pad") == "sentinel":
                break
        idle = 0
        while idle < 3:  # watermarks of the stopped chunk may still come: nothing follows them
            item = next(stream)
            idle = idle + 1 if item is None else 0
            if item is not None:
                items.append(item)
    finally:
        reader.close()
    snaps = [i for i in items if isinstance(i, ChangeEvent) and i.op.value == "r"]
    assert 0 < len(snaps) < 20_000 / 2, len(snaps)
    last = [i for i in items if isinstance(i, Heartbeat | ChangeEvent) and i.boundary][-1]
    assert last.position.incremental == ""
    assert not reader.snapshot_progress()


def test_a_composite_text_key_is_read_in_chunks_exactly_once(
    pg_dsn: str,  # noqa: F811
    names: Names,
) -> None:
    """Keys (text, int) paged by row comparison with the keys kept as text and cast back; names that
    sort differently as bytes and by collation, and an additional condition."""
    from cdc_logs.envelope import ChangeEvent
    from cdc_logs.readers.postgres.reader import PostgresReader

    table = f"{names.table}_ck"
    words = ["apple", "Apple", "b'q", "zeta", "é", "10", "9", " space", "a,b", "ä"]
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (a text, b int, v int, PRIMARY KEY (a, b))")
        for w in words:
            for b in range(3):
                db.execute(f"INSERT INTO {table} VALUES (%s, %s, %s)", (w, b, b))
    reader = PostgresReader(
        pg_dsn,
        [f"public.{table}"],
        pipeline_name=names.table,
        temporary=True,
        signal_table=f"public.{names.signal}",
        incremental_chunk_size=4,
        heartbeat_interval_s=0,
    )
    data = orjson.dumps(
        {
            "data-collections": [f"public.{table}"],
            "type": "incremental",
            "additional-conditions": [{"data-collection": f"public.{table}", "filter": "b < 2"}],
        }
    ).decode()
    got: list[tuple[str, int]] = []
    try:
        reader.open()
        stream = reader.stream(None)
        next(stream)
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(f"INSERT INTO {names.signal} VALUES ('ck', 'execute-snapshot', %s)", (data,))
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
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(f"DROP TABLE IF EXISTS {table}")
    assert sorted(got) == sorted((w, b) for w in words for b in range(2))
    assert len(got) == len(set(got))


def test_a_filter_with_percent_signs_works_and_a_failing_filter_leaves_only_its_table_out(
    pg_dsn: str,  # noqa: F811
    names: Names,
) -> None:
    """`%` in a condition (LIKE 'upd%', id % 2) reaches the server as itself, in chunks with bound
    keys; a condition failing at run time (a subquery of two rows: not a 42/22 error) leaves its
    table out with a logged error and the stream goes on (it used to kill the reader for good)."""
    from cdc_logs.envelope import ChangeEvent
    from cdc_logs.readers.postgres.reader import PostgresReader

    pct, bad = f"{names.table}_pct", f"{names.table}_bad"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        for t in (pct, bad):
            db.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, pad text)")
            db.execute(
                f"INSERT INTO {t} SELECT g, CASE WHEN g % 3 = 0 THEN 'upd-' || g ELSE 'new' END "
                "FROM generate_series(1, 20) g"
            )
    reader = PostgresReader(
        pg_dsn,
        [f"public.{pct}", f"public.{bad}"],
        pipeline_name=names.table,
        temporary=True,
        signal_table=f"public.{names.signal}",
        incremental_chunk_size=2,
        heartbeat_interval_s=0,
    )
    data = orjson.dumps(
        {
            "data-collections": [f"public.{bad}", f"public.{pct}"],
            "type": "incremental",
            "additional-conditions": [
                {"data-collection": f"public.{bad}", "filter": "id = (SELECT 1 UNION SELECT 2)"},
                {"data-collection": f"public.{pct}", "filter": "pad LIKE 'upd%' AND id % 2 = 0"},
            ],
        }
    ).decode()
    got: list[tuple[str, int]] = []
    try:
        reader.open()
        stream = reader.stream(None)
        next(stream)
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(f"INSERT INTO {names.signal} VALUES ('pct', 'execute-snapshot', %s)", (data,))
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
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(f"DROP TABLE IF EXISTS {pct}, {bad}")
    assert sorted(got) == [(pct, 6), (pct, 12), (pct, 18)]


def test_cdc_logs_snapshot_refuses_a_signal_that_could_never_be_read(
    pg_dsn: str,  # noqa: F811
    names: Names,
    tmp_path: Path,
) -> None:
    """A user's publication without the signal table, or no signal table at all: exit 2 naming the
    fix (ALTER PUBLICATION / CREATE TABLE), and no row written."""
    publication = f"{names.table}_users"

    def snapshot(signal_table: str) -> subprocess.CompletedProcess[str]:
        config = tmp_path / "pipeline.yaml"
        config.write_text(
            f"""
name: {names.table}
source:
  type: pg
  dsn: "{pg_dsn}"
  tables: [public.{names.table}]
  slot: {names.slot}
  publication: {publication}
  signal_data_collection: {signal_table}
destination: {{type: stdout}}
"""
        )
        return subprocess.run(
            [sys.executable, "-m", "cdc_logs", "snapshot", names.table, "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE PUBLICATION {publication} FOR TABLE {names.table}")
    try:
        result = snapshot(f"public.{names.signal}")
        assert result.returncode == 2, result.stderr
        assert f"ALTER PUBLICATION {publication} ADD TABLE" in result.stderr, result.stderr
        missing = snapshot(f"public.{names.signal}_nope")
        assert missing.returncode == 2, missing.stderr
        assert f"CREATE TABLE public.{names.signal}_nope (id varchar(42)" in missing.stderr, missing.stderr
        assert "Traceback" not in result.stderr + missing.stderr
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            assert db.execute(f"SELECT count(*) FROM {names.signal}").fetchone() == (0,)
            db.execute(f"ALTER PUBLICATION {publication} ADD TABLE {names.signal}")
        written = snapshot(f"public.{names.signal}")
        assert written.returncode == 0, written.stderr
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            assert db.execute(f"SELECT count(*) FROM {names.signal}").fetchone() == (1,)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(f"DROP PUBLICATION IF EXISTS {publication}")


def test_a_first_one_time_run_with_no_events_still_records_the_captured_tables(
    pg_dsn: str,  # noqa: F811
    names: Names,
    tmp_path: Path,
) -> None:
    """snapshot_new_tables: the first run of a new slot in `one_time` mode delivers nothing (no
    events, no heartbeats); the position it stores carries the captured tables all the same, so a
    table added afterwards is snapshotted on the next start."""
    added = f"{names.table}_added"
    out = tmp_path / "out" / "changes.jsonl"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {added} (id bigint PRIMARY KEY, v bigint NOT NULL, pad text)")
    try:
        load(pg_dsn, added, 30)
        config = write_config(tmp_path, pg_dsn, names, chunk=10)
        text = config.read_text().replace("snapshot: false", "snapshot: false\n  snapshot_new_tables: true")
        config.write_text(
            text.replace("heartbeat_interval_ms: 500", "heartbeat_interval_ms: 0").replace(
                "sync:\n", "sync:\n  mode: one_time\n"
            )
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
            text.replace(f"tables: [public.{names.table}]", f"tables: [public.{names.table}, public.{added}]")
        )
        second = Run(config, tmp_path, "second")
        try:
            second.wait_for("tables added to the source since the last run", timeout=60)
            second.wait_for("incremental snapshot finished", timeout=60)
            settle(pg_dsn, names.table, out, second)
            second.stop()
        finally:
            if second.proc.poll() is None:
                second.proc.kill()
        events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        assert sorted(e["after"]["id"] for e in events if e["op"] == "r") == list(range(1, 31))
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(f"DROP TABLE IF EXISTS {added}")
