"""`cdc-logs debezium connectors ...` and `tail --source debezium` against the stack's Kafka Connect.

One connector from debezium/examples/postgres.yaml (with unique names through its DBZ_* variables) is
shared by the module's tests, which run in order: apply --wait, re-apply, edit + apply, prune, offsets
of a stopped connector, then tail. Everything is removed at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from cdc_logs.debezium.connect import ConnectClient
from cdc_logs.debezium.provision import MARKER_KEY
from tests.integration.debezium_support import (
    EXAMPLE,
    cleanup,
    cli,
    pg_connector_config,
    pg_env,
    wait_running,
)

pytestmark = pytest.mark.integration


class Example:
    def __init__(self, connect_url: str, pg_dsn: str, bootstrap: str, connect_pg_dsn: str) -> None:
        self.id = "dbzcli_" + uuid.uuid4().hex[:10]
        self.name = self.id.replace("_", "-")
        self.table = f"public.{self.id}"
        self.connect_url, self.pg_dsn, self.bootstrap = connect_url, pg_dsn, bootstrap
        self.connect_pg_dsn = connect_pg_dsn
        self.env = {
            **pg_env(connect_pg_dsn),
            "CDC_CONNECT_URL": connect_url,
            "DBZ_NAME": self.name,
            "DBZ_TOPIC_PREFIX": self.id,
            "DBZ_SLOT": self.id,
            "DBZ_PUBLICATION": self.id,
            "DBZ_TABLES": self.table,
            "DBZ_MANAGED_BY": f"test-{self.id}",  # prune touches only this test's connectors
        }
        self.extra_connectors: list[str] = []

    def run(self, *args: str, timeout: float = 120) -> Any:
        return cli(*args, env=self.env, timeout=timeout)

    def sql(self, *statements: str) -> None:
        with psycopg.connect(self.pg_dsn, connect_timeout=5) as conn:
            for statement in statements:
                conn.execute(statement)


@pytest.fixture(scope="module")
def example(connect_url: str, pg_dsn: str, kafka_bootstrap: str, connect_pg_dsn: str) -> Iterator[Example]:
    ex = Example(connect_url, pg_dsn, kafka_bootstrap, connect_pg_dsn)
    ex.sql(
        f"CREATE TABLE {ex.table} (id int PRIMARY KEY, item text, amount numeric(10,2))",
        f"INSERT INTO {ex.table} VALUES (1, 'snapshot row', 1.50)",
    )
    try:
        yield ex
    finally:
        names = [ex.name, *ex.extra_connectors]
        cleanup(
            connect_url,
            pg_dsn,
            kafka_bootstrap,
            connectors=names,
            slots=[ex.id, *(n.replace("-", "_") for n in ex.extra_connectors)],
            publications=[ex.id, *(n.replace("-", "_") for n in ex.extra_connectors)],
            tables=[ex.table],
            topic_prefixes=[ex.id, *(n.replace("-", "_") for n in ex.extra_connectors)],
        )


def test_apply_wait_creates_a_running_connector(example: Example) -> None:
    result = example.run("debezium", "connectors", "apply", "-f", str(EXAMPLE), "--wait", "--timeout", "90")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"created {example.name}" in result.stdout
    assert "all connectors and tasks RUNNING" in result.stdout
    assert "database.password = ***" in result.stdout
    with ConnectClient(example.connect_url) as client:
        status = client.status(example.name)
        config = client.get_config(example.name)
    assert status["connector"]["state"] == "RUNNING"
    assert [t["state"] for t in status["tasks"]] == ["RUNNING"]
    assert config[MARKER_KEY] == example.env["DBZ_MANAGED_BY"]

    listed = example.run("debezium", "connectors", "status", "--json", example.name)
    assert listed.returncode == 0, listed.stderr
    assert orjson.loads(listed.stdout)[0]["connector"]["state"] == "RUNNING"


def test_apply_again_reports_no_changes(example: Example) -> None:
    result = example.run("debezium", "connectors", "apply", "-f", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no changes")


def test_editing_the_file_updates_the_connector(example: Example, tmp_path: Path) -> None:
    edited = tmp_path / "postgres.yaml"
    text = EXAMPLE.read_text()
    assert "      snapshot.mode: initial\n" in text
    edited.write_text(
        text.replace(
            "      snapshot.mode: initial\n",
            "      snapshot.mode: initial\n      heartbeat.interval.ms: 5000\n",
        )
    )
    plan = example.run("debezium", "connectors", "plan", "-f", str(edited))
    assert plan.returncode == 0, plan.stderr
    assert f"~ update {example.name}" in plan.stdout
    assert "+ heartbeat.interval.ms = 5000" in plan.stdout
    applied = example.run("debezium", "connectors", "apply", "-f", str(edited), "--wait", "--timeout", "90")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"updated {example.name}" in applied.stdout
    with ConnectClient(example.connect_url) as client:
        assert client.get_config(example.name)["heartbeat.interval.ms"] == "5000"
    # Back to the file as shipped (so later tests see the example's config).
    back = example.run("debezium", "connectors", "apply", "-f", str(EXAMPLE), "--wait", "--timeout", "90")
    assert back.returncode == 0 and f"updated {example.name}" in back.stdout, back.stdout + back.stderr


def test_prune_removes_a_connector_the_file_no_longer_lists(example: Example, tmp_path: Path) -> None:
    import yaml

    dropped = f"{example.name}-dropped"
    by_hand = f"{example.name}-byhand"
    example.extra_connectors += [dropped, by_hand]
    # A file that also manages `dropped` (same marker), applied once...
    data = yaml.safe_load(EXAMPLE.read_text())
    extra = pg_connector_config(example.connect_pg_dsn, dropped.replace("-", "_"), example.table)
    data["connectors"].append({"name": dropped, "config": extra})
    both = tmp_path / "both.yaml"
    both.write_text(yaml.safe_dump(data))
    created = example.run("debezium", "connectors", "apply", "-f", str(both))
    assert created.returncode == 0 and f"created {dropped}" in created.stdout, created.stdout + created.stderr
    # ...and a connector made by hand, without the marker (created STOPPED: no slot, no task).
    with ConnectClient(example.connect_url) as client:
        hand = pg_connector_config(example.connect_pg_dsn, by_hand.replace("-", "_"), example.table)
        client.create(by_hand, hand, initial_state="STOPPED")

    plan = example.run("debezium", "connectors", "plan", "-f", str(EXAMPLE), "--prune", "--verbose")
    assert f"- delete {dropped}" in plan.stdout, plan.stdout
    assert f"keep {by_hand}  (not managed by cdc-logs)" in plan.stdout
    unmarked = example.run("debezium", "connectors", "plan", "-f", str(EXAMPLE), "--prune-unmarked")
    assert f"- delete {by_hand}" in unmarked.stdout  # only planned: never applied on a shared cluster

    pruned = example.run("debezium", "connectors", "apply", "-f", str(EXAMPLE), "--prune")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert f"deleted {dropped}" in pruned.stdout
    with ConnectClient(example.connect_url) as client:
        names = client.connector_names()
    assert dropped not in names and by_hand in names and example.name in names

    removed = example.run("debezium", "connectors", "delete", by_hand, "--yes")
    assert removed.returncode == 0, removed.stderr


def test_offsets_of_a_stopped_connector(example: Example, tmp_path: Path) -> None:
    name = example.name
    running = example.run("debezium", "connectors", "offsets", "reset", name, "--yes")
    assert running.returncode == 2
    assert f"stop it first: `cdc-logs debezium connectors stop {name}`" in running.stderr

    assert example.run("debezium", "connectors", "stop", name).returncode == 0
    got = example.run("debezium", "connectors", "offsets", "get", name, "--json")
    assert got.returncode == 0, got.stderr
    saved = orjson.loads(got.stdout)
    assert saved["offsets"] and saved["offsets"][0]["partition"] == {"server": example.id}
    assert "lsn" in saved["offsets"][0]["offset"]

    reset = example.run("debezium", "connectors", "offsets", "reset", name, "--yes")
    assert reset.returncode == 0, reset.stderr
    empty = example.run("debezium", "connectors", "offsets", "get", name, "--json")
    assert orjson.loads(empty.stdout) == {"offsets": []}

    # Put them back (so the connector does not snapshot again), then run it again.
    file = tmp_path / "offsets.json"
    file.write_text(got.stdout)
    restored = example.run("debezium", "connectors", "offsets", "set", name, "--file", str(file))
    assert restored.returncode == 0, restored.stderr
    again = example.run("debezium", "connectors", "offsets", "get", name, "--json")
    assert orjson.loads(again.stdout) == saved
    assert example.run("debezium", "connectors", "resume", name).returncode == 0
    wait_running(example.connect_url, name)


def test_tail_prints_envelopes_of_postgres_changes(example: Example) -> None:
    example.sql(
        f"INSERT INTO {example.table} VALUES (2, 'inserted', 2.25)",
        f"UPDATE {example.table} SET item = 'updated' WHERE id = 2",
        f"DELETE FROM {example.table} WHERE id = 2",
    )
    result = example.run(
        "tail",
        "--source",
        "debezium",
        "--bootstrap",
        example.bootstrap,
        "--topic-prefix",
        example.id,
        "--table",
        example.table,
        "--from-beginning",
        "--limit",
        "4",
        "--format",
        "json",
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [e["op"] for e in events] == ["r", "c", "u", "d"]
    assert events[0]["after"] == {"id": 1, "item": "snapshot row", "amount": "1.50"}
    assert events[2]["after"] == {"id": 2, "item": "updated", "amount": "2.25"}
    assert events[3]["before"]["id"] == 2 and events[3]["after"] is None
    assert {e["source"]["table"] for e in events} == {example.id}
    assert all(e["source"]["connector"] == "postgresql" for e in events)
    assert events[1]["transaction"]["total_order"] == 1


def test_failed_task_fails_wait_and_status(example: Example, tmp_path: Path) -> None:
    import yaml

    broken = f"{example.name}-broken"
    example.extra_connectors.append(broken)
    # A filtered publication over a table that does not exist: the task fails at start, before any slot.
    config = pg_connector_config(example.connect_pg_dsn, broken.replace("-", "_"), "public.no_such_table_x")
    file = tmp_path / "broken.yaml"
    file.write_text(
        yaml.safe_dump(
            {"managed_by": f"broken-{example.id}", "connectors": [{"name": broken, "config": config}]}
        )
    )
    applied = example.run("debezium", "connectors", "apply", "-f", str(file), "--wait", "--timeout", "60")
    assert applied.returncode == 1, applied.stdout + applied.stderr
    assert f"FAILED task {broken}/0" in applied.stdout
    assert "No table filters found for filtered publication" in applied.stdout  # the task's trace

    status = example.run("debezium", "connectors", "status", broken)
    assert status.returncode == 1 and "FAILED" in status.stdout
    restarted = example.run("debezium", "connectors", "restart", broken, "--failed")
    assert restarted.returncode == 0, restarted.stderr
    assert f"restarting {broken}" in restarted.stdout
    assert example.run("debezium", "connectors", "delete", broken, "--yes").returncode == 0
