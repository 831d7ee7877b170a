"""A real Kafka Connect sink connector reads the topics cdc-logs writes (issue 12, item 5).

Kafka's own FileStreamSink, on the stack's Connect worker, reads a table's topic with the JsonConverter
(`schemas.enable=true`, key and value) and Debezium's `ExtractNewRecordState` transform (loaded from the
Debezium plugin directories for this non-Debezium connector). It writes one line per record: the
flattened row's Connect `Struct.toString()`, `Struct{id=1,name=a,...,__deleted=false,__op=c}`, with null
fields left out. Deletes are kept (`delete.tombstone.handling.mode=rewrite`: the `before` row with
`__deleted=true`, tombstones dropped) and `add.fields=op` adds `__op`. Replaying the file's lines in order
must give exactly `SELECT *` of the source table, value by value.

Three producers of the topic, same workload (snapshot rows, then inserts, updates incl. one to NULL,
deletes, a re-insert of a deleted key):
  - the Debezium Postgres connector itself (JsonConverter, schemas on): the reference, proving the
    harness; cdc-logs' lines must equal its lines;
  - `cdc-logs run` with the native Postgres reader and the Kafka sink's `schemas: true`;
  - `cdc-logs run` with the native MariaDB binlog reader (no Debezium MariaDB connector runs here).

Parsing `Struct{...}`: Struct.toString() does not quote text, and a column that is null is left out, so
a text value holding `,<column>=` reads the same as two fields: no parser can tell them apart. The parse
used is exact for values without that sequence: a field starts at `,<known name>=` (the table's columns
in order, then `__deleted`, `__op`), names must come in schema order, and each value must look as Connect
renders its kind (an int, a decimal, true/false; text is anything). The workload's text has commas,
equals signs, braces, an empty string and non-ASCII but never that sequence nor a newline (FileStreamSink
writes one line per record), and test_workload_text_reads_back_unambiguously checks so.

Values are compared as Connect renders them, converted back: a Date is days since the epoch, a
MicroTimestamp microseconds (no zone), a decimal (string or Decimal) its digits with the column's scale,
a MariaDB BOOLEAN an INT16.

The file is opened by the Connect worker: the test needs a worker sharing this machine's filesystem (the
local stack; under docker compose, /tmp is the container's).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pymysql
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from cdc_logs.debezium.connect import ConnectClient, ConnectError
from cdc_logs.readers.mysql.connection import parse_dsn
from tests.contract.test_kafka_sink import create_topic
from tests.integration.debezium_support import (
    FILE_SINK,
    ROOT,
    cleanup,
    delete_consumer_groups,
    filestream_sink_config,
    pg_connector_config,
    wait_running,
)

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1)
EPOCH_DAY = date(1970, 1, 1)
WAIT_S = 120

# -- the table and its workload ---------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # how Connect renders it: int, text, decimal, bool, micros (MicroTimestamp), days (Date)


PG_COLUMNS = (
    ("id", "int PRIMARY KEY", "int"),
    ("big", "bigint", "int"),
    ("name", "text", "text"),
    ("note", "text", "text"),
    ("price", "numeric(10,2)", "decimal"),
    ("active", "boolean", "bool"),
    ("seen_at", "timestamp", "micros"),
    ("day", "date", "days"),
)
MARIADB_COLUMNS = (
    ("id", "INT PRIMARY KEY", "int"),
    ("big", "BIGINT", "int"),
    ("name", "VARCHAR(100)", "text"),
    ("note", "TEXT", "text"),
    ("price", "DECIMAL(10,2)", "decimal"),
    ("active", "BOOLEAN", "int"),  # TINYINT(1): an INT16, as docs/sources/mysql.md says
    ("seen_at", "DATETIME(6)", "micros"),
    ("day", "DATE", "days"),
)
PG_COLUMN_KINDS = tuple(Column(n, k) for n, _, k in PG_COLUMNS)
MARIADB_COLUMN_KINDS = tuple(Column(n, k) for n, _, k in MARIADB_COLUMNS)
INSERT = (
    "INSERT INTO {t} (id, big, name, note, price, active, seen_at, day) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


@dataclass(frozen=True)
class Change:
    op: str  # r: written before the source starts (a snapshot row); c / u / d: while it streams
    id: int
    sql: str
    params: tuple[Any, ...]


WORKLOAD = (
    Change(
        "r",
        1,
        INSERT,
        (
            1,
            9_000_000_000,
            "a,b=c {x}",
            "first",
            Decimal("10.50"),
            True,
            datetime(2024, 5, 6, 7, 8, 9, 123456),
            date(2024, 5, 6),
        ),
    ),
    Change(
        "r",
        2,
        INSERT,
        (
            2,
            -5,
            "",
            None,
            Decimal("0.01"),
            False,
            datetime(1969, 12, 31, 23, 59, 59, 500000),
            date(1960, 1, 1),
        ),
    ),
    Change("c", 3, INSERT, (3, 0, "Struct{id=9}", "x, y = z ü", Decimal("-12.34"), None, None, None)),
    Change(
        "c",
        4,
        INSERT,
        (4, 42, "}{", "keep", Decimal("99999999.99"), True, datetime(2000, 2, 29), date(2000, 2, 29)),
    ),
    Change(
        "u",
        1,
        "UPDATE {t} SET note = NULL, name = %s, price = %s WHERE id = %s",
        ("b=1,c={}", Decimal("11.00"), 1),
    ),
    Change(
        "u",
        3,
        "UPDATE {t} SET active = %s, seen_at = %s, big = %s WHERE id = %s",
        (True, datetime(2038, 1, 19, 3, 14, 8), -9_000_000_000, 3),
    ),
    Change("d", 2, "DELETE FROM {t} WHERE id = %s", (2,)),
    Change("d", 4, "DELETE FROM {t} WHERE id = %s", (4,)),
    Change(
        "c",
        2,
        INSERT,
        (2, 7, "again", None, Decimal("0.00"), False, datetime(1970, 1, 1), date(1970, 1, 1)),
    ),
    Change("u", 2, "UPDATE {t} SET note = %s WHERE id = %s", ("=,{}", 2)),
)
SEED = tuple(c for c in WORKLOAD if c.op == "r")
STREAMED = tuple(c for c in WORKLOAD if c.op != "r")


def expected_ops() -> dict[int, list[str]]:
    """Per key, the ops the file must show, from the workload's own statements."""
    ops: dict[int, list[str]] = {}
    for change in WORKLOAD:
        ops.setdefault(change.id, []).append(change.op)
    return ops


