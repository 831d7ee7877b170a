"""Declarative provisioning without a server: file parsing, diffing, prune safety, masking, waiting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc_logs.debezium.connect import ConnectError, Validation
from cdc_logs.debezium.provision import (
    MARKER_KEY,
    Action,
    apply_plan,
    load_connectors,
    make_plan,
    parse_connectors,
    render_plan,
    wait_running,
)
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import (
    forget_all,
    is_secret_key,
    mask_config,
    redact,
    register_connector_configs,
)

ROOT = Path(__file__).resolve().parents[2]
PG = "io.debezium.connector.postgresql.PostgresConnector"


def _file(*connectors: dict[str, Any], managed_by: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"connectors": list(connectors)}
    if managed_by:
        data["managed_by"] = managed_by
    return data


def _pg(name: str = "a", **extra: Any) -> dict[str, Any]:
    return {"name": name, "config": {"connector.class": PG, "database.password": "s3cret!", **extra}}


# -- secrets ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("database.password", True),
        ("sasl.jaas.config", True),
        ("schema.history.internal.producer.sasl.jaas.config", True),
        ("ssl.key", True),
        ("ssl.keystore.key", True),
        ("aws.secret.access.key", True),
        ("api.key", True),
        ("access_token", True),
        ("mongodb.password", True),
        ("key.converter", False),
        ("key.converter.schemas.enable", False),
        ("message.key.columns", False),
        ("database.user", False),
        ("topic.prefix", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_masking_keeps_provider_references() -> None:
    config = {"database.password": "pw123", "ssl.key.password": "${file:/s.properties:k}", "a": "b"}
    assert mask_config(config) == {
        "database.password": "***",
        "ssl.key.password": config["ssl.key.password"],
        "a": "b",
    }
    register_connector_configs([{**config, "database.password": "pw123456"}])
    try:
        assert redact("login failed for pw123456 at postgresql://u:pw123456@h/db") == (
            "login failed for *** at postgresql://u:***@h/db"
        )
        assert "${file:/s.properties:k}" in redact("ssl.key.password=${file:/s.properties:k}")
    finally:
        forget_all()


# -- parsing ---------------------------------------------------------------------------------------
def test_parse_normalises_values_and_interpolates() -> None:
    data = _file(
        {
            "name": "${NAME:-inv}",
            "config": {
                "connector.class": PG,
                "database.port": 5432,
                "key.converter.schemas.enable": False,
                "table.include.list": ["public.a", "public.b"],
                "database.password": "${PW}",
                "database.history": "${file:/secrets.properties:pw}",
            },
        }
    )
    parsed = parse_connectors(data, {"PW": "pw"})
    (spec,) = parsed.connectors
    assert spec.name == "inv"
    assert spec.config["database.port"] == "5432"
    assert spec.config["key.converter.schemas.enable"] == "false"
    assert spec.config["table.include.list"] == "public.a,public.b"
    assert spec.config["database.password"] == "pw"
    assert spec.config["database.history"] == "${file:/secrets.properties:pw}"  # Connect resolves it
    assert parsed.desired()["inv"][MARKER_KEY] == "cdc-logs"
    assert parsed.desired()["inv"]["name"] == "inv"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"connectors": {"a": 1}}, "a `connectors:` list"),
        ({"connectors": [], "extra": 1}, "unknown top-level keys"),
        (_file({"name": "a"}), "`config:` mapping"),
        (_file({"name": "a b", "config": {"connector.class": PG}}), "not a valid connector name"),
        (_file({"name": "a", "config": {"x": 1}}), "`connector.class` is required"),
        (_file({"name": "a", "config": {"connector.class": PG, "x": None}}), "got null"),
        (_file({"name": "a", "config": {"connector.class": PG, "x": {"y": 1}}}), "got dict"),
        (_file({"name": "a", "config": {"connector.class": PG, "name": "b"}}), "differs from"),
        (_file({"name": "a", "config": {"connector.class": PG, MARKER_KEY: "x"}}), "is set by cdc-logs"),
        (_file(_pg("a"), _pg("a")), "names repeat"),
    ],
)
def test_parse_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(CdcError) as info:
        parse_connectors(data, {})
    assert info.value.kind is ErrorKind.CONFIG
    assert message in info.value.message


def test_missing_environment_variable_names_the_field() -> None:
    with pytest.raises(CdcError, match="PGPASSWORD is not set"):
        parse_connectors(_file({"name": "a", "config": {"connector.class": PG, "p": "${PGPASSWORD}"}}), {})


# -- plan ------------------------------------------------------------------------------------------
def _current(name: str, managed_by: str | None = "cdc-logs", **config: str) -> dict[str, str]:
    base = {"connector.class": PG, "database.password": "s3cret!", "name": name, **config}
    if managed_by:
        base[MARKER_KEY] = managed_by
    return base


def test_plan_create_update_unchanged() -> None:
    wanted = parse_connectors(_file(_pg("new"), _pg("same", x="1"), _pg("changed", x="2", y="b")), {})
    current = {
        "same": _current("same", x="1"),
        "changed": _current("changed", x="1", z="gone", **{"database.password": "old"}),
    }
    plan = make_plan(wanted, current)
    actions = {i.name: i.action for i in plan.items}
    assert actions == {"new": Action.CREATE, "same": Action.UNCHANGED, "changed": Action.UPDATE}
    changed = next(i for i in plan.items if i.name == "changed")
    assert {(c.key, c.old, c.new) for c in changed.changes} == {
        ("x", "1", "2"),
        ("y", None, "b"),
        ("z", "gone", None),
        ("database.password", "old", "s3cret!"),
    }
    assert plan.has_changes and plan.summary() == "1 to create, 1 to update, 0 to delete, 1 unchanged"
    assert not make_plan(parse_connectors(_file(_pg("same", x="1")), {}), current).has_changes


def test_rendered_plan_never_shows_secrets() -> None:
    wanted = parse_connectors(_file(_pg("new"), _pg("changed")), {})
    plan = make_plan(wanted, {"changed": _current("changed", **{"database.password": "old-pw"})})
    text = "\n".join(render_plan(plan))
    assert "s3cret!" not in text and "old-pw" not in text
    assert "database.password = ***" in text
    assert "~ database.password: (secret changed)" in text


def test_prune_deletes_only_connectors_this_file_manages() -> None:
    wanted = parse_connectors(_file(_pg("kept")), {})
    current = {
        "kept": _current("kept"),
        "dropped": _current("dropped"),
        "by-hand": _current("by-hand", managed_by=None),
        "other-team": _current("other-team", managed_by="team-b"),
    }
    no_prune = make_plan(wanted, current)
    assert not no_prune.has_changes
    assert {i.name for i in no_prune.of(Action.KEEP)} == {"dropped", "by-hand", "other-team"}

    pruned = make_plan(wanted, current, prune=True)
    assert [i.name for i in pruned.of(Action.DELETE)] == ["dropped"]

    everything = make_plan(wanted, current, prune_unmarked=True)
    assert sorted(i.name for i in everything.of(Action.DELETE)) == ["by-hand", "dropped"]
    assert "- delete by-hand" in "\n".join(render_plan(everything))


def test_adopting_an_unmarked_connector_is_an_update() -> None:
    wanted = parse_connectors(_file(_pg("by-hand")), {})
    plan = make_plan(wanted, {"by-hand": _current("by-hand", managed_by=None)})
    (item,) = plan.items
    assert item.action is Action.UPDATE and "adopted" in item.note
    assert [c.key for c in item.changes] == [MARKER_KEY]


# -- apply and wait (fake client) ------------------------------------------------------------------
class FakeClient:
    def __init__(self, statuses: list[dict[str, Any]] | None = None, invalid: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.statuses = statuses or []
        self.invalid = invalid

    def validate(self, config: dict[str, str]) -> Validation:
        self.calls.append(("validate", config["name"]))
        from cdc_logs.debezium.connect import FieldError

        if self.invalid:
            return Validation(PG, 1, (FieldError("database.hostname", "x", ("Unable to connect",)),))
        return Validation(PG, 0, ())

    def put_config(self, name: str, config: dict[str, str]) -> None:
        self.calls.append(("put", name))

    def delete(self, name: str) -> None:
        self.calls.append(("delete", name))

    def status(self, name: str) -> dict[str, Any]:
        item = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if item.get("missing"):
            raise ConnectError(ErrorKind.NOT_FOUND, "no", status=404)
        return item


def test_apply_validates_everything_first_then_deletes_then_writes() -> None:
    wanted = parse_connectors(_file(_pg("new"), _pg("changed", x="2")), {})
    plan = make_plan(wanted, {"changed": _current("changed", x="1"), "old": _current("old")}, prune=True)
    client = FakeClient()
    apply_plan(client, plan)  # type: ignore[arg-type]
    assert client.calls == [
        ("validate", "new"),
        ("validate", "changed"),
        ("delete", "old"),
        ("put", "new"),
        ("put", "changed"),
    ]
    bad = FakeClient(invalid=True)
    with pytest.raises(CdcError, match="Unable to connect") as info:
        apply_plan(bad, plan)  # type: ignore[arg-type]
    assert info.value.kind is ErrorKind.CONFIG
    assert all(call[0] == "validate" for call in bad.calls)  # nothing was written


def _status(state: str, *tasks: str, trace: str = "") -> dict[str, Any]:
    return {
        "name": "c",
        "connector": {"state": state},
        "tasks": [{"id": i, "state": t, "trace": trace} for i, t in enumerate(tasks)],
    }


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _wait(statuses: list[dict[str, Any]], timeout: float = 30) -> Any:
    clock = Clock()
    return wait_running(
        FakeClient(statuses),  # type: ignore[arg-type]
        ["c"],
        timeout_s=timeout,
        poll_s=1,
        settle_s=2,
        grace_s=3,
        clock=clock,
        sleep=clock.sleep,
    )


def test_wait_succeeds_once_running_is_steady() -> None:
    result = _wait([{"missing": True}, _status("RUNNING"), _status("RUNNING", "RUNNING")])
    assert result.ok and result.states == {"c": "RUNNING (1/1 tasks running)"}


def test_wait_reports_the_failed_tasks_trace() -> None:
    trace = "org.apache.kafka.connect.errors.ConnectException: boom\n\tat x"
    result = _wait([_status("RUNNING", "FAILED", trace=trace)])
    assert not result.ok
    assert result.failures == [("task c/0", trace)]


def test_wait_fails_fast_on_a_paused_connector_and_times_out_otherwise() -> None:
    paused = _wait([_status("PAUSED", "PAUSED")])
    assert not paused.ok and "resume c" in paused.failures[0][1]
    slow = _wait([_status("RUNNING", "UNASSIGNED")], timeout=10)
    assert not slow.ok and "not RUNNING after 10 s" in slow.failures[0][1]


def test_a_failure_right_after_an_update_gets_a_grace_period() -> None:
    result = _wait([_status("RUNNING", "FAILED", trace="old"), _status("RUNNING", "RUNNING")])
    assert result.ok


# -- shipped files ---------------------------------------------------------------------------------
_TEMPLATE_ENV = {
    "PGHOST": "db",
    "PGUSER": "u",
    "PGPASSWORD": "p",
    "PGDATABASE": "d",
    "MYSQL_PASSWORD": "p",
    "MARIADB_PASSWORD": "p",
    "ORACLE_PASSWORD": "p",
}
_REQUIRED = {
    "postgres": {"topic.prefix", "database.hostname", "plugin.name", "slot.name", "publication.name"},
    "mysql": {
        "database.server.id",
        "schema.history.internal.kafka.bootstrap.servers",
        "schema.history.internal.kafka.topic",
    },
    "mariadb": {
        "database.server.id",
        "schema.history.internal.kafka.bootstrap.servers",
        "schema.history.internal.kafka.topic",
    },
    "mongodb": {"mongodb.connection.string", "topic.prefix"},
    "oracle": {"database.dbname", "log.mining.strategy", "schema.history.internal.kafka.topic"},
}


@pytest.mark.parametrize("kind", sorted(_REQUIRED))
def test_templates_parse_with_debezium_3_property_names(kind: str) -> None:
    (spec,) = load_connectors(ROOT / "debezium" / "templates" / f"{kind}.yaml", _TEMPLATE_ENV).connectors
    assert _REQUIRED[kind] <= set(spec.config)
    assert "database.server.name" not in spec.config  # removed in Debezium 2.0 (topic.prefix replaced it)
    assert not any(k.startswith("database.history") for k in spec.config)  # 1.x names
    assert spec.config["value.converter.schemas.enable"] == "false"


def test_example_applies_with_an_empty_environment() -> None:
    (spec,) = load_connectors(ROOT / "debezium" / "examples" / "postgres.yaml", {}).connectors
    assert spec.config["database.hostname"] == "127.0.0.1"
    assert spec.config["provide.transaction.metadata"] == "true"
    assert spec.config["key.converter.schemas.enable"] == "false"
    raw = yaml.safe_load((ROOT / "debezium" / "examples" / "postgres.yaml").read_text())
    assert raw["connectors"][0]["config"]["plugin.name"] == "pgoutput"
