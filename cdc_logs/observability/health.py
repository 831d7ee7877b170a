"""HTTP endpoints for a running pipeline: /metrics (Prometheus), /health (alive), /ready (delivering),
/status (everything `cdc-logs status` shows: positions, lag, snapshot progress, sink backlogs, errors).

`/ready` and `/health` answer 200 or 503 with a JSON body: `ready` / `status`, the `reasons` (one
line per problem, naming the sink or source) and the state behind them (see status.py for when each
fails). The server is small and defensive: idle connections time out, concurrent connections are
bounded (the surplus gets a 503 at once), a client that goes away is one debug line (never a
traceback), and a port that cannot be used is a CONFIG error naming the fix.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.redact import redact
from cdc_logs.observability.status import PipelineStatus

log = get_logger(__name__)

IDLE_TIMEOUT_S = 10.0  # a connection that sends nothing for this long is closed
MAX_CONNECTIONS = 16  # handled at once; more get 503 and are closed
_RANGE = "use a port from 1 to 65535 (--http-port or health_checks.port)"
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.debug("http: too many connections, refusing one", client=str(client_address[0]))
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)  # a thread; it releases the slot
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        client = str(client_address[0]) if client_address else "?"
        if isinstance(exc, ConnectionError | TimeoutError):  # reset, broken pipe, idle timeout
            log.debug("http client went away", client=client, error=f"{type(exc).__name__}: {exc}")
        else:
            log.warning("http request failed", client=client, error=f"{type(exc).__name__}: {exc}")


def _json(body: dict[str, Any]) -> bytes:
    # Names of sinks and sources can be anything a user wrote (a DSN, even): masked like every output.
    return redact(orjson.dumps(body).decode()).encode() + b"\n"


def serve(
    port: int,
    metrics: Metrics,
    status: PipelineStatus,
    host: str = "127.0.0.1",
    *,
    max_connections: int = MAX_CONNECTIONS,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
) -> ThreadingHTTPServer:
    """Start the endpoints on a daemon thread and return the server (`.shutdown()` stops it).
    Port 0 picks a free port (`server.server_address[1]`)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = idle_timeout_s  # socket timeout: an idle or slow client cannot hold a thread

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif path == "/health":
                ok, reasons = status.liveness()
                body = {"status": "ok" if ok else "unhealthy", "reasons": reasons, **status.details()}
                self._send(200 if ok else 503, _json(body), "application/json")
            elif path == "/ready":
                ok, reasons = status.readiness()
                body = {"ready": ok, "reasons": reasons, **status.details()}
                self._send(200 if ok else 503, _json(body), "application/json")
            elif path == "/status":  # always 200: the state is in the body (`ready`, `reasons`)
                ok, reasons = status.readiness()
                alive, problems = status.liveness()
                body = {
                    "pipeline": metrics.pipeline,
                    "ready": ok,
                    "reasons": reasons,
                    "alive": alive,
                    "health_reasons": problems,
                    **status.details(),
                }
                self._send(200, _json(body), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep stdout/stderr clean
            return

    server = _bind(host, port, Handler, max_connections)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def _bind(host: str, port: int, handler: type[BaseHTTPRequestHandler], limit: int) -> _Server:
    where = f"{host}:{port}"
    fix = "choose another port (--http-port or health_checks.port)"
    if not 0 <= port <= 65535:
        raise CdcError(ErrorKind.CONFIG, f"HTTP port {port} is out of range", _RANGE)
    try:
        return _Server((host, port), handler, limit)
    except socket.gaierror as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            f"cannot serve HTTP on {where}: unknown host {host!r} ({exc.strerror})",
            "set health_checks.host to an address of this machine, e.g. 127.0.0.1 or 0.0.0.0",
        ) from exc
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            problem, hint = "the port is in use", f"stop what listens there, or {fix}"
        elif exc.errno == errno.EACCES:
            problem, hint = "permission denied (ports below 1024 need privileges)", fix
        elif exc.errno == errno.EADDRNOTAVAIL:
            problem = f"{host} is not an address of this machine"
            hint = "set health_checks.host to an address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
        else:
            problem, hint = exc.strerror or str(exc), fix
        raise CdcError(ErrorKind.CONFIG, f"cannot serve HTTP on {where}: {problem}", hint) from exc
    except OverflowError as exc:  # defensive: the socket module's own range check
        raise CdcError(ErrorKind.CONFIG, f"HTTP port {port} is out of range", _RANGE) from exc
