"""HTTP endpoints for a running pipeline: /metrics (Prometheus), /health (alive), /ready (streaming)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from cdc_logs.observability.metrics import Metrics


def serve(
    port: int, metrics: Metrics, is_ready: Callable[[], bool], host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """Start the endpoints on a daemon thread and return the server (call `.shutdown()` to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif self.path == "/health":
                self._send(200, b'{"status":"ok"}\n', "application/json")
            elif self.path == "/ready":
                ok = is_ready()
                self._send(
                    200 if ok else 503, b'{"ready":%s}\n' % (b"true" if ok else b"false"), "application/json"
                )
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep stdout/stderr clean
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
