"""`cdc-logs demo`: the embedded SQLite source streaming live changes to stdout, no server needed.

A writer thread plays a small workload (insert, update, delete) against a fresh SQLite file while the
trigger-based reader captures it: what you see is the same envelope every other source produces.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import threading
from pathlib import Path

import typer

from cdc_logs.build import build_reader
from cdc_logs.cli.stop_signals import stop_signals
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline
from cdc_logs.readers.sqlite.config import SqliteSourceConfig
from cdc_logs.sinks.stdout import StdoutSink

_NAMES = ["ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances"]


def demo(
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Exit 0 after N events."),
    format: str = typer.Option("pretty", "--format", "-f", help="pretty | json."),
    interval_ms: int = typer.Option(400, "--interval-ms", min=1, help="Pause between demo writes."),
    path: Path | None = typer.Option(None, "--path", help="SQLite file to use (default: a temporary one)."),
) -> None:
    """Capture live changes from an embedded SQLite database and print them."""
    workdir = tempfile.TemporaryDirectory(prefix="cdc-logs-demo-")
    db = path or Path(workdir.name) / "demo.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, "
            "plan TEXT, balance REAL)"
        )
    cfg = SqliteSourceConfig(type="sqlite", path=str(db), tables=["users"], poll_interval_ms=50)
    pipeline = Pipeline(
        "demo",
        {"sqlite": build_reader(cfg, "demo", temporary=True)},
        [StdoutSink(format)],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=100, max_wait_s=0.05),
        limit=limit,
    )
    stop = threading.Event()
    writer = threading.Thread(target=_play, args=(db, stop, interval_ms / 1000, pipeline.ready), daemon=True)

    def on_stop(_signal_name: str) -> None:
        stop.set()
        pipeline.stop()

    writer.start()
    try:
        with stop_signals(on_stop):
            pipeline.run()
    finally:
        stop.set()
        writer.join(timeout=5)
        workdir.cleanup()


def _play(db: Path, stop: threading.Event, pause: float, ready: threading.Event) -> None:
    """Insert, update and delete users in a loop, like an application would."""
    ready.wait(30)
    rng = random.Random(7)
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        while not stop.is_set():
            name = rng.choice(_NAMES)
            cur = conn.execute(
                "INSERT INTO users (email, plan, balance) VALUES (?, 'free', 0)",
                (f"{name}{rng.randint(1, 999)}@example.com",),
            )
            user_id = cur.lastrowid
            if stop.wait(pause):
                return
            conn.execute(
                "UPDATE users SET plan = 'pro', balance = ? WHERE id = ?",
                (round(rng.uniform(5, 500), 2), user_id),
            )
            if stop.wait(pause):
                return
            if rng.random() < 0.5:
                conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
                if stop.wait(pause):
                    return
    finally:
        conn.close()
