"""The webhook sink against a real HTTP server (the standard library's, on loopback, in a thread)."""

from __future__ import annotations

from typing import Any

from cdc_logs.sinks.base import Sink
from tests.contract.sink_contract import Held, SinkFixture
from tests.contract.test_http_sink import serve_receiver


class Http(SinkFixture):
    sink = "http"
    integration = False
    examples = {"http": {"url": "http://localhost:1/hook"}, "webhook": {"url": "http://localhost:1/hook"}}

    def setup(self) -> None:
        self.receiver, self.url = self.using(serve_receiver())

    def destination(self) -> dict[str, Any]:
        return {"type": "webhook", "url": self.url, "secret": "s3cret"}

    def read_back(self, sink: Sink) -> Held:
        return Held(log=self.receiver.envelopes())
