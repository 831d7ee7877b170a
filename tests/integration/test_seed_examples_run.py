"""The seed's YAML examples whose servers run here also RUN (issue 17 part 8): each is the pipeline
tests/unit/test_seed_examples.py validates, with only hosts, ports, credentials, paths and names
adapted (unique per test, removed afterwards), run as a user runs it (`cdc-logs run -c FILE --limit N`,
a subprocess) until N changes have arrived.

- Event Sourcing Pattern: the stack's Postgres; the seed's `query:` (polled, its cursor the column it
  compares with :last_sync) and the `event_sourcing` transform: events keyed by (aggregate, version).
- Kafka as Destination: a SQLite source (the block has none) into the stack's Kafka; read back, each
  record keyed by the seed's `key_field: user_id`.

The other examples that run here are run by their own tests (the multi-source one by
test_seed_multi_source.py, Redis Streams and RabbitMQ by test_redis_stream_source.py and
test_rabbitmq_source.py `test_the_seed_example_runs`); docs/seed-examples.md has the table.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.unit.test_seed_examples import pipeline

pytestmark = pytest.mark.integration

N = 5


def _run(tmp: Path, config: dict[str, Any], limit: int) -> None:
    config.setdefault("offsets", {"type": "sqlite", "path": str(tmp / "offsets.db")})
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(path), "--limit", str(limit)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@contextlib.contextmanager
def _event_sourcing(tmp: Path, uid: str, env: dict[str, str]) -> Iterator[Callable[[], None]]:
    import psycopg

    table = f"sx_events_{uid}"
    config = pipeline("Event Sourcing Pattern")
    source = config["source"]
    assert source["table"] == "event_store" and "FROM event_store" in source["query"]
    source.update(
        table=table, query=source["query"].replace("event_store", table), dsn=env["pg"], name="store"
    )
    # A file, and a SQL apply target (SQLite) that creates its table's primary key from the event key.
    replica = tmp / "replica.db"
    config.pop("destination")
    config.update(
        name=f"sx_{uid}",
        destinations=[
            {"name": "file", "type": "file", "path": str(tmp / "out.jsonl")},
            {
                "name": "replica",
                "type": "sqlite",
                "database": str(replica),
                "table": "events",
                "auto_create": True,
            },
        ],
        sync={"fanout": {"enabled": False}},
    )
    with psycopg.connect(env["pg"], autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (event_id int PRIMARY KEY, aggregate_id text, event_type text, "
            "event_data text, event_version int, created_at timestamptz)"
        )
        try:
            for i in range(N):  # two aggregates, versions 1.. each
                conn.execute(
                    f"INSERT INTO {table} VALUES (%s, %s, 'Deposited', %s, %s, "
                    "now() - make_interval(secs => %s))",
                    (i, f"acct{i % 2}", orjson.dumps({"amount": i}).decode(), i // 2 + 1, N - i),
                )

            def check() -> None:
                _run(tmp, config, N)
                events = _lines(tmp / "out.jsonl")
                assert [e["after"]["event_id"] for e in events] == list(range(N))
                with contextlib.closing(sqlite3.connect(replica)) as db:
                    pk = [
                        r[1]
                        for r in sorted(db.execute("PRAGMA table_info(events)"), key=lambda r: r[5])
                        if r[5]
                    ]
                    rows = db.execute(
                        "SELECT aggregate_id, event_version FROM events ORDER BY event_id"
                    ).fetchall()
                # Keyed by (aggregate, version): every event kept, none collapsed into its aggregate's last.
                assert pk == ["aggregate_id", "event_version"]
                assert rows == [(f"acct{i % 2}", i // 2 + 1) for i in range(N)]

            yield check
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


@contextlib.contextmanager
def _kafka_destination(tmp: Path, uid: str, env: dict[str, str]) -> Iterator[Callable[[], None]]:
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient

    topic = f"sx_processed_{uid}"
    config = pipeline("Kafka as Destination")
    dest = config["destination"]
    assert dest["topic"] == "processed_events" and dest["key_field"] == "user_id"
    # The schema registry is optional in the stack; the block's value_schema is an Avro subject name.
    dest.update(bootstrap_servers=env["kafka"], topic=topic)
    dest.pop("schema_registry_url")
    dest.pop("value_schema")
    db = tmp / "app.db"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, user_id TEXT, v INTEGER)")
        conn.executemany("INSERT INTO users VALUES (?, ?, ?)", [(i, f"u{i}", i) for i in range(N)])
    config.update(
        name=f"sx_{uid}", source={"type": "sqlite", "path": str(db), "tables": ["users"], "snapshot": True}
    )
    admin = AdminClient({"bootstrap.servers": env["kafka"]})
    try:

        def check() -> None:
            _run(tmp, config, N)
            consumer = Consumer(
                {"bootstrap.servers": env["kafka"], "group.id": f"sx_{uid}", "auto.offset.reset": "earliest"}
            )
            try:
                consumer.subscribe([topic])
                got: list[Any] = []
                for _ in range(40):
                    msg = consumer.poll(1.0)
                    if msg is not None and not msg.error():
                        got.append(msg)
                    if len(got) >= N:
                        break
            finally:
                consumer.close()
            keys = [orjson.loads(m.key()) for m in got]
            assert sorted(keys, key=repr) == sorted(({"user_id": f"u{i}"} for i in range(N)), key=repr), keys
            values = [orjson.loads(m.value()) for m in got]
            assert {v.get("payload", v)["after"]["id"] for v in values} == set(range(N))

        yield check
    finally:
        admin.delete_topics([topic], operation_timeout=10)
        admin.delete_consumer_groups([f"sx_{uid}"])


CASES = {
    "Event Sourcing Pattern": _event_sourcing,
    "Kafka as Destination": _kafka_destination,
}


@pytest.mark.parametrize("example", list(CASES))
def test_seed_example_runs(example: str, tmp_path: Path, request: pytest.FixtureRequest, pg_dsn: str) -> None:
    env = {"pg": pg_dsn}
    if example == "Kafka as Destination":
        env["kafka"] = request.getfixturevalue("kafka_bootstrap")
    with CASES[example](tmp_path, uuid.uuid4().hex[:10], env) as check:
        check()
