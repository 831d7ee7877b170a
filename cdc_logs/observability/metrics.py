"""Prometheus metrics for a pipeline, named `cdc_logs_*`. Each pipeline owns a registry, so tests can
run several. docs/operations.md is the reference of every metric; `METRICS` below is the list it and
the example alert rules and dashboard (docs/ops/) are checked against.

Counters and histograms are updated as things happen (per batch, not per event, on the hot path).
Gauges that are ages ("seconds since ...") are computed when scraped: `render()` first runs the
refresh hook the running pipeline installed (`set_refresh`), so an age grows between events instead
of freezing at its last value.

The rendered text goes through `observability.redact` like every other output: label values are
configured names, and nothing stops a user from naming a source after its DSN. No label carries a
DSN, a URL or a row value.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cdc_logs.envelope import SourceInfo
from cdc_logs.observability.redact import redact
from cdc_logs.position import Position

# Sink write latencies: a local file takes milliseconds, a remote database with retries seconds.
_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(
        self, pipeline: str, registry: CollectorRegistry | None = None, enabled: bool = True
    ) -> None:
        self.enabled = enabled
        self.pipeline = pipeline
        self.registry = registry or CollectorRegistry()
        self._refresh: Callable[[], None] | None = None
        self._render_lock = threading.Lock()
        r = self.registry
        src = ["pipeline", "source"]
        snk = ["pipeline", "sink"]
        # -- counters ----------------------------------------------------------------------------
        self.events = Counter(
            "cdc_logs_events_total",
            "Change events read, by source, table (schema.table, or db.table without schemas) and op",
            [*src, "table", "op"],
            registry=r,
        )
        self.batches = Counter(
            "cdc_logs_batches_total", "Batches handed to every sink", ["pipeline"], registry=r
        )
        self.sink_errors = Counter(
            "cdc_logs_sink_errors_total",
            "Failed sink writes and opens (retried or fatal), by error kind",
            [*snk, "kind"],
            registry=r,
        )
        self.source_errors = Counter(
            "cdc_logs_source_errors_total",
            "Source failures (reconnected or fatal), by error kind",
            [*src, "kind"],
            registry=r,
        )
        self.dead_letters = Counter(
            "cdc_logs_dead_letters_total",
            "Events a sink refused (or a source could not decode), written to the dead-letter directory",
            snk,
            registry=r,
        )
        self.merge_late = Counter(
            "cdc_logs_merge_late_events_total",
            "Events merge_strategy timestamp_based released behind a later event time (merge.py)",
            src,
            registry=r,
        )
        self.retention_removed = Counter(
            "cdc_logs_retention_removed_total",
            "Records (dead letters) and files (e.g. audit segments) removed by retention_period_days, by "
            "what they were (retention.py)",
            ["pipeline", "what", "unit"],
            registry=r,
        )
        self.middleware_late = Counter(
            "cdc_logs_middleware_late_events_total",
            "Readings iot_aggregation found late (their window already emitted), by what it did: "
            "dropped, dead_lettered, updated",
            ["pipeline", "middleware", "action"],
            registry=r,
        )
        # -- histograms --------------------------------------------------------------------------
        self.batch_seconds = Histogram(
            "cdc_logs_batch_write_seconds",
            "Time to hand a batch to every sink (durable in each, without fan-out)",
            ["pipeline"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sink_write_seconds = Histogram(
            "cdc_logs_sink_write_seconds",
            "Time one successful sink write took (until durable in the destination)",
            snk,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # -- gauges ------------------------------------------------------------------------------
        self.commit_ts = Gauge(
            "cdc_logs_last_commit_timestamp_seconds",
            "Unix time the source's position was last committed",
            src,
            registry=r,
        )
        self.checkpoint_age = Gauge(
            "cdc_logs_checkpoint_age_seconds",
            "Seconds since the source's position was last committed in this run",
            src,
            registry=r,
        )
        self.lag_seconds = Gauge(
            "cdc_logs_source_lag_seconds",
            "Seconds the pipeline is behind the source: the oldest change not yet in every sink, or log "
            "not yet consumed; grows while a sink is stuck, even when the source is idle",
            src,
            registry=r,
        )
        self.lag_bytes = Gauge(
            "cdc_logs_source_lag_bytes",
            "Bytes of the source's log written after the consumed position (Postgres slot: current WAL "
            "minus confirmed_flush_lsn; MariaDB/MySQL: binlog after the committed file:pos)",
            src,
            registry=r,
        )
        self.retained_bytes = Gauge(
            "cdc_logs_slot_retained_wal_bytes",
            "WAL the Postgres server keeps for the replication slot (current WAL minus restart_lsn)",
            [*src, "slot"],
            registry=r,
        )
        self.max_lag_exceeded = Gauge(
            "cdc_logs_source_max_lag_exceeded",
            "1 while the source's lag is past its max_lag, else 0 (only sources with max_lag)",
            src,
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "cdc_logs_heartbeat_age_seconds",
            "Seconds since a heartbeat of the source last reached the pipeline (sources with heartbeats)",
            src,
            registry=r,
        )
        self.sink_backlog_events = Gauge(
            "cdc_logs_sink_backlog_events",
            "Changes (and heartbeats) handed to the sink that it has not acknowledged yet",
            snk,
            registry=r,
        )
        self.sink_backlog_bytes = Gauge(
            "cdc_logs_sink_backlog_bytes",
            "Spooled bytes a fan-out sink has not delivered yet (fan-out only)",
            snk,
            registry=r,
        )
        self.sink_last_write_age = Gauge(
            "cdc_logs_sink_last_write_age_seconds",
            "Seconds since the sink last accepted a write (absent until its first)",
            snk,
            registry=r,
        )
        self.batch_size_target = Gauge(
            "cdc_logs_batch_size_target",
            "Events per batch adaptive batching aims at now (sync.batch_optimization, adaptive.py)",
            ["pipeline"],
            registry=r,
        )
        self.retention_overdue = Gauge(
            "cdc_logs_retention_overdue_files",
            "Files kept past retention_period_days because they hold data not yet delivered (the fan-out "
            "spool); never removed, reported until delivered",
            ["pipeline", "what"],
            registry=r,
        )
        self.ready = Gauge(
            "cdc_logs_ready", "1 when /ready would answer 200, else 0", ["pipeline"], registry=r
        )

    @classmethod
    def disabled(cls) -> Metrics:
        return cls("disabled", enabled=False)

    def set_refresh(self, refresh: Callable[[], None] | None) -> None:
        """Install the hook that sets the age gauges just before each scrape (the running pipeline's)."""
        self._refresh = refresh

    # -- counters and histograms ------------------------------------------------------------------
    def events_read(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        """Per batch, not per event: `counts` by (source, table, op)."""
        if not self.enabled:
            return
        for (source, table, op), n in counts.items():
            self.events.labels(self.pipeline, source, table, op).inc(n)

    def batch_written(self, size: int, seconds: float) -> None:
        if self.enabled:
            self.batches.labels(self.pipeline).inc()
            self.batch_seconds.labels(self.pipeline).observe(seconds)

    def batch_size(self, size: int) -> None:
        if self.enabled:
            self.batch_size_target.labels(self.pipeline).set(size)

    def sink_wrote(self, sink: str, seconds: float) -> None:
        if self.enabled:
            self.sink_write_seconds.labels(self.pipeline, sink).observe(seconds)

    def sink_error(self, sink: str, kind: str = "internal") -> None:
        if self.enabled:
            self.sink_errors.labels(self.pipeline, sink, kind).inc()

    def dead_lettered(self, sink: str, count: int) -> None:
        if self.enabled:
            self.dead_letters.labels(self.pipeline, sink).inc(count)

    def sink_lag(self, sink: str, lag_bytes: int) -> None:
        if self.enabled:
            self.sink_backlog_bytes.labels(self.pipeline, sink).set(lag_bytes)

    def source_error(self, source: str, kind: str = "internal") -> None:
        if self.enabled:
            self.source_errors.labels(self.pipeline, source, kind).inc()

    def merge_late_event(self, source: str) -> None:
        if self.enabled:
            self.merge_late.labels(self.pipeline, source).inc()

    def middleware_late_event(self, middleware: str, action: str) -> None:
        if self.enabled:
            self.middleware_late.labels(self.pipeline, middleware, action).inc()

    def committed(self, source: str, position: Position) -> None:
        if self.enabled:
            self.commit_ts.labels(self.pipeline, source).set(time.time())

    def retention(
        self, what: str, *, removed: int = 0, unit: str = "records", overdue: int | None = None
    ) -> None:
        """A retention pass (retention.py): `removed` records or files of `what`, `overdue` files kept."""
        if not self.enabled:
            return
        if removed:
            self.retention_removed.labels(self.pipeline, what, unit).inc(removed)
        if overdue is not None:
            self.retention_overdue.labels(self.pipeline, what).set(overdue)

    # -- gauges set by the lag monitor and the refresh hook ---------------------------------------
    def source_lag(
        self,
        source: str,
        *,
        seconds: float | None,
        lag_bytes: int | None,
        retained_bytes: int | None,
        slot: str | None,
        exceeded: bool | None,
    ) -> None:
        if not self.enabled:
            return
        if seconds is not None:
            self.lag_seconds.labels(self.pipeline, source).set(seconds)
        if lag_bytes is not None:
            self.lag_bytes.labels(self.pipeline, source).set(lag_bytes)
        if retained_bytes is not None and slot is not None:
            self.retained_bytes.labels(self.pipeline, source, slot).set(retained_bytes)
        if exceeded is not None:
            self.max_lag_exceeded.labels(self.pipeline, source).set(1 if exceeded else 0)

    def ages(
        self,
        *,
        checkpoint: Mapping[str, float],
        heartbeat: Mapping[str, float],
        sink_backlog: Mapping[str, int],
        sink_last_write: Mapping[str, float],
        ready: bool | None,
    ) -> None:
        """The scrape-time gauges (seconds are already ages)."""
        if not self.enabled:
            return
        for source, age in checkpoint.items():
            self.checkpoint_age.labels(self.pipeline, source).set(age)
        for source, age in heartbeat.items():
            self.heartbeat_age.labels(self.pipeline, source).set(age)
        for sink, n in sink_backlog.items():
            self.sink_backlog_events.labels(self.pipeline, sink).set(n)
        for sink, age in sink_last_write.items():
            self.sink_last_write_age.labels(self.pipeline, sink).set(age)
        if ready is not None:
            self.ready.labels(self.pipeline).set(1 if ready else 0)

    def names(self) -> set[str]:
        """Every metric family this registry exports (as scraped: counters with `_total`)."""
        found: set[str] = set()
        for family in self.registry.collect():
            if family.type == "counter":
                found.add(family.name + "_total")
            elif family.type == "histogram":
                found |= {family.name + s for s in ("_bucket", "_sum", "_count")}
            else:
                found.add(family.name)
        return found

    def render(self) -> bytes:
        with self._render_lock:
            refresh = self._refresh
            if refresh is not None:
                with contextlib.suppress(Exception):  # a scrape never fails on an age
                    refresh()
            text = generate_latest(self.registry).decode()
        # Labels are configured names (a source named after its DSN, say): redacted like any output.
        return redact(text).encode()


def table_label(source: SourceInfo) -> str:
    """The `table` label: schema.table (Postgres, Oracle), db.table (MariaDB/MySQL, SQLite's `main`),
    the bare name only when the source has neither, so same-named tables never share a series."""
    namespace = source.schema or source.db
    return f"{namespace}.{source.table}" if namespace else source.table
