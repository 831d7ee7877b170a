"""The OpenSearch sink against a live OpenSearch node (tests/conftest.py starts one per session).

`mode: mirror` (the default) keeps a document per row: checked on the rows, with the matrix's
destination and read-back (tests/matrix/targets.py). `mode: append` keeps a document per event:
checked on the envelopes, sorted by the event's sequence (an index has no delivery order).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import requests

from cdc_logs.sinks.base import Sink
from tests.contract.sink_contract import Held, SinkFixture
from tests.contract.test_search_sink import search
from tests.matrix import targets
from tests.matrix.sources import Run


class OpenSearch(SinkFixture):
    sink = "opensearch"
    variants = {"mirror": "state", "append": "log"}
    examples = {
        "opensearch": {"url": "http://localhost:9200"},
        "elasticsearch": {"url": "http://localhost:9200"},
    }

    def setup(self) -> None:
        self.url = self.server("opensearch_url")
        self.run = Run("ct" + uuid.uuid4().hex[:8], self.server("tmp_path"))
        self.case = targets.OpenSearch(self.url)
        self.index = self.server("unique_name")
        self.cleanup.callback(self.case.cleanup, self.run)
        self.cleanup.callback(self._delete_append_index)

    def _delete_append_index(self) -> None:
        with contextlib.suppress(Exception):
            requests.delete(f"{self.url}/{self.index}", timeout=30)

    def destination(self) -> dict[str, Any]:
        if self.variant == "mirror":
            return self.case.destination(self.run)
        return {"type": "opensearch", "url": self.url, "index": self.index, "mode": "append"}

    def read_back(self, sink: Sink) -> Held:
        if self.variant == "mirror":
            return Held(state=self.case.read(self.run, "t").state)
        docs = search(self.url, self.index)
        for doc in docs:
            doc.pop("_id")
        return Held(log=sorted(docs, key=lambda d: d["source"]["seq"]))