def apply(execute: Callable[[str, tuple[Any, ...]], int], table: str, changes: Sequence[Change]) -> None:
    """Run each change as its own transaction; each must touch exactly its one row."""
    for change in changes:
        count = execute(change.sql.format(t=table), change.params)
        assert count == 1, f"{change} touched {count} rows"


# -- the FileStreamSink's lines ---------------------------------------------------------------------

_RENDERED = {
    "int": re.compile(r"-?\d+"),
    "decimal": re.compile(r"-?\d+(?:\.\d+)?"),  # BigDecimal.toString() or the string mode's digits
    "bool": re.compile(r"true|false"),
    "micros": re.compile(r"-?\d+"),
    "days": re.compile(r"-?\d+"),
    "text": re.compile(r".*", re.DOTALL),
    "deleted": re.compile(r"true|false"),
    "op": re.compile(r"[crud]"),
}


def parse_struct(line: str, fields: Sequence[tuple[str, str]]) -> dict[str, str]:
    """`Struct{a=1,b=x}` -> {"a": "1", "b": "x"} for fields (name, kind) in schema order, null fields
    absent. A field starts at `,<name>=` for a known name: exact when no value contains that sequence,
    which only text can and the workload's text does not (see test_workload_text_reads_back_unambiguously).
    The names must come in schema order and each value must look as Connect renders its kind."""
    assert line.startswith("Struct{") and line.endswith("}"), f"not a Connect Struct: {line!r}"
    body = line[len("Struct{") : -1]
    names = "|".join(re.escape(name) for name, _ in fields)
    starts = list(re.finditer(rf"(?:^|,)({names})=", body))
    assert body == "" or (starts and starts[0].start() == 0), f"no field at the start of {line!r}"
    kinds = dict(fields)
    order = [name for name, _ in fields]
    out: dict[str, str] = {}
    for i, match in enumerate(starts):
        name = match.group(1)
        value = body[match.end() : starts[i + 1].start() if i + 1 < len(starts) else len(body)]
        assert not out or order.index(name) > order.index(list(out)[-1]), f"{name} out of order: {line!r}"
        assert _RENDERED[kinds[name]].fullmatch(value), f"{name}={value!r} is no {kinds[name]}: {line!r}"
        out[name] = value
    return out


