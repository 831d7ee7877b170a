"""OpenTelemetry spans, one per batch from read to durable, exported over OTLP/HTTP.

A batch's span starts when the batch's first item was taken from the queue and ends when every sink
holds the batch and its positions may be committed (with fan-out, sinks acknowledge later, on their own
threads; stateful batch middleware, stages.py, may hold commits back to its last snapshot: the span
stays open until then). It is named `cdc.batch` and carries

  cdc.pipeline                      the pipeline's name
  cdc.sources                       the sources whose changes the batch holds
  cdc.position.first / .last        the first and last source position in the batch (Position.describe);
                                    with several sources also cdc.source.<name>.position.first / .last
  cdc.events                        changes in the batch (after the per-event transforms, before
                                    batch middleware, stages.py, which may add or drop some)
  cdc.sinks                         the destinations' names
  cdc.outcome                       durable | not_durable (the run stopped first: it is replayed on the
                                    next start) | failed (the run ended with an error, set as the span's
                                    status, redacted like every message)

Batches with no change (heartbeats, positions of filtered changes only) get no span.

Off by default: without the `opentelemetry` middleware the pipeline holds no tracer and pays one `if`
per batch, nothing per event. With it, a batch that the sampler (`sampling_rate`, trace-ID ratio) does
not pick costs one non-recording span; the attributes are computed only for recorded spans. Spans are
exported by the SDK's BatchSpanProcessor on its own thread, so a slow or absent collector never slows
the pipeline: spans that cannot be exported are dropped (a warning says so, at most every 5 minutes),
the data is not affected. The SDK's own log lines (the `opentelemetry` stdlib logger: "Transient error
... retrying", "Failed to export spans batch") would reach stderr as bare text through Python's
last-resort handler; they are routed into cdc-logs' structured log at debug level instead (that warning
already says spans are dropped), redacted, with the endpoint shown as in cdc-logs' own lines.

The libraries are optional (`pip install 'cdc-logs[otel]'`): they are imported only when a pipeline with
the middleware is built, and a missing one is a config error naming that command.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.redact import redact
from cdc_logs.position import Position

log = get_logger(__name__)

INSTALL = "pip install 'cdc-logs[otel]'"
_PACKAGES = "opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http"
_WARN_EVERY_S = 300.0

Mark = tuple[int, str, Position | None, bool]  # the pipeline's (seq, source, position, boundary)


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """What the `opentelemetry` middleware configures (transforms/opentelemetry.py)."""

    service_name: str
    endpoint: str  # the full OTLP/HTTP traces URL (…/v1/traces)
    sampling_rate: float
    timeout_s: float = 5.0  # per export, retries included: also bounds the flush at the end of a run


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of `endpoint`: a bare collector address gets the standard /v1/traces."""
    parts = urlsplit(endpoint)
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def is_jaeger_thrift(endpoint: str) -> bool:
    """Jaeger's legacy Thrift collector (the seed's http://jaeger:14268/api/traces) takes no OTLP."""
    return urlsplit(endpoint).path.rstrip("/") == "/api/traces"


def _import_sdk() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
        from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
        from opentelemetry.trace import Status, StatusCode
    except ImportError as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            f"the opentelemetry middleware needs {_PACKAGES}, which are not installed ({exc.name})",
            INSTALL,
        ) from exc
    return (
        OTLPSpanExporter,
        Resource,
        TracerProvider,
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
        TraceIdRatioBased,
        Status,
        StatusCode,
    )


