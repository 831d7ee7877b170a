"""Helpers for the servers of the stack: Postgres slots and load, Kafka topics and record timestamps,
Kafka Connect connectors, process RSS. Every object made here is registered with the run's Cleanup."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import orjson
import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from benchkit.cleanup import Cleanup
from cdc_logs.debezium.connect import ConnectClient, ConnectError


@dataclass(frozen=True)
class Stack:
    pg_dsn: str
    mariadb_dsn: str
    bootstrap: str
    connect_url: str

    @classmethod
    def from_env(cls) -> Stack:
        missing = [
            v
            for v in ("CDC_PG_DSN", "CDC_MARIADB_DSN", "CDC_KAFKA_BOOTSTRAP", "CDC_CONNECT_URL")
            if not os.environ.get(v)
        ]
        if missing:
            raise SystemExit(f'needs {", ".join(missing)}: eval "$(scripts/stack env)" first')
        return cls(
            os.environ["CDC_PG_DSN"],
            os.environ["CDC_MARIADB_DSN"],
            os.environ["CDC_KAFKA_BOOTSTRAP"],
            os.environ["CDC_CONNECT_URL"],
        )


def run_id() -> str:
    return uuid.uuid4().hex[:6]


# -- Postgres ---------------------------------------------------------------------------------------
def pg(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True, connect_timeout=10)


def lsn(db: psycopg.Connection) -> int:
    return int(db.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0])  # type: ignore[index]


def fmt_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def make_table(db: psycopg.Connection, cleanup: Cleanup, table: str, dsn: str) -> None:
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)")
    cleanup.add(f"table {table}", lambda: _sql(dsn, f"DROP TABLE IF EXISTS {table}"))


def make_publication(db: psycopg.Connection, cleanup: Cleanup, name: str, table: str, dsn: str) -> None:
    db.execute(f"CREATE PUBLICATION {name} FOR TABLE {table}")
    cleanup.add(f"publication {name}", lambda: _sql(dsn, f"DROP PUBLICATION IF EXISTS {name}"))


def make_slot(db: psycopg.Connection, cleanup: Cleanup, slot: str, dsn: str) -> None:
    db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    cleanup.add(f"slot {slot}", lambda: drop_slot(dsn, slot))


def _sql(dsn: str, statement: str) -> None:
    with pg(dsn) as db:
        db.execute(statement)


def drop_slot(dsn: str, slot: str, wait_s: float = 30) -> None:
    """Drop the slot once no process holds it (a deleted Debezium task lets go of it a moment later)."""
    deadline = time.monotonic() + wait_s
    with pg(dsn) as db:
        while True:
            row = db.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                return
            if row[0] is None or time.monotonic() > deadline:
                if (
                    row[0] is not None
                ):  # still held after the wait: end that walsender (ours: the slot is ours)
                    db.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    time.sleep(0.5)
                with contextlib.suppress(psycopg.errors.ObjectInUse, psycopg.errors.UndefinedObject):
                    db.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    return
            time.sleep(0.3)


def load_rows(db: psycopg.Connection, table: str, rows: int, first: int = 1, per_tx: int = 10) -> None:
    """`rows` small rows, INSERTs of `per_tx` rows per transaction (autocommit: one statement each)."""
    for lo in range(first, first + rows, per_tx):
        hi = min(lo + per_tx - 1, first + rows - 1)
        db.execute(
            f"INSERT INTO {table} SELECT g, 'name ' || g, g * 1.25, now() "
            "FROM generate_series(%s::int, %s::int) g",
            (lo, hi),
        )


def pg_recvlogical(dsn: str, slot: str, publication: str, end_lsn: int) -> float:
    """Seconds pg_recvlogical takes to receive the slot's pgoutput bytes up to `end_lsn` into /dev/null."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    env = {**os.environ, "PGPASSWORD": str(params.get("password", ""))}
    cmd = [
        "pg_recvlogical",
        "-h",
        str(params.get("host", "localhost")),
        "-p",
        str(params.get("port", 5432)),
        "-U",
        str(params.get("user", "")),
        "-d",
        str(params.get("dbname", "")),
        "--slot",
        slot,
        "--start",
        "--no-loop",
        "--endpos",
        fmt_lsn(end_lsn),
        "-o",
        "proto_version=1",
        "-o",
        f"publication_names={publication}",
        "-f",
        "/dev/null",
    ]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)
    return time.perf_counter() - started


