"""A Debezium Postgres connector's lifecycle on the stack's Kafka Connect (issue 14, item 8).

The new user's path first: `connectors delete`, the slot cleaned up, the same file applied again: the
task fails, because Connect kept the offsets and the slot they point to is gone. `apply --wait` names
the recovery (stop -> offsets reset -> resume), and following it works. Then `delete --purge` removes
the connector with its offsets, slot and publication, and the same file applies cleanly.
Everything carries a unique name and is removed at the end.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest

from cdc_logs.debezium.connect import ConnectClient
from tests.integration.debezium_support import cleanup, pg_connector_config, slot_exists
from tests.integration.inprocess_cli import cli_here

pytestmark = pytest.mark.integration


class Case:
    def __init__(self, connect_url: str, pg_dsn: str, connect_pg_dsn: str, tmp_path: Path) -> None:
        self.id = "dbzpurge_" + uuid.uuid4().hex[:10]
        self.name = self.id.replace("_", "-")
        self.table = f"public.{self.id}"
        self.connect_url, self.pg_dsn = connect_url, pg_dsn
        self.connect_pg_dsn = connect_pg_dsn
        self.sibling = self.name + "-sibling"  # another connector naming the same publication
        self.file = tmp_path / "connectors.yaml"
        config = pg_connector_config(connect_pg_dsn, self.id, self.table)
        # YAML is a superset of JSON.
        self.file.write_bytes(
            orjson.dumps(
                {"managed_by": f"test-{self.id}", "connectors": [{"name": self.name, "config": config}]}
            )
        )

    def dbz(self, *args: str) -> object:
        return cli_here("debezium", "connectors", *args, "--connect-url", self.connect_url)

    def sql(self, statement: str) -> None:
        with psycopg.connect(self.pg_dsn, connect_timeout=5, autocommit=True) as conn:
            conn.execute(statement)

    def publication_exists(self) -> bool:
        with psycopg.connect(self.pg_dsn, connect_timeout=5, autocommit=True) as conn:
            row = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (self.id,)).fetchone()
        return row is not None

    def wait_offsets(self, insert_id: int, timeout: float = 90) -> None:
        """Insert a row and wait until Connect has committed an offset past it (flushed periodically)."""
        with ConnectClient(self.connect_url) as client:
            before = orjson.dumps(client.offsets(self.name))
            self.sql(f"INSERT INTO {self.table} VALUES ({insert_id}, 'row')")
            deadline = time.monotonic() + timeout
            while orjson.dumps(offsets := client.offsets(self.name)) == before or not offsets:
                assert time.monotonic() < deadline, "Connect committed no offset"
                time.sleep(1)


@pytest.fixture
def case(
    connect_url: str, pg_dsn: str, kafka_bootstrap: str, connect_pg_dsn: str, tmp_path: Path
) -> Iterator[Case]:
    c = Case(connect_url, pg_dsn, connect_pg_dsn, tmp_path)
    c.sql(f"CREATE TABLE {c.table} (id int PRIMARY KEY, v text)")
    try:
        yield c
    finally:
        cleanup(
            connect_url,
            pg_dsn,
            kafka_bootstrap,
            connectors=[c.name, c.sibling],
            slots=[c.id, c.sibling.replace("-", "_")],
            publications=[c.id],
            tables=[c.table],
            topic_prefixes=[c.id, c.sibling.replace("-", "_")],
        )


def ok(result: object) -> str:
    code, out, err = result.returncode, result.stdout, result.stderr  # type: ignore[attr-defined]
    assert code == 0, f"exit {code}\n{out}\n{err}"
    return str(out)


def test_delete_then_reapply_fails_with_the_recovery_and_purge_leaves_a_clean_slate(case: Case) -> None:
    ok(case.dbz("apply", "-f", str(case.file), "--wait", "--timeout", "90"))
    case.wait_offsets(1)

    # A plain delete keeps the offsets (and says so, naming the purge that works after it: with the file);
    # the user then drops the slot it leaves behind.
    out = ok(case.dbz("delete", case.name, "--yes"))
    assert "offsets stay in Connect" in out
    assert f"`cdc-logs debezium connectors delete --purge {case.name} -f connectors.yaml`" in out
    assert slot_exists(case.pg_dsn, case.id)
    cleanup(case.connect_url, case.pg_dsn, "", slots=[case.id])  # waits for the walsender to let go
    assert not slot_exists(case.pg_dsn, case.id)

    # Applied again under the same name: the task resumes from the old offsets and fails.
    failed = case.dbz("apply", "-f", str(case.file), "--wait", "--timeout", "90")
    assert failed.returncode == 1, failed.stdout + failed.stderr  # type: ignore[attr-defined]
    out = str(failed.stdout)  # type: ignore[attr-defined]
    assert "no longer available on the server" in out
    recovery = next(line for line in out.splitlines() if line.startswith("recovery: "))
    for step in (
        f"cdc-logs debezium connectors stop {case.name}",
        f"cdc-logs debezium connectors offsets reset {case.name} --yes",
        f"cdc-logs debezium connectors resume {case.name}",
    ):
        assert step in recovery
    status = case.dbz("status", case.name)
    assert status.returncode == 1 and "recovery: " in str(status.stdout)  # type: ignore[attr-defined]

    # The recovery it names works.
    ok(case.dbz("stop", case.name))
    ok(case.dbz("offsets", "reset", case.name, "--yes"))
    ok(case.dbz("resume", case.name))
    from cdc_logs.debezium.provision import wait_running

    with ConnectClient(case.connect_url) as client:
        result = wait_running(client, [case.name], timeout_s=90, settle_s=2)
    assert result.ok, result.failures
    case.wait_offsets(2)  # offsets in the new slot, which a purge must take away

    # --purge asks first: without a terminal and without --yes, nothing happens.
    refused = case.dbz("delete", case.name, "--purge")
    assert refused.returncode == 2 and "no terminal" in str(refused.stderr)  # type: ignore[attr-defined]
    with ConnectClient(case.connect_url) as client:
        assert client.exists(case.name)

    # Another connector names the same publication (created STOPPED: it only needs to exist in Connect).
    sibling = pg_connector_config(
        case.connect_pg_dsn, case.sibling.replace("-", "_"), case.table, **{"publication.name": case.id}
    )
    with ConnectClient(case.connect_url) as client:
        client.create(case.sibling, sibling, initial_state="STOPPED")
    refused = case.dbz("delete", case.name, "--purge", "--drop-publication", "--yes")
    assert refused.returncode == 2, str(refused.stdout) + str(refused.stderr)  # type: ignore[attr-defined]
    assert f"also named by connector(s) {case.sibling}" in str(refused.stderr)  # type: ignore[attr-defined]
    with ConnectClient(case.connect_url) as client:
        assert client.exists(case.name)  # nothing was changed

    # By default the purge keeps the publication, whoever made it, and says so.
    out = ok(case.dbz("delete", case.name, "--purge", "--yes"))
    assert f"drop replication slot '{case.id}'" in out  # the plan, then what was done
    assert f"kept: publication '{case.id}' (it may be yours or shared" in out
    for done in (
        f"deleted {case.name}",
        f"dropped replication slot {case.id}",
        f"kept publication {case.id}",
    ):
        assert done in out
    assert "password" not in out.lower()  # the database is named as user@host:port/db only
    assert not slot_exists(case.pg_dsn, case.id) and case.publication_exists()
    with ConnectClient(case.connect_url) as client:
        client.delete(case.sibling)
    with ConnectClient(case.connect_url) as client:
        assert not client.exists(case.name)

    # The same file applies cleanly: no offsets survive to point at the dropped slot.
    ok(case.dbz("apply", "-f", str(case.file), "--wait", "--timeout", "90"))
    assert slot_exists(case.pg_dsn, case.id)

    # Deleted without --purge, what it left can still be purged, given its connectors file.
    case.wait_offsets(3)
    ok(case.dbz("delete", case.name, "--yes"))
    missing = case.dbz("delete", case.name, "--purge", "--yes")
    assert missing.returncode == 3 and "-f connectors.yaml" in str(missing.stderr)  # type: ignore[attr-defined]
    # The publication is no longer shared: --drop-publication drops it.
    out = ok(case.dbz("delete", case.name, "--purge", "--drop-publication", "--yes", "-f", str(case.file)))
    assert f"created {case.name} STOPPED" in out and f"dropped replication slot {case.id}" in out
    assert f"dropped publication {case.id}" in out
    assert not slot_exists(case.pg_dsn, case.id) and not case.publication_exists()
    ok(case.dbz("apply", "-f", str(case.file), "--wait", "--timeout", "90"))  # a clean start again


def test_purge_deletes_a_binlog_connectors_schema_history_topic(kafka_bootstrap: str) -> None:
    """The MySQL/MariaDB part of a purge against the stack's Kafka (the stack's Connect has no
    MariaDB connector that starts against MariaDB 10.11, so the connector itself is not created)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from cdc_logs.debezium.lifecycle import delete_history_topic, purge_plan

    topic = f"dbzpurge_{uuid.uuid4().hex[:10]}.history"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    plan = purge_plan(
        "my",
        {
            "connector.class": "io.debezium.connector.mysql.MySqlConnector",
            "schema.history.internal.kafka.topic": topic,
            "schema.history.internal.kafka.bootstrap.servers": kafka_bootstrap,
        },
    )
    said: list[str] = []
    try:
        assert delete_history_topic(plan, said.append)
        assert said == [f"deleted schema history topic {topic}"]
        deadline = time.monotonic() + 30
        while topic in admin.list_topics(timeout=10).topics:
            assert time.monotonic() < deadline, "the topic is still there"
            time.sleep(0.5)
        said.clear()
        assert delete_history_topic(plan, said.append)  # already gone: nothing to do, and it says so
        assert said == [f"schema history topic {topic} did not exist"]
    finally:
        with contextlib.suppress(Exception):
            admin.delete_topics([topic])[topic].result(30)
