"""Chaos: SIGKILL `cdc-logs run` (Postgres slot -> file sink) at random points while a workload runs.

Every change the workload committed must reach the file: a killed run leaves its slot at the last
confirmed (committed) LSN, and the next run resumes from the offset store. Duplicates are allowed
(at-least-once), losses are not. Needs the stack's Postgres (CDC_PG_DSN); the slot, publication and
table are removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.chaos.killkit import child_pids as _children
from tests.chaos.killkit import ended as _gone
from tests.integration.conftest import pg_dsn, unique_name  # noqa: F401 - fixtures, used by name

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.chaos

CHANGES = 1500
KILLS = 6


def _writer(dsn: str, table: str, expected: set[tuple[Any, ...]], done: threading.Event, seed: int) -> None:
    """Small transactions of inserts, updates and deletes; each change recorded as it should appear."""
    rng = random.Random(seed)
    live: list[int] = []
    next_id, made = 1, 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while made < CHANGES:
            batch: list[tuple[Any, ...]] = []
            with conn.transaction():
                for _ in range(min(rng.randint(1, 4), CHANGES - made)):
                    made += 1
                    pick = rng.random()
                    if not live or pick < 0.5:
                        conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (next_id, made))
                        batch.append(("c", next_id, made))
                        live.append(next_id)
                        next_id += 1
                    elif pick < 0.8:
                        key = rng.choice(live)
                        conn.execute(f"UPDATE {table} SET n = %s WHERE id = %s", (made, key))
                        batch.append(("u", key, made))
                    else:
                        key = live.pop(rng.randrange(len(live)))
                        conn.execute(f"DELETE FROM {table} WHERE id = %s", (key,))
                        batch.append(("d", key))
            expected.update(batch)  # only once committed
            time.sleep(rng.uniform(0, 0.004))
    done.set()


def _seen(out: Path) -> set[tuple[Any, ...]]:
    seen: set[tuple[Any, ...]] = set()
    if not out.exists():
        return seen
    for line in out.read_bytes().splitlines():
        event = orjson.loads(line)
        if event["op"] == "d":
            seen.add(("d", event["before"]["id"]))
        elif event["op"] in ("c", "u"):
            seen.add((event["op"], event["after"]["id"], event["after"]["n"]))
    return seen


def _start(config: Path, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_streaming(dsn: str, slot: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        deadline = time.monotonic() + timeout
        while not db.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active", (slot,)
        ).fetchone():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("the run never started streaming: " + proc.communicate()[1].decode()[-2000:])
            time.sleep(0.05)


@pytest.fixture
def workload_table(pg_dsn: str, unique_name: str) -> Iterator[tuple[str, str]]:  # noqa: F811
    table, slot = unique_name, f"cdc_logs_{unique_name}"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n int)")
        try:
            yield table, slot
        finally:
            row = db.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row and row[0]:
                db.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                time.sleep(0.5)
            with contextlib.suppress(psycopg.Error):
                db.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            db.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')
            db.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.parametrize("decode", ["auto", "on"])  # inline decoding, and the decode process
def test_sigkill_at_random_points_loses_nothing(
    pg_dsn: str,  # noqa: F811
    workload_table: tuple[str, str],
    tmp_path: Path,
    decode: str,
) -> None:
    table, slot = workload_table
    rng = random.Random(int(os.environ.get("CDC_CHAOS_SEED", "20261129")))
    out = tmp_path / "out" / "changes.jsonl"
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
name: {slot.removeprefix("cdc_logs_")}
source:
  type: pg
  dsn: "{pg_dsn}"
  tables: [public.{table}]
  slot: {slot}
  snapshot: false
  heartbeat_interval_ms: 500
  status_interval_ms: 500
  decode_process: {decode}
destination: {{type: file, path: {out}}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync:
  batch: {{max_events: 50, max_wait_ms: 20}}
  retry: {{max_attempts: 30, initial_backoff_ms: 100, max_backoff_ms: 1000}}
"""
    )
    first = _start(config, tmp_path)
    _wait_streaming(pg_dsn, slot, first)  # the slot exists: every change from now on is kept for us
    expected: set[tuple[Any, ...]] = set()
    done = threading.Event()
    writer = threading.Thread(target=_writer, args=(pg_dsn, table, expected, done, rng.random()), daemon=True)
    writer.start()

    proc, kills, orphans_seen = first, 0, 0
    try:
        while kills < KILLS:
            time.sleep(rng.uniform(0.2, 0.8))
            children = _children(proc.pid)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
            orphans_seen += len(children)
            deadline = time.monotonic() + 10
            while not all(_gone(child) for child in children):  # a decode process ends with its run
                assert time.monotonic() < deadline, "a decode process outlived its killed run"
                time.sleep(0.05)
            proc = _start(config, tmp_path)
        writer.join(120)
        assert done.is_set(), "the workload did not finish"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not expected <= _seen(out):
            assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
            time.sleep(0.2)
        _wait_streaming(pg_dsn, slot, proc)  # SIGTERM before the handler is installed would just kill it
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-3000:]
    missing = expected - _seen(out)
    assert not missing, f"{len(missing)} changes lost, e.g. {sorted(missing, key=str)[:10]}"
    assert len(expected) >= CHANGES * 0.9  # inserts/updates/deletes of distinct keys, as recorded
    if decode == "on":  # the first run streams when killed; later ones may die still starting
        assert orphans_seen >= 1, "no run had its decode process when killed: the test proves nothing"
