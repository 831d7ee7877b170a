#!/usr/bin/env python3
"""Benchmark the Postgres reader: drain rate next to pg_recvlogical, and peak RSS of a huge transaction.

    scripts/bench_pg.py --dsn "$CDC_PG_DSN" [--rows 100000] [--big-rows 1000000] [--write]

1. Drain: `--rows` small rows (INSERTs of 10 rows per transaction) are written while two slots hold
   the WAL; then pg_recvlogical (pgoutput, raw bytes to /dev/null, proto 1 as every other client
   uses) and the cdc-logs PostgresReader (+ JSON envelope) each drain their slot. Best of 3.
2. Huge transaction: one `INSERT ... SELECT generate_series(1, --big-rows)`, drained by the reader in a
   child process whose peak RSS (ru_maxrss) is reported: once streamed by the server
   (logical_decoding_work_mem=64kB; our buffer 32 MiB, then disk), once sent at commit.

`--write` replaces the "## Postgres" section of docs/benchmarks.md. Timing is never asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cdc_logs.envelope import ChangeEvent  # noqa: E402
from cdc_logs.observability import logging as cdc_logging  # noqa: E402
from cdc_logs.position import Lsn  # noqa: E402
from cdc_logs.readers.postgres.reader import PostgresReader  # noqa: E402

TABLE, PUB = "bench_pg", "cdc_logs_bench_pg"
# pg_recvlogical confirms what it received, so each raw run needs a slot of its own; the reader never
# commits here, so its slot stays at the start for every run.
RAW_SLOTS = ("bench_pg_raw1", "bench_pg_raw2", "bench_pg_raw3")
SLOTS = ("cdc_logs_bench_pg", *RAW_SLOTS)


def setup(db: psycopg.Connection, rows: int) -> tuple[int, int]:
    """Fresh table, publication and two slots; the workload; returns (start LSN, end LSN)."""
    for slot in SLOTS:
        if db.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone():
            db.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    db.execute(f"DROP PUBLICATION IF EXISTS {PUB}")
    db.execute(f"DROP TABLE IF EXISTS {TABLE}")
    db.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)")
    db.execute(f"CREATE PUBLICATION {PUB} FOR TABLE {TABLE}")
    for slot in SLOTS:
        db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    start = int(db.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0])  # type: ignore[index]
    for lo in range(1, rows + 1, 10):
        db.execute(
            f"INSERT INTO {TABLE} SELECT g, 'name ' || g, g * 1.25, now() "
            "FROM generate_series(%s::int, %s::int) g",
            (lo, min(lo + 9, rows)),
        )
    end = int(db.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0])  # type: ignore[index]
    return start, end


def fmt(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def drain_raw(dsn: str, slot: str, end: int) -> float:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    env = {**os.environ, "PGPASSWORD": str(params.get("password", ""))}
    cmd = [
        "pg_recvlogical", "-h", str(params.get("host", "localhost")), "-p", str(params.get("port", 5432)),
        "-U", str(params.get("user", "")), "-d", str(params.get("dbname", "")), "--slot", slot,
        "--start", "--no-loop", "--endpos", fmt(end), "-o", "proto_version=1", "-o",
        f"publication_names={PUB}", "-f", "/dev/null",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return time.perf_counter() - started


def drain_reader(dsn: str, start: int, rows: int, *, encode: bool) -> float:
    reader = PostgresReader(
        dsn, [f"public.{TABLE}"], pipeline_name="bench", slot="cdc_logs_bench_pg", heartbeat_interval_s=0
    )
    reader.open()
    try:
        stream = reader.stream(Lsn(reader.server_identity(), start))
        seen = 0
        started = time.perf_counter()
        for item in stream:
            if isinstance(item, ChangeEvent):
                if encode:
                    item.to_json()
                seen += 1
                if seen == rows:
                    break
        return time.perf_counter() - started
    finally:
        reader.close()


BIG_CHILD = """
import os, resource, sys, time, psycopg
from cdc_logs.observability import logging as cdc_logging
cdc_logging.configure("warning")
from cdc_logs.envelope import ChangeEvent
from cdc_logs.readers.postgres.reader import PostgresReader
dsn, rows, work_mem = sys.argv[1], int(sys.argv[2]), sys.argv[3] or None
db = psycopg.connect(dsn, autocommit=True)
db.execute("DROP TABLE IF EXISTS bench_pg_big")
db.execute("CREATE TABLE bench_pg_big (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)")
r = PostgresReader(dsn, ["public.bench_pg_big"], pipeline_name="bench", temporary=True,
                   heartbeat_interval_s=0, logical_decoding_work_mem=work_mem, max_tx_memory_bytes=32 << 20)
