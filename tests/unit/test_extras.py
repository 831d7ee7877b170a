"""Optional sink clients: a missing one is a CONFIG error naming its extra, in build and in validate.

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
from cdc_logs.build import build_sink
from cdc_logs.configfile import parse_config
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import OPTIONAL_CLIENTS, SINK_EXTRAS, check_sink, installed, need

REPO = Path(__file__).resolve().parents[2]
SOURCE = {"type": "sqlite", "path": "x.db", "tables": ["t"]}

# One minimal destination per `type`; test_every_destination_type_is_covered keeps this complete.
MINIMAL: dict[str, dict[str, Any]] = {
    "stdout": {},
    "file": {"path": "out.jsonl"},
    "kafka": {"bootstrap_servers": "localhost:9092", "topic": "t"},
    "redis_stream": {"host": "localhost"},
    "redis": {},
    "rabbitmq": {"queue": "q"},
    "sql": {"url": "sqlite:///out.db"},
    "postgresql": {"url": "postgresql://u@localhost/db"},
    "postgres": {"url": "postgresql://u@localhost/db"},
    "mysql": {"url": "mysql://u@localhost/db"},
    "mariadb": {"url": "mysql://u@localhost/db"},
    "sqlite": {"database": "out.db"},
    "http": {"url": "http://localhost:1/hook"},
    "webhook": {"url": "http://localhost:1/hook"},
    "nats": {"url": "nats://localhost:4222", "prefix": "app"},
    "mqtt": {"broker": "mqtt://localhost:1883"},
    "pulsar": {"service_url": "pulsar://localhost:6650", "topic": "t"},
    "opensearch": {"url": "http://localhost:9200"},
    "elasticsearch": {"url": "http://localhost:9200"},
}


def destination(type_: str) -> Any:
    cfg = parse_config({"name": "app", "source": SOURCE, "destination": {"type": type_, **MINIMAL[type_]}})
    return cfg.destination


@pytest.fixture
def no_optional_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    for extra in OPTIONAL_CLIENTS.values():
        monkeypatch.setitem(sys.modules, extra.module, None)


def test_every_destination_type_is_covered() -> None:
    types = {t for component in registry.components("sink") for t in component.types}
    assert types == set(MINIMAL)
    assert set(SINK_EXTRAS) <= types
    assert set(SINK_EXTRAS.values()) == set(OPTIONAL_CLIENTS)


@pytest.mark.usefixtures("no_optional_clients")
@pytest.mark.parametrize("type_", sorted(MINIMAL))
def test_build_and_validate_agree_on_the_missing_extra(type_: str) -> None:
    cfg = destination(type_)
    extra = SINK_EXTRAS.get(type_)
    if extra is None:
        check_sink(type_)
        build_sink(cfg)  # only core packages: builds (connects to nothing)
        return
    with pytest.raises(CdcError) as built:
        build_sink(cfg)
    with pytest.raises(CdcError) as checked:
        check_sink(type_, "mine")
    for err in (built.value, checked.value):
        assert err.kind is ErrorKind.CONFIG and err.exit_code == 2
        assert err.hint == f"pip install 'cdc-logs[{extra}]'"
        assert repr(OPTIONAL_CLIENTS[extra].package) in err.message
    assert "destination 'mine'" in checked.value.message


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
