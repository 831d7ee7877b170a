"""In-memory offset store for `cdc-logs tail`: nothing persists, nothing is left behind."""

from __future__ import annotations

import time

from cdc_logs.offsets.base import OffsetStore, StoredOffset
from cdc_logs.position import Position


class MemoryOffsetStore(OffsetStore):
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], StoredOffset] = {}

    def load(self, pipeline: str, source: str) -> StoredOffset | None:
        return self._rows.get((pipeline, source))

    def save(self, pipeline: str, source: str, position: Position) -> None:
        self._rows[(pipeline, source)] = StoredOffset(
            pipeline, source, position.encode(), position.server, int(time.time() * 1000)
        )

    def delete(self, pipeline: str, source: str | None = None) -> int:
        doomed = [k for k in self._rows if k[0] == pipeline and (source is None or k[1] == source)]
        for key in doomed:
            del self._rows[key]
        return len(doomed)

    def list(self, pipeline: str | None = None) -> list[StoredOffset]:
        return [v for k, v in sorted(self._rows.items()) if pipeline is None or k[0] == pipeline]
