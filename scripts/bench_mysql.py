#!/usr/bin/env python3
"""Binlog drain throughput: cdc-logs' MySQL/MariaDB reader vs raw python-mysql-replication parsing.

Writes N small rows (INSERTs of 10 rows per transaction) into a fresh table, then drains the same binlog
range three ways and prints rows/s for each and the ratios:

  raw        python-mysql-replication alone: BinLogStreamReader, every row decoded (`event.rows`)
  reader     MysqlReader.stream(): the same parse on its thread, converted to ChangeEvents
  reader+json  the same, each event also serialized to its Debezium JSON envelope (what a sink writes)

Each is run `--repeat` times; the best run counts (the machine is shared, the best is the least
disturbed). `--write` puts the table into docs/benchmarks.md under "## MySQL/MariaDB" (other sections
are kept).

    eval "$(scripts/stack env)"
    .venv/bin/python scripts/bench_mysql.py --dsn "$CDC_MARIADB_DSN" --rows 100000 --write
"""

from __future__ import annotations

import argparse
import platform
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import MariadbGtidEvent, XidEvent
from pymysqlreplication.row_event import WriteRowsEvent

from cdc_logs.envelope import ChangeEvent
from cdc_logs.position import BinlogPosition
from cdc_logs.readers.mysql.connection import parse_dsn
from cdc_logs.readers.mysql.reader import MysqlReader

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def load(dsn: str, table: str, rows: int) -> str:
    """Create and fill the table; returns the GTID position before the first insert."""
    conn = pymysql.connect(**parse_dsn(dsn).kwargs(), autocommit=True)
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(32), qty INT, price DECIMAL(8,2))"
        )
        cur.execute("SELECT @@gtid_binlog_pos")
        (start,) = cur.fetchone()
        for base in range(0, rows, 10):
            values = [(i, f"item-{i}", i % 100, f"{i % 1000}.25") for i in range(base, min(base + 10, rows))]
            cur.execute(
                f"INSERT INTO {table} VALUES " + ",".join(["(%s,%s,%s,%s)"] * len(values)),
                [v for row in values for v in row],
            )
    conn.close()
    return str(start)


def raw(dsn: str, table: str, start: str, rows: int) -> int:
    settings = parse_dsn(dsn).kwargs(database=False)
    stream = BinLogStreamReader(
        settings,
        server_id=3_999_222_001,
        # blocking: in non-blocking mode MariaDB closes at the end of the binlog and a reader still
        # parsing gets a reset (then the library silently replays from the start).
        blocking=True,
        auto_position=start,
        is_mariadb=True,
        only_events=[MariadbGtidEvent, WriteRowsEvent, XidEvent],
        only_tables=[table],
        enable_logging=False,
    )
    count = 0
    for event in stream:
        if isinstance(event, WriteRowsEvent):
            count += len(event.rows)
            if count >= rows:
                break
    stream.close()
    return count


def reader(dsn: str, table: str, start: str, rows: int, *, serialize: bool) -> int:
    r = MysqlReader(parse_dsn(dsn), [table], pipeline_name="bench", temporary=True)
    r.open()
    position = BinlogPosition(server=r.server_identity(), gtid=start, flavor="mariadb")
    count = 0
    try:
        for item in r.stream(position):
            if isinstance(item, ChangeEvent):
                if serialize:
                    item.to_json()
                count += 1
                if count >= rows:
                    break
    finally:
        r.stop()
        r.close()
    return count


def best(fn: Callable[[], int], repeat: int, rows: int) -> float:
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        got = fn()
        elapsed = time.perf_counter() - started
        assert got == rows, f"drained {got} rows, expected {rows}"
        rates.append(rows / elapsed)
    return max(rates)


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nMeasured numbers; each section says how.\n"
    pattern = re.compile(r"^## MySQL/MariaDB\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    settings = parse_dsn(args.dsn)
    table = f"{settings.database}.mr_bench_{uuid.uuid4().hex[:8]}"
    short = table.split(".")[1]
    print(f"loading {args.rows} rows into {table} ...")
    start = load(args.dsn, short, args.rows)
    try:
        results = {
            "raw python-mysql-replication": best(
                lambda: raw(args.dsn, short, start, args.rows), args.repeat, args.rows
            ),
            "cdc-logs MysqlReader": best(
                lambda: reader(args.dsn, table, start, args.rows, serialize=False), args.repeat, args.rows
            ),
            "cdc-logs MysqlReader + JSON envelope": best(
                lambda: reader(args.dsn, table, start, args.rows, serialize=True), args.repeat, args.rows
            ),
        }
    finally:
        conn = pymysql.connect(**settings.kwargs(), autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {short}")
        conn.close()
    base = results["raw python-mysql-replication"]
    lines = ["| drain | rows/s | vs raw |", "| --- | ---: | ---: |"]
    for name, rate in results.items():
        lines.append(f"| {name} | {rate:,.0f} | {rate / base:.2f} |")
    table_md = "\n".join(lines)
    print(table_md)
    with pymysql.connect(**settings.kwargs()) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        (version,) = cur.fetchone()
    section = (
        "## MySQL/MariaDB\n\n"
        f"`scripts/bench_mysql.py --rows {args.rows}`: {args.rows:,} small rows (4 columns, INSERTs of "
        f"10 rows per transaction) drained from the binlog of MariaDB {version} on loopback, best of "
        f"{args.repeat}; Python {platform.python_version()}, {platform.machine()}, 2 cores. `raw` only "
        "parses (the library's own row decoding); the reader also converts each row to a ChangeEvent "
        "(types, key, source block, transaction order, positions) on its binlog thread and hands it "
        "through a bounded queue.\n\n"
        f"{table_md}\n"
    )
    if args.write:
        write_doc(section)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
