"""The Redis cache sink on the stack's Redis: a key per row, read back with a plain redis client.

The destination and the read-back are the matrix's (tests/matrix/targets.py). test_redis_sinks.py
has the cache's other tests (key patterns, partial updates, TTLs).
"""

from __future__ import annotations

import uuid
from typing import Any

from cdc_logs.sinks.base import Sink
from tests.contract.sink_contract import Held, SinkFixture
from tests.matrix import targets
from tests.matrix.sources import Run


class RedisCache(SinkFixture):
    sink = "redis"
    holds = "state"
    examples = {"redis": {}}

    def setup(self) -> None:
        self.run = Run("ct" + uuid.uuid4().hex[:8], self.server("tmp_path"))
        self.case = targets.RedisCache(self.server("redis_url"))
        self.cleanup.callback(self.case.cleanup, self.run)

    def destination(self) -> dict[str, Any]:
        return self.case.destination(self.run)

    def read_back(self, sink: Sink) -> Held:
        return Held(state=self.case.read(self.run, "t").state)
