"""The pipeline: readers -> transforms -> sinks, with batching, retries and durable checkpoints.

Each reader runs in its own thread and feeds one bounded queue (backpressure: a slow sink slows the
readers instead of growing memory). The main thread cuts batches by count, bytes and time, applies the
transforms, writes the batch to every sink (each `write` returns only when durable), acknowledges it
to the checkpointer, then saves the committable positions to the offset store and tells the readers
(`reader.commit`). A crash at any instant therefore replays at most the batch in flight.

Failures are decided by `CdcError.directive`: RETRY backs off exponentially and tries again (a sink
batch is re-written whole by `delivery.Delivery`; a failed reader is reopened and resumed from the last
committed position by its own thread, so the delivery of what was already read never waits for it);
OPERATOR and STOP end the run with the error's hint. Events a sink refuses go to the dead-letter file
with the reason (delivery.py), and the run goes on.

A lag monitor thread (observability/lag.py) measures how far behind each source is (its server's log
through the reader's `lag_probe`, and the oldest change read but not yet in every sink, which the main
loop tracks per batch) and applies the sources' `max_lag` guards: warn, not ready, or stop the run.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cdc_logs.adaptive import AdaptiveBatch
from cdc_logs.checkpoint import Checkpointer
from cdc_logs.deadletter import DeadLetterDir
from cdc_logs.delivery import Delivery
from cdc_logs.envelope import ChangeEvent, Heartbeat, Undecodable
from cdc_logs.errors import CdcError, Directive, ErrorKind
from cdc_logs.fanout import FanOut
from cdc_logs.gctune import tune_for_streaming
from cdc_logs.handoff import Handoff
from cdc_logs.merge import TimestampMerge
from cdc_logs.observability.lag import LagGuard, LagMonitor, SourceLag
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.metrics import Metrics, table_label
from cdc_logs.observability.status import PipelineStatus
from cdc_logs.offsets.base import OffsetStore
from cdc_logs.position import Position
from cdc_logs.readers.base import Reader
from cdc_logs.retry import RetryPolicy
from cdc_logs.sinks.base import Sink
from cdc_logs.stages import BatchStage, StageRunner
from cdc_logs.transforms.base import Transform, apply_all

if TYPE_CHECKING:
    from cdc_logs.observability.tracing import BatchTracer
    from cdc_logs.retention import Retention

__all__ = ["BatchPolicy", "FanoutPolicy", "Pipeline", "PipelineStats", "RetryPolicy"]

log = get_logger(__name__)


@dataclass(slots=True)
class BatchPolicy:
    max_events: int = 1000
    max_bytes: int = 4 * 1024 * 1024
    max_wait_s: float = 0.2


@dataclass(slots=True)
class FanoutPolicy:
    """Deliver to several sinks independently through a bounded spool (see fanout.py)."""

    spool_dir: str
    max_spool_bytes: int = 1 << 30
    max_memory_bytes: int = 64 << 20


@dataclass(slots=True)
class _Failure:
    source: str
    error: BaseException


@dataclass(slots=True)
class _Idle:
    source: str


_Item = tuple[str, ChangeEvent | Heartbeat | Undecodable] | _Failure | _Idle


@dataclass
class PipelineStats:
    events: int = 0
    batches: int = 0
    dropped: int = 0
    undecodable: int = 0
    commits: dict[str, Position] = field(default_factory=dict)


class Pipeline:
    """Runs sources into sinks until stopped, a limit is reached, or (one_time) every source is idle."""

    def __init__(
        self,
        name: str,
        readers: dict[str, Reader],
        sinks: Sequence[Sink],
        offsets: OffsetStore,
        *,
        transforms: Sequence[Transform] = (),
        stages: Sequence[BatchStage] = (),
        state_dir: str | None = None,
        batch: BatchPolicy | None = None,
        retry: RetryPolicy | None = None,
        queue_size: int = 10_000,
        limit: int | None = None,
        stop_when_idle: bool = False,
        metrics: Metrics | None = None,
        fanout: FanoutPolicy | None = None,
        dead_letter_dir: str | None = None,
        retry_start: bool = True,
        status: PipelineStatus | None = None,
        merge_window_s: float | None = None,
        lag_guards: Mapping[str, LagGuard] | None = None,
        lag_interval_s: float = 5.0,
        adaptive: AdaptiveBatch | None = None,
        tracer: BatchTracer | None = None,
        retention: Retention | None = None,
    ) -> None:
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise CdcError(
                ErrorKind.CONFIG,
                f"destination names must be unique, got {names}",
                "give each destination a distinct `name`",
            )
        self.name = name
        self.readers = readers
        self.sinks = list(sinks)
        self.offsets = offsets
        self.transforms = list(transforms)
        if not self.transforms:  # events leave as the readers built them (stages reset what they change)
            for each in readers.values():
                each.serialize_early()
        self._stages = StageRunner(stages, state_dir, name)  # batch middleware (stages.py)
        self._mid_transaction: dict[str, bool] = {}  # source -> its last event read is not a boundary
        self._read_mid_transaction: dict[str, bool] = {}  # the same, up to the last item taken (_loop)
        self.batch = batch or BatchPolicy()
        self.retry = retry or RetryPolicy()
        self.limit = limit
        self.stop_when_idle = stop_when_idle
        self.metrics = metrics or Metrics.disabled()
        self.retry_start = retry_start
        self._tracer = tracer  # opentelemetry: a span per batch (observability/tracing.py); None = off
        self._retention = retention  # retention_period_days (retention.py)
        self.stats = PipelineStats()
        self.status = (status or PipelineStatus()).attach(readers, names)
        self.ready = threading.Event()
        self._queue: Handoff[_Item] = Handoff(queue_size)  # a queue.Queue, cheaper per item
        self._stop = threading.Event()
        self._checkpoint = Checkpointer(names)
        self._threads: dict[str, threading.Thread] = {}
        self._idle: set[str] = set()
        self._servers: dict[str, str] = {}
        self._read_counts: Counter[tuple[str, str, str]] = Counter()
        self._progressed: dict[str, bool] = {}  # a source yielded something since its last failure
        # Lag (observability/lag.py): per source, (seq, source.ts_ms) of the first change of each batch
        # not yet in every sink; the head is the oldest change pending. One entry per batch, not event.
        self._batch_first_ts: dict[str, int] = {}
        self._pending: dict[str, deque[tuple[int, int]]] = {name: deque() for name in readers}
        self._committed: dict[str, Position | None] = {}
        self._guard_error: CdcError | None = None
        guards = dict(lag_guards or {})
        for source, guard in guards.items():
            reader = readers.get(source)
            if reader is None:
                raise CdcError(ErrorKind.CONFIG, f"max_lag given for unknown source {source!r}")
            if guard.max_lag.bytes is not None and type(reader).lag_probe is Reader.lag_probe:
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"source {source}: max_lag {guard.max_lag.text} is a size, but this source cannot "
                    "measure its lag in bytes (only postgresql, mysql and mariadb can)",
                    'give max_lag as a time instead, e.g. "10m"',
                )
        self._lag = LagMonitor(
            readers,
            guards=guards,
            committed=self._committed.get,
            oldest_pending_ms=self._oldest_pending_ms,
            report=self._report_lag,
            stop_pipeline=self._stop_for_lag,
            interval_s=lag_interval_s,
        )
        self.metrics.set_refresh(self._refresh_metrics)
        # merge_strategy timestamp_based (merge.py); without it, items go on in arrival order (key_based)
        self._merge = (
            TimestampMerge(readers, merge_window_s, max_held=queue_size, metrics=self.metrics)
            if merge_window_s is not None and len(readers) > 1
            else None
        )
        self._ready: deque[_Item] = deque()  # released by the merge, not yet taken by the main loop
        dead_letters = self._dead_letters = DeadLetterDir(dead_letter_dir) if dead_letter_dir else None
        self._delivery = Delivery(
            self.retry, stop=self._stop, dead_letters=dead_letters, metrics=self.metrics, status=self.status
        )
        # sync.batch_optimization (adaptive.py): the batch size follows the measured write time. On the
        # direct path the pipeline times each write; with fan-out each sink's worker sizes its own
        # writes, and the pipeline cuts at the smallest of their sizes.
        self._adaptive = adaptive
        if adaptive is not None:
            self._batch_size(adaptive.size)
        self._fanout: FanOut | None = None
        if fanout is not None:
            self._fanout = FanOut(
                self.sinks,
                self._checkpoint,
                fanout.spool_dir,
                retry=self.retry,
                dead_letters=dead_letters,
                max_spool_bytes=fanout.max_spool_bytes,
                max_memory_bytes=fanout.max_memory_bytes,
                batch_events=self.batch.max_events,
                metrics=self.metrics,
                status=self.status,
                adaptive=adaptive,
            )

    # -- control -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the pipeline to flush, commit and return (safe from signal handlers and threads)."""
        self._stop.set()
        self.status.stopping()
        for reader in self.readers.values():
            reader.stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- reader threads ------------------------------------------------------------------------
    def _open_reader(self, source: str) -> Position | None:
        """Open a source and find where it resumes (the last committed position, if any)."""
        reader = self.readers[source]
        reader.open()
        server = reader.server_identity()
        self._servers[source] = server
        start = self.offsets.resume_position(self.name, source, server)
        self._committed[source] = start
        log.info(
            "source started",
            source=source,
            server=server,
            resume_from=start.describe() if start else "beginning (snapshot or current end)",
        )
        return start

    def _start_with_retry(self, source: str) -> None:
        """Open a source, retrying retryable failures (a database still starting) with backoff, then
        start its thread."""
        attempt = 0
        while True:
            attempt += 1
            try:
                start = self._open_reader(source)
                break
            except CdcError as exc:
                retry = self.retry_start and exc.directive is Directive.RETRY
                if not retry or self.retry.exhausted(attempt) or self._stop.is_set():
                    raise
                delay = self.retry.backoff(attempt)
                log.warning(
                    "source unavailable, retrying",
                    source=source,
                    attempt=attempt,
                    retry_in_s=delay,
                    error=exc.message,
                )
                with contextlib.suppress(Exception):
                    self.readers[source].close()
                if self._stop.wait(delay):
                    raise
        thread = threading.Thread(
            target=self._supervise, args=(source, start), name=f"reader-{source}", daemon=True
        )
        self._threads[source] = thread
        thread.start()

    def _put(self, item: _Item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _supervise(self, source: str, start: Position | None) -> None:
        """The reader thread: stream, and after a retryable failure reopen the source and resume from
        the last committed position (events read since then come again: at-least-once). It runs on
        its own thread so that delivering what was already read never waits for a reconnect."""
        attempt = 0
        while True:
            failure = self._pump(source, start)
            if failure is None:
                self._put(_Idle(source))
                return
            while True:  # reconnect
                error = _as_cdc_error(failure)
                self.metrics.source_error(source, error.kind.value)
                self.status.source_failed(source, error.message)
                attempt = 1 if self._progressed.pop(source, False) else attempt + 1
                if (
                    error.directive is not Directive.RETRY
                    or self.retry.exhausted(attempt)
                    or self._stop.is_set()
                ):
                    self._put(_Failure(source, failure))
                    return
                delay = self.retry.backoff(attempt)
                log.warning(
                    "source failed, reconnecting",
                    source=source,
                    attempt=attempt,
                    retry_in_s=delay,
                    error=error.message,
                )
                with contextlib.suppress(Exception):
                    self.readers[source].close()
                if self._stop.wait(delay):
                    return
                try:
                    start = self._open_reader(source)
                    break
                except BaseException as exc:
                    failure = exc

    def _pump(self, source: str, start: Position | None) -> BaseException | None:
        """Feed the queue from one `stream()`; returns the exception that ended it, if any."""
        reader = self.readers[source]
        try:
            for item in reader.stream(start):
                if self._stop.is_set():
                    return None
                if item is None:
                    if not self._put(_Idle(source)):
                        return None
                    continue
                self._progressed[source] = True
                if not self._put((source, item)):
                    return None
            return None
        except BaseException as exc:  # the supervisor decides: reconnect, or hand to the main thread
            return exc

    # -- main loop -----------------------------------------------------------------------------
    def run(self) -> PipelineStats:
        tune_for_streaming()  # GC thresholds for a stream of short-lived events (gctune.py)
        try:
            if self._fanout is not None:
                self._fanout.start()  # each worker opens its sink, retrying while it is down (fanout.py)
            else:
                for sink in self.sinks:
                    if not self._delivery.open(sink):  # a sink down at start: retried like a write
                        return self.stats  # stopped first (still shut down: status, opened sinks)
            if self._stages:
                self._open_stages()
            for source in self.readers:
                self._start_with_retry(source)
            if self.metrics.enabled or self._lag.guards:  # tail (no metrics, no guards) opens no probe
                self._lag.start()
            if self._retention is not None:
                self._retention.start()
            self.ready.set()
            self.status.running()
            self._loop()
        finally:
            self._shutdown()
        if self._guard_error is not None:  # on_max_lag: stop (delivered and committed what it could)
            raise self._guard_error
        return self.stats

    def _loop(self) -> None:
        batch: list[ChangeEvent] = []
        seqs: list[int] = []  # seqs[i] is the sequence number of batch[i]
        marks: list[tuple[int, str, Position | None, bool]] = []
        size = 0
        deadline: float | None = None
        while True:
            # Short waits: a stop request must be seen promptly even with a long batch deadline.
            timeout = 0.2 if deadline is None else min(0.2, max(0.0, deadline - time.monotonic()))
            item = self._take(timeout)
            if isinstance(item, _Failure):  # the reader thread gave up: deliver what was read, then stop
                self._flush(batch, marks, size)
                self._finish_fanout()
                error = _as_cdc_error(item.error)
                raise error from (item.error if error is not item.error else None)
            if isinstance(item, _Idle):
                self._idle.add(item.source)
                self.status.source_idle(item.source)
            elif item is not None:
                # Numbered here, in the order the main loop hands events on: with several sources, a
                # number taken on a reader thread could reach the queue after a later one, and fan-out
                # could then commit it before any sink held it.
                source, payload = item
                seq = self._checkpoint.next_seq()
                self.status.source_moved(source)
                self._idle.discard(source)
                marks.append((seq, source, payload.position, payload.boundary))
                if payload.position is not None:
                    self._read_mid_transaction[source] = not payload.boundary
                if isinstance(payload, Undecodable):
                    if self._dead_letters is None:  # deliver what came before it, then stop at it
                        self._flush(batch, marks[:-1], size)
                        self._finish_fanout()
                    self._undecodable(source, payload)
                elif isinstance(payload, ChangeEvent):
                    # Counted here, reported per batch: a metrics label lookup per event is hot-path cost.
                    self._read_counts[(source, table_label(payload.source), payload.op._value_)] += 1
                    if payload.source.ts_ms and source not in self._batch_first_ts:
                        self._batch_first_ts[source] = payload.source.ts_ms
                    event = apply_all(self.transforms, payload) if self.transforms else payload
                    if event is None:
                        self.stats.dropped += 1
                    else:
                        batch.append(event)
                        seqs.append(seq)
                        size += len(event.to_json())
                        if deadline is None:
                            deadline = time.monotonic() + self.batch.max_wait_s
                elif isinstance(payload, Heartbeat):
                    self.status.source_heartbeat(source)
                if deadline is None:
                    deadline = time.monotonic() + self.batch.max_wait_s
            limit_hit = self.limit is not None and self.stats.events + len(batch) >= self.limit
            drained = (
                self.stop_when_idle
                and self._queue.empty()
                and not self._ready
                and (self._merge is None or self._merge.empty)
                and self._idle >= set(self.readers)
            )
            finishing = limit_hit or drained or self._stop.is_set()
            full = len(batch) >= self.batch.max_events or size >= self.batch.max_bytes
            if full and self._stages.stateful and any(self._read_mid_transaction.values()):
                # Stateful middleware's state can be saved only where no source is inside a
                # transaction (stages.py): a full batch grows to the transaction's end, up to 4x, so
                # back-to-back transactions do not hold the checkpoint back for long.
                full = len(batch) >= 4 * self.batch.max_events or size >= 4 * self.batch.max_bytes
            due = finishing or full or (deadline is not None and time.monotonic() >= deadline)
            if due and (batch or marks):
                if limit_hit and self.limit is not None and len(batch) > self.limit - self.stats.events:
                    # Deliver exactly the limit; positions past the last delivered event stay uncommitted.
                    keep = self.limit - self.stats.events
                    cutoff = seqs[keep - 1] if keep > 0 else 0
                    del batch[keep:]
                    marks = [m for m in marks if m[0] <= cutoff]
                    size = sum(len(e.to_json()) for e in batch)
                if self._tracer is not None and deadline is not None:  # span from the first item taken
                    self._tracer.batch_started(deadline - self.batch.max_wait_s, batch, marks)
                self._flush(batch, marks, size)
                batch, seqs, marks, size, deadline = [], [], [], 0, None
            if self._fanout is not None:
                self._commit()  # fan-out sinks acknowledge asynchronously
                self._fanout.check()
            if finishing:
                # A run that ends on its own (one_time drained, --limit reached) must not end as a
                # success while a destination still lacks what was read; a stop request may.
                self._finish_fanout(complete=not self._stop.is_set())
                return

    def _open_stages(self) -> None:
        """Give batch middleware the state saved with the committed positions (stages.py)."""
        committed: dict[str, str | None] = {}
        for source in self.readers:
            stored = self.offsets.load(self.name, source)
            committed[source] = stored.position if stored is not None else None
        dead = self._dead_letters
        refused = dead.write_middleware if dead is not None else None  # dead letters of stage "middleware"
        self._stages.open(committed, refused, {"metrics": self.metrics})

    def _take(self, timeout: float) -> _Item | None:
        """The next item for the main loop: from the queue, through the merge window if there is one.
        Sequence numbers are taken after this, so an event held in the window cannot be committed past."""
        merge = self._merge
        if merge is None or self._ready:
            if self._ready:
                return self._ready.popleft()
            try:
                return self._queue.get(timeout=timeout)
            except queue.Empty:
                return None
        due = merge.due_in(time.monotonic())
        try:
            item: _Item | None = self._queue.get(timeout=timeout if due is None else min(timeout, due))
        except queue.Empty:
            item = None
        if isinstance(item, tuple):
            merge.push(item[0], item[1], time.monotonic())
        elif isinstance(item, _Idle):
            merge.idle(item.source)
        self._ready.extend(merge.drain() if isinstance(item, _Failure) else merge.release(time.monotonic()))
        if item is not None and not isinstance(item, tuple):
            self._ready.append(item)  # idle marks and failures after what the merge released
        return self._ready.popleft() if self._ready else None

    def _flush(
        self,
        batch: list[ChangeEvent],
        marks: list[tuple[int, str, Position | None, bool]],
        size: int,
    ) -> None:
        if not marks:
            return
        if self._read_counts:
            self.metrics.events_read(self._read_counts)
            self._read_counts.clear()
        last_seq = marks[-1][0]
        if self._stages:
            # A batch may end inside a source transaction; positions then commit only up to its last
            # boundary, so state that counts the batch's tail must not be saved with them (stages.py).
            for _, source, position, boundary in marks:
                if position is not None:
                    self._mid_transaction[source] = not boundary
            resumable = not any(self._mid_transaction.values())
            batch = self._stages.process(batch, last_seq, resumable=resumable)
            for event in batch:  # a stage may have changed an event whose JSON was cached when read
                event.encoded = None
            size = sum(len(e.to_json()) for e in batch)
        for source, ts_ms in self._batch_first_ts.items():
            self._pending[source].append((last_seq, ts_ms))
        self._batch_first_ts.clear()
        for seq, source, position, boundary in marks:
            self._checkpoint.track(seq, source, position, boundary)
        self.status.submitted(last_seq)
        started = time.monotonic()
        if self._fanout is not None:
            if not self._fanout.submit(batch, size, last_seq, self._stop):
                return  # stopped while the spool was full: nothing past the checkpoint is lost
        else:
            for sink in self.sinks:
                if not self._delivery.deliver(sink, batch):
                    return  # stopped while retrying: not acknowledged, so replayed on restart
                self.status.sink_acked(sink.name, last_seq)
            for sink in self.sinks:
                self._checkpoint.ack(sink.name, last_seq)
            if self._adaptive is not None and batch:
                took = time.monotonic() - started
                self._batch_size(self._adaptive.observe(len(batch), took, backlog=not self._queue.empty()))
        if self._fanout is not None and self._adaptive is not None:
            self._batch_size(self._fanout.batch_size() or self.batch.max_events)
        if batch:
            self.metrics.batch_written(len(batch), time.monotonic() - started)
        self.stats.events += len(batch)
        self.stats.batches += 1 if batch else 0
        self._commit()

    def _batch_size(self, size: int) -> None:
        """Adaptive batching's size for the next batch (adaptive.py), shown in status and metrics."""
        self.batch.max_events = size
        self.status.batch_size(size)
        self.metrics.batch_size(size)

    def _finish_fanout(self, complete: bool = False) -> None:
        """On the way out, give fan-out sinks a bounded time to deliver what is spooled, then commit.

        `complete`: the run ends on its own (one_time, --limit) and its exit status says whether
        everything read reached every destination; a destination still behind is then an error
        (nothing past the committed position is lost: the next run replays it)."""
        if self._fanout is None:
            return
        durable = self._checkpoint.durable_seq()
        delivered = self._fanout.drain(timeout=30)
        while complete and not delivered and self._fanout.failure is None:
            # A slow destination still catching up gets more time as long as it makes progress.
            if self._checkpoint.durable_seq() <= durable:
                break
            durable = self._checkpoint.durable_seq()
            delivered = self._fanout.drain(timeout=30)
        if not delivered:
            log.warning("not every sink delivered before stopping; the rest is replayed on restart")
        self._commit()
        if self._fanout.failure is not None:
            raise self._fanout.failure
        if complete and not delivered:
            behind = ", ".join(self._fanout.undelivered()) or "a destination"
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"the run ended before {behind} took every change it read: the committed "
                "position stays before them, so the next run replays them",
                f"check that {behind} is reachable (cdc-logs status, the log above), then run again",
            )

    def _undecodable(self, source: str, item: Undecodable) -> None:
        """Dead-letter a change the reader could not decode (durably, before its position can be
        committed), or stop when dead letters are off. The log names the table, never the data."""
        if self._dead_letters is None:
            raise CdcError(
                ErrorKind.DECODE,
                f"source {source}: a change of {item.table} at {item.position.describe()} cannot be decoded: "
                f"{item.reason}",
                (item.hint or "repair the row at the source")
                + ", or park such changes and go on: sync.dead_letters in a pipeline, "
                "--dead-letter-dir with tail",
            )
        path = self._dead_letters.write_undecodable(source, item)
        self.stats.undecodable += 1
        self.metrics.dead_lettered(f"source:{source}", 1)
        log.error(
            "undecodable change dead-lettered",
            source=source,
            table=item.table,
            position=item.position.describe(),
            reason=item.reason,
            path=str(path),
        )

    def _commit(self) -> None:
        limit = self._stages.commit_limit(self._checkpoint.durable_seq())
        committable = self._checkpoint.take_committable(limit)
        if committable and limit is not None:  # stateful middleware: its state first (stages.py)
            positions = {s: (p.encode() if p is not None else None) for s, p in self._committed.items()}
            positions.update((s, p.encode()) for s, p in committable.items())
            self._stages.before_commit(limit, positions)
        for source, position in committable.items():
            self.offsets.save(self.name, source, position)
            self.readers[source].commit(position)
            self.stats.commits[source] = position
            self._committed[source] = position
            self.metrics.committed(source, position)
            self.status.committed(source, position.describe())
        if committable and self._stages:
            self._stages.after_commit()
        durable = self._checkpoint.durable_seq()
        for pending in self._pending.values():
            while pending and pending[0][0] <= durable:
                pending.popleft()
        if self._tracer is not None:  # durable and committable: stateful stages may hold commits back
            self._tracer.batch_durable(durable if limit is None else min(durable, limit))

    # -- lag (observability/lag.py) ------------------------------------------------------------
    def _oldest_pending_ms(self, source: str) -> int | None:
        """source.ts_ms of the oldest change of `source` read and not yet in every sink (any thread)."""
        try:
            return self._pending[source][0][1]
        except (IndexError, KeyError):
            return None

    def _report_lag(self, source: str, lag: SourceLag) -> None:
        guard = self._lag.guards.get(source)
        self.metrics.source_lag(
            source,
            seconds=lag.lag_seconds,
            lag_bytes=lag.lag_bytes,
            retained_bytes=lag.retained_bytes,
            slot=lag.slot,
            exceeded=None if guard is None else lag.exceeded is not None,
        )
        shown = {
            "lag_bytes": lag.lag_bytes,
            "lag_seconds": None if lag.lag_seconds is None else round(lag.lag_seconds, 1),
            "retained_bytes": lag.retained_bytes,
            "slot": lag.slot,
            "max_lag": None if guard is None else guard.max_lag.text,
            "on_max_lag": None if guard is None else guard.on_max_lag,
            "exceeded": lag.exceeded,
            "probe_error": lag.probe_error,
            **lag.extra,
        }
        not_ready = lag.exceeded if guard is not None and guard.on_max_lag != "warn" else None
        self.status.source_lag(source, shown, not_ready)

    def _stop_for_lag(self, error: CdcError) -> None:
        log.error("stopping: source lag past max_lag", error=error.message)
        self._guard_error = error
        self.stop()

    def _refresh_metrics(self) -> None:
        ages = self.status.ages()
        self.metrics.ages(
            checkpoint=ages["checkpoint"],
            heartbeat=ages["heartbeat"],
            sink_backlog={k: int(v) for k, v in ages["sink_backlog"].items()},
            sink_last_write=ages["sink_last_write"],
            ready=self.status.readiness()[0],
        )

    def _shutdown(self) -> None:
        self._stop.set()
        self.status.ended()
        self._lag.close()
        if self._retention is not None:
            self._retention.close()
        if self._tracer is not None:  # spans still open: not durable (or failed, with the error)
            self._tracer.close(sys.exc_info()[1] or self._guard_error)
        if self._fanout is not None:
            self._fanout.close()
        for reader in self.readers.values():
            reader.stop()
        for thread in self._threads.values():
            thread.join(timeout=10)
        for reader in self.readers.values():
            try:
                reader.close()
            except Exception as exc:
                log.warning("closing source failed", error=str(exc))
        self._stages.close()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                log.warning("closing sink failed", sink=sink.name, error=str(exc))


def _as_cdc_error(exc: BaseException) -> CdcError:
    if isinstance(exc, CdcError):
        return exc
    return CdcError(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}", "report this with the --debug output")
