"""Suite-wide setup: logs go to stderr as in the CLI, so stdout assertions see only envelopes.

The redaction's registry of known secrets is process-wide: it is cleared after each test, so a secret
one test registers (by loading a config) cannot mask another test's output.

OpenSearch is not (yet) a scripts/stack service: when CDC_OPENSEARCH_URL is unset the session starts
its own node from scripts/lib/opensearch.sh (one per session, for the sink contract tests and the
matrix); failing to start it fails under CI like a missing server. The schema registry (Apicurio's,
Confluent API, scripts/lib/schema-registry.sh) is handled the same way, through CDC_SCHEMA_REGISTRY_URL.
"""

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc_logs.observability import logging as cdc_logging
from cdc_logs.observability import redact
from tests.integration.conftest import _unavailable, require_env

cdc_logging.configure("warning")


def pytest_addoption(parser: pytest.Parser) -> None:
    # Here, not in tests/chaos/conftest.py: only the root conftest sees every command line
    # (`scripts/test -k kill_paths --kills 50` names no path).
    parser.addoption("--kills", type=int, default=5, help="SIGKILLs per case of tests/chaos/test_kill_paths")


@pytest.fixture(autouse=True)
def _forget_registered_secrets() -> Iterator[None]:
    yield
    redact.forget_all()


@pytest.fixture(scope="session")
def opensearch_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """OpenSearch: CDC_OPENSEARCH_URL when set (the stack's node), else a node this session starts
    with scripts/lib/opensearch.sh (OpenSearch from Maven Central, ~10 s) and stops at the end."""
    if os.environ.get("CDC_OPENSEARCH_URL", "").strip():
        yield require_env("CDC_OPENSEARCH_URL")
        return
    script = Path(__file__).resolve().parents[1] / "scripts" / "lib" / "opensearch.sh"
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


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A schema registry's Confluent API: CDC_SCHEMA_REGISTRY_URL when set (`scripts/stack up registry`),
    else an Apicurio Registry this session starts with scripts/lib/schema-registry.sh (built from Maven
    Central on first use, ~1 min; then ~10 s to start) and stops at the end."""
    if os.environ.get("CDC_SCHEMA_REGISTRY_URL", "").strip():
        yield require_env("CDC_SCHEMA_REGISTRY_URL")
        return
    script = Path(__file__).resolve().parents[1] / "scripts" / "lib" / "schema-registry.sh"
    workdir = tmp_path_factory.mktemp("schema-registry")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = subprocess.run(
        [str(script), "start", str(workdir), str(port)], capture_output=True, text=True, timeout=900
    )
    if started.returncode != 0:
        _unavailable(f"could not start the schema registry with {script}: {started.stderr[-2000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(script), "stop", str(workdir)], capture_output=True, timeout=120)
