"""Contract tests of sinks with a real server take its address from the integration fixtures, so a
missing server fails under CI (and skips locally) exactly as the integration tests do.

OpenSearch's fixture lives in tests/conftest.py: one node per session, shared with the matrix.
"""

from tests.integration.conftest import (  # noqa: F401 - fixtures, used by name
    kafka_bootstrap,
    mariadb_dsn,
    mqtt_url,
    nats_url,
    pg_dsn,
    rabbitmq_url,
    redis_url,
    unique_name,
)
