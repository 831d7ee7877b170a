"""Helpers shared by the Debezium integration tests: connector configs, cleanup, the CLI as a subprocess.

Everything a test creates (connector, replication slot, publication, table, topics) carries a unique
name and is removed by `cleanup`, which waits for the slot to be released after the connector is
deleted (Debezium keeps it active for a moment) before dropping it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from cdc_logs.debezium.connect import ConnectClient, ConnectError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "debezium" / "examples" / "postgres.yaml"


def pg_env(connect_pg_dsn: str) -> dict[str, str]:
    """libpq variables (as debezium/examples/postgres.yaml reads them) for the DSN the worker uses."""
    parts = urlsplit(connect_pg_dsn)
    return {
        "PGHOST": parts.hostname or "127.0.0.1",
        "PGPORT": str(parts.port or 5432),
        "PGUSER": unquote(parts.username or ""),
        "PGPASSWORD": unquote(parts.password or ""),
        "PGDATABASE": parts.path.lstrip("/"),
    }


def pg_connector_config(connect_pg_dsn: str, name: str, table: str, **overrides: str) -> dict[str, str]:
    """A Debezium Postgres connector whose connector, slot, publication and topic prefix are `name`."""
    env = pg_env(connect_pg_dsn)
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": env["PGHOST"],
        "database.port": env["PGPORT"],
        "database.user": env["PGUSER"],
        "database.password": env["PGPASSWORD"],
        "database.dbname": env["PGDATABASE"],
        "topic.prefix": name,
        "plugin.name": "pgoutput",
        "slot.name": name,
        "publication.name": name,
        "publication.autocreate.mode": "filtered",
        "table.include.list": table,
        "snapshot.mode": "no_data",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "provide.transaction.metadata": "true",
        "decimal.handling.mode": "string",
        **overrides,
    }


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "cdc_logs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def slot_exists(pg_dsn: str, slot: str) -> bool:
    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
            is not None
        )


def cleanup(
    connect_url: str,
    pg_dsn: str,
    kafka_bootstrap: str,
    *,
    connectors: list[str] = (),  # type: ignore[assignment]
    slots: list[str] = (),  # type: ignore[assignment]
    publications: list[str] = (),  # type: ignore[assignment]
    tables: list[str] = (),  # type: ignore[assignment]
    topic_prefixes: list[str] = (),  # type: ignore[assignment]
) -> None:
    with ConnectClient(connect_url) as client:
        for name in connectors:
            with contextlib.suppress(ConnectError):
                client.delete(name)
    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
        for slot in slots:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
                ).fetchone()
                if row is None:
                    # A task deleted while starting may still be creating the slot: wait for it.
                    creating = conn.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'walsender' AND query LIKE %s",
                        (f'CREATE_REPLICATION_SLOT "{slot}"%',),
                    ).fetchone()
                    if creating is None:
                        break
                    time.sleep(0.5)
                    continue
                if not row[0]:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    break
                time.sleep(0.5)
        for publication in publications:
            conn.execute(f'DROP PUBLICATION IF EXISTS "{publication}"')
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    if topic_prefixes:
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        names = [
            t
            for t in admin.list_topics(timeout=10).topics
            if any(t.startswith(f"{p}.") or t == p for p in topic_prefixes)
        ]
        if names:
            for future in admin.delete_topics(names, operation_timeout=10).values():
                with contextlib.suppress(KafkaException):
                    future.result(15)


def wait_running(connect_url: str, name: str, timeout: float = 90) -> dict[str, Any]:
    """The connector's status once it and its tasks run; fails with the task trace otherwise."""
    from cdc_logs.debezium.provision import wait_running as wait

    with ConnectClient(connect_url) as client:
        result = wait(client, [name], timeout_s=timeout, settle_s=1)
        assert result.ok, f"connector {name} did not start: {result.failures}"
        return client.status(name)


JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
FILE_SINK = "org.apache.kafka.connect.file.FileStreamSinkConnector"
UNWRAP = "io.debezium.transforms.ExtractNewRecordState"


def filestream_sink_config(topic: str, path: str, **overrides: str) -> dict[str, str]:
    """Kafka's FileStreamSink reading `topic` with the JsonConverter (schemas.enable=true for key and
    value) and Debezium's ExtractNewRecordState: one line per record, the flattened row's Struct
    toString(), deletes kept as the `before` row plus `__deleted=true` (rewrite mode drops tombstones),
    `__op` added. `path` is opened by the Connect worker, so it must be on the worker's filesystem."""
    return {
        "connector.class": FILE_SINK,
        "tasks.max": "1",
        "topics": topic,
        "file": path,
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "true",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "true",
        "transforms": "unwrap",
        "transforms.unwrap.type": UNWRAP,
        "transforms.unwrap.delete.tombstone.handling.mode": "rewrite",
        "transforms.unwrap.add.fields": "op",
        **overrides,
    }


def delete_consumer_groups(kafka_bootstrap: str, groups: list[str]) -> None:
    """Delete consumer groups (a sink connector's is `connect-<name>`), ignoring ones already gone. A
    group whose members are still leaving (the connector was just deleted) is tried again for a while."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    remaining = list(groups)
    deadline = time.monotonic() + 20
    while remaining and time.monotonic() < deadline:
        busy = []
        for group, future in admin.delete_consumer_groups(remaining, request_timeout=15).items():
            try:
                future.result(20)
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.NON_EMPTY_GROUP:
                    busy.append(group)
        remaining = busy
        if remaining:
            time.sleep(1)
