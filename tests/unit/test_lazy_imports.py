"""Loading the registry and the CLI imports no client library a pipeline may not use.

Every `cdc-logs` command loads the CLI and the registry (all components' config modules). A client
library imported there stays in every process's memory, used or not: SQLAlchemy alone is 20+ MB of
an idle `cdc-logs run` (docs/benchmarks.md, idle RSS). Each component imports its client when it is
built. This runs in a fresh interpreter, since the test session has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Client libraries that only the component using them may import.
_LAZY = (
    "sqlalchemy",  # SQL destination, polling source, capture: poll
    "pymysql",  # MariaDB/MySQL source, SQL destinations on MySQL
    "pymysqlreplication",  # MariaDB/MySQL source
    "paho",  # MQTT source and sink
    "nats",  # NATS source and sink
    "requests",  # Kafka Connect client, HTTP and search sinks, schema registries
    "croniter",  # run --schedule / sync.schedule
    "confluent_kafka",  # Kafka source and sink
    "redis",
    "pika",
    "pymongo",
    "oracledb",
)


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    command = [sys.executable, "-c", probe]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_loading_every_component_imports_no_client_library() -> None:
    loaded = _imported_after("from cdc_logs import registry\nregistry.load()")
    assert loaded.isdisjoint(_LAZY), sorted(loaded & set(_LAZY))


def test_the_cli_with_every_command_imports_no_client_library() -> None:
    loaded = _imported_after("import cdc_logs.cli.main\nfrom cdc_logs import registry\nregistry.load()")
    assert loaded.isdisjoint(_LAZY), sorted(loaded & set(_LAZY))


def test_a_sql_destination_config_still_checks_its_driver() -> None:
    """The driver check moved with SQLAlchemy's import into the check itself: still said at validation."""
    from cdc_logs.sinks.sql import SqlSinkConfig

    try:
        SqlSinkConfig.model_validate({"type": "sql", "url": "mysql+mysqldb://u@h/db"})
    except ValueError as exc:
        assert "mysqlclient" in str(exc)
    else:
        raise AssertionError("a URL whose driver is not installed was accepted")
