"""HTTP webhook sink against a real HTTP server (the standard library's, on loopback, in a thread).

The server is real: it parses requests off a socket and answers with scripted status codes; the
contract suite reads back what it received.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.http import HttpSink
from tests.contract.sink_contract import SinkContract
from tests.helpers import make_event


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []  # statuses to answer before 200s
        self.lock = threading.Lock()

    def envelopes(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for headers, body in self.accepted():
            if headers.get("Content-Type") == "application/x-ndjson":
                out.extend(json.loads(line) for line in body.splitlines())
            else:
                out.extend(json.loads(body))
        return out

    def accepted(self) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in self.requests if h["X-Test-Status"] == "200"]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                status = state.script.pop(0) if state.script else 200
                headers = dict(self.headers.items())
                headers["X-Test-Status"] = str(status)
                state.requests.append((headers, body))
            self.send_response(status)
            if status == 503:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no" if status >= 300 else b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


class TestHttpSinkContract(SinkContract):
    @pytest.fixture(autouse=True)
    def _server(self, receiver: tuple[Receiver, str]) -> None:
        self.receiver, self.url = receiver

    def make_sink(self) -> Sink:
        return HttpSink(self.url, secret="s3cret")

    def read_back(self, sink: Sink) -> list[dict[str, Any]]:
        return self.receiver.envelopes()


def test_signature_verifies_over_the_raw_body(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    sink = HttpSink(url, secret="s3cret", body_format="ndjson", max_events_per_request=3)
    sink.open()
    sink.write([make_event(n) for n in range(7)])
    sink.close()
    assert len(state.requests) == 3
    for headers, body in state.requests:
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-CDC-Signature"], expected)
    assert [e["source"]["seq"] for e in state.envelopes()] == list(range(7))


def test_retries_on_503_then_delivers_once(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    state.script = [503, 503]
    sink = HttpSink(url, initial_backoff_s=0.01)
    sink.open()
    sink.write([make_event(1), make_event(2)])
    sink.close()
    assert [h["X-Test-Status"] for h, _b in state.requests] == ["503", "503", "200"]
    assert len({h["Idempotency-Key"] for h, _b in state.requests}) == 1
    assert [e["source"]["seq"] for e in state.envelopes()] == [1, 2]


def test_gives_up_as_transient_after_max_attempts(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    state.script = [500] * 3
    sink = HttpSink(url, max_attempts=3, initial_backoff_s=0.01)
    sink.open()
    with pytest.raises(CdcError) as err:
        sink.write([make_event(1)])
    assert err.value.kind is ErrorKind.SINK_TRANSIENT
    sink.write([make_event(1)])  # the pipeline's retry: same idempotency key
    keys = {h["Idempotency-Key"] for h, _b in state.requests}
    assert len(keys) == 1 and len(state.requests) == 4
    sink.close()


def test_400_goes_to_the_dead_letter_file_and_the_sink_continues(
    receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    state, url = receiver
    state.script = [400, 400]
    dead = tmp_path / "dead" / "webhook.jsonl"
    sink = HttpSink(url, rejected_attempts=2, dead_letter_path=dead, initial_backoff_s=0.01)
    sink.open()
    sink.write([make_event(1), make_event(2)])
    sink.write([make_event(3)])
    sink.close()
    lines = [json.loads(line) for line in dead.read_bytes().splitlines()]
    assert [line["envelope"]["source"]["seq"] for line in lines] == [1, 2]
    assert lines[0]["origin"]["status"] == 400 and "HTTP 400" in lines[0]["reason"]
    assert lines[0]["stage"] == "sink" and lines[0]["component"] == "http" and lines[0]["position"]
    assert [e["source"]["seq"] for e in state.envelopes()] == [3]


def test_400_without_dead_letter_is_rejected(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    state.script = [422]
    sink = HttpSink(url)
    sink.open()
    with pytest.raises(CdcError) as err:
        sink.write([make_event(1)])
    assert err.value.kind is ErrorKind.SINK_REJECTED
    sink.close()


def test_connection_refused_is_transient() -> None:
    sink = HttpSink("http://127.0.0.1:1/hook", max_attempts=2, initial_backoff_s=0.01, timeout_s=1)
    sink.open()
    with pytest.raises(CdcError) as err:
        sink.write([make_event(1)])
    assert err.value.kind is ErrorKind.SINK_TRANSIENT
    sink.close()
