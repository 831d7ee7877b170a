"""Parallel delivery by key (`sync.parallelism`): each destination is N sink instances written at once.

A destination with `worker_count: N` is built N times (sinks are not thread-safe, so one instance per
worker) and wrapped in a `PartitionedSink`. Each batch it is handed is split by key into N parts,
and the parts are written concurrently on N threads (the sinks' network and disk I/O releases the
GIL). `write` returns only when every part is durable, so the pipeline acknowledges the batch to
the checkpointer only then: the checkpoint stays the minimum over the workers, exactly as with one
sink, and the batches themselves stay sequential.

Per-key order. Which worker takes an event is decided by its content alone, the same in every run:
- `hash` (default): crc32 of the table and the value of `partition_field` (default: the event's
  primary key) modulo N. Python's `hash()` is not used: it differs per process, and a replay must
  route an event to the worker that may already hold it (see markers below).
- `range`: `range_boundaries` (N-1 sorted numbers or strings, given in the config, never computed
  from the data, for the same reason) cut the values of `partition_field` into N ranges; worker i
  takes values v with boundaries[i-1] <= v < boundaries[i].
An event without the field (or, for `range`, with a null or incomparable value) falls back to the
hash of its primary key; an event without a primary key (a table without one, a logical decoding
message) to the hash of its table, so such a table stays on one worker, in order.

A key's events always land on one worker, in batch order, so its order is kept. Two cases would break
that and are handled with a barrier (the parts before it are written and durable before anything
after it starts): a TRUNCATE (it orders against every row of its table), and, with a
`partition_field` other than the key, a row whose field value changes within a batch (an update
moving `user_id` from 1 to 2 sends the row to another worker; its earlier events must land first).

Replay markers (sinks/dedup.py: SQL, Redis streams). Each worker instance is named
`<destination>#<i>of<N>`, so it keeps markers of its own: a marker at P on worker i proves only that
worker i's events up to P were applied, which is all it may prove when workers commit separately.
A changed `worker_count` reads other marker names, so the first batches after the change are
re-applied (at-least-once), never skipped.

Failures. A part that fails is retried by the pipeline's delivery (delivery.py) like any batch: the
same batch comes back, and only the parts not yet written are written again. A part whose write
failed half way may be re-applied: at-least-once, as with one sink.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson

from cdc_logs.envelope import ChangeEvent, Op, encode_value
from cdc_logs.errors import CdcError, Directive, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.sinks.base import Sink, as_sink_error

log = get_logger(__name__)

# Destination types whose N instances would share one ordered stream with no key to keep apart: N
# writers on one file (or stdout) would interleave their appends, and there is nothing to gain.
UNPARTITIONABLE = frozenset({"file", "stdout"})

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _digest(table: str, value: Any) -> int:
    return zlib.crc32(table.encode() + b"\0" + orjson.dumps(value, default=encode_value, option=_OPTS))


def worker_name(base: str, index: int, count: int) -> str:
    """The name of worker `index` of a destination (its own replay markers, logs and metrics)."""
    return f"{base}#{index}of{count}"


class Partitioner:
    """Which worker takes an event (module docstring): `part(event)` in 0..count-1."""

    def __init__(
        self,
        count: int,
        *,
        strategy: str = "hash",
        field: str | None = None,
        boundaries: Sequence[Any] | None = None,
    ) -> None:
        if count < 1:
            raise CdcError(ErrorKind.CONFIG, f"parallelism: worker_count must be at least 1, got {count}")
        if strategy not in ("hash", "range"):
            raise CdcError(
                ErrorKind.CONFIG,
                f"parallelism: partition_strategy {strategy!r} is not supported",
                "use hash or range",
            )
        if strategy == "range" and (field is None or boundaries is None or len(boundaries) != count - 1):
            raise CdcError(
                ErrorKind.CONFIG,
                "parallelism: partition_strategy range needs partition_field and worker_count - 1 "
                "range_boundaries",
                "e.g. worker_count: 3, partition_field: id, range_boundaries: [100000, 200000]",
            )
        self.count = count
        self.strategy = strategy
        self.field = field
        self.boundaries = list(boundaries or ())
        self._warned: set[str] = set()

    def part(self, event: ChangeEvent) -> int:
        if self.count == 1:
            return 0
        table = event.source.qualified_table
        if self.field is not None:
            row = event.after if event.after is not None else event.before
            if row is not None and self.field in row:
                value = row[self.field]
                if self.strategy == "hash":
                    return _digest(table, value) % self.count
                if value is not None:
                    try:
                        return bisect.bisect_right(self.boundaries, value)
                    except TypeError:
                        if table not in self._warned:  # once per table: a log line per event is noise
                            self._warned.add(table)
                            log.warning(
                                "range partition value not comparable with range_boundaries; such events "
                                "go by the hash of their key",
                                table=table,
                                field=self.field,
                                value_type=type(value).__name__,
                            )
        if event.key is not None:
            return _digest(table, event.key) % self.count
        return _digest(table, None) % self.count

    def key_id(self, event: ChangeEvent) -> int | None:
        """An identity of the event's row, to see a row move between workers within a batch."""
        if event.key is None:
            return None
        return _digest(event.source.qualified_table, event.key)

    def split(self, batch: Sequence[ChangeEvent]) -> list[list[list[ChangeEvent]]]:
        """`batch` as segments of `count` parts; a segment is durable before the next one starts."""
        segments: list[list[list[ChangeEvent]]] = []
        parts: list[list[ChangeEvent]] = [[] for _ in range(self.count)]
        rows: dict[int, int] = {}  # row identity -> its worker in this segment (partition_field only)
        track = self.field is not None

        def cut() -> None:
            nonlocal parts
            if any(parts):
                segments.append(parts)
            parts = [[] for _ in range(self.count)]
            rows.clear()

        for event in batch:
            if event.op is Op.TRUNCATE:  # orders against every row of its table: alone, between barriers
                cut()
                parts[self.part(event)].append(event)
                cut()
                continue
            index = self.part(event)
            if track:
                row = self.key_id(event)
                if row is not None:
                    seen = rows.get(row)
                    if seen is not None and seen != index:
                        cut()  # the row moved to another worker: what it had before lands first
                    rows[row] = index
            parts[index].append(event)
        cut()
        return segments


