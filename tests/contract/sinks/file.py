"""The file sink on the real filesystem, rotating every 4 KiB so the contract spans segments."""

from __future__ import annotations

from typing import Any

import orjson

from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.file import FileSink
from tests.contract.sink_contract import Held, SinkFixture


class File(SinkFixture):
    sink = "file"
    integration = False
    examples = {"file": {"path": "out.jsonl"}}

    def setup(self) -> None:
        self.path = self.server("tmp_path") / "out" / "changes.jsonl"

    def destination(self) -> dict[str, Any]:
        return {"type": "file", "path": str(self.path), "max_bytes": 4096}

    def read_back(self, sink: Sink) -> Held:
        assert isinstance(sink, FileSink)
        # An independent reader: open the files from disk, oldest segment first.
        lines: list[dict[str, Any]] = []
        for path in [*sink.segments(), sink.path]:
            if path.exists():
                lines.extend(orjson.loads(line) for line in path.read_bytes().splitlines())
        return Held(log=lines)
