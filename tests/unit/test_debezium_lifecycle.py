"""`connectors delete --purge` planning and the recovery hint, without a server (the purge itself runs
against the stack in tests/integration/test_debezium_purge.py)."""

from __future__ import annotations

import pytest

from cdc_logs.debezium.lifecycle import postgres_dsn, purge_plan, recovery_hint
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact

PG = "io.debezium.connector.postgresql.PostgresConnector"
DB = {
    "database.hostname": "db.internal",
    "database.port": "5433",
    "database.user": "dbz",
    "database.password": "Zq9-purge-secret",
    "database.dbname": "shop",
}


def test_a_postgres_plan_uses_debeziums_defaults_and_never_shows_the_password() -> None:
    plan = purge_plan("inv", {"connector.class": PG, "topic.prefix": "inv", **DB})
    assert (plan.kind, plan.slot, plan.publication, plan.drop_publication) == (
        "postgres",
        "debezium",
        "dbz_publication",
        True,
    )
    text = "\n".join(plan.lines())
    assert "drop replication slot 'debezium' in dbz@db.internal:5433/shop" in text
    assert "drop publication 'dbz_publication'" in text and "inv.* stay" in text
    assert "Zq9-purge-secret" not in text
    assert "Zq9-purge-secret" not in redact("boom Zq9-purge-secret boom")  # registered as a secret
    dsn = postgres_dsn(plan, None)
    assert "host=db.internal" in dsn and "port=5433" in dsn and "dbname=shop" in dsn
    assert postgres_dsn(plan, "postgresql://x@y/z") == "postgresql://x@y/z"  # --dsn wins


def test_a_publication_the_user_made_is_kept() -> None:
    config = {"connector.class": PG, "slot.name": "s1", "publication.name": "p1", **DB}
    plan = purge_plan("inv", {**config, "publication.autocreate.mode": "disabled"})
    assert plan.slot == "s1" and not plan.drop_publication
    assert any("keep publication 'p1'" in line for line in plan.lines())


def test_a_provider_reference_needs_dsn() -> None:
    plan = purge_plan("inv", {"connector.class": PG, **DB, "database.password": "${file:/s.properties:pw}"})
    with pytest.raises(CdcError) as err:
        postgres_dsn(plan, None)
    assert err.value.kind is ErrorKind.USAGE and "--dsn" in (err.value.hint or "")


def test_a_binlog_plan_names_its_schema_history_topic() -> None:
    plan = purge_plan(
        "my",
        {
            "connector.class": "io.debezium.connector.mysql.MySqlConnector",
            "schema.history.internal.kafka.topic": "my.history",
            "schema.history.internal.kafka.bootstrap.servers": "k:9092",
        },
    )
    assert (plan.kind, plan.history_topic, plan.history_bootstrap) == ("binlog", "my.history", "k:9092")
    assert any("schema history topic 'my.history'" in line for line in plan.lines())


def test_the_recovery_is_named_for_offsets_the_database_cannot_serve() -> None:
    gone = (
        "io.debezium.DebeziumException: The connector is trying to read change stream starting at "
        "PostgresOffsetContext [...], but this is no longer available on the server. Reconfigure ..."
    )
    hint = recovery_hint("inv", gone)
    assert hint is not None
    steps = [
        "cdc-logs debezium connectors stop inv",
        "cdc-logs debezium connectors offsets reset inv --yes",
        "cdc-logs debezium connectors resume inv",
    ]
    assert [hint.index(s) for s in steps] == sorted(hint.index(s) for s in steps)  # in that order
    assert recovery_hint("inv", 'ERROR: replication slot "inv" does not exist') is not None
    assert recovery_hint("inv", "org.postgresql.util.PSQLException: password authentication failed") is None