def misreadable(text: str, names: Sequence[str]) -> bool:
    """Whether `text` as a Struct value could be split wrongly by parse_struct."""
    return any(f",{name}=" in text for name in names)


def from_connect(kind: str, raw: str | None) -> Any:
    """A rendered value back to the Python value a database driver returns for the column."""
    if raw is None:
        return None
    if kind == "int":
        return int(raw)
    if kind == "decimal":
        return Decimal(raw)
    if kind == "bool":
        return raw == "true"
    if kind == "micros":
        return EPOCH + timedelta(microseconds=int(raw))
    if kind == "days":
        return EPOCH_DAY + timedelta(days=int(raw))
    return raw


def comparable(kind: str, value: Any) -> Any:
    """Decimals compare by their digits and scale (10.50 is not 10.5); the rest as they are."""
    return str(value) if kind == "decimal" and value is not None else value


def replay(
    lines: Sequence[str], columns: Sequence[Column]
) -> tuple[dict[int, dict[str, Any]], dict[int, list[str]]]:
    """The table the lines describe, applied in order, and the ops seen per key."""
    fields = [(c.name, c.kind) for c in columns] + [("__deleted", "deleted"), ("__op", "op")]
    state: dict[int, dict[str, Any]] = {}
    ops: dict[int, list[str]] = {}
    for line in lines:
        raw = parse_struct(line, fields)
        key = int(raw["id"])
        ops.setdefault(key, []).append(raw["__op"])
        assert (raw["__deleted"] == "true") == (raw["__op"] == "d"), line
        if raw["__deleted"] == "true":
            assert key in state, f"delete of a row never seen: {line!r}"
            del state[key]
        else:
            state[key] = {c.name: comparable(c.kind, from_connect(c.kind, raw.get(c.name))) for c in columns}
    return state, ops


def source_rows(
    names: Sequence[str], rows: Sequence[Sequence[Any]], columns: Sequence[Column]
) -> dict[int, dict[str, Any]]:
    """`SELECT *`'s rows by id, each value as comparable as the file's."""
    assert list(names) == [c.name for c in columns], f"the table has columns {names}"
    return {
        row[0]: {c.name: comparable(c.kind, v) for c, v in zip(columns, row, strict=True)} for row in rows
    }


def diff(got: dict[int, dict[str, Any]], want: dict[int, dict[str, Any]]) -> list[str]:
    out = [f"id {k}: only in the file" for k in sorted(got.keys() - want.keys())]
    out += [f"id {k}: only in the table" for k in sorted(want.keys() - got.keys())]
    for key in sorted(got.keys() & want.keys()):
        for name, value in want[key].items():
            if got[key][name] != value:
                out.append(f"id {key}.{name}: file {got[key][name]!r} != table {value!r}")
    return out