# -- Kafka ------------------------------------------------------------------------------------------
def make_topic(bootstrap: str, cleanup: Cleanup, topic: str) -> None:
    """One partition, the broker's own clock as the record timestamp (LogAppendTime)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    spec = NewTopic(
        topic, num_partitions=1, replication_factor=1, config={"message.timestamp.type": "LogAppendTime"}
    )
    admin.create_topics([spec])[topic].result(30)
    cleanup.add(f"topic {topic}", lambda: delete_topic(bootstrap, topic))


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with contextlib.suppress(KafkaException):
        admin.delete_topics([topic], operation_timeout=15)[topic].result(20)


def delete_topics_with_prefix(bootstrap: str, prefix: str) -> None:
    """`<prefix>.*`: the topics a Debezium connector made itself (e.g. `<prefix>.message` for logical
    decoding messages, which cdc-logs' heartbeats on the same server are)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix + ".")]
    for future in admin.delete_topics(names, operation_timeout=15).values() if names else ():
        with contextlib.suppress(KafkaException):
            future.result(20)


def row_id(value: bytes) -> tuple[int, int] | None:
    """(`after.id`, `source.ts_ms`) of a data record (an envelope, or a Connect {"schema", "payload"} one);
    None for anything else. `source.ts_ms` is the server's commit time for both cdc-logs and Debezium."""
    if not value:
        return None
    envelope = orjson.loads(value)
    if isinstance(envelope, dict) and "payload" in envelope and "op" not in envelope:
        envelope = envelope["payload"]
    if not isinstance(envelope, dict) or envelope.get("op") not in ("c", "u", "r"):
        return None
    after = envelope.get("after") or {}
    if "id" not in after:
        return None
    return int(after["id"]), int((envelope.get("source") or {}).get("ts_ms") or 0)


class TopicReader:
    """Reads one single-partition topic from its start: row id -> (broker append ms, commit ts_ms)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.assign([TopicPartition(topic, 0, 0)])
        self.topic = topic

    def poll(self, timeout: float = 0.5) -> list[tuple[int, int, int]]:
        out = []
        for msg in self.consumer.consume(10_000, timeout):
            if msg.error() or not msg.value():
                continue
            parsed = row_id(msg.value() or b"")
            if parsed is not None:
                out.append((parsed[0], msg.timestamp()[1], parsed[1]))
        return out

    def until(
        self, wanted: set[int], timeout: float, check: Callable[[], None] | None = None
    ) -> dict[int, tuple[int, int]]:
        """(append ms, commit ts_ms) of the wanted ids once all arrived; RuntimeError naming how many did.
        `check` runs between polls and raises when a process the records depend on has failed."""
        got: dict[int, tuple[int, int]] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check:
                check()
            for rid, ts, commit_ms in self.poll():
                if rid in wanted and rid not in got:
                    got[rid] = (ts, commit_ms)
            if len(got) == len(wanted):
                return got
        raise RuntimeError(f"{self.topic}: {len(got)} of {len(wanted)} records after {timeout:.0f}s")

    def close(self) -> None:
        self.consumer.close()


# -- Kafka Connect ------------------------------------------------------------------------------------
def debezium_pg_config(dsn: str, prefix: str, slot: str, publication: str, table: str) -> dict[str, str]:
    """The Debezium Postgres connector at its defaults but for the slot, publication and JSON without schemas
    (what cdc-logs writes too)."""
    parts = urlsplit(dsn)
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": parts.hostname or "127.0.0.1",
        "database.port": str(parts.port or 5432),
        "database.user": unquote(parts.username or ""),
        "database.password": unquote(parts.password or ""),
        "database.dbname": parts.path.lstrip("/"),
        "topic.prefix": prefix,
        "plugin.name": "pgoutput",
        "slot.name": slot,
        "publication.name": publication,
        "publication.autocreate.mode": "disabled",
        "table.include.list": table,
        "snapshot.mode": "no_data",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "decimal.handling.mode": "string",
    }


def start_connector(
    connect_url: str, bootstrap: str, cleanup: Cleanup, name: str, config: dict[str, str]
) -> None:
    prefix = config["topic.prefix"]
    cleanup.add(f"topics {prefix}.*", lambda: delete_topics_with_prefix(bootstrap, prefix))
    with ConnectClient(connect_url) as client:
        client.create(name, config)
    cleanup.add(f"connector {name}", lambda: delete_connector(connect_url, name))


def delete_connector(connect_url: str, name: str) -> None:
    with ConnectClient(connect_url) as client, contextlib.suppress(ConnectError):
        client.delete(name)


def running_connectors(connect_url: str) -> list[str]:
    with ConnectClient(connect_url) as client:
        return client.connector_names()


# -- processes --------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    """Resident set size (VmRSS) of a process and its child processes (the Postgres reader's decode
    process, when one runs), in MB."""
    total = 0
    for one in (pid, *child_pids(pid)):
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
                break
        else:
            if one == pid:
                raise RuntimeError(f"no VmRSS for pid {pid}")
    return total / 1024


def child_pids(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux: /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def connect_worker_pid() -> int | None:
    """The pid of the Kafka Connect worker's JVM on this machine (found by its main class)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"org.apache.kafka.connect.cli.ConnectDistributed" in cmdline:
            return int(proc.name)
    return None
