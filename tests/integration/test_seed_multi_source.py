"""The seed's "Multi-Source CDC" example runs (issue 16's done-when: "validates and runs"), against the
stack's Postgres, MariaDB and Kafka, as `cdc-logs run -c pipeline.yaml` (a subprocess).

The YAML is the seed's block as tests/unit/test_seed_examples.py holds it, read and adapted:

- hosts, ports, users, passwords and the database of each source -> the stack's servers;
- table and topic names -> this test's own (`kp_<uid>`, `km_<uid>`, `sm_<uid>`), removed afterwards;
- `order_db`'s `type: mysql` -> `mariadb`: the stack has no MySQL server (none can run here) and the
  mysql type refuses a MariaDB server when it opens (docs/sources/mysql.md);
- a file destination and an offset store in the test's directory (the seed's block has none).

`merge_strategy: timestamp_based` is kept. Changes are made on the three sources in turn; the run
delivers every one of them, each source's in its own commit order, then stops cleanly on SIGTERM.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import pytest
import yaml
from confluent_kafka import Producer

from tests.chaos.killkit import Mariadb, Postgres, Runs
from tests.integration.test_kafka_source import _topic
from tests.unit.test_seed_examples import EXAMPLES

pytestmark = pytest.mark.integration

ROUNDS = 15


def _adapt(pg_dsn: str, mariadb_dsn: str, bootstrap: str, names: dict[str, str], tmp: Path) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(EXAMPLES["Multi-Source CDC"])
    assert [s["name"] for s in config["sources"]] == ["user_db", "order_db", "event_stream"]
    assert config["merge_strategy"] == "timestamp_based"
    user_db, order_db, event_stream = config["sources"]
    user_db.update(_server(pg_dsn, 5432), table=names["pg"])
    order_db.update(_server(mariadb_dsn, 3306), type="mariadb", table=names["maria"])
    event_stream.update(topic=names["topic"], bootstrap_servers=bootstrap)
    config["name"] = names["pipeline"]
    config["destination"] = {"type": "file", "path": str(tmp / "out.jsonl")}
    config["offsets"] = {"type": "sqlite", "path": str(tmp / "offsets.db")}
    return config


def _server(dsn: str, port: int) -> dict[str, Any]:
    """The seed's host/port/user/password/database fields for a stack server's DSN."""
    url = urlsplit(dsn)
    return {
        "host": url.hostname,
        "port": url.port or port,
        "user": unquote(url.username or ""),
        "password": unquote(url.password or ""),
        "database": url.path.lstrip("/"),
    }


def _activity(dsn: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, state, backend_type, xact_start, wait_event, left(query, 100) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid()"
        ).fetchall()


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = path.read_bytes()
    return [orjson.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]


def test_the_seed_multi_source_example_runs(
    pg_dsn: str, mariadb_dsn: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    uid = uuid.uuid4().hex[:10]
    pg, maria = Postgres(pg_dsn, uid), Mariadb(mariadb_dsn, uid)
    # The default slot is cdc_logs_<pipeline>: named so that killkit's cleanup drops it.
    names = {"pg": pg.table, "maria": maria.table, "topic": f"sm_{uid}", "pipeline": f"kp_{uid}"}
    config = _adapt(pg_dsn, mariadb_dsn, kafka_bootstrap, names, tmp_path)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    runs = Runs(tmp_path, path, names["pipeline"])
    group = f"cdc-logs.{names['pipeline']}.event_stream"
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(pg.cleanup)
        pg.create({})
        cleanup.callback(maria.cleanup)
        maria.create({})
        cleanup.enter_context(_topic(kafka_bootstrap, names["topic"], 1, group))
        cleanup.callback(runs.close)
        runs.start()
        try:
            runs.wait("all three sources started", lambda: runs.log_text().count("source started") == 3, 120)
        except BaseException:
            # Seen once under a loaded suite: no line at all for 60 s. Say what Postgres was doing.
            print("pg_stat_activity:", _activity(pg_dsn))
            raise
        time.sleep(1.0)  # the Kafka consumer is assigned its partition
        pg_session, maria_session = pg.session(), maria.session()
        cleanup.callback(pg_session.close)
        cleanup.callback(maria_session.close)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for i in range(1, ROUNDS + 1):
            pg_session.execute(f"INSERT INTO {pg.table} (id, v) VALUES (%s, %s)", (i, i))
            maria_session.execute(f"INSERT INTO {maria.table} (id, v) VALUES (%s, %s)", (i, i))
            producer.produce(names["topic"], orjson.dumps({"id": i, "v": i}))
            producer.flush(10)
            time.sleep(0.03)
        out = tmp_path / "out.jsonl"
        runs.wait(f"{3 * ROUNDS} changes delivered", lambda: len(_lines(out)) >= 3 * ROUNDS, 90)
        runs.stop()

    by_source: dict[str, list[int]] = {}
    for envelope in _lines(out):
        by_source.setdefault(envelope["source"]["table"], []).append(int(envelope["after"]["id"]))
    expected = list(range(1, ROUNDS + 1))
    assert by_source == {pg.table: expected, maria.table: expected, names["topic"]: expected}
    with contextlib.closing(sqlite3.connect(tmp_path / "offsets.db")) as db:
        stored = dict(
            db.execute("SELECT source, position FROM cdc_offsets WHERE pipeline = ?", (names["pipeline"],))
        )
    assert set(stored) == {"user_db", "order_db", "event_stream"}  # each source its own checkpoint
    assert orjson.loads(stored["event_stream"])["offsets"] == [[f"{names['topic']}:0", ROUNDS]]