r.open(); s = r.stream(None); next(s)
db.execute("INSERT INTO bench_pg_big SELECT g, 'name ' || g, g * 1.25, now() "
           f"FROM generate_series(1, {rows}) g")
t0, n = time.perf_counter(), 0
for it in s:
    if isinstance(it, ChangeEvent):
        it.to_json(); n += 1
        if n == rows: break
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
r.close(); db.execute("DROP TABLE bench_pg_big")
"""


def big_tx(dsn: str, rows: int, work_mem: str) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", BIG_CHILD, dsn, str(rows), work_mem],
        check=True, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "CDC_LOG_LEVEL": "warning"},
    )  # fmt: skip
    seconds, rss = out.stdout.split()
    return float(seconds), int(rss)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=os.environ.get("CDC_PG_DSN"))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    cdc_logging.configure("warning")
    if not args.dsn:
        parser.error("--dsn or CDC_PG_DSN is required")
    db = psycopg.connect(args.dsn, autocommit=True)
    version = db.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    start, end = setup(db, args.rows)
    raw = min(drain_raw(args.dsn, slot, end) for slot in RAW_SLOTS)
    plain = min(drain_reader(args.dsn, start, args.rows, encode=False) for _ in range(3))
    encoded = min(drain_reader(args.dsn, start, args.rows, encode=True) for _ in range(3))
    streamed = big_tx(args.dsn, args.big_rows, "64kB")
    at_commit = big_tx(args.dsn, args.big_rows, "")
    for slot in SLOTS:
        db.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    db.execute(f"DROP PUBLICATION {PUB}")
    db.execute(f"DROP TABLE {TABLE}")

    n = args.rows
    section = f"""## Postgres

`scripts/bench_pg.py --rows {n} --big-rows {args.big_rows}`: {n:,} small rows (4 columns, INSERTs of 10 \
rows per transaction) drained from a logical slot of PostgreSQL {version} on loopback, best of 3; \
Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores. `pg_recvlogical` receives \
the pgoutput bytes and writes them to /dev/null (no decoding); the reader decodes, converts each row to a \
ChangeEvent (types, key, source block, transaction order, positions).

| drain | rows/s | vs pg_recvlogical |
| --- | ---: | ---: |
| pg_recvlogical (raw bytes) | {n / raw:,.0f} | 1.00 |
| cdc-logs PostgresReader | {n / plain:,.0f} | {raw / plain:.2f} |
| cdc-logs PostgresReader + JSON envelope | {n / encoded:,.0f} | {raw / encoded:.2f} |

One transaction of {args.big_rows:,} rows (`INSERT ... SELECT generate_series`), drained by the reader with \
the JSON envelope, in a child process (peak RSS = ru_maxrss of that process, Python included):

| how the server sends it | seconds | rows/s | peak RSS |
| --- | ---: | ---: | ---: |
| streamed while running (`logical_decoding_work_mem: 64kB`, 32 MiB buffer, then disk) | \
{streamed[0]:.1f} | {args.big_rows / streamed[0]:,.0f} | {streamed[1]} MB |
| at commit (server's own setting) | {at_commit[0]:.1f} | {args.big_rows / at_commit[0]:,.0f} | \
{at_commit[1]} MB |
"""
    print(section)
    if args.write:
        path = ROOT / "docs" / "benchmarks.md"
        text = path.read_text()
        pattern = re.compile(r"## Postgres\n.*?(?=\n## |\Z)", re.S)
        text = (
            pattern.sub(section.rstrip("\n"), text)
            if pattern.search(text)
            else text.rstrip("\n") + "\n\n" + section
        )
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
