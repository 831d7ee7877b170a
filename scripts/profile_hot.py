#!/usr/bin/env python3
"""Profile the hot path: one workload, one drain, timed; run it under py-spy to see where time goes.

    scripts/profile_hot.py setup-pg  [--rows 100000]          table + publication + slot + workload
    scripts/profile_hot.py pg        [--sink discard|kafka|file|none] [--out FILE]
    scripts/profile_hot.py raw-pg                                pg_recvlogical on the same workload
    scripts/profile_hot.py cleanup-pg
    scripts/profile_hot.py mysql     [--rows 100000] [--sink none|discard|kafka] [--json]

`pg` drains the slot prepared by `setup-pg` from its start every time (the slot is never confirmed:
the offsets are in memory and the pipeline's commit only moves the slot after the drain), so it can
be repeated, e.g. `py-spy record -r 200 --native -o prof.json --format speedscope -- python
scripts/profile_hot.py pg`. `--out FILE` (file sink) writes the envelopes, to compare output bytes
before and after a change. `--sink none` times the reader alone (+ to_json with --json); for `mysql`
it is the default, and `--sink kafka` / `discard` runs the reader through `Pipeline` into that sink.

Names carry `perf_prof` so they never collide with another user of the stack.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cdc_logs.envelope import ChangeEvent  # noqa: E402
from cdc_logs.observability import logging as cdc_logging  # noqa: E402
from cdc_logs.offsets.memory import MemoryOffsetStore  # noqa: E402
from cdc_logs.pipeline import BatchPolicy, Pipeline  # noqa: E402
from cdc_logs.position import Lsn  # noqa: E402

TABLE, PUB, SLOT = "perf_prof", "perf_prof_pub", "perf_prof_slot"
RAW_SLOTS = ("perf_prof_raw1", "perf_prof_raw2", "perf_prof_raw3")  # pg_recvlogical confirms: one per run
START_FILE = Path(tempfile.gettempdir()) / "perf_prof_start"


def setup_pg(dsn: str, rows: int) -> None:
    db = psycopg.connect(dsn, autocommit=True)
    cleanup_pg(dsn)
    db.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)")
    db.execute(f"CREATE PUBLICATION {PUB} FOR TABLE {TABLE}")
    for slot in (SLOT, *RAW_SLOTS):
        db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    start = int(db.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0])  # type: ignore[index]
    for lo in range(1, rows + 1, 10):
        db.execute(
            f"INSERT INTO {TABLE} SELECT g, 'name ' || g, g * 1.25, now() "
            "FROM generate_series(%s::int, %s::int) g",
            (lo, min(lo + 9, rows)),
        )
    end = int(db.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0])  # type: ignore[index]
    START_FILE.write_text(f"{start} {rows} {end}")


def cleanup_pg(dsn: str) -> None:
    db = psycopg.connect(dsn, autocommit=True)
    db.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ANY(%s)",
        ([SLOT, *RAW_SLOTS],),
    )
    db.execute(f"DROP PUBLICATION IF EXISTS {PUB}")
    db.execute(f"DROP TABLE IF EXISTS {TABLE}")


def drain_raw(dsn: str) -> float:
    """pg_recvlogical (raw pgoutput bytes to /dev/null) on each raw slot; the best rows/s."""
    _, rows, end = (int(x) for x in START_FILE.read_text().split())
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    env = {**os.environ, "PGPASSWORD": str(params.get("password", ""))}
    best = 0.0
    for slot in RAW_SLOTS:
        cmd = [
            "pg_recvlogical", "-h", str(params.get("host", "localhost")), "-p", str(params.get("port", 5432)),
            "-U", str(params.get("user", "")), "-d", str(params.get("dbname", "")), "--slot", slot,
            "--start", "--no-loop", "--endpos", f"{end >> 32:X}/{end & 0xFFFFFFFF:X}",
            "-o", "proto_version=1", "-o", f"publication_names={PUB}", "-f", "/dev/null",
        ]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        best = max(best, rows / (time.perf_counter() - started))
    print(f"pg_recvlogical: {best:,.0f} rows/s (best of {len(RAW_SLOTS)})", flush=True)
    return best


def make_sink(kind: str, out: str | None, topic: str):  # type: ignore[no-untyped-def]
    from cdc_logs.build import build_sink
    from cdc_logs.sinks.discard import DiscardSinkConfig
    from cdc_logs.sinks.file import FileSinkConfig
    from cdc_logs.sinks.kafka import KafkaSinkConfig

    if kind == "discard":
        return build_sink(DiscardSinkConfig(type="discard"))
    if kind == "file":
        return build_sink(FileSinkConfig(type="file", path=out or "/dev/null"))  # type: ignore[call-arg]
    bootstrap = os.environ["CDC_KAFKA_BOOTSTRAP"]
    return build_sink(
        KafkaSinkConfig(type="kafka", bootstrap_servers=bootstrap, topic=topic, tombstones_on_delete=False)
    )


def drain_pg(dsn: str, sink_kind: str, out: str | None, encode: bool, decode: str = "auto") -> None:
    from cdc_logs.readers.postgres.reader import PostgresReader

    start, rows, _ = (int(x) for x in START_FILE.read_text().split())
    reader = PostgresReader(dsn, [f"public.{TABLE}"], pipeline_name="bench", slot=SLOT, publication=PUB,
                            heartbeat_interval_s=0, decode_process=decode)  # fmt: skip
    topic = f"perf_prof_{uuid.uuid4().hex[:6]}"
    sink = make_sink(sink_kind, out, topic) if sink_kind != "none" else None  # imports: not timed
    started, cpu0 = time.perf_counter(), cpu()
    if sink is None:
        reader.open()
        seen = 0
        for item in reader.stream(Lsn(reader.server_identity(), start)):
            if isinstance(item, ChangeEvent):
                if encode:
                    item.to_json()
                seen += 1
                if seen == rows:
                    break
        reader.close()
    else:
        offsets = MemoryOffsetStore()
        pipeline = Pipeline("bench", {"pg": reader}, [sink], offsets,
                            batch=BatchPolicy(max_events=5000, max_wait_s=0.05), limit=rows)  # fmt: skip
        # every run starts at the workload and never confirms it, so the drain can be repeated
        offsets.resume_position = lambda n, s, server: Lsn(server, start)  # type: ignore[method-assign]
        reader.commit = lambda position: None  # type: ignore[method-assign]
        runner = threading.Thread(target=pipeline.run)
        runner.start()
        runner.join()
        if sink_kind == "discard":  # steady state: between the first and the last batch written
            print(f"discard sink: {sink.events / (sink._last - sink._first):,.0f} rows/s first to last batch")
        if sink_kind == "kafka":
            from confluent_kafka.admin import AdminClient

            AdminClient({"bootstrap.servers": os.environ["CDC_KAFKA_BOOTSTRAP"]}).delete_topics([topic])
    took, spent = time.perf_counter() - started, cpu() - cpu0
    print(
        f"{rows} rows in {took:.2f}s = {rows / took:,.0f} rows/s, "
        f"{rows / spent:,.0f} rows/cpu-s ({sink_kind})"
    )


def cpu() -> float:
    """CPU seconds of this process (every thread): steadier than wall time on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def drain_mysql(dsn: str, rows: int, encode: bool, sink_kind: str, decode: str = "auto") -> None:
    """Load `rows` rows into a fresh MariaDB table (10 per transaction) and drain them with the reader."""
    import pymysql

    from cdc_logs.position import BinlogPosition
    from cdc_logs.readers.mysql.connection import parse_dsn
    from cdc_logs.readers.mysql.reader import MysqlReader

    settings = parse_dsn(dsn)
    table = f"perf_prof_{uuid.uuid4().hex[:6]}"
    conn = pymysql.connect(**settings.kwargs(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(32), qty INT, price DECIMAL(8,2))"
            )
            cur.execute("SELECT @@gtid_binlog_pos")
            (start,) = cur.fetchone()  # type: ignore[misc]
            for base in range(0, rows, 10):
                values = [
                    (i, f"item-{i}", i % 100, f"{i % 1000}.25") for i in range(base, min(base + 10, rows))
                ]
                cur.execute(
                    f"INSERT INTO {table} VALUES " + ",".join(["(%s,%s,%s,%s)"] * len(values)),
                    [v for row in values for v in row],
                )
        reader = MysqlReader(
            settings,
            [f"{settings.database}.{table}"],
            pipeline_name="bench",
            temporary=True,
            decode_process=decode,
        )
        topic = f"perf_prof_{uuid.uuid4().hex[:6]}"
        sink = make_sink(sink_kind, None, topic) if sink_kind != "none" else None  # imports: not timed
        reader.open()
        position = BinlogPosition(server=reader.server_identity(), gtid=str(start), flavor="mariadb")
        started, count, cpu0 = time.perf_counter(), 0, cpu()
        if sink is None:
            try:
                for item in reader.stream(position):
                    if isinstance(item, ChangeEvent):
                        if encode:
                            item.to_json()
                        count += 1
                        if count >= rows:
                            break
            finally:
                reader.stop()
                reader.close()
        else:  # the `cdc-logs run` path: reader thread -> pipeline -> sink -> (in-memory) checkpoint
            offsets = MemoryOffsetStore()
            pipeline = Pipeline("bench", {"mariadb": reader}, [sink], offsets,
                                batch=BatchPolicy(max_events=5000, max_wait_s=0.05), limit=rows)  # fmt: skip
            offsets.resume_position = lambda n, s, server: position  # type: ignore[method-assign]
            runner = threading.Thread(target=pipeline.run)
            runner.start()
            runner.join()
            if sink_kind == "kafka":
                from confluent_kafka.admin import AdminClient

                AdminClient({"bootstrap.servers": os.environ["CDC_KAFKA_BOOTSTRAP"]}).delete_topics([topic])
        took = time.perf_counter() - started
        spent = cpu() - cpu0
        print(
            f"{rows} rows in {took:.2f}s = {rows / took:,.0f} rows/s, "
            f"{rows / spent:,.0f} rows/cpu-s (mysql reader{'' if sink is None else ' -> ' + sink_kind})"
        )
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["setup-pg", "pg", "raw-pg", "cleanup-pg", "mysql"])
    parser.add_argument("--dsn", default=os.environ.get("CDC_PG_DSN"))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--sink", choices=["discard", "kafka", "file", "none"], help="default: discard (pg), none (mysql)"
    )
    parser.add_argument("--json", action="store_true", help="with --sink none: serialize each event")
    parser.add_argument("--out")
    parser.add_argument("--decode", choices=["auto", "on", "off"], default="auto", help="pg: decode_process")
    args = parser.parse_args()
    cdc_logging.configure("warning")
    if args.what == "setup-pg":
        setup_pg(args.dsn, args.rows)
    elif args.what == "raw-pg":
        drain_raw(args.dsn)
    elif args.what == "mysql":
        drain_mysql(os.environ["CDC_MARIADB_DSN"], args.rows, args.json, args.sink or "none", args.decode)
    elif args.what == "cleanup-pg":
        cleanup_pg(args.dsn)
    else:
        drain_pg(args.dsn, args.sink or "discard", args.out, args.json, args.decode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
