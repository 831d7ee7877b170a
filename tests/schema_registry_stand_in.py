"""A stand-in for a schema registry's REST API, for the Kafka source's Avro tests.

It is NOT a schema registry: no compatibility rules, no persistence, no subjects listing. It answers
the two calls cdc-logs makes, over real HTTP:
  POST /subjects/<subject>/versions  {"schema": "<json>"} -> {"id": n}   (the Avro Kafka sink)
  GET  /schemas/ids/<n>              -> {"schema": "<json>"[, "schemaType": ...]} or 404 with
                                        Confluent's error body {"error_code": 40403, ...}
with optional basic auth (401 without it). The unit tests use it for what needs no real registry or
what the stack's (Apicurio, in memory, no auth) cannot show: basic auth, a PROTOBUF schema type, a
registry that refuses or is gone. The live Avro test uses the real one (tests/integration/
test_kafka_source.py; docs/sources/kafka.md, "What was tested live here").
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class StandIn:
    url: str
    schemas: dict[int, Any] = field(default_factory=dict)  # id -> schema (JSON)
    types: dict[int, str] = field(default_factory=dict)  # id -> schemaType, when not AVRO
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    auth_headers: list[str | None] = field(default_factory=list)

    def add(self, schema: Any, schema_type: str | None = None) -> int:
        """Register `schema` directly (as another producer would have); its id."""
        for known, value in self.schemas.items():
            if value == schema:
                return known
        schema_id = len(self.schemas) + 1
        self.schemas[schema_id] = schema
        if schema_type:
            self.types[schema_id] = schema_type
        return schema_id


@contextmanager
def schema_registry_stand_in(*, user: str | None = None, password: str | None = None) -> Iterator[StandIn]:
    state = StandIn("")
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if user else None

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self, method: str) -> bool:
            state.requests.append((method, self.path))
            state.auth_headers.append(self.headers.get("Authorization"))
            if expected is not None and self.headers.get("Authorization") != expected:
                self._reply(401, {"error_code": 40101, "message": "Unauthorized"})
                return False
            return True

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not self._authorized("POST"):
                return
            self._reply(200, {"id": state.add(json.loads(body["schema"]))})

        def do_GET(self) -> None:
            if not self._authorized("GET"):
                return
            prefix = "/schemas/ids/"
            if not self.path.startswith(prefix):
                self._reply(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
                return
            schema_id = int(self.path[len(prefix) :].split("?")[0])
            if schema_id not in state.schemas:
                self._reply(404, {"error_code": 40403, "message": "Schema not found"})
                return
            payload: dict[str, Any] = {"schema": json.dumps(state.schemas[schema_id])}
            if schema_id in state.types:
                payload["schemaType"] = state.types[schema_id]
            self._reply(200, payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
