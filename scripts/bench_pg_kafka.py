#!/usr/bin/env python3
"""Postgres -> Kafka, side by side in one run: Debezium (Kafka Connect) vs cdc-logs (reader + Kafka sink).

    eval "$(scripts/stack env)"
    .venv/bin/python scripts/bench_pg_kafka.py [--rows 100000] [--write]

Both read the same WAL range: `--rows` small rows (INSERTs of 10 rows per transaction) written while
both slots hold it. Each writes JSON envelopes (schemas off) to its own topic, created beforehand with
`message.timestamp.type=LogAppendTime`, so the rate is taken from the broker's own clock:
rows / (append time of the last record - append time of the first). Start-up (Connect task start,
slot connect) is outside that window for both. They run one after the other in the same run, on the
same data, so the machine's state is as alike as it gets on a shared box.

`--write` replaces the "## Postgres -> Kafka" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import psycopg
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cdc_logs.build import build_sink  # noqa: E402
from cdc_logs.debezium.connect import ConnectClient  # noqa: E402
from cdc_logs.observability import logging as cdc_logging  # noqa: E402
from cdc_logs.offsets.memory import MemoryOffsetStore  # noqa: E402
from cdc_logs.pipeline import BatchPolicy, Pipeline  # noqa: E402
from cdc_logs.readers.postgres.reader import PostgresReader  # noqa: E402
from cdc_logs.sinks.kafka import KafkaSinkConfig  # noqa: E402

TABLE, PUB = "bench_pgk", "cdc_logs_bench_pgk"
SLOT_DBZ, SLOT_CDC = "bench_pgk_dbz", "cdc_logs_bench_pgk"


def setup(db: psycopg.Connection, rows: int) -> None:
    for slot in (SLOT_DBZ, SLOT_CDC):
        if db.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone():
            db.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    db.execute(f"DROP PUBLICATION IF EXISTS {PUB}")
    db.execute(f"DROP TABLE IF EXISTS {TABLE}")
    db.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)")
    db.execute(f"CREATE PUBLICATION {PUB} FOR TABLE {TABLE}")
    for slot in (SLOT_DBZ, SLOT_CDC):
        db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    for lo in range(1, rows + 1, 10):
        db.execute(
            f"INSERT INTO {TABLE} SELECT g, 'name ' || g, g * 1.25, now() "
            "FROM generate_series(%s::int, %s::int) g",
            (lo, min(lo + 9, rows)),
        )


def make_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    spec = NewTopic(
        topic, num_partitions=1, replication_factor=1, config={"message.timestamp.type": "LogAppendTime"}
    )
    admin.create_topics([spec])[topic].result(30)


def collect(bootstrap: str, topic: str, rows: int, timeout: float) -> list[tuple[int, int]]:
    """(broker append ms, source.ts_ms) of every data record, once `rows` of them are in the topic."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < rows and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 1.0):
                if msg.error() or not msg.value():
                    continue
                envelope = orjson.loads(msg.value())
                if envelope.get("op") in ("c", "u", "d"):
                    out.append((msg.timestamp()[1], int(envelope["source"]["ts_ms"])))
    finally:
        consumer.close()
    if len(out) < rows:
        raise SystemExit(f"{topic}: only {len(out)} of {rows} records after {timeout:.0f}s")
    return out


def rate(records: list[tuple[int, int]]) -> float:
    """Rows per second between the broker append times of the first and the last record."""
    appends = [a for a, _ in records]
    return len(records) / max(0.001, (max(appends) - min(appends)) / 1000)


def run_debezium(
    connect_url: str, dsn: str, bootstrap: str, topic_prefix: str, rows: int
) -> list[tuple[int, int]]:
    parts = urlsplit(dsn)
    name = f"bench-{uuid.uuid4().hex[:6]}"
    config = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": parts.hostname or "127.0.0.1", "database.port": str(parts.port or 5432),
        "database.user": parts.username or "", "database.password": parts.password or "",
        "database.dbname": parts.path.lstrip("/"), "topic.prefix": topic_prefix, "plugin.name": "pgoutput",
        "slot.name": SLOT_DBZ, "publication.name": PUB, "publication.autocreate.mode": "disabled",
        "table.include.list": f"public.{TABLE}", "snapshot.mode": "no_data",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false", "value.converter.schemas.enable": "false",
        "decimal.handling.mode": "string",
    }  # fmt: skip
    with ConnectClient(connect_url) as client:
        client.create(name, config)
        try:
            return collect(bootstrap, f"{topic_prefix}.public.{TABLE}", rows, timeout=600)
        finally:
            client.delete(name)
            time.sleep(2)  # the task lets go of the slot