# -- running a FileStreamSink against a topic ----------------------------------------------------


@dataclass
class Run:
    """What one producer of the topic led to: the file's lines and the source table afterwards."""

    lines: list[str]
    rows: dict[int, dict[str, Any]]
    columns: tuple[Column, ...]


def read_lines(path: Path) -> list[str]:
    """The file's complete lines (the worker may be halfway through writing the last one)."""
    if not path.exists():
        return []
    return path.read_bytes().decode("utf-8", errors="replace").split("\n")[:-1]


def topic_records(kafka_bootstrap: str, topic: str) -> int:
    """How many records the topic holds (a diagnosis: did the source or the sink stop short?)."""
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        total = 0
        for partition in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def _failed(status: dict[str, Any]) -> bool:
    return "FAILED" in [status["connector"]["state"], *(t["state"] for t in status.get("tasks", []))]


def describe_status(status: dict[str, Any]) -> str:
    """A Connect status in a few lines: states, and of each trace its first line and its causes."""
    parts = [("connector", status["connector"])] + [(f"task {t['id']}", t) for t in status.get("tasks", [])]
    out = []
    for what, part in parts:
        out.append(f"{what} {part['state']}")
        trace = (part.get("trace") or "").splitlines()
        out += [f"  {line}" for line in trace[:1] + [x for x in trace[1:] if x.startswith("Caused by")]]
    return "\n    ".join(out)


class FileSink:
    """The FileStreamSink connector `name` on `topic`, writing `path`; deleted (with its consumer group)
    on close."""

    def __init__(self, connect_url: str, kafka_bootstrap: str, name: str, topic: str, path: Path) -> None:
        self.connect_url, self.kafka_bootstrap = connect_url, kafka_bootstrap
        self.name, self.topic, self.path = name, topic, path
        self.config = filestream_sink_config(topic, str(path))

    def start(self) -> FileSink:
        with ConnectClient(self.connect_url) as client:
            plugins = {p["class"] for p in client.plugins()}
            assert FILE_SINK in plugins, (
                f"the Connect worker has no {FILE_SINK} (plugins: {sorted(plugins)}); the local stack puts "
                "Kafka's connect-file jar on its classpath (debezium/stack/kafka/pom.xml)"
            )
            validation = client.validate({**self.config, "name": self.name})
            assert validation.ok, f"Connect refuses the FileStreamSink config: {validation.describe()}"
            client.put_config(self.name, self.config)
        wait_running(self.connect_url, self.name)
        return self

    def _status(self) -> dict[str, Any]:
        with ConnectClient(self.connect_url) as client:
            return client.status(self.name)

    def wait_lines(self, count: int, source: Source) -> list[str]:
        """The file's lines once there are `count`; after WAIT_S, or as soon as the sink's task or the
        source has failed, a failure saying where things stand."""
        deadline = time.monotonic() + WAIT_S
        lines = read_lines(self.path)
        while len(lines) < count:
            if time.monotonic() > deadline or not source.alive() or _failed(self._status()):
                raise AssertionError(
                    f"the FileStreamSink wrote {len(lines)} of {count} lines\n"
                    f"  topic {self.topic} holds {topic_records(self.kafka_bootstrap, self.topic)} "
                    "records (the source's rows plus tombstones)\n"
                    f"  sink: {describe_status(self._status())}\n"
                    f"  file {self.path} (opened by the Connect worker: it must share this "
                    f"filesystem): {lines}\n"
                    f"  source: {source.state()}"
                )
            time.sleep(0.5)
            lines = read_lines(self.path)
        return lines

    def settle(self, count: int) -> list[str]:
        """Once `count` lines are there: a moment for any extra line (a duplicate, a stray tombstone)."""
        time.sleep(2)
        lines = read_lines(self.path)
        assert len(lines) == count, f"expected {count} lines, the file has {len(lines)}: {lines}"
        return lines

    def close(self) -> None:
        with ConnectClient(self.connect_url) as client, contextlib.suppress(ConnectError):
            client.delete(self.name)
        delete_consumer_groups(self.kafka_bootstrap, [f"connect-{self.name}"])


