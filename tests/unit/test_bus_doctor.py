"""The event-bus sources' doctors without a server: the Pulsar port check (no Pulsar runs here), the
service URL parsing, the NATS subject overlap rule, and a missing optional client named as the extra
to install instead of a traceback. The live checks are in tests/integration/test_doctor_buses.py.
"""

from __future__ import annotations

import importlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cdc_logs import extras, registry
from cdc_logs.readers.nats.doctor import _collide
from cdc_logs.readers.pulsar.doctor import addresses, check_source

SOURCES: dict[str, tuple[str, dict[str, Any]]] = {
    "nats": ("nats", {"url": "nats://127.0.0.1:4222", "stream": "S"}),
    "rabbitmq": ("rabbitmq", {"queue": "q"}),
    "redis_stream": ("redis", {"stream_name": "s"}),
    "mqtt": ("mqtt", {"broker": "mqtt://127.0.0.1:1883", "topics": ["a/#"]}),
    "pulsar": ("pulsar", {"topic": "persistent://public/default/t", "subscription_name": "s"}),
}


def config(kind: str, **fields: Any) -> Any:
    return registry.find("source", kind).config.model_validate({"type": kind, **SOURCES[kind][1], **fields})


def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_a_missing_client_names_the_extra(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extras, "installed", lambda module: False)
    doctor = importlib.import_module(f"cdc_logs.readers.{kind}.doctor")
    [check] = doctor.check_source(config(kind))
    assert not check.ok
    assert check.fix == f"pip install 'cdc-logs[{SOURCES[kind][0]}]'"
    assert "is not installed" in check.detail


def test_pulsar_a_closed_port_fails_naming_the_fix() -> None:
    port = closed_port()
    [check] = check_source(config("pulsar", service_url=f"pulsar://127.0.0.1:{port}"))
    assert (check.name, check.ok) == (f"broker 127.0.0.1:{port}", False)
    assert check.fix and "service_url" in check.fix


def test_pulsar_an_open_port_passes_and_says_what_is_not_checked() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        [check] = check_source(config("pulsar", service_url=f"pulsar://127.0.0.1:{port}"))
    assert check.ok and "does not check the login, the topics or the subscription" in check.detail


def test_pulsar_service_urls() -> None:
    assert addresses("pulsar://a:1,b:2") == [("a", 1), ("b", 2)]
    assert addresses("pulsar+ssl://broker") == [("broker", 6651)]
    assert addresses("http://[::1]:8080") == [("::1", 8080)]
    with pytest.raises(ValueError, match="scheme"):
        addresses("kafka://a:1")


def test_pulsar_doctor_from_the_command_line(tmp_path: Path) -> None:
    port = closed_port()
    (tmp_path / "p.yaml").write_text(
        "name: bd\nsources:\n  - type: pulsar\n"
        f"    service_url: pulsar://127.0.0.1:{port}\n    topic: t\n    subscription_name: s\n"
        "destinations:\n  - type: file\n    path: out.jsonl\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "doctor", "-c", "p.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAIL broker 127.0.0.1:{port}: no TCP connection" in result.stdout
    assert "doctor has no checks" not in result.stdout and not result.stderr


def test_nats_subject_overlap() -> None:
    assert _collide("orders.a", "orders.>")
    assert _collide("orders.>", "orders.a")  # a wider filter still gets the stream's messages
    assert _collide("orders.*.x", "orders.a.*")
    assert not _collide("orders.a", "orders.a.b")
    assert not _collide("users.>", "orders.>")
    assert not _collide("orders", "orders.>")


def test_nats_no_server_fails_at_once() -> None:
    from cdc_logs.readers.nats.doctor import check_source as nats_checks

    started = time.monotonic()
    [check] = nats_checks(config("nats", url=f"nats://127.0.0.1:{closed_port()}"), pipeline="p")
    assert (check.name, check.ok) == ("server", False) and check.fix and "url" in check.fix
    assert time.monotonic() - started < 5  # nats-py's defaults retry for 10 s
