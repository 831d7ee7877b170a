"""The RabbitMQ sink against the stack's broker, read back by draining the queue with pika."""

from __future__ import annotations

import json
from typing import Any

from cdc_logs.sinks.base import Sink
from tests.contract.sink_contract import Held, SinkFixture


class RabbitMQ(SinkFixture):
    sink = "rabbitmq"
    examples = {"rabbitmq": {"queue": "q"}}

    def setup(self) -> None:
        import pika  # an optional client: imported only when it runs

        self.url, self.queue = self.server("rabbitmq_url"), self.server("unique_name")
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        self.cleanup.callback(conn.close)
        self.channel = conn.channel()
        self.cleanup.callback(lambda: self.channel.queue_delete(self.queue))
        self.seen: list[dict[str, Any]] = []

    def destination(self) -> dict[str, Any]:
        return {"type": "rabbitmq", "url": self.url, "queue": self.queue}

    def read_back(self, sink: Sink) -> Held:
        from tests.contract.test_rabbitmq_sink import drain

        # basic_get consumes: keep what earlier reads took so each read returns the whole queue's history.
        self.seen.extend(json.loads(body) for _m, _p, body in drain(self.channel, self.queue))
        return Held(log=list(self.seen))