class Source(Protocol):
    """What writes the topic: the Debezium connector or `cdc-logs run`."""

    def start(self) -> None: ...
    def alive(self) -> bool: ...
    def state(self) -> str: ...


def stream_through(
    sink: FileSink, source: Source, execute: Callable[[str, tuple[Any, ...]], int], table: str
) -> list[str]:
    """Seed rows are in the table; start the source, wait for the snapshot's lines, stream the rest."""
    sink.start()
    source.start()
    # The snapshot's lines mean the source has fixed its position: every later change is captured.
    sink.wait_lines(len(SEED), source)
    apply(execute, table, STREAMED)
    sink.wait_lines(len(WORKLOAD), source)
    return sink.settle(len(WORKLOAD))


def check(run: Run) -> None:
    state, ops = replay(run.lines, run.columns)
    assert ops == expected_ops(), (ops, run.lines)
    problems = diff(state, run.rows)
    assert not problems, "\n".join([*problems, "lines:", *run.lines])


# -- Postgres -------------------------------------------------------------------------------------


def _pg_execute(pg_dsn: str) -> Callable[[str, tuple[Any, ...]], int]:
    def execute(sql: str, params: tuple[Any, ...]) -> int:
        with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
            return conn.execute(sql, params).rowcount

    return execute


def _pg_table(pg_dsn: str, table: str) -> None:
    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} ({', '.join(f'{n} {t}' for n, t, _ in PG_COLUMNS)})")
    apply(_pg_execute(pg_dsn), table, SEED)


def _pg_rows(pg_dsn: str, table: str) -> dict[int, dict[str, Any]]:
    with psycopg.connect(pg_dsn, connect_timeout=5) as conn:
        cur = conn.execute(f"SELECT * FROM {table} ORDER BY id")
        names = [d.name for d in cur.description or []]
        return source_rows(names, cur.fetchall(), PG_COLUMN_KINDS)


class DebeziumPostgres:
    """The Debezium Postgres connector `name` on the stack's worker (removed by cleanup())."""

    def __init__(self, connect_url: str, name: str, config: dict[str, str]) -> None:
        self.connect_url, self.name, self.config = connect_url, name, config

    def start(self) -> None:
        with ConnectClient(self.connect_url) as client:
            client.put_config(self.name, self.config)
        wait_running(self.connect_url, self.name)

    def _status(self) -> dict[str, Any]:
        with ConnectClient(self.connect_url) as client:
            return client.status(self.name)

    def alive(self) -> bool:
        return not _failed(self._status())

    def state(self) -> str:
        return f"Debezium connector: {describe_status(self._status())}"


