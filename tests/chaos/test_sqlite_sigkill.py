"""Chaos: SIGKILL `cdc-logs run` (sqlite -> file sink) at random points while changes stream in.

Every change the writer made must reach the file; duplicates are allowed only for what was in flight
at each kill (at most one batch per kill, since a batch is committed right after it is durable).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.chaos

BATCH = 25
CHANGES = 1500
KILLS = 6


def _writer(db: Path, done: threading.Event, rng: random.Random) -> None:
    """Insert, update and delete rows in small transactions, like an application."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    made = 0
    live: list[int] = []
    next_id = 1
    while made < CHANGES:
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(min(rng.randint(1, 4), CHANGES - made)):
            choice = rng.random()
            if not live or choice < 0.5:
                conn.execute("INSERT INTO t (id, v) VALUES (?, ?)", (next_id, made))
                live.append(next_id)
                next_id += 1
            elif choice < 0.8:
                conn.execute("UPDATE t SET v = ? WHERE id = ?", (made, rng.choice(live)))
            else:
                victim = live.pop(rng.randrange(len(live)))
                conn.execute("DELETE FROM t WHERE id = ?", (victim,))
            made += 1
        conn.execute("COMMIT")
        time.sleep(rng.uniform(0, 0.01))
    conn.close()
    done.set()


def _start(config: Path, cwd: Path) -> subprocess.Popen[bytes]:
    # stderr to a file, not a pipe: nobody reads a pipe while the test sleeps, and a full one blocks.
    with open(cwd / "run.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _changes(out: Path) -> list[int]:
    return [orjson.loads(line)["source"]["change_id"] for line in out.read_bytes().splitlines()]


def test_sigkill_at_random_points_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CDC_CHAOS_SEED", "20261129")))
    db = tmp_path / "app.db"
    out = tmp_path / "out" / "changes.jsonl"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
name: chaos
source: {{type: sqlite, path: {db}, tables: [t], poll_interval_ms: 20}}
destination: {{type: file, path: {out}}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync:
  batch: {{max_events: {BATCH}, max_wait_ms: 20}}
"""
    )
    # Install the triggers before the workload starts, as an operator would with a first run.
    first = _start(config, tmp_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            if conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone()[0] >= 3:
                break
        time.sleep(0.05)
    else:
        first.kill()
        pytest.fail("triggers were never installed: " + (tmp_path / "run.log").read_text()[-2000:])
    done = threading.Event()
    writer = threading.Thread(target=_writer, args=(db, done, rng), daemon=True)
    writer.start()

    proc = first
    try:
        kills = 0
        while kills < KILLS:
            time.sleep(rng.uniform(0.15, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
            proc = _start(config, tmp_path)
        writer.join(120)
        assert done.is_set(), "the workload did not finish"
        with sqlite3.connect(db) as conn:
            total = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = '_cdc_changes'").fetchone()[0]
        assert total == CHANGES

        # Let the last run catch up, then stop it gracefully (SIGTERM flushes and commits).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or max(_changes(out), default=0) < total):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert proc.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]

    finally:
        if proc.poll() is None:  # a failed assertion must not leave a pipeline running
            proc.kill()
            proc.wait(10)

    seen = _changes(out)
    assert set(seen) == set(range(1, total + 1)), "a change was lost"
    duplicates = len(seen) - len(set(seen))
    assert duplicates <= kills * BATCH, f"{duplicates} duplicates for {kills} kills of batch {BATCH}"
    # Each restart replays from the committed position: the stream is increasing runs, and each
    # replay steps back by no more than one batch.
    for prev, cur in itertools.pairwise(seen):
        if cur <= prev:
            assert prev - cur < BATCH, f"replay stepped back from {prev} to {cur}"
