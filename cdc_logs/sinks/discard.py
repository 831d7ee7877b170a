"""Discard sink: takes every change, keeps none, and counts them.

For measuring a source and the pipeline without a destination's cost, and for trying a source's
config end to end before a real destination exists. When the sink closes it logs how many changes
it took, in how many batches, and the rate between its first and its last batch.

Nothing is kept, yet positions are committed as for any sink: the source then takes the discarded
changes as delivered (a Postgres slot lets the server drop that WAL) and the next run of the same
pipeline starts after them. Give a trial run its own pipeline `name`, so it has its own slot and
offsets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, Field

from cdc_logs import registry
from cdc_logs.configmodel import SinkConfigBase
from cdc_logs.envelope import ChangeEvent
from cdc_logs.observability.logging import get_logger
from cdc_logs.sinks.base import Sink

log = get_logger(__name__)


class DiscardSink(Sink):
    def __init__(self, name: str = "discard") -> None:
        self.name = name
        self.events = 0  # every change given to write(); a replayed batch is counted again
        self.batches = 0
        self._first: float | None = None  # monotonic time of the first batch and of the last one
        self._last = 0.0
        self._first_wall: float | None = None  # the same two moments as Unix time, for the log
        self._last_wall = 0.0

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if not batch:
            return
        now = time.monotonic()
        wall = time.time()
        if self._first is None:
            self._first, self._first_wall = now, wall
        self._last, self._last_wall = now, wall
        self.events += len(batch)
        self.batches += 1

    def close(self) -> None:
        took = self._last - self._first if self._first is not None else 0.0
        rate = round(self.events / took) if took > 0 else None
        # first_write_at/last_write_at (Unix seconds) let a benchmark time a subprocess's run from its log.
        log.info(
            "discarded",
            sink=self.name,
            events=self.events,
            batches=self.batches,
            per_second=rate,
            first_write_at=self._first_wall,
            last_write_at=self._last_wall if self._first_wall is not None else None,
        )


# -- config ----------------------------------------------------------------------------------------
class DiscardSinkConfig(SinkConfigBase):
    """Takes every change and keeps none, counting them: for benchmarks and trial runs.

    When the pipeline stops it logs how many changes it took, in how many batches, and the rate
    between the first and the last batch. Positions are committed as for any sink, so the source
    takes the discarded changes as delivered: give a trial run its own pipeline `name`.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [{"type": "discard"}]})

    type: Literal["discard"] = Field(description="Selects this destination.")


@registry.sink(DiscardSinkConfig, capabilities={"count"})
def build(cfg: DiscardSinkConfig, ctx: registry.BuildContext) -> DiscardSink:
    return DiscardSink(name=cfg.name or cfg.type)
