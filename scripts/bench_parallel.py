#!/usr/bin/env python3
"""Benchmark sync.parallelism: the same Postgres changes delivered with 1, 2 and 4 workers.

    scripts/bench_parallel.py [--dsn "$CDC_PG_DSN"] [--changes 20000] [--keys 2000] [--workers 1,2,4]
                              [--sinks sql,http] [--latency-ms 5] [--per-event-ms 0.2] [--batch 500] [--json]

For each sink and worker count: a fresh slot on a source table, a workload of `--changes` updates
over `--keys` rows (many updates per key) written while the slot holds the WAL, then one
`one_time` pipeline (built from a config, as `cdc-logs run` does) drains it; the wall time of that
run is reported (best of `--repeat`), with the speed-up over one worker. `--adaptive` adds adaptive
batching on the webhook (one worker): batches fixed at `--adaptive-min` against adaptive batching
from there up to `--batch` (target 200 ms), and the size it ended at.

Sinks: `sql` applies into a Postgres table on the same server (each batch part one transaction, the
upserts' round trips and commits overlap between workers); `http` posts to a local receiver that
answers after `--latency-ms` plus `--per-event-ms` per change (a webhook across a network whose
receiver does work per change). Every run is checked: the SQL target
equals the source, and the receiver got every change. Timing is never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cdc_logs.build import make_pipeline  # noqa: E402
from cdc_logs.config import PipelineConfig  # noqa: E402
from cdc_logs.observability import logging as cdc_logging  # noqa: E402
from cdc_logs.observability.metrics import Metrics  # noqa: E402


class Receiver:
    """A webhook receiver answering each request after `latency` seconds plus `per_event` per envelope
    (a receiver that does work per change: indexing, an API call each); counts the envelopes."""

    def __init__(self, latency: float, per_event: float) -> None:
        self.events = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                events = len(json.loads(body))
                time.sleep(latency + per_event * events)
                with lock:
                    outer.events += events
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def drop_slot(db: psycopg.Connection[Any], slot: str) -> None:
    """Drop `slot`, ending the walsender that may still hold it for a moment after the run."""
    for _ in range(100):
        row = db.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if row is None:
            return
        if row[0]:
            db.execute("SELECT pg_terminate_backend(%s)", (row[0],))
        try:
            db.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return
        except psycopg.errors.ObjectInUse:
            time.sleep(0.1)
    raise RuntimeError(f"replication slot {slot} could not be dropped")


def run_once(
    dsn: str,
    uid: str,
    sink: str,
    workers: int,
    args: argparse.Namespace,
    receiver: Receiver,
    batching: dict[str, Any] | None = None,
) -> tuple[float, int | None]:
    """One drain of the workload: (seconds, the batch size adaptive batching ended at, if on)."""
    table, target, slot = (
        f"bpar_{uid}",
        f"bpar_t_{uid}",
        f"cdc_logs_bpar_{uid}_{sink}_{workers}_{uuid.uuid4().hex[:4]}",
    )
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f'CREATE PUBLICATION "{slot}" FOR TABLE {table}')
        db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        db.execute(f"TRUNCATE {target}")
        db.execute(f"DROP TABLE IF EXISTS cdc_applied_{uid}")
        per = min(500, args.keys)  # one UPDATE changes each row at most once: no more rows than keys
        for lo in range(0, args.changes, per):
            db.execute(
                f"UPDATE {table} SET v = v + 1 FROM generate_series(%s::int, %s::int) g WHERE id = g %% %s",
                (lo, min(lo + per, args.changes) - 1, args.keys),
            )
    destination: dict[str, Any]
    if sink == "sql":
        destination = {"type": "postgresql", "url": dsn, "schema": "public", "table": target,
                       "applied_table": f"cdc_applied_{uid}"}  # fmt: skip
    else:
        destination = {"type": "http", "url": receiver.url}
        receiver.events = 0
    config = PipelineConfig.model_validate(
        {
            "name": slot,  # its own offsets per run
            "source": {
                "type": "postgresql",
                "dsn": dsn,
                "tables": [f"public.{table}"],
                "slot": slot,
                "snapshot": False,
            },
            "destination": destination,
            "offsets": {"type": "sqlite", "path": str(Path(args.workdir) / "offsets.db")},
            "sync": {
                "mode": "one_time",
                "batch": {"max_events": args.batch, "max_wait_ms": 50},
                "parallelism": {"enabled": workers > 1, "worker_count": workers},
                **(batching or {}),
            },
        }
    )
    pipeline = make_pipeline(config, metrics=Metrics.disabled(), stop_when_idle=True)
    started = time.perf_counter()
    stats = pipeline.run()
    elapsed = time.perf_counter() - started
    settled = pipeline.status.details()["batch_size"]
    with psycopg.connect(dsn, autocommit=True) as db:
        drop_slot(db, slot)
        db.execute(f'DROP PUBLICATION "{slot}"')
        if sink == "sql":
            diff = db.execute(
                f"SELECT count(*) FROM {table} s FULL JOIN {target} t USING (id) "
                "WHERE s.v IS DISTINCT FROM t.v"
            ).fetchone()
            assert diff is not None and diff[0] == 0, f"the target differs from the source in {diff} rows"
    assert stats.events == args.changes, f"delivered {stats.events} of {args.changes} changes"
    assert sink != "http" or receiver.events == args.changes, f"the receiver got {receiver.events} changes"
    return elapsed, settled


def adaptive_case(
    args: argparse.Namespace, uid: str, receiver: Receiver, results: list[dict[str, Any]]
) -> None:
    """The webhook, one worker: batches fixed at --adaptive-min vs adaptive batching from there up to
    --batch with a 200 ms target."""
    fixed = {"batch": {"max_events": args.adaptive_min, "max_wait_ms": 50}}
    adaptive = {
        "batch_optimization": {"adaptive_batching": True, "min_batch_size": args.adaptive_min,
                               "max_batch_size": args.batch, "target_latency_ms": 200},
    }  # fmt: skip
    base: float | None = None
    for label, batching in (("fixed", fixed), ("adaptive", adaptive)):
        runs = [run_once(args.dsn, uid, "http", 1, args, receiver, batching) for _ in range(args.repeat)]
        best, settled = min(runs)
        base = base or best
        row = {"sink": "http", "batching": label, "seconds": round(best, 3),
               "events_per_s": round(args.changes / best), "speedup": round(base / best, 2),
               "final_batch_size": settled}  # fmt: skip
        results.append(row)
        if not args.json:
            print(f"http  {label:8} batches: {best:6.2f} s  {row['events_per_s']:>7} ev/s  x{row['speedup']}"
                  f"  (batch size at the end: {settled or args.adaptive_min})", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=os.environ.get("CDC_PG_DSN"))
    parser.add_argument("--changes", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=2_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--sinks", default="sql,http")
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--per-event-ms", type=float, default=0.2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--adaptive", action="store_true", help="also: fixed small batches vs adaptive")
    parser.add_argument("--adaptive-min", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("--dsn or CDC_PG_DSN is required")
    cdc_logging.configure(level="warning")
    uid = uuid.uuid4().hex[:8]
    args.workdir = tempfile.mkdtemp(prefix="bench-parallel-")  # the offset store, removed at the end
    table, target = f"bpar_{uid}", f"bpar_t_{uid}"
    receiver = Receiver(args.latency_ms / 1000, args.per_event_ms / 1000)
    results: list[dict[str, Any]] = []
    try:
        with psycopg.connect(args.dsn, autocommit=True) as db:
            for name in (table, target):
                db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v bigint, pad text)")
            db.execute(f"INSERT INTO {table} SELECT g, 0, repeat('x', 100) FROM generate_series(0, %s) g",
                       (args.keys - 1,))  # fmt: skip
        for sink in args.sinks.split(","):
            base: float | None = None
            for workers in [int(w) for w in args.workers.split(",")]:
                best = min(
                    run_once(args.dsn, uid, sink, workers, args, receiver)[0] for _ in range(args.repeat)
                )
                base = base or best
                row = {
                    "sink": sink,
                    "workers": workers,
                    "seconds": round(best, 3),
                    "events_per_s": round(args.changes / best),
                    "speedup": round(base / best, 2),
                }
                results.append(row)
                if not args.json:
                    print(f"{sink:5} workers={workers}: {best:6.2f} s  {row['events_per_s']:>7} ev/s  "
                          f"x{row['speedup']}", flush=True)  # fmt: skip
        if args.adaptive:
            adaptive_case(args, uid, receiver, results)
    finally:
        receiver.close()
        with psycopg.connect(args.dsn, autocommit=True) as db:
            for name in (table, target, f"cdc_applied_{uid}"):
                db.execute(f"DROP TABLE IF EXISTS {name}")
            for (slot,) in db.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s",
                (f"cdc_logs_bpar_{uid}%",),
            ).fetchall():
                drop_slot(db, slot)
            for (pub,) in db.execute(
                "SELECT pubname FROM pg_publication WHERE pubname LIKE %s", (f"cdc_logs_bpar_{uid}%",)
            ).fetchall():
                db.execute(f'DROP PUBLICATION "{pub}"')
        shutil.rmtree(args.workdir, ignore_errors=True)
    meta = {"cpus": os.cpu_count(), "python": platform.python_version(), "changes": args.changes,
            "keys": args.keys, "batch": args.batch, "latency_ms": args.latency_ms,
            "per_event_ms": args.per_event_ms, "load_avg": os.getloadavg()[0]}  # fmt: skip
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
    else:
        print(json.dumps(meta))


if __name__ == "__main__":
    main()
