"""The HTTP endpoints: JSON reasons on /ready and /health, port errors as CONFIG, and a server that a
misbehaving client cannot crash, flood or hold (no traceback on a reset, idle timeout, bounded)."""

from __future__ import annotations

import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability import health
from cdc_logs.observability import logging as cdc_logging
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.status import HealthThresholds, PipelineStatus


@pytest.fixture
def status() -> PipelineStatus:
    return PipelineStatus(HealthThresholds(sink_stall_s=0.05)).attach({"src": object()}, ["redis"])


@pytest.fixture
def server(status: PipelineStatus) -> Iterator[ThreadingHTTPServer]:
    srv = health.serve(0, Metrics("p"), status, max_connections=2, idle_timeout_s=0.5)
    yield srv
    srv.shutdown()
    srv.server_close()


def get(server: ThreadingHTTPServer, path: str) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_ready_and_health_answer_with_reasons(server: ThreadingHTTPServer, status: PipelineStatus) -> None:
    code, body = get(server, "/ready")
    assert code == 503
    answer = orjson.loads(body)
    assert answer["ready"] is False and answer["reasons"][0].startswith("pipeline is starting")
    assert get(server, "/health")[0] == 200
    status.running()
    code, body = get(server, "/ready?verbose=1")
    assert code == 200 and orjson.loads(body)["ready"] is True
    status.submitted(3)
    status.sink_failed("redis", "cannot reach Redis at redis://u:hunter2@127.0.0.1:1/0: refused")
    time.sleep(0.1)
    code, body = get(server, "/ready")
    answer = orjson.loads(body)
    assert code == 503 and answer["reasons"][0].startswith("sink redis: no write accepted")
    assert answer["sinks"]["redis"]["waiting"] is True and answer["state"] == "running"
    assert b"hunter2" not in body
    code, body = get(server, "/health")
    assert code == 200 and orjson.loads(body) == {**orjson.loads(body), "status": "ok", "reasons": []}
    status.ended()
    code, body = get(server, "/health")
    assert code == 503 and orjson.loads(body)["status"] == "unhealthy"
    assert get(server, "/metrics")[0] == 200 and get(server, "/nope")[0] == 404


@pytest.mark.parametrize("port", [-1, 65536, 70000])
def test_a_port_out_of_range_is_a_config_error(status: PipelineStatus, port: int) -> None:
    with pytest.raises(CdcError) as err:
        health.serve(port, Metrics("p"), status)
    assert err.value.kind is ErrorKind.CONFIG and err.value.exit_code == 2
    assert "out of range" in err.value.message


def test_a_port_in_use_is_a_config_error(status: PipelineStatus) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CdcError) as err:
            health.serve(port, Metrics("p"), status)
    assert err.value.kind is ErrorKind.CONFIG and err.value.exit_code == 2
    assert err.value.message == f"cannot serve HTTP on 127.0.0.1:{port}: the port is in use"
    assert "--http-port" in (err.value.hint or "")


def test_an_unknown_host_is_a_config_error(status: PipelineStatus) -> None:
    with pytest.raises(CdcError) as err:
        health.serve(0, Metrics("p"), status, host="no-such-host.invalid")
    assert err.value.kind is ErrorKind.CONFIG and "health_checks.host" in (err.value.hint or "")


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as a client that crashed or timed out does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Torn down after capfd (requested first): logs go back to the real stderr, as tests/conftest.py."""
    yield
    cdc_logging.configure("warning")


def test_a_client_reset_is_one_debug_line_not_a_traceback(
    restore_logging: None, server: ThreadingHTTPServer, capfd: pytest.CaptureFixture[str]
) -> None:
    cdc_logging.configure("debug")  # bound to the captured stderr
    for _ in range(3):
        sock = socket.create_connection(server.server_address[:2])
        sock.sendall(b"GET /ready HT")  # a request line cut short
        time.sleep(0.05)
        _reset(sock)
    time.sleep(0.3)
    assert get(server, "/health")[0] == 200  # still serving
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err.split("http client went away")[0]
    assert err.count("http client went away") == 3


def test_idle_connections_time_out(server: ThreadingHTTPServer) -> None:
    with socket.create_connection(server.server_address[:2]) as sock:
        sock.settimeout(5)
        started = time.monotonic()
        assert sock.recv(100) == b""  # the server closed it: nothing was sent for idle_timeout_s
        assert time.monotonic() - started < 3


def test_concurrent_connections_are_bounded(server: ThreadingHTTPServer) -> None:
    idle = [socket.create_connection(server.server_address[:2]) for _ in range(2)]  # the 2 slots
    try:
        time.sleep(0.1)
        with socket.create_connection(server.server_address[:2]) as third:
            third.settimeout(5)
            third.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            answer = third.recv(200)
        assert answer.startswith(b"HTTP/1.0 503"), answer
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    assert get(server, "/health")[0] == 200  # slots are given back
