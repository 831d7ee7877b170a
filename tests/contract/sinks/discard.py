"""The discard sink keeps nothing to read back: the contract compares the count it keeps."""

from __future__ import annotations

from typing import Any

from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.discard import DiscardSink
from tests.contract.sink_contract import Held, SinkFixture


class Discard(SinkFixture):
    sink = "discard"
    holds = "count"
    integration = False  # no server
    not_in_matrix = "it keeps nothing to compare with the source table"
    examples = {"discard": {}}

    def destination(self) -> dict[str, Any]:
        return {"type": "discard"}

    def read_back(self, sink: Sink) -> Held:
        assert isinstance(sink, DiscardSink)
        return Held(count=sink.events)
