"""Kafka Connect reads the Avro topics cdc-logs writes (issue 12, item 5, the Avro part).

`cdc-logs run` with the native Postgres reader writes a table's changes as Avro through a real schema
registry (Apicurio Registry's Confluent API, the `schema_registry_url` fixture). A Kafka Connect worker
reads the topic with an Avro converter, Debezium's `ExtractNewRecordState` and Kafka's FileStreamSink:
one line per record, the flattened row's `Struct.toString()` (`Struct{id=1,name=a,...,__op=c}`, null
fields left out; deletes as the `before` row with `__deleted=true`). Replaying the lines must give
exactly `SELECT *` of the source table, including a column added by an ALTER TABLE mid-stream (a new
schema version, registered under the registry's BACKWARD rule and resolved by the converter by id).

The worker: the stack's Connect worker has no Avro converter and must not be restarted to load one, so
this test runs its own Kafka Connect worker (standalone mode, the stack's Kafka jars, a free REST port)
with two plugin directories: the stack's Debezium connector directories (for the transform) and
Apicurio's AvroConverter (tools/avro-converter, built with Maven on first use; Confluent's converter is
not on Maven Central). With `apicurio.registry.as-confluent=true` it reads the Confluent wire format.

The workload's text has no `,` and no `=`, so splitting a Struct line on them is exact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from tests.contract.test_kafka_sink import create_topic
from tests.integration.conftest import _unavailable
from tests.integration.debezium_support import ROOT, cleanup, delete_consumer_groups

pytestmark = pytest.mark.integration

STACK = Path(os.environ.get("CDC_STACK_DIR") or ROOT / ".stack")
AVRO_CONVERTER = "io.apicurio.registry.utils.converter.AvroConverter"
WAIT_S = 120

COLUMNS = (
    "id int PRIMARY KEY, name text, price numeric(10,2), seen_at timestamp, day date, big bigint, "
    "active boolean"
)
SEED = [
    (
        1,
        "first",
        Decimal("10.50"),
        datetime(2024, 5, 6, 7, 8, 9, 123456),
        date(2024, 5, 6),
        9_000_000_000,
        True,
    ),
    (2, "second", Decimal("0.01"), datetime(1969, 12, 31, 23, 59, 59, 500000), date(1960, 1, 1), -5, False),
]
INSERT = "INSERT INTO {t} (id, name, price, seen_at, day, big, active) VALUES (%s, %s, %s, %s, %s, %s, %s)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def converter_plugin() -> Path:
    """Apicurio's AvroConverter and its dependencies in a plugin directory (built once, then reused)."""
    pom = ROOT / "tools" / "avro-converter" / "pom.xml"
    lib = STACK / "lib-avro-converter"
    done = lib / ".inputs"
    want = hashlib.sha256(pom.read_bytes()).hexdigest()
    if done.exists() and done.read_text() == want:
        return lib
    shutil.rmtree(lib, ignore_errors=True)
    built = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(pom),
            "package",
            f"-Dstack.lib={lib}/avro-converter",
            f"-Dstack.build={STACK}/build/avro-converter",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if built.returncode != 0:
        _unavailable(f"could not build the Avro converter plugin: {(built.stdout + built.stderr)[-2000:]}")
    done.write_text(want)
    return lib