def run_cdc_logs(dsn: str, bootstrap: str, topic: str, rows: int) -> list[tuple[int, int]]:
    reader = PostgresReader(
        dsn,
        [f"public.{TABLE}"],
        pipeline_name="bench",
        slot=SLOT_CDC,
        publication=PUB,
        heartbeat_interval_s=0,
    )
    sink = build_sink(
        KafkaSinkConfig(type="kafka", bootstrap_servers=bootstrap, topic=topic, tombstones_on_delete=False)
    )
    pipeline = Pipeline(
        "bench",
        {"pg": reader},
        [sink],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=5000, max_wait_s=0.05),
        limit=rows,
    )
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        return collect(bootstrap, topic, rows, timeout=600)
    finally:
        pipeline.stop()
        runner.join(60)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=os.environ.get("CDC_PG_DSN"))
    parser.add_argument("--bootstrap", default=os.environ.get("CDC_KAFKA_BOOTSTRAP"))
    parser.add_argument("--connect-url", default=os.environ.get("CDC_CONNECT_URL"))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best of each side counts")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not (args.dsn and args.bootstrap and args.connect_url):
        parser.error('needs CDC_PG_DSN, CDC_KAFKA_BOOTSTRAP, CDC_CONNECT_URL (eval "$(scripts/stack env)")')
    cdc_logging.configure("warning")
    db = psycopg.connect(args.dsn, autocommit=True)
    version = db.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    dbz, cdc = 0.0, 0.0
    for _ in range(args.repeat):
        run_id = uuid.uuid4().hex[:6]
        dbz_prefix, cdc_topic = f"benchdbz{run_id}", f"benchcdc{run_id}"
        make_topic(args.bootstrap, f"{dbz_prefix}.public.{TABLE}")
        make_topic(args.bootstrap, cdc_topic)
        setup(db, args.rows)
        dbz = max(dbz, rate(run_debezium(args.connect_url, args.dsn, args.bootstrap, dbz_prefix, args.rows)))
        cdc = max(cdc, rate(run_cdc_logs(args.dsn, args.bootstrap, cdc_topic, args.rows)))
        print(f"round done; best so far: debezium {dbz:,.0f} rows/s, cdc-logs {cdc:,.0f} rows/s", flush=True)
    for slot in (SLOT_DBZ, SLOT_CDC):
        db.execute(
            "SELECT pg_drop_replication_slot(%s) FROM pg_replication_slots WHERE slot_name = %s", (slot, slot)
        )
    db.execute(f"DROP PUBLICATION IF EXISTS {PUB}")
    db.execute(f"DROP TABLE IF EXISTS {TABLE}")

    n = args.rows
    section = f"""## Postgres -> Kafka

`scripts/bench_pg_kafka.py --rows {n}`: the same {n:,} small rows (INSERTs of 10 rows per transaction, \
already in the WAL when both start) read from two slots of PostgreSQL {version} and written as JSON \
envelopes (schemas off) to a Kafka 4.3 topic each, one after the other in the same run, best of \
{args.repeat} rounds (fresh data each round, so the JVM is warm for its best round); rate from the broker's \
LogAppendTime of the first and last record (start-up excluded for both). Python \
{platform.python_version()}, {os.cpu_count()} cores, Debezium 3.6.1.Final on Kafka Connect 4.3 (JVM, \
default connector and worker settings; the cdc-logs pipeline uses batches of up to 5,000 events). A shared \
machine: read the ratio, not the absolute numbers.

| pipeline | rows/s | vs Debezium |
| --- | ---: | ---: |
| Debezium Postgres connector -> Kafka | {dbz:,.0f} | 1.00 |
| cdc-logs PostgresReader -> Kafka sink | {cdc:,.0f} | {cdc / dbz:.2f} |
"""
    print(section)
    if args.write:
        path = ROOT / "docs" / "benchmarks.md"
        text = path.read_text()
        pattern = re.compile(r"## Postgres -> Kafka\n.*?(?=\n## |\Z)", re.S)
        text = (
            pattern.sub(section.rstrip("\n"), text)
            if pattern.search(text)
            else text.rstrip("\n") + "\n\n" + section
        )
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