class _SdkLogs(logging.Handler):
    """The OpenTelemetry SDK's stdlib log records, as cdc-logs debug lines (redacted; the endpoint's
    host and port, which the SDK's connection errors spell out, replaced by the shown endpoint)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.endpoints: dict[str, str] = {}  # what to replace -> what to show

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            for raw, shown in self.endpoints.items():
                message = message.replace(raw, shown)
            log.debug("tracing: opentelemetry sdk", sdk_logger=record.name, sdk_level=record.levelname,
                      message=redact(message))  # fmt: skip
        except Exception:  # a log line must never break the export thread
            self.handleError(record)


_SDK_LOGS = _SdkLogs()


def _route_sdk_logs(endpoint: str, shown: str) -> None:
    """Send the `opentelemetry` logger's records to cdc-logs' log only (idempotent)."""
    parts = urlsplit(endpoint)
    _SDK_LOGS.endpoints[endpoint] = shown
    if parts.hostname:
        # requests' "HTTPConnectionPool(host='h', port=p)" and the bare host:port
        _SDK_LOGS.endpoints[f"host='{parts.hostname}', port={parts.port}"] = f"endpoint='{shown}'"
        if parts.netloc:
            _SDK_LOGS.endpoints[parts.netloc] = urlsplit(shown).netloc or "***"
    sdk = logging.getLogger("opentelemetry")
    if _SDK_LOGS not in sdk.handlers:
        sdk.addHandler(_SDK_LOGS)
    sdk.propagate = False  # not to the root logger nor the last-resort handler (bare stderr text)


def check_installed() -> None:
    """A CONFIG error naming the install command when the OpenTelemetry libraries are missing."""
    _import_sdk()


class BatchTracer:
    """The pipeline's tracer: `batch_started` when a batch is cut, `batch_durable` at every commit,
    `close` at the end of the run. Called on the pipeline's main thread only."""

    def __init__(self, settings: TracingSettings, pipeline: str, sinks: Sequence[str]) -> None:
        (
            exporter_cls,
            resource_cls,
            provider_cls,
            processor_cls,
            exporter_base,
            result_cls,
            sampler_cls,
            self._status_cls,
            self._code,
        ) = _import_sdk()
        self.settings = settings
        self.pipeline = pipeline
        self.sinks = list(sinks)
        endpoint = settings.endpoint
        shown = redact(endpoint)
        _route_sdk_logs(endpoint, shown)

        class _Reporting(exporter_base):  # type: ignore[misc, valid-type]
            """The OTLP exporter, warning (rate-limited) when the collector does not take the spans."""

            def __init__(self) -> None:
                self.inner = exporter_cls(endpoint=endpoint, timeout=settings.timeout_s)
                self.warned = 0.0
                self.failed = 0

            def export(self, spans: Any) -> Any:
                result = self.inner.export(spans)
                if result != result_cls.SUCCESS:
                    self.failed += len(spans)
                    now = time.monotonic()
                    if not self.warned or now - self.warned >= _WARN_EVERY_S:
                        self.warned = now
                        log.warning(
                            "tracing: the collector did not take the spans; they are dropped (the data "
                            "is not affected)",
                            endpoint=shown,
                            spans_dropped_so_far=self.failed,
                        )
                return result

            def shutdown(self) -> None:
                self.inner.shutdown()

            def force_flush(self, timeout_millis: int = 30000) -> bool:
                return bool(self.inner.force_flush(timeout_millis))

        self._provider = provider_cls(
            resource=resource_cls.create({"service.name": settings.service_name}),
            sampler=sampler_cls(settings.sampling_rate),
        )
        self._provider.add_span_processor(processor_cls(_Reporting()))
        self._tracer = self._provider.get_tracer("cdc_logs")
        self._open: deque[tuple[int, Any]] = deque()  # (last seq of the batch, its span), in order
        log.info(
            "tracing on",
            endpoint=shown,
            service_name=settings.service_name,
            sampling_rate=settings.sampling_rate,
        )

    def batch_started(self, started: float, batch: Sequence[ChangeEvent], marks: Sequence[Mark]) -> None:
        """A batch was cut; `started` is the time.monotonic() its first item was taken from the queue."""
        if not batch or not marks:
            return
        start_ns = time.time_ns() - int((time.monotonic() - started) * 1e9)
        span = self._tracer.start_span("cdc.batch", start_time=start_ns)
        if not span.is_recording():  # not sampled: nothing to compute, nothing to end
            return
        span.set_attributes(self._attributes(batch, marks))
        self._open.append((marks[-1][0], span))

    def _attributes(self, batch: Sequence[ChangeEvent], marks: Sequence[Mark]) -> dict[str, Any]:
        sources = sorted({m[1] for m in marks})
        attrs: dict[str, Any] = {
            "cdc.pipeline": self.pipeline,
            "cdc.sources": sources,
            "cdc.events": len(batch),
            "cdc.sinks": self.sinks,
        }
        # Usually the first and last marks hold positions: O(1), not a walk over the batch.
        first = next((m[2] for m in marks if m[2] is not None), None)
        last = next((m[2] for m in reversed(marks) if m[2] is not None), None)
        if first is not None and last is not None:
            attrs["cdc.position.first"] = first.describe()
            attrs["cdc.position.last"] = last.describe()
        if len(sources) > 1:
            ends: dict[str, list[Position]] = {}
            for _, source, position, _ in marks:
                if position is not None:
                    ends.setdefault(source, [position, position])[1] = position
            for source, (begin, end) in ends.items():
                attrs[f"cdc.source.{source}.position.first"] = begin.describe()
                attrs[f"cdc.source.{source}.position.last"] = end.describe()
        return attrs

    def batch_durable(self, durable_seq: int) -> None:
        """Everything up to `durable_seq` is in every sink and committed: end those batches' spans."""
        while self._open and self._open[0][0] <= durable_seq:
            _, span = self._open.popleft()
            span.set_attribute("cdc.outcome", "durable")
            span.end()

    def close(self, error: BaseException | None = None) -> None:
        """End the run: spans still open end as not durable (or failed), then flush the exporter."""
        while self._open:
            _, span = self._open.popleft()
            if error is None:
                span.set_attribute("cdc.outcome", "not_durable")
            else:
                span.set_attribute("cdc.outcome", "failed")
                message = error.message if isinstance(error, CdcError) else f"{type(error).__name__}"
                span.set_status(self._status_cls(self._code.ERROR, redact(message)))
            span.end()
        self._provider.shutdown()  # exports what is left (bounded by the exporter's timeout)


def for_pipeline(settings: TracingSettings | None, pipeline: str, sinks: Sequence[str]) -> BatchTracer | None:
    return None if settings is None else BatchTracer(settings, pipeline, sinks)
