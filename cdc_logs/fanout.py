"""Fan-out: deliver every batch to several sinks, each at its own pace, through one spool.

The pipeline appends each flush to the spool (spool.py: the event objects themselves, spilled to
disk only when a sink falls far behind) and moves on. One worker thread per sink reads the spool
from its own cursor, delivers with `delivery.Delivery` (the same retries and dead letters as a
single sink), and acknowledges to the checkpointer; the source checkpoint is therefore the minimum
over the sinks. A sink that is down keeps retrying (up to `max_attempts`, backoff capped at
`max_backoff_s`) while the others deliver; it catches up from its cursor when it returns, in order.
That holds when the run starts too: each worker opens its own sink, with the same retries.
A sink whose retries run out, or that fails for good, stops the pipeline with its error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cdc_logs.adaptive import AdaptiveBatch
from cdc_logs.checkpoint import Checkpointer
from cdc_logs.deadletter import DeadLetterDir
from cdc_logs.delivery import Delivery
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.status import PipelineStatus
from cdc_logs.retry import RetryPolicy
from cdc_logs.sinks.base import Sink
from cdc_logs.spool import Spool

log = get_logger(__name__)


class FanOut:
    def __init__(
        self,
        sinks: Sequence[Sink],
        checkpoint: Checkpointer,
        spool_dir: str | Path,
        *,
        retry: RetryPolicy,
        dead_letters: DeadLetterDir | None,
        max_spool_bytes: int,
        batch_events: int,
        metrics: Metrics,
        max_memory_bytes: int = 64 << 20,
        status: PipelineStatus | None = None,
        adaptive: AdaptiveBatch | None = None,
    ) -> None:
        self.sinks = list(sinks)
        self.checkpoint = checkpoint
        self.spool = Spool(
            spool_dir, [s.name for s in sinks], max_bytes=max_spool_bytes, max_memory_bytes=max_memory_bytes
        )
        self.batch_events = batch_events
        self.metrics = metrics
        self.failure: CdcError | None = None
        self._stop = threading.Event()
        # Workers keep delivering while the pipeline drains; only close() cuts their retries short.
        self.delivery = Delivery(
            retry, stop=self._stop, dead_letters=dead_letters, metrics=metrics, status=status
        )
        # Adaptive batching (adaptive.py): each sink's worker sizes its own reads by its write times.
        self._sizes = (
            {
                s.name: AdaptiveBatch(adaptive.min_size, adaptive.max_size, adaptive.target_s)
                for s in self.sinks
            }
            if adaptive is not None
            else {}
        )
        self._appended = 0  # highest seq appended (ack marker)
        self._opened: set[str] = set()  # sinks whose worker has opened them
        self._threads = [
            threading.Thread(target=self._work, args=(s,), name=f"sink-{s.name}", daemon=True)
            for s in self.sinks
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, batch: list[ChangeEvent], size: int, last_seq: int, stop: threading.Event) -> bool:
        """Append one flush (blocks while the spool is full). False if stopped while blocked."""
        self.check()
        ok = self.spool.append(batch, last_seq, size, stop)
        if ok:
            self._appended = last_seq
        else:
            self.check()  # a sink failed while the spool was full: its error, not a silent stop
        return ok

    def drain(self, timeout: float) -> bool:
        """Wait until every sink has acknowledged everything appended (graceful stop). A sink that
        failed to open (its destination down, the worker in its open backoff) cannot deliver in time,
        and nothing is committed until every sink has: no wait then, the rest is replayed on restart.
        A sink still in its first open attempt (connecting) is waited for: a fast one-time run would
        otherwise end before a slower destination had connected, having delivered nothing to it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.failure is not None or self.checkpoint.durable_seq() >= self._appended:
                return self.failure is None
            if any(s.name not in self._opened and s.name in self.delivery.open_failed for s in self.sinks):
                return False
            time.sleep(0.02)
        return False

    def undelivered(self) -> list[str]:
        """The sinks that have not acknowledged everything appended."""
        return self.checkpoint.behind(self._appended)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.spool.close()

    def batch_size(self) -> int | None:
        """With adaptive batching, the smallest of the sinks' batch sizes (where the pipeline cuts)."""
        return min((c.size for c in self._sizes.values()), default=None)

    def check(self) -> None:
        """Raise the error a sink worker stopped on, if any."""
        if self.failure is not None:
            raise self.failure

    # -- per-sink worker -------------------------------------------------------------------------
    def _work(self, sink: Sink) -> None:
        try:
            # Each worker opens its own sink: one that is down when the run starts retries here while
            # the others deliver, and catches up from its cursor once it is back.
            if not self.delivery.open(sink):
                return
            self._opened.add(sink.name)
            sizer = self._sizes.get(sink.name)
            while not self._stop.is_set():
                limit = sizer.size if sizer is not None else self.batch_events
                taken = self.spool.read(sink.name, limit, timeout=0.2)
                if not taken.chunks:
                    continue
                started = time.monotonic()
                if not self.delivery.deliver(sink, taken.events):
                    return  # stopping: the rest is replayed from the checkpoint
                if sizer is not None:
                    backlog = self.spool.lag_bytes(sink.name) > 0
                    sizer.observe(len(taken.events), time.monotonic() - started, backlog=backlog)
                self.checkpoint.ack(sink.name, taken.ack)
                self.delivery.status.sink_acked(sink.name, taken.ack)
                self.spool.release()
                self.metrics.sink_lag(sink.name, self.spool.lag_bytes(sink.name))
        except CdcError as exc:
            self.failure = exc
            self.spool.fail()
        except Exception as exc:
            self.failure = CdcError(
                ErrorKind.INTERNAL, f"sink worker {sink.name}: {type(exc).__name__}: {exc}"
            )
            self.spool.fail()
