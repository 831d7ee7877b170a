"""The `opentelemetry` middleware: a span per batch, exported over OTLP/HTTP (observability/tracing.py).

It changes no event: its build returns a `PipelineOption` that build.py hands to the pipeline's tracer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.observability.tracing import TracingSettings, check_installed, traces_url
from cdc_logs.pipeline_options import PipelineOption

_ALIASES = {"jaeger_endpoint": "endpoint", "trace_sampling_rate": "sampling_rate"}


class OpenTelemetryParams(ConfigModel):
    """Where spans go and how many (the seed's jaeger_endpoint and trace_sampling_rate are accepted)."""

    service_name: str = Field(
        "cdc-logs", min_length=1, description="The `service.name` of the spans.", examples=["evolvishub-cdc"]
    )
    endpoint: str = Field(
        "http://localhost:4318/v1/traces",
        pattern=r"^https?://",
        description="The OTLP/HTTP (protobuf) traces URL of a collector; an address without a path gets "
        "/v1/traces. Jaeger takes OTLP/HTTP on port 4318 (http://jaeger:4318/v1/traces); its legacy "
        "Thrift endpoint (:14268/api/traces, the seed's jaeger_endpoint) takes no OTLP: `config validate` "
        "and `run` warn. Headers (an API key) come from OTEL_EXPORTER_OTLP_HEADERS. Seed: "
        "jaeger_endpoint.",
        examples=["http://otel-collector:4318"],
    )
    sampling_rate: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of batches traced (trace-ID ratio sampling): 1 traces every batch, 0.1 one in "
        "ten. Seed: trace_sampling_rate.",
        examples=[0.1],
    )

    @model_validator(mode="before")
    @classmethod
    def _seed_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        merged: dict[str, Any] = {}
        for key, value in data.items():
            name = _ALIASES.get(str(key), str(key))
            if name in merged:
                raise ValueError(f"{key!r} repeats {name!r}; give it once")
            merged[name] = value
        return merged


class OpenTelemetryConfig(ConfigModel):
    """Trace every batch from read to durable with OpenTelemetry, exported over OTLP/HTTP (off unless
    given; needs `pip install 'cdc-logs[otel]'`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "opentelemetry",
                    "params": {"service_name": "cdc", "endpoint": "http://otel-collector:4318"},
                }
            ]
        }
    )

    type: Literal["opentelemetry"] = Field(description="Selects this middleware.")
    params: OpenTelemetryParams = Field(
        default_factory=OpenTelemetryParams, description="Service name, collector and sampling."
    )


class TracingOption(PipelineOption):
    def __init__(self, settings: TracingSettings) -> None:
        self.settings = settings


@registry.transform(OpenTelemetryConfig)
def build(cfg: OpenTelemetryConfig) -> TracingOption:
    check_installed()  # a missing library: a config error naming the pip install, before anything runs
    p = cfg.params
    return TracingOption(TracingSettings(p.service_name, traces_url(p.endpoint), p.sampling_rate))
