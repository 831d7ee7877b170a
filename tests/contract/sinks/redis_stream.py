"""The Redis Streams sink against the stack's Redis, read back with XRANGE by a plain redis client."""

from __future__ import annotations

import json
from typing import Any

from cdc_logs.sinks.base import Sink
from tests.contract.sink_contract import Held, SinkFixture


class RedisStream(SinkFixture):
    sink = "redis_stream"
    examples = {"redis_stream": {"host": "localhost"}}

    def setup(self) -> None:
        import redis  # an optional client: imported only when it runs

        self.url, self.stream = self.server("redis_url"), self.server("unique_name")
        self.client = redis.Redis.from_url(self.url)
        self.cleanup.callback(self.client.close)
        self.cleanup.callback(self._delete)

    def destination(self) -> dict[str, Any]:
        return {
            "type": "redis_stream",
            "url": self.url,
            "stream_name": self.stream,
            "marker_key": f"{self.stream}:applied",
        }

    def _delete(self) -> None:
        for key in self.client.scan_iter(f"{self.stream}*"):
            self.client.delete(key)

    def read_back(self, sink: Sink) -> Held:
        from tests.contract.test_redis_sinks import entries

        return Held(log=[json.loads(f[b"value"]) for f in entries(self.client, self.stream)])
