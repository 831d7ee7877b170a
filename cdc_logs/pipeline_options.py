"""Middleware entries that configure the pipeline instead of changing events.

`opentelemetry` and `prometheus_metrics` (cdc_logs/middleware/) are written in `plugins.middleware`
like transforms (the seed's shape) and registered as transforms, but they touch no event (nor a batch:
they are not stages.py's batch middleware): their build functions return a `PipelineOption`, which
build.py takes out of the event path (so it costs nothing per event) and hands to what it configures
(tracing, the metrics endpoint).

`check(config)` holds the checks across entries that one entry's model cannot make: each option at most
once, and `prometheus_metrics`'s port against `health_checks` (config.py calls it on every load).
`warnings(config)`: what is accepted but will not act as written (`config validate` prints them, `run`
logs them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from cdc_logs.envelope import ChangeEvent
from cdc_logs.transforms.base import Transform

if TYPE_CHECKING:
    from cdc_logs.config import PipelineConfig

_O = TypeVar("_O", bound="PipelineOption")


class PipelineOption(Transform):
    """A middleware entry that sets a pipeline option; never in the event path (build.py drops it)."""

    def apply(self, event: ChangeEvent) -> ChangeEvent | None:  # not called: kept off the event path
        return event


def transforms(built: Iterable[Transform]) -> list[Transform]:
    """The built plugins that change events, in order (options taken out)."""
    return [t for t in built if not isinstance(t, PipelineOption)]


def option(built: Iterable[Transform], kind: type[_O]) -> _O | None:
    """The one option of `kind` among the built plugins, if any (check() refused several)."""
    return next((t for t in built if isinstance(t, kind)), None)


def check(config: PipelineConfig) -> None:
    """Cross-entry checks; raises ValueError (a config error naming the fields)."""
    seen: dict[str, int] = {}
    for entry in config.plugins.all():
        kind = str(getattr(entry, "type", ""))
        if kind in ("opentelemetry", "prometheus_metrics"):
            seen[kind] = seen.get(kind, 0) + 1
    repeated = sorted(k for k, n in seen.items() if n > 1)
    if repeated:
        raise ValueError(f"plugins: {', '.join(repeated)} given more than once; give each once")
    for entry in config.plugins.all():
        if getattr(entry, "type", None) == "prometheus_metrics":
            _metrics_port(config, entry.params)  # type: ignore[attr-defined]


def warnings(config: PipelineConfig) -> list[str]:
    from cdc_logs.observability.tracing import is_jaeger_thrift

    notes: list[str] = []
    for entry in config.plugins.all():
        kind = getattr(entry, "type", None)
        params: Any = getattr(entry, "params", None)
        if kind == "opentelemetry" and is_jaeger_thrift(params.endpoint):
            notes.append(
                "plugins: opentelemetry endpoint ends in /api/traces, Jaeger's legacy Thrift collector, "
                "which takes no OTLP: spans sent there are refused; Jaeger takes OTLP/HTTP on port 4318 at "
                "/v1/traces (e.g. http://jaeger:4318)"
            )
        unsalted = kind == "gdpr_compliance" and not (params.salt_file or params.salt.get_secret_value())
        if unsalted and params.strategy == "hash":
            notes.append(
                "plugins: gdpr_compliance hashes without a salt: equal values hash alike everywhere and "
                "short values (phone numbers, emails) can be recovered by hashing candidates; set "
                "params.salt from the environment (${PII_SALT}) or params.salt_file"
            )
    return notes


def _metrics_port(config: PipelineConfig, params: Any) -> None:
    """prometheus_metrics serves the existing /metrics endpoint (health_checks) on `metrics_port`."""
    health = config.health_checks
    port = params.metrics_port or health.port
    explicit = health.model_fields_set
    if "enabled" in explicit and not health.enabled:
        raise ValueError(
            f"plugins: prometheus_metrics serves /metrics on port {port}, but health_checks.enabled is "
            "false; remove one of the two"
        )
    if health.enabled and "port" in explicit and health.port != port:
        raise ValueError(
            f"plugins: prometheus_metrics.metrics_port {port} and health_checks.port {health.port} differ: "
            "/metrics is served with /health and /ready on one port; give the same port in both (or drop "
            "metrics_port)"
        )
    health.enabled = True
    health.port = port