class PartitionedSink(Sink):
    """N instances of one destination, each batch split by key over them (module docstring)."""

    def __init__(self, sinks: Sequence[Sink], partitioner: Partitioner, name: str) -> None:
        if len(sinks) != partitioner.count:
            raise ValueError("one sink per worker")
        self.sinks = list(sinks)
        self.partitioner = partitioner
        self.name = name
        self._opened: set[int] = set()
        self._pool: ThreadPoolExecutor | None = None
        # The batch being written and the (segment, part) pairs already durable: a retry of the same
        # batch (delivery.py hands the same object back) writes only what is missing.
        self._batch: Sequence[ChangeEvent] | None = None
        self._done: set[tuple[int, int]] = set()

    def open(self) -> None:
        for index, sink in enumerate(self.sinks):
            if index not in self._opened:  # a retried open does not reopen the ones already open
                sink.open()
                self._opened.add(index)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self.sinks), thread_name_prefix=f"part-{self.name}")

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if not batch:
            return
        if self._pool is None:
            self.open()
        assert self._pool is not None
        if batch is not self._batch:
            self._batch, self._done = batch, set()
        for s, segment in enumerate(self.partitioner.split(batch)):
            jobs = [(i, part) for i, part in enumerate(segment) if part and (s, i) not in self._done]
            errors: list[BaseException] = []
            if len(jobs) == 1:  # one part only: no thread hop
                i, part = jobs[0]
                self.sinks[i].write(part)
                self._done.add((s, i))
                continue
            futures: list[tuple[int, Future[None]]] = [
                (i, self._pool.submit(self.sinks[i].write, part)) for i, part in jobs
            ]
            for i, future in futures:  # wait for all: a part in flight must end before any retry
                try:
                    future.result()
                    self._done.add((s, i))
                except BaseException as exc:
                    errors.append(exc)
            if errors:
                raise _worst(errors)
        self._batch, self._done = None, set()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        failure: Exception | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                failure = failure or exc
        self._opened.clear()
        if failure is not None:
            raise failure


def _worst(errors: list[BaseException]) -> BaseException:
    """The error that decides what happens next: one that stops the run wins over a retryable one."""
    cdc = [as_sink_error(e) if isinstance(e, Exception) else e for e in errors]
    for error in cdc:
        if not isinstance(error, CdcError) or error.directive is not Directive.RETRY:
            return error
    return cdc[0]


def partitioned(build: Callable[[str], Sink], base: str, partitioner: Partitioner) -> Sink:
    """The destination `base` as `partitioner.count` instances (`build(name)` makes one)."""
    count = partitioner.count
    return PartitionedSink([build(worker_name(base, i, count)) for i in range(count)], partitioner, base)


def check_destinations(parallel_enabled: bool, worker_count: int, types: Sequence[str]) -> None:
    """Refuse parallelism on destinations where it would break order (ValueError for the config)."""
    if not parallel_enabled or worker_count < 2:
        return
    bad = sorted({t for t in types if t in UNPARTITIONABLE})
    if bad:
        raise ValueError(
            f"sync.parallelism cannot write to {', '.join(bad)} destinations: {worker_count} workers "
            "appending to one file or stream would interleave their writes, and one writer is as fast; "
            "turn parallelism off, or write to a keyed destination (sql, kafka, redis, http...)"
        )


def build_partitioned(cfg: Any, pipeline: str, parallelism: Any) -> Sink:
    """Destination `cfg` (a sink config) as `parallelism.worker_count` sinks of the registry, each
    named worker_name(...) and applying the destination's route (sync_config.ParallelismConfig)."""
    from cdc_logs import registry
    from cdc_logs.route import routed

    component = registry.for_config(cfg)
    context = registry.BuildContext(pipeline)
    partitioner = Partitioner(
        parallelism.worker_count,
        strategy=parallelism.partition_strategy,
        field=parallelism.partition_field,
        boundaries=parallelism.range_boundaries,
    )

    def one(name: str) -> Sink:
        sink: Sink = component.build(cfg.model_copy(update={"name": name}), context)
        # The route inside each worker: the partitioned sink then sees the batch object the delivery
        # retries with, and writes again only the parts that failed.
        return routed(sink, cfg.route)

    return partitioned(one, cfg.name or cfg.type, partitioner)
