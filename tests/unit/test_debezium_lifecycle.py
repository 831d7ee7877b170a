"""`connectors delete --purge` planning and the recovery hint, without a server (the purge itself runs
against the stack in tests/integration/test_debezium_purge.py)."""

from __future__ import annotations

import pytest

from cdc_logs.debezium.lifecycle import (
    check_database,
    postgres_dsn,
    publication_users,
    purge_plan,
    recovery_hint,
)
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
        False,
    )
    text = "\n".join(plan.lines())
    assert "drop replication slot 'debezium' in dbz@db.internal:5433/shop" in text
    assert "inv.* stay" in text
    assert "Zq9-purge-secret" not in text
    assert "Zq9-purge-secret" not in redact("boom Zq9-purge-secret boom")  # registered as a secret
    dsn = postgres_dsn(plan, None)
    assert "host=db.internal" in dsn and "port=5433" in dsn and "dbname=shop" in dsn
    assert postgres_dsn(plan, "postgresql://x@y/z") == "postgresql://x@y/z"  # --dsn wins


def test_the_publication_is_kept_unless_drop_publication_whatever_the_autocreate_mode() -> None:
    """Autocreate "filtered"/"all_tables" only says Debezium may create it: it can be the user's or
    shared, so a purge keeps it (and says so) unless asked."""
    config = {"connector.class": PG, "slot.name": "s1", "publication.name": "p1", **DB}
    for mode in ("disabled", "filtered", "all_tables", None):
        plan = purge_plan("inv", {**config, "publication.autocreate.mode": mode} if mode else config)
        assert plan.slot == "s1" and not plan.drop_publication
        assert any(
            "kept: publication 'p1'" in line
            and "may be yours or shared" in line
            and "--drop-publication" in line
            for line in plan.lines()
        ), plan.lines()
    plan = purge_plan("inv", config, drop_publication=True)
    assert plan.drop_publication and any("drop publication 'p1'" in line for line in plan.lines())


def test_other_connectors_naming_the_publication_on_the_same_database_are_found() -> None:
    mine = {"connector.class": PG, **DB}  # default publication: dbz_publication
    plan = purge_plan("inv", mine, drop_publication=True)

    def entry(**config: str) -> dict[str, object]:
        return {"info": {"config": {"connector.class": PG, **DB, **config}}}

    cluster = {
        "inv": entry(),  # itself
        "same-default": entry(),
        "same-named": entry(**{"publication.name": "dbz_publication", "database.hostname": "DB.internal"}),
        "other-pub": entry(**{"publication.name": "p2"}),
        "other-db": entry(**{"database.dbname": "crm"}),
        "other-host": entry(**{"database.hostname": "db2.internal"}),
        "other-port": entry(**{"database.port": "5432"}),
        "mysql": {
            "info": {"config": {"connector.class": "io.debezium.connector.mysql.MySqlConnector", **DB}}
        },
    }
    assert publication_users(plan, cluster) == ["same-default", "same-named"]


def test_with_dsn_the_plan_and_the_unreachable_error_name_the_dsn_target() -> None:
    plan = purge_plan("inv", {"connector.class": PG, **DB}, dsn="postgresql://me:Zq9-dsn-pw@127.0.0.1:1/here")
    text = "\n".join(plan.lines())
    assert "in me@127.0.0.1:1/here" in text and "db.internal" not in text and "Zq9-dsn-pw" not in text
    with pytest.raises(CdcError) as err:
        check_database(plan, postgres_dsn(plan, plan.dsn))
    assert "database me@127.0.0.1:1/here" in err.value.message and "db.internal" not in err.value.message
    assert "check the --dsn URL" in (err.value.hint or "") and "give --dsn" not in (err.value.hint or "")
    assert "Zq9-dsn-pw" not in redact(f"{err.value.message} {err.value.hint}")


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
