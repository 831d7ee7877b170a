"""The matrix runs against the real servers of scripts/stack: the integration fixtures (a missing
server fails under CI) and the session's OpenSearch node."""
# ruff: noqa: F811 - the imported fixtures are parameters of `servers`

import os

import pytest

from tests.integration.conftest import (  # noqa: F401 - fixtures, used by name
    connect_url,
    kafka_bootstrap,
    mariadb_dsn,
    mongo_uri,
    mqtt_url,
    nats_url,
    pg_dsn,
    rabbitmq_url,
    redis_url,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def servers(
    pg_dsn: str,
    mariadb_dsn: str,
    redis_url: str,
    kafka_bootstrap: str,
    connect_url: str,
    opensearch_url: str,
    nats_url: str,
    rabbitmq_url: str,
    mqtt_url: str,
    mongo_uri: str,
) -> dict[str, str]:
    return {
        "pg": pg_dsn,
        "mariadb": mariadb_dsn,
        "redis": redis_url,
        "kafka": kafka_bootstrap,
        "connect": connect_url,
        "opensearch": opensearch_url,
        "nats": nats_url,
        "rabbitmq": rabbitmq_url,
        "mqtt": mqtt_url,
        "mongo": mongo_uri,
    }
