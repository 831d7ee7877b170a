"""Writing a batch to one sink: retries, and rejected events isolated into dead letters.

Both delivery paths use it: the pipeline's direct path (one sink) and each fan-out worker, so a sink
is driven the same way whether it is alone or one of many.

- A transient failure (SINK_TRANSIENT, TIMEOUT, CONNECTION) retries the whole batch with the shared
  backoff (`retry.RetryPolicy`) until `max_attempts`, then stops the pipeline with the error.
- A rejection (SINK_REJECTED: a value the target cannot hold, a missing column...) is narrowed down
  by halving the batch, so the events the sink accepts are delivered in order and only the ones it
  refuses on their own go to the dead-letter file with the reason (deadletter.py: the record
  format). Without a dead-letter destination the pipeline stops with the error instead. Nothing is
  skipped silently.
- Any other error (configuration, permissions) stops the pipeline with its hint.

A dead letter is fsync'd before the batch counts as delivered, because the checkpoint moves past it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from cdc_logs.deadletter import DeadLetterDir
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, Directive, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.status import PipelineStatus
from cdc_logs.retry import RetryPolicy
from cdc_logs.sinks.base import Sink, as_sink_error

log = get_logger(__name__)


class Delivery:
    """Delivers batches to sinks (see the module docstring). `stop` cuts retries short."""

    def __init__(
        self,
        retry: RetryPolicy,
        *,
        stop: threading.Event,
        dead_letters: DeadLetterDir | None = None,
        metrics: Metrics | None = None,
        status: PipelineStatus | None = None,
    ) -> None:
        self.retry = retry
        self.stop = stop
        self.dead_letters = dead_letters
        self.metrics = metrics or Metrics.disabled()
        self.status = status or PipelineStatus()
        # Sinks whose open() has failed at least once (down, in their open backoff), as opposed to
        # ones still in their first attempt: a graceful drain waits for the latter only (fanout.py).
        self.open_failed: set[str] = set()

    def open(self, sink: Sink) -> bool:
        """Open `sink`, retrying a transient failure (the destination is down) with the same backoff
        as a write, so a run can start while a destination is away. False: stopped first."""
        attempt = 0
        while True:
            attempt += 1
            try:
                sink.open()
                return True
            except Exception as exc:
                error = as_sink_error(exc)
                self.open_failed.add(sink.name)
                self.metrics.sink_error(sink.name, error.kind.value)
                self.status.sink_failed(sink.name, error.message)  # /ready names why it is not writing
                if error.directive is not Directive.RETRY or self.retry.exhausted(attempt):
                    log.error("sink failed to open", sink=sink.name, attempt=attempt, error=str(error))
                    raise error from (exc if error is not exc else None)
                delay = self.retry.backoff(attempt)
                log.warning(
                    "sink unavailable, retrying",
                    sink=sink.name,
                    attempt=attempt,
                    retry_in_s=delay,
                    error=error.message,
                )
                if self.stop.wait(delay):
                    return False

    def deliver(self, sink: Sink, events: Sequence[ChangeEvent]) -> bool:
        """Write `events` to `sink` durably (rejected ones dead-lettered). False: stopped first, so
        the batch may be only partly written and must not be acknowledged."""
        if not events:
            return True
        return self._write(sink, events)

    def _write(self, sink: Sink, events: Sequence[ChangeEvent]) -> bool:
        attempt = 0
        while True:
            attempt += 1
            try:
                started = time.monotonic()
                sink.write(events)
                self.metrics.sink_wrote(sink.name, time.monotonic() - started)
                self.status.sink_written(sink.name)
                return True
            except Exception as exc:
                error = as_sink_error(exc)
                self.metrics.sink_error(sink.name, error.kind.value)
                self.status.sink_failed(sink.name, error.message)
                if error.directive is Directive.RETRY:
                    if self.retry.exhausted(attempt):
                        log.error(
                            "sink failed, retries exhausted",
                            sink=sink.name,
                            attempt=attempt,
                            error=str(error),
                        )
                        raise error from exc
                    delay = self.retry.backoff(attempt)
                    log.warning(
                        "sink write failed, retrying",
                        sink=sink.name,
                        attempt=attempt,
                        retry_in_s=delay,
                        error=error.message,
                    )
                    if self.stop.wait(delay):
                        return False
                    continue
                if error.kind is not ErrorKind.SINK_REJECTED or self.dead_letters is None:
                    log.error("sink failed", sink=sink.name, error=str(error))
                    raise error from exc
                return self._isolate(sink, events, error)

    def _isolate(self, sink: Sink, events: Sequence[ChangeEvent], error: CdcError) -> bool:
        """The sink refused `events`: deliver the acceptable ones, dead-letter the rest, in order."""
        assert self.dead_letters is not None
        if len(events) == 1:
            path = self.dead_letters.write(sink.name, events, error)
            self.metrics.dead_lettered(sink.name, 1)
            self.status.sink_dead_lettered(sink.name, 1, error.message)
            event = events[0]
            log.error(
                "event dead-lettered",
                sink=sink.name,
                table=event.source.qualified_table,
                position=event.position.describe() if event.position is not None else None,
                path=str(path),
                error=error.message,
            )
            return True
        middle = len(events) // 2
        return self._write(sink, events[:middle]) and self._write(sink, events[middle:])
