"""Fixtures for integration tests against real servers.

The servers come from ``scripts/stack up`` (local processes) or ``docker/compose.yaml``; either way the
tests learn where they are only from ``CDC_*`` environment variables (``eval "$(scripts/stack env)"``, or
``scripts/stack env --docker`` for the compose stack). Each fixture returns the variable's value after
checking that its server accepts a TCP connection.

A missing variable or an unreachable server is a **failure** when ``CI`` is set (to anything but
``0``/``false``) or ``CDC_REQUIRE_STACK=1``; otherwise the test is skipped with the reason. The
exceptions are the servers that cannot run on the project's machines (MySQL 8, Oracle): their fixtures
always skip when unset, and say so.

Every test under ``tests/integration`` is marked ``integration`` automatically.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest

_DEFAULT_PORTS = {
    "postgresql": 5432,
    "postgres": 5432,
    "mysql": 3306,
    "mariadb": 3306,
    "mongodb": 27017,
    "redis": 6379,
    "amqp": 5672,
    "nats": 4222,
    "mqtt": 1883,
    "http": 80,
    "https": 443,
}
_HINT = (
    'start the servers with `scripts/stack up` and export their addresses with `eval "$(scripts/stack env)"`'
)


def stack_required() -> bool:
    """True when a missing server must fail the run (CI, or CDC_REQUIRE_STACK=1)."""
    ci = os.environ.get("CI", "").strip().lower()
    return ci not in ("", "0", "false", "no") or os.environ.get("CDC_REQUIRE_STACK") == "1"


def _unavailable(reason: str) -> None:
    if stack_required():
        pytest.fail(
            f"{reason} -- a missing server is a failure in CI (CI / CDC_REQUIRE_STACK set); {_HINT}",
            pytrace=False,
        )
    pytest.skip(f"{reason}; {_HINT}")


def endpoint(value: str) -> tuple[str, int]:
    """(host, port) of the first server named by a DSN/URL (``scheme://[user@]host[:port][,...]/...``)
    or a Kafka bootstrap list (``host:port[,host:port]``)."""
    if "://" not in value:
        first = value.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        return host.strip("[]"), int(port)
    parts = urlsplit(value)
    netloc = parts.netloc.rpartition("@")[2].split(",")[0]
    if netloc.startswith("["):  # [ipv6]:port
        host, _, rest = netloc[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = netloc.partition(":")
    return host, int(port) if port else _DEFAULT_PORTS.get(parts.scheme, 0)


def _redact(value: str) -> str:
    """The value without its password, for messages."""
    if "://" not in value or "@" not in value:
        return value
    scheme, rest = value.split("://", 1)
    creds, _, tail = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}"


def reachable(value: str, timeout: float = 3.0) -> str | None:
    """None when the first server of ``value`` accepts a TCP connection, else the reason it does not."""
    try:
        host, port = endpoint(value)
    except ValueError as exc:
        return f"cannot parse a host and port from {_redact(value)!r}: {exc}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port} is unreachable ({exc})"


def require_env(var: str) -> str:
    """The value of ``var`` once its server is reachable; fail (CI) or skip (locally) otherwise."""
    value = os.environ.get(var, "").strip()
    if not value:
        _unavailable(f"{var} is not set")
    problem = reachable(value)
    if problem:
        _unavailable(f"{var}={_redact(value)}: {problem}")
    return value


def optional_env(var: str, why_absent: str) -> str:
    """Like require_env for servers that cannot run on the project's machines: always skip when unset."""
    value = os.environ.get(var, "").strip()
    if not value:
        pytest.skip(f"{var} is not set: {why_absent}")
    problem = reachable(value)
    if problem:
        _unavailable(f"{var}={_redact(value)}: {problem}")
    return value


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.integration)


# --- one fixture per server (session scope: the check runs once) --------------------------------------


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """PostgreSQL 15+ with wal_level=logical; role cdc (LOGIN REPLICATION SUPERUSER), database cdc_test."""
    return require_env("CDC_PG_DSN")


@pytest.fixture(scope="session")
def mariadb_dsn() -> str:
    """MariaDB with ROW binlog, full row metadata and GTID strict mode; user cdc, database test."""
    return require_env("CDC_MARIADB_DSN")


@pytest.fixture(scope="session")
def mysql_dsn() -> str:
    """MySQL 8.4 (docker/compose.yaml only: no MySQL 8 server can be installed on the project's machines)."""
    return optional_env("CDC_MYSQL_DSN", "no MySQL 8 server runs here; docker/compose.yaml provides one")


@pytest.fixture(scope="session")
def oracle_dsn() -> str:
    """Oracle with ARCHIVELOG and supplemental logging (docker/compose.yaml only)."""
    return optional_env("ORACLE_DSN", "no Oracle server runs here; docker/compose.yaml provides Oracle Free")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return require_env("CDC_KAFKA_BOOTSTRAP")


@pytest.fixture(scope="session")
def connect_url() -> str:
    """Kafka Connect REST API with the Debezium PostgreSQL and MySQL connectors installed."""
    return require_env("CDC_CONNECT_URL").rstrip("/")


@pytest.fixture(scope="session")
def connect_pg_dsn(pg_dsn: str) -> str:
    """The PostgreSQL DSN as the Connect worker sees it (differs from pg_dsn under docker compose)."""
    return os.environ.get("CDC_CONNECT_PG_DSN", "").strip() or pg_dsn


@pytest.fixture(scope="session")
def connect_mariadb_dsn(mariadb_dsn: str) -> str:
    """The MariaDB DSN as the Connect worker sees it (differs from mariadb_dsn under docker compose)."""
    return os.environ.get("CDC_CONNECT_MARIADB_DSN", "").strip() or mariadb_dsn


@pytest.fixture(scope="session")
def mongo_uri() -> str:
    """MongoDB wire protocol with change streams (mongo-java-server locally, a replica set in docker)."""
    return require_env("CDC_MONGO_URI")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require_env("CDC_REDIS_URL")


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    return require_env("CDC_RABBITMQ_URL")


@pytest.fixture(scope="session")
def nats_url() -> str:
    """NATS with JetStream enabled."""
    return require_env("CDC_NATS_URL")


@pytest.fixture(scope="session")
def mqtt_url() -> str:
    return require_env("CDC_MQTT_URL")


@pytest.fixture
def unique_name() -> str:
    """A short lowercase name, unique per test, usable for tables, topics, slots and queues."""
    return "t" + uuid.uuid4().hex[:12]
