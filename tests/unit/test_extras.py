"""Optional sink and source clients: a missing one is a CONFIG error naming its extra and the component,
the same in build (`run`) and in `config validate`.

A client is made "missing" the way Python sees it: `sys.modules[name] = None` makes both
`importlib.util.find_spec` and `import` fail, without uninstalling anything.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cdc_logs import registry
from cdc_logs.build import build_reader, build_sink
from cdc_logs.configfile import parse_config
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import (
    OPTIONAL_CLIENTS,
    SINK_EXTRAS,
    SOURCE_EXTRAS,
    check_sink,
    check_source,
    installed,
    need,
)
from tests.contract.sink_contract import fixtures

REPO = Path(__file__).resolve().parents[2]
SOURCE = {"type": "sqlite", "path": "x.db", "tables": ["t"]}

# One minimal destination per `type` (it parses and builds without a server), from each sink's contract
# fixture (tests/contract/sinks/<sink>.py, `examples`); test_every_destination_type_is_covered keeps
# it complete.
MINIMAL: dict[str, dict[str, Any]] = {
    type_: dict(config) for fixture in fixtures().values() for type_, config in fixture.examples.items()
}


# One minimal config per bus source (parses and builds without a server), as in docs/sources/<type>.md.
BUS_SOURCES: dict[str, dict[str, Any]] = {
    "nats": {"url": "nats://localhost:4222", "stream": "ORDERS"},
    "pulsar": {
        "service_url": "pulsar://localhost:6650",
        "topic": "persistent://public/default/e",
        "subscription_name": "s",
    },
    "rabbitmq": {"host": "localhost", "queue": "events"},
    "redis_stream": {"host": "localhost", "stream_name": "events"},
    "mqtt": {"broker": "mqtt://localhost:1883", "topics": ["sensors/+"]},
}


def destination(type_: str, name: str | None = None) -> Any:
    named = {"name": name} if name else {}
    sink = {"type": type_, **MINIMAL[type_], **named}
    cfg = parse_config({"name": "app", "source": SOURCE, "destination": sink})
    return cfg.destination


@pytest.fixture
def no_optional_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    for extra in OPTIONAL_CLIENTS.values():
        monkeypatch.setitem(sys.modules, extra.module, None)


def test_every_destination_type_is_covered() -> None:
    types = {t for component in registry.components("sink") for t in component.types}
    assert types == set(MINIMAL), "each `type:` needs an example in its sink's contract fixture"
    assert set(SINK_EXTRAS) <= types
    assert set(SINK_EXTRAS.values()) == set(OPTIONAL_CLIENTS)


@pytest.mark.usefixtures("no_optional_clients")
@pytest.mark.parametrize("type_", sorted(MINIMAL))
def test_build_and_validate_agree_on_the_missing_extra(type_: str) -> None:
    extra = SINK_EXTRAS.get(type_)
    if extra is None:
        check_sink(type_)
        build_sink(destination(type_))  # only core packages: builds (connects to nothing)
        return
    cfg = destination(type_, "mine")
    with pytest.raises(CdcError) as built:
        build_sink(cfg)
    with pytest.raises(CdcError) as checked:
        check_sink(type_, "mine")
    for err in (built.value, checked.value):
        assert err.kind is ErrorKind.CONFIG and err.exit_code == 2
        assert err.hint == f"pip install 'cdc-logs[{extra}]'"
        assert repr(OPTIONAL_CLIENTS[extra].package) in err.message
    for err in (built.value, checked.value):  # `run` names the destination as validate does
        assert err.message.startswith(f"destination 'mine' ({type_}) needs the Python package")


def test_every_bus_source_is_covered() -> None:
    types = {t for component in registry.components("source") for t in component.types}
    assert set(SOURCE_EXTRAS) == set(BUS_SOURCES) and set(BUS_SOURCES) <= types
    assert set(SOURCE_EXTRAS.values()) == set(OPTIONAL_CLIENTS)


@pytest.mark.usefixtures("no_optional_clients")
@pytest.mark.parametrize("type_", sorted(BUS_SOURCES))
def test_a_bus_source_missing_its_client_fails_alike_in_build_and_validate(type_: str) -> None:
    extra = SOURCE_EXTRAS[type_]
    source = {"type": type_, "name": "orders", **BUS_SOURCES[type_]}
    cfg = parse_config({"name": "app", "source": source, "destination": {"type": "stdout"}})
    with pytest.raises(CdcError) as built:
        build_reader(cfg.all_sources()[0], "app")
    with pytest.raises(CdcError) as checked:
        check_source(type_, "orders")
    for err in (built.value, checked.value):
        assert err.kind is ErrorKind.CONFIG and err.exit_code == 2
        assert err.hint == f"pip install 'cdc-logs[{extra}]'"
        package = OPTIONAL_CLIENTS[extra].package
        assert (
            err.message
            == f"source 'orders' ({type_}) needs the Python package {package!r}, which is not installed"
        )
    with pytest.raises(CdcError, match=f"^config: the {type_} source needs"):
        check_source(type_)


def test_database_sources_need_no_extra(no_optional_clients: None) -> None:
    check_source("sqlite", "app")
    check_source("postgres")


def test_installed_clients_pass() -> None:
    need("json", "redis")  # present: no error
    check_sink("stdout")
    assert installed("json") and not installed("no_such_module_cdc") and not installed("no_such_parent.child")


def test_extras_match_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for extra in OPTIONAL_CLIENTS.values():
        assert project["optional-dependencies"][extra.name][0].startswith(extra.package + ">=")
        assert extra.package not in core, f"{extra.package} is optional, not core"
    for driver in (
        "psycopg[binary]",
        "mysql-replication",
        "pymysql",
        "oracledb",
        "pymongo",
        "confluent-kafka",
    ):
        assert driver in core
    for driver in ("requests", "fastavro", "sqlalchemy", "structlog", "prometheus-client", "typer"):
        assert driver in core
    for alias in ("pg", "mysql", "mariadb", "oracle", "mongo", "kafka", "debezium", "http", "opensearch"):
        assert alias in project["optional-dependencies"], f"old extra name {alias!r} must stay valid"


def test_config_validate_names_the_missing_extra(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(
        "source: {type: sqlite, path: x.db, tables: [t]}\n"
        "destinations:\n  - {type: stdout}\n  - {name: cache, type: redis, password: hunter2}\n"
    )
    hide = "import sys; sys.modules['redis'] = None; from cdc_logs.cli.main import main; main()"
    argv = [sys.executable, "-c", hide, "config", "validate", "-c", str(config)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr
    assert [line for line in result.stderr.splitlines() if "cdc-logs[redis]" in line] == [
        "  fix: pip install 'cdc-logs[redis]'"
    ]
    assert "destination 'cache' (redis) needs the Python package 'redis'" in result.stderr


def test_config_validate_names_a_source_missing_its_client(tmp_path: Path) -> None:
    """It used to say `ok` while `run` then exited 2 on the same config."""
    config = tmp_path / "p.yaml"
    config.write_text(
        "source: {name: orders, type: nats, url: 'nats://localhost:4222', stream: ORDERS}\n"
        "destination: {type: stdout}\n"
    )
    hide = "import sys; sys.modules['nats'] = None; from cdc_logs.cli.main import main; main()"
    for command in (["config", "validate"], ["run"]):
        argv = [sys.executable, "-c", hide, *command, "-c", str(config)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and "ok:" not in result.stdout
        assert "source 'orders' (nats) needs the Python package 'nats-py'" in result.stderr, command
        assert "fix: pip install 'cdc-logs[nats]'" in result.stderr


def test_contract_fixtures_import_without_optional_clients() -> None:
    """MINIMAL comes from the contract fixtures: they import an optional client only when they run."""
    hidden = ", ".join(repr(extra.module) for extra in OPTIONAL_CLIENTS.values())
    code = (
        f"import sys\nfor m in ({hidden},): sys.modules[m] = None\n"
        "from tests.contract.sink_contract import fixtures\nprint(len(fixtures()))"
    )
    argv = [sys.executable, "-c", code]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(registry.components("sink"))
