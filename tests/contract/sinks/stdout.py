"""The stdout sink as `cdc-logs run` builds it, writing to the process's stdout (captured by pytest)."""

from __future__ import annotations

from typing import Any

import orjson

from cdc_logs.sinks.base import Sink
from tests.contract.sink_contract import Held, SinkFixture


class Stdout(SinkFixture):
    sink = "stdout"
    integration = False
    examples = {"stdout": {}}

    def setup(self) -> None:
        self.captured = self.server("capsysbinary")
        self.out = b""

    def destination(self) -> dict[str, Any]:
        return {"type": "stdout", "format": "json"}

    def read_back(self, sink: Sink) -> Held:
        self.out += self.captured.readouterr().out  # each read takes what came since the last one
        return Held(log=[orjson.loads(line) for line in self.out.splitlines()])