class Worker:
    """A Kafka Connect worker in standalone mode, started and stopped by this test (its own pid)."""

    def __init__(self, workdir: Path, kafka_bootstrap: str, plugin_dirs: list[Path]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        props = workdir / "worker.properties"
        props.write_text(
            "\n".join(
                [
                    f"bootstrap.servers={kafka_bootstrap}",
                    "key.converter=org.apache.kafka.connect.json.JsonConverter",
                    "value.converter=org.apache.kafka.connect.json.JsonConverter",
                    f"offset.storage.file.filename={workdir / 'offsets'}",
                    "offset.flush.interval.ms=1000",
                    f"listeners={self.url}",
                    f"plugin.path={','.join(str(d) for d in plugin_dirs)}",
                    # Apicurio's converter jar has no ServiceLoader manifest: scan for it.
                    "plugin.discovery=hybrid_warn",
                ]
            )
            + "\n"
        )
        log4j = workdir / "log4j2.properties"
        log4j.write_text(
            "status = warn\nappender.out.type = Console\nappender.out.name = OUT\n"
            "appender.out.layout.type = PatternLayout\nappender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\nrootLogger.appenderRef.out.ref = OUT\n"
            "logger.reflections.name = org.reflections\nlogger.reflections.level = ERROR\n"
        )
        self.log = workdir / "worker.log"
        kafka_lib = STACK / "lib" / "kafka"
        if not kafka_lib.is_dir():
            _unavailable(f"no Kafka jars in {kafka_lib} (scripts/stack up fetches them)")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    os.environ.get("CDC_STACK_JAVA", "java"),
                    "-Xms64m",
                    "-Xmx512m",
                    f"-Dlog4j2.configurationFile={log4j}",
                    "-cp",
                    f"{kafka_lib}/*",
                    "org.apache.kafka.connect.cli.ConnectStandalone",
                    str(props),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + WAIT_S
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the Connect worker did not start:\n{self.tail()}")
            time.sleep(0.5)

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/connectors", timeout=2).ok
        except requests.RequestException:
            return False

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def status(self, name: str) -> dict[str, Any]:
        return dict(requests.get(f"{self.url}/connectors/{name}/status", timeout=10).json())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def avro_worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    worker = Worker(
        tmp_path_factory.mktemp("connect-avro"),
        kafka_bootstrap,
        [converter_plugin(), STACK / "lib" / "connect-plugins"],
    )
    try:
        yield worker
    finally:
        worker.stop()


def avro_file_sink(topic: str, path: Path, registry_api: str) -> dict[str, str]:
    """FileStreamSink over `topic` with the Avro converter for key and value and Debezium's
    ExtractNewRecordState (deletes kept as the before row with __deleted=true, __op added)."""
    # The Confluent API of Apicurio 2.x answers with content ids; its converter looks ids up as global
    # ids unless told otherwise (they differ once one schema is under two subjects).
    converter = {
        "apicurio.registry.url": registry_api,
        "apicurio.registry.as-confluent": "true",
        "apicurio.registry.use-id": "contentId",
    }
    return {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "file": str(path),
        "key.converter": AVRO_CONVERTER,
        **{f"key.converter.{k}": v for k, v in converter.items()},
        "value.converter": AVRO_CONVERTER,
        **{f"value.converter.{k}": v for k, v in converter.items()},
        "transforms": "unwrap",
        "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
        "transforms.unwrap.delete.tombstone.handling.mode": "rewrite",
        "transforms.unwrap.add.fields": "op",
    }


def read_lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").split("\n")[:-1] if path.exists() else []


def parse(line: str) -> dict[str, str]:
    assert line.startswith("Struct{") and line.endswith("}"), line
    return dict(part.split("=", 1) for part in line[len("Struct{") : -1].split(","))


def connect_text(value: Any) -> str | None:
    """A Postgres value as the Struct line renders it (Debezium's encodings: MicroTimestamp, Date)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        delta = value - datetime(1970, 1, 1)
        return str((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    if isinstance(value, date):
        return str((value - date(1970, 1, 1)).days)
    return str(value)


def test_connect_avro_converter_reads_our_avro_topic(
    pg_dsn: str,
    kafka_bootstrap: str,
    connect_url: str,
    schema_registry_url: str,
    avro_worker: Worker,
    tmp_path: Path,
) -> None:
    uid = "avfs_" + uuid.uuid4().hex[:10]
    table, topic = f"public.{uid}", f"{uid}.public.{uid}"
    path = tmp_path / "rows.txt"
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        json.dumps(
            {
                "name": uid,
                "source": {
                    "type": "postgres",
                    "dsn": pg_dsn,
                    "tables": [table],
                    "slot": uid,
                    "publication": uid,
                    "snapshot": True,
                },
                "destination": {
                    "type": "kafka",
                    "bootstrap_servers": kafka_bootstrap,
                    "prefix": uid,
                    "schema_registry_url": schema_registry_url,
                },
                "offsets": {"type": "sqlite", "path": str(tmp_path / "offsets.db")},
            }
        )
    )
    registry_api = schema_registry_url.replace("/apis/ccompat/v7", "/apis/registry/v2")
    proc: subprocess.Popen[bytes] | None = None
    log = tmp_path / "cdc-logs.log"

    def wait_lines(count: int) -> list[str]:
        deadline = time.monotonic() + WAIT_S
        while len(lines := read_lines(path)) < count:
            status = avro_worker.status(uid)
            failed = "FAILED" in [status["connector"]["state"], *(t["state"] for t in status["tasks"])]
            if failed or time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise AssertionError(
                    f"{len(lines)} of {count} lines: {lines}\nsink: {json.dumps(status)[:3000]}\n"
                    f"cdc-logs: {log.read_text(errors='replace')[-3000:] if log.exists() else ''}\n"
                    f"worker: {avro_worker.tail()[-3000:]}"
                )
            time.sleep(0.5)
        return lines

    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {table} ({COLUMNS})")
            for row in SEED:
                conn.execute(INSERT.format(t=table), row)
        create_topic(kafka_bootstrap, topic)
        # One schema under two more subjects: the registry's global ids run ahead of its content ids,
        # as in any registry that has served more than one topic, so a converter confusing them fails.
        for extra in (f"{uid}-a", f"{uid}-b"):
            requests.post(
                f"{schema_registry_url}/subjects/{extra}/versions",
                json={
                    "schema": json.dumps(
                        {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]}
                    )
                },
                timeout=10,
            ).raise_for_status()
        # Confluent's default rule (Apicurio's default is NONE): the ALTER below must pass it.
        for subject in (f"{topic}-key", f"{topic}-value"):
            requests.put(
                f"{schema_registry_url}/config/{subject}", json={"compatibility": "BACKWARD"}, timeout=10
            ).raise_for_status()
        resp = requests.put(
            f"{avro_worker.url}/connectors/{uid}/config",
            json=avro_file_sink(topic, path, registry_api),
            timeout=30,
        )
        assert resp.ok, resp.text
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)], cwd=ROOT, stdout=out, stderr=out
            )
        wait_lines(len(SEED))  # the snapshot is in: later changes are streamed
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(INSERT.format(t=table), (3, "third", Decimal("-7.25"), None, None, None, None))
            conn.execute(f"UPDATE {table} SET name = 'renamed', price = 99.99, active = NULL WHERE id = 1")
            conn.execute(f"DELETE FROM {table} WHERE id = 2")
            conn.execute(f"ALTER TABLE {table} ADD COLUMN extra varchar(20)")
            conn.execute(
                f"INSERT INTO {table} (id, name, price, extra) VALUES (%s, %s, %s, %s)",
                (4, "fourth", Decimal("1.00"), "added"),
            )
        lines = wait_lines(6)
        time.sleep(2)  # a moment for any extra line
        lines = read_lines(path)
        assert len(lines) == 6, lines

        state: dict[str, dict[str, str]] = {}
        ops = []
        for line in lines:
            fields = parse(line)
            ops.append(fields.pop("__op"))
            deleted = fields.pop("__deleted") == "true"
            if deleted:
                state.pop(fields["id"], None)
            else:
                state[fields["id"]] = fields
        assert ops == ["r", "r", "c", "u", "d", "c"]
        with psycopg.connect(pg_dsn) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {table} ORDER BY id")
            names = [d.name for d in cur.description or ()]
            want = {
                str(row[0]): {
                    n: t for n, v in zip(names, row, strict=True) if (t := connect_text(v)) is not None
                }
                for row in cur.fetchall()
            }
        assert state == want
        versions = requests.get(f"{schema_registry_url}/subjects/{topic}-value/versions", timeout=10).json()
        assert len(versions) == 2, f"the ALTER registers a second value schema: {versions}"
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        requests.delete(f"{avro_worker.url}/connectors/{uid}", timeout=30)
        for extra in (f"{uid}-a", f"{uid}-b"):
            requests.delete(f"{schema_registry_url}/subjects/{extra}", timeout=10)
        delete_consumer_groups(kafka_bootstrap, [f"connect-{uid}"])
        cleanup(
            connect_url,
            pg_dsn,
            kafka_bootstrap,
            slots=[uid],
            publications=[uid],
            tables=[table],
            topic_prefixes=[uid],
        )
