"""Prometheus metrics for a pipeline. Each pipeline owns a registry, so tests can run several.

The rendered text goes through `observability.redact` like every other output: label values are
configured names, and nothing stops a user from naming a source after its DSN.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cdc_logs.observability.redact import redact
from cdc_logs.position import Position


class Metrics:
    def __init__(
        self, pipeline: str, registry: CollectorRegistry | None = None, enabled: bool = True
    ) -> None:
        self.enabled = enabled
        self.pipeline = pipeline
        self.registry = registry or CollectorRegistry()
        labels = ["pipeline", "source"]
        self.events = Counter(
            "cdc_events_total", "Change events read", [*labels, "table", "op"], registry=self.registry
        )
        self.batches = Counter(
            "cdc_batches_total", "Batches written to every sink", ["pipeline"], registry=self.registry
        )
        self.batch_seconds = Histogram(
            "cdc_batch_write_seconds",
            "Time to make a batch durable in every sink",
            ["pipeline"],
            registry=self.registry,
        )
        self.sink_errors = Counter(
            "cdc_sink_errors_total",
            "Failed sink writes (retried or fatal)",
            ["pipeline", "sink"],
            registry=self.registry,
        )
        self.source_errors = Counter(
            "cdc_source_errors_total", "Source failures", labels, registry=self.registry
        )
        self.commit_ts = Gauge(
            "cdc_last_commit_timestamp_seconds",
            "When the source position was last committed",
            labels,
            registry=self.registry,
        )
        self.lag_ms = Gauge(
            "cdc_source_lag_ms",
            "Now minus the source timestamp of the last event read",
            labels,
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "cdc_dead_letters_total",
            "Events a sink refused, written to the dead-letter file",
            ["pipeline", "sink"],
            registry=self.registry,
        )
        self.merge_late = Counter(
            "cdc_merge_late_events_total",
            "Events merge_strategy timestamp_based released behind a later event time (merge.py)",
            labels,
            registry=self.registry,
        )
        self.sink_lag_bytes = Gauge(
            "cdc_sink_spool_lag_bytes",
            "Spooled bytes a fan-out sink has not delivered yet",
            ["pipeline", "sink"],
            registry=self.registry,
        )

    @classmethod
    def disabled(cls) -> Metrics:
        return cls("disabled", enabled=False)

    def events_read(self, counts: Mapping[tuple[str, str, str], int], last_ts_ms: Mapping[str, int]) -> None:
        """Per batch, not per event: `counts` by (source, table, op), `last_ts_ms` by source."""
        if not self.enabled:
            return
        for (source, table, op), n in counts.items():
            self.events.labels(self.pipeline, source, table, op).inc(n)
        now_ms = time.time() * 1000
        for source, ts_ms in last_ts_ms.items():
            self.lag_ms.labels(self.pipeline, source).set(now_ms - ts_ms)

    def batch_written(self, size: int, seconds: float) -> None:
        if self.enabled:
            self.batches.labels(self.pipeline).inc()
            self.batch_seconds.labels(self.pipeline).observe(seconds)

    def sink_error(self, sink: str) -> None:
        if self.enabled:
            self.sink_errors.labels(self.pipeline, sink).inc()

    def dead_lettered(self, sink: str, count: int) -> None:
        if self.enabled:
            self.dead_letters.labels(self.pipeline, sink).inc(count)

    def sink_lag(self, sink: str, lag_bytes: int) -> None:
        if self.enabled:
            self.sink_lag_bytes.labels(self.pipeline, sink).set(lag_bytes)

    def source_error(self, source: str) -> None:
        if self.enabled:
            self.source_errors.labels(self.pipeline, source).inc()

    def merge_late_event(self, source: str) -> None:
        if self.enabled:
            self.merge_late.labels(self.pipeline, source).inc()

    def committed(self, source: str, position: Position) -> None:
        if self.enabled:
            self.commit_ts.labels(self.pipeline, source).set(time.time())

    def render(self) -> bytes:
        # Labels are configured names (a source named after its DSN, say): redacted like any output.
        return redact(generate_latest(self.registry).decode()).encode()
