"""Contract tests of sinks with a real server take its address from the integration fixtures, so a
missing server fails under CI (and skips locally) exactly as the integration tests do.

OpenSearch is not (yet) a scripts/stack service: when CDC_OPENSEARCH_URL is unset the session starts
its own node from scripts/lib/opensearch.sh; failing to start it fails under CI like a missing server.
"""

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (  # noqa: F401 - fixtures, used by name
    _unavailable,
    kafka_bootstrap,
    mariadb_dsn,
    mqtt_url,
    nats_url,
    pg_dsn,
    rabbitmq_url,
    redis_url,
    require_env,
    unique_name,
)


@pytest.fixture(scope="session")
def opensearch_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """OpenSearch: CDC_OPENSEARCH_URL when set (the stack's node), else a node this session starts
    with scripts/lib/opensearch.sh (OpenSearch from Maven Central, ~10 s) and stops at the end."""
    if os.environ.get("CDC_OPENSEARCH_URL", "").strip():
        yield require_env("CDC_OPENSEARCH_URL")
        return
    script = Path(__file__).resolve().parents[2] / "scripts" / "lib" / "opensearch.sh"
    workdir = tmp_path_factory.mktemp("opensearch")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = subprocess.run(
        [str(script), "start", str(workdir), str(port)], capture_output=True, text=True, timeout=900
    )
    if started.returncode != 0:
        _unavailable(f"could not start OpenSearch with {script}: {started.stderr[-2000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(script), "stop", str(workdir)], capture_output=True, timeout=120)
