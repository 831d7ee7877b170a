"""The NATS JetStream sink against the stack's nats-server, read back from the stream with nats-py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from cdc_logs.sinks.base import Sink
from tests.contract.sink_contract import Held, SinkFixture


class Nats(SinkFixture):
    sink = "nats"
    examples = {"nats": {"url": "nats://localhost:4222", "prefix": "app"}}

    def setup(self) -> None:
        from tests.contract.test_nats_sink import _delete  # imports nats-py: only when it runs

        self.url, self.prefix = self.server("nats_url"), self.server("unique_name")
        self.stream = self.prefix.upper()
        self.cleanup.callback(lambda: asyncio.run(_delete(self.url, self.stream)))

    def destination(self) -> dict[str, Any]:
        return {"type": "nats", "url": self.url, "prefix": self.prefix, "stream": self.stream}

    def read_back(self, sink: Sink) -> Held:
        from tests.contract.test_nats_sink import stored

        return Held(log=[json.loads(m.data) for m in stored(self.url, self.stream)])
