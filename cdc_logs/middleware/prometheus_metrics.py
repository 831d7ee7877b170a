"""The `prometheus_metrics` middleware (the seed's): the existing /metrics endpoint, on `metrics_port`.

cdc-logs always has its Prometheus metrics (observability/metrics.py, docs/operations.md); this entry
only serves them: it turns `health_checks` on at `metrics_port` (pipeline_options.check, on every load: a
different `health_checks.port` is a config error, since /metrics, /health and /ready share one port).
`custom_metrics` names the seed's metrics, each served under that name too, as a copy of the cdc-logs
metric it means (CUSTOM below); a name not there, or the wrong type, is a config error listing them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Literal

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from pydantic import ConfigDict, Field, field_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.observability.metrics import Metrics
from cdc_logs.pipeline_options import PipelineOption

# seed name -> (type, the cdc-logs metric it is, what it counts, the Metrics attribute holding it)
CUSTOM: dict[str, tuple[str, str, str, str]] = {
    "records_processed_total": (
        "counter",
        "cdc_logs_events_total",
        "change events read, by source, table and op",
        "events",
    ),
    "processing_latency_seconds": (
        "histogram",
        "cdc_logs_batch_write_seconds",
        "seconds to hand a batch to every sink (durable in each, without fan-out)",
        "batch_seconds",
    ),
}


def _available() -> str:
    return ", ".join(f"{n} ({t}: {m})" for n, (t, m, _, _) in CUSTOM.items())


class CustomMetric(ConfigModel):
    """One of the seed's metric names, served as a copy of the cdc-logs metric it means."""

    name: str = Field(
        description="records_processed_total or processing_latency_seconds.",
        examples=["records_processed_total"],
    )
    type: Literal["counter", "histogram", "gauge", "summary"] = Field(
        description="Its type: counter (records_processed_total) or histogram (processing_latency_seconds).",
        examples=["counter"],
    )


class PrometheusParams(ConfigModel):
    """The port of /metrics and the seed's metric names."""

    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="TCP port of /metrics (with /health, /ready and /status): sets health_checks.port and "
        "turns health_checks on; a different health_checks.port is a config error. Default: "
        "health_checks.port.",
        examples=[9090],
    )
    custom_metrics: list[CustomMetric] = Field(
        default_factory=list,
        description="Seed metric names also served: records_processed_total (counter) is "
        "cdc_logs_events_total, processing_latency_seconds (histogram) is cdc_logs_batch_write_seconds; "
        "other names are refused (every cdc-logs metric is always served, docs/operations.md).",
        examples=[[{"name": "records_processed_total", "type": "counter"}]],
    )

    @field_validator("custom_metrics")
    @classmethod
    def _known(cls, value: list[CustomMetric]) -> list[CustomMetric]:
        for metric in value:
            known = CUSTOM.get(metric.name)
            if known is None:
                raise ValueError(
                    f"custom metric {metric.name!r} is not one cdc-logs has; available: {_available()} "
                    "(every cdc_logs_* metric of docs/operations.md is served anyway)"
                )
            if known[0] != metric.type:
                raise ValueError(f"custom metric {metric.name!r} is a {known[0]}, not a {metric.type}")
        return value


class PrometheusMetricsConfig(ConfigModel):
    """Serve the Prometheus metrics on `metrics_port` (the seed's middleware; the metrics themselves are
    always there, docs/operations.md)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "prometheus_metrics", "params": {"metrics_port": 9090}}]}
    )

    type: Literal["prometheus_metrics"] = Field(description="Selects this middleware.")
    params: PrometheusParams = Field(default_factory=PrometheusParams, description="Port and names.")


class MetricsOption(PipelineOption):
    def __init__(self, custom: list[str]) -> None:
        self.custom = custom

    def expose(self, metrics: Metrics) -> None:
        """Serve the custom names from `metrics`' registry (once per registry: cron runs share it)."""
        if not metrics.enabled or not self.custom:
            return
        done = _exposed.setdefault(metrics.registry, set())
        for name in self.custom:
            if name not in done:
                metrics.registry.register(_Alias(metrics, name))
                done.add(name)


_exposed: weakref.WeakKeyDictionary[CollectorRegistry, set[str]] = weakref.WeakKeyDictionary()


class _Alias:
    """A collector re-serving one cdc-logs metric family under a seed name (same samples and labels)."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        kind, self.target, self.help, attribute = CUSTOM[name]
        self.source = getattr(metrics, attribute)  # the metric object itself: the registry holds us too
        self.name = name
        self.kind = kind
        # prometheus_client names counter families without _total
        self.base = name.removesuffix("_total") if kind == "counter" else name
        self.target_base = self.target.removesuffix("_total") if kind == "counter" else self.target

    def describe(self) -> list[Metric]:
        return [Metric(self.base, self.help, self.kind)]

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            if family.name != self.target_base:
                continue
            out = Metric(self.base, f"{self.help} (the same as {self.target})", self.kind)
            for sample in family.samples:
                name = self.base + sample.name[len(self.target_base) :]
                out.add_sample(name, sample.labels, sample.value, sample.timestamp, sample.exemplar)
            yield out


@registry.transform(PrometheusMetricsConfig)
def build(cfg: PrometheusMetricsConfig) -> MetricsOption:
    return MetricsOption([m.name for m in cfg.params.custom_metrics])
