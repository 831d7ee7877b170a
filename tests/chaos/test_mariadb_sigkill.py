"""Chaos: SIGKILL `cdc-logs run` (mariadb -> file sink) at random points while transactions stream in.

Every change the writer made must reach the file, each restart must resume by GTID from the committed
offset, and replaying the file in order must rebuild exactly the table's final contents. Duplicates are
allowed only for what was in flight at each kill.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pymysql
import pytest

from cdc_logs.offsets.sqlite import SqliteOffsetStore
from cdc_logs.readers.mysql.connection import parse_dsn
from tests.chaos.killkit import child_pids as _children
from tests.chaos.killkit import ended as _gone
from tests.integration.conftest import require_env

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

BATCH = 25
CHANGES = 2500
KILLS = 6


def _connect(dsn: str) -> pymysql.connections.Connection:
    return pymysql.connect(**parse_dsn(dsn).kwargs(), autocommit=True)


def _writer(
    dsn: str, table: str, done: threading.Event, rng: random.Random, made: list[tuple[str, int]]
) -> None:
    """Small transactions of inserts, updates and deletes; each change writes its own number `v`."""
    conn = _connect(dsn)
    live: list[int] = []
    next_id = 1
    with conn.cursor() as cur:
        while len(made) < CHANGES:
            cur.execute("BEGIN")
            for _ in range(min(rng.randint(1, 4), CHANGES - len(made))):
                n = len(made) + 1
                choice = rng.random()
                if not live or choice < 0.5:
                    cur.execute(f"INSERT INTO {table} VALUES (%s, %s)", (next_id, n))
                    live.append(next_id)
                    made.append(("c", n))
                    next_id += 1
                elif choice < 0.8:
                    cur.execute(f"UPDATE {table} SET v = %s WHERE id = %s", (n, rng.choice(live)))
                    made.append(("u", n))
                else:
                    victim = live.pop(rng.randrange(len(live)))
                    cur.execute(f"DELETE FROM {table} WHERE id = %s", (victim,))
                    made.append(("d", victim))
            cur.execute("COMMIT")
            time.sleep(rng.uniform(0, 0.012))
    conn.close()
    done.set()


def _start(config: Path, cwd: Path, run: int) -> tuple[subprocess.Popen[bytes], Path]:
    log = cwd / f"run{run}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    return proc, log


def _events(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


@pytest.mark.parametrize("decode", ["auto", "on"])  # decode_process: on runs the binlog in a second process
def test_sigkill_at_random_points_loses_nothing_and_resumes_by_gtid(tmp_path: Path, decode: str) -> None:
    dsn = require_env("CDC_MARIADB_DSN")
    rng = random.Random(int(os.environ.get("CDC_CHAOS_SEED", "20261129")))
    table = "mr_chaos_" + uuid.uuid4().hex[:8]
    db = _connect(dsn)
    with db.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, v INT)")
    out = tmp_path / "out" / "changes.jsonl"
    offsets = tmp_path / "offsets.db"
    name = "chaos-" + table.replace("_", "-")
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
name: {name}
source:
  type: mariadb
  dsn: "{dsn}"
  tables: [test.{table}]
  snapshot: false
  heartbeat_interval_ms: 500
  decode_process: {decode}
destination: {{type: file, path: {out}}}
offsets: {{type: sqlite, path: {offsets}}}
sync:
  batch: {{max_events: {BATCH}, max_wait_ms: 20}}
"""
    )
    try:
        proc, log = _start(config, tmp_path, 0)
        # The first run commits its start position before the workload begins (as an operator's would).
        deadline = time.monotonic() + 30
        while not (offsets.exists() and SqliteOffsetStore(offsets).load(name, "mariadb")):
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the first run never committed its start position"
            time.sleep(0.05)

        made: list[tuple[str, int]] = []
        done = threading.Event()
        writer = threading.Thread(target=_writer, args=(dsn, table, done, rng, made), daemon=True)
        writer.start()
        logs = []
        decode_processes = 0
        for kill in range(1, KILLS + 1):
            # Kill while it streams: wait (bounded) until this run has started its source, whatever the
            # machine's load makes start-up cost, then at a random point.
            deadline = time.monotonic() + 30
            while (
                proc.poll() is None
                and "source started" not in log.read_text()
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            time.sleep(rng.uniform(0.2, 1.5))
            children = _children(proc.pid)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            decode_processes += len(children)
            deadline = time.monotonic() + 10
            while not all(_gone(child) for child in children):  # a decode process ends with its run
                assert time.monotonic() < deadline, "a decode process outlived its killed run"
                time.sleep(0.05)
            proc, log = _start(config, tmp_path, kill)
            logs.append(log)
        writer.join(120)
        assert done.is_set(), "the workload did not finish"
        assert any(n for op, n in made if op == "c")
        if decode == "on":
            assert decode_processes >= 1, "no run had its decode process when killed: the test proves nothing"

        # Let the last run catch up with a final marker row, then stop it gracefully (SIGTERM commits).
        with db.cursor() as cur:
            cur.execute(f"INSERT INTO {table} VALUES (%s, 0)", (10**6,))
        deadline = time.monotonic() + 60
        while not any(e["op"] == "c" and e["after"]["id"] == 10**6 for e in _events(out)[-50:]):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the last run never caught up"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert proc.returncode == 0, log.read_text()[-3000:]

        events = _events(out)
        seen_v = {e["after"]["v"] for e in events if e["op"] in ("c", "u")}
        seen_deleted = {e["before"]["id"] for e in events if e["op"] == "d"}
        assert {n for op, n in made if op in ("c", "u")} <= seen_v, "a change was lost"
        assert {n for op, n in made if op == "d"} <= seen_deleted, "a delete was lost"
        assert len(events) - (CHANGES + 1) <= KILLS * (BATCH + 4), "more duplicates than in-flight batches"
        # Replaying the file in order rebuilds the table: replays only ever re-apply whole transactions.
        state: dict[int, int] = {}
        for e in events:
            if e["op"] == "d":
                state.pop(e["before"]["id"], None)
            else:
                state[e["after"]["id"]] = e["after"]["v"]
        with db.cursor() as cur:
            cur.execute(f"SELECT id, v FROM {table}")
            assert state == dict(cur.fetchall())
        # Every restart resumed from a committed GTID position, not from the server's current end.
        # (A run killed while still importing never got that far: only runs that started count.)
        started = [t for t in (r.read_text() for r in logs) if "source started" in t]
        assert len(started) >= KILLS // 2, "most restarts were killed before they started"
        for text in started:
            assert "gtid=0-" in text.split("resume_from=", 1)[1][:200], text[-1500:]
    finally:
        if proc.poll() is None:
            proc.kill()
        with db.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        db.close()