@pytest.fixture(scope="module")
def debezium_postgres(
    pg_dsn: str,
    connect_pg_dsn: str,
    connect_url: str,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    """The reference: the Debezium Postgres connector (JsonConverter, schemas on) writes the topic."""
    uid = "fsdbz_" + uuid.uuid4().hex[:10]
    table, topic = f"public.{uid}", f"{uid}.public.{uid}"
    sink = FileSink(
        connect_url, kafka_bootstrap, f"{uid}_sink", topic, tmp_path_factory.mktemp(uid) / "rows.txt"
    )
    config = pg_connector_config(
        connect_pg_dsn,
        uid,
        table,
        **{
            "snapshot.mode": "initial",
            "key.converter.schemas.enable": "true",
            "value.converter.schemas.enable": "true",
        },
    )
    try:
        _pg_table(pg_dsn, table)
        create_topic(kafka_bootstrap, topic)
        source = DebeziumPostgres(connect_url, uid, config)
        lines = stream_through(sink, source, _pg_execute(pg_dsn), table)
        yield Run(lines, _pg_rows(pg_dsn, table), PG_COLUMN_KINDS)
    finally:
        sink.close()
        cleanup(
            connect_url,
            pg_dsn,
            kafka_bootstrap,
            connectors=[uid],
            slots=[uid],
            publications=[uid],
            tables=[table],
            topic_prefixes=[uid],
        )


class CdcLogsRun:
    """`cdc-logs run -c pipeline.yaml` as a subprocess (`python -m cdc_logs` from this checkout): the
    `source` config into the Kafka sink with `schemas: true`, topics `<name>.<schema>.<table>`."""

    def __init__(self, workdir: Path, name: str, source: dict[str, Any], kafka_bootstrap: str) -> None:
        self.config = workdir / "pipeline.yaml"
        pipeline = {
            "name": name,
            "source": source,
            "destination": {
                "type": "kafka",
                "bootstrap_servers": kafka_bootstrap,
                "prefix": name,
                "schemas": True,
            },
            "offsets": {"type": "sqlite", "path": str(workdir / "offsets.db")},
        }
        self.config.write_text(json.dumps(pipeline, indent=2))  # JSON is YAML
        self.log = workdir / "cdc-logs.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cdc_logs", "run", "-c", str(self.config)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def state(self) -> str:
        code = None if self.proc is None else self.proc.poll()
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        return f"cdc-logs run {'running' if code is None else f'exited {code}'}; its log ends:\n{tail}"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def cdc_logs_postgres(
    pg_dsn: str, connect_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    """cdc-logs' native Postgres reader -> Kafka sink with `schemas: true` writes the topic."""
    uid = "fspg_" + uuid.uuid4().hex[:10]
    table, topic = f"public.{uid}", f"{uid}.public.{uid}"
    workdir = tmp_path_factory.mktemp(uid)
    sink = FileSink(connect_url, kafka_bootstrap, f"{uid}_sink", topic, workdir / "rows.txt")
    source = {
        "type": "postgres",
        "dsn": pg_dsn,
        "tables": [table],
        "slot": uid,
        "publication": uid,
        "snapshot": True,
    }
    pipeline = CdcLogsRun(workdir, uid, source, kafka_bootstrap)
    try:
        _pg_table(pg_dsn, table)
        create_topic(kafka_bootstrap, topic)
        lines = stream_through(sink, pipeline, _pg_execute(pg_dsn), table)
        yield Run(lines, _pg_rows(pg_dsn, table), PG_COLUMN_KINDS)
    finally:
        pipeline.stop()
        sink.close()
        cleanup(
            connect_url,
            pg_dsn,
            kafka_bootstrap,
            slots=[uid],
            publications=[uid],
            tables=[table],
            topic_prefixes=[uid],
        )


# -- MariaDB --------------------------------------------------------------------------------------


def _mariadb_connect(mariadb_dsn: str) -> pymysql.connections.Connection:
    return pymysql.connect(**parse_dsn(mariadb_dsn).kwargs(), autocommit=True)  # utf8mb4


def _mariadb_execute(mariadb_dsn: str) -> Callable[[str, tuple[Any, ...]], int]:
    def execute(sql: str, params: tuple[Any, ...]) -> int:
        conn = _mariadb_connect(mariadb_dsn)
        try:
            with conn.cursor() as cur:
                return int(cur.execute(sql, params))
        finally:
            conn.close()

    return execute


@pytest.fixture(scope="module")
def cdc_logs_mariadb(
    mariadb_dsn: str, connect_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    """cdc-logs' native MariaDB binlog reader -> Kafka sink with `schemas: true` writes the topic."""
    uid = "fsmdb_" + uuid.uuid4().hex[:10]
    database = parse_dsn(mariadb_dsn).database or "test"
    table, topic = f"{database}.{uid}", f"{uid}.{database}.{uid}"
    workdir = tmp_path_factory.mktemp(uid)
    sink = FileSink(connect_url, kafka_bootstrap, f"{uid}_sink", topic, workdir / "rows.txt")
    source = {"type": "mariadb", "dsn": mariadb_dsn, "tables": [table], "snapshot": True}
    pipeline = CdcLogsRun(workdir, uid, source, kafka_bootstrap)
    execute = _mariadb_execute(mariadb_dsn)
    try:
        columns = ", ".join(f"{n} {t}" for n, t, _ in MARIADB_COLUMNS)
        execute(f"CREATE TABLE {table} ({columns}) DEFAULT CHARSET=utf8mb4", ())
        apply(execute, table, SEED)
        create_topic(kafka_bootstrap, topic)
        lines = stream_through(sink, pipeline, execute, table)
        conn = _mariadb_connect(mariadb_dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM {table} ORDER BY id")
                names = [d[0] for d in cur.description]
                rows = source_rows(names, cur.fetchall(), MARIADB_COLUMN_KINDS)
        finally:
            conn.close()
        yield Run(lines, rows, MARIADB_COLUMN_KINDS)
    finally:
        pipeline.stop()
        sink.close()
        with contextlib.suppress(pymysql.MySQLError):
            execute(f"DROP TABLE IF EXISTS {table}", ())
        _delete_topics(kafka_bootstrap, uid)


def _delete_topics(kafka_bootstrap: str, prefix: str) -> None:
    """The topics named `prefix` or `prefix.*` (debezium_support.cleanup's part for Kafka, without its
    Postgres part)."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t == prefix or t.startswith(f"{prefix}.")]
    if names:
        for future in admin.delete_topics(names, operation_timeout=10).values():
            with contextlib.suppress(KafkaException):
                future.result(15)


# -- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [PG_COLUMN_KINDS, MARIADB_COLUMN_KINDS], ids=["postgres", "mariadb"])
def test_workload_text_reads_back_unambiguously(columns: tuple[Column, ...]) -> None:
    """parse_struct is exact for this workload: its text is hard to read (commas, equals signs,
    braces, an empty string) but never holds `,<field>=`, the one thing that would make a line
    ambiguous. And the parser does split such a line wrongly, so this guard is needed."""
    names = [c.name for c in columns] + ["__deleted", "__op"]
    texts = [p for change in WORKLOAD for p in change.params if isinstance(p, str)]
    assert any("," in t for t in texts) and any("=" in t for t in texts) and any("{" in t for t in texts)
    assert not [t for t in texts if misreadable(t, names) or "\n" in t]  # a newline splits the line
    fields = [(c.name, c.kind) for c in columns] + [("__deleted", "deleted"), ("__op", "op")]
    tricky = "Struct{id=1,name=x,note=y,__deleted=false,__op=c}"  # name "x,note=y", note null
    assert parse_struct(tricky, fields) == {
        "id": "1",
        "name": "x",
        "note": "y",
        "__deleted": "false",
        "__op": "c",
    }
    assert misreadable("x,note=y", names)


def test_reference_filestream_sink_reads_the_debezium_postgres_connectors_topic(
    debezium_postgres: Run,
) -> None:
    """The harness against Debezium's own topic: Connect loads ExtractNewRecordState for FileStreamSink
    and the flattened rows replay to the source table."""
    check(debezium_postgres)


def test_filestream_sink_reads_cdc_logs_postgres_topic(cdc_logs_postgres: Run) -> None:
    check(cdc_logs_postgres)


def test_cdc_logs_postgres_lines_equal_debezium_lines(cdc_logs_postgres: Run, debezium_postgres: Run) -> None:
    """Same workload, two producers: the sink writes the same lines, byte for byte."""
    assert cdc_logs_postgres.lines == debezium_postgres.lines


def test_filestream_sink_reads_cdc_logs_mariadb_topic(cdc_logs_mariadb: Run) -> None:
    check(cdc_logs_mariadb)
