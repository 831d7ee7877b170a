"""Pipeline: batching, backpressure, retries by error kind, checkpoint rule, graceful stop.

Uses a scripted reader and a fault-injecting memory sink: the pipeline logic is what is under test
here; the real readers and sinks have their own tests against real databases and files.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from cdc_logs.envelope import Heartbeat
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline, RetryPolicy
from cdc_logs.position import Watermark
from cdc_logs.transforms.filter import FilterTransform
from tests.helpers import SERVER, MemorySink, ScriptedReader, make_event, seqs

FAST_RETRY = RetryPolicy(max_attempts=5, initial_backoff_s=0.001, max_backoff_s=0.01)


def _pipeline(reader: ScriptedReader, *sinks: MemorySink, **kw: object) -> Pipeline:
    kw.setdefault("batch", BatchPolicy(max_events=10, max_wait_s=0.01))
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("stop_when_idle", True)
    return Pipeline(
        "p", {"src": reader}, list(sinks) or [MemorySink()], kw.pop("offsets", MemoryOffsetStore()), **kw
    )  # type: ignore[arg-type]


def test_delivers_everything_in_order_and_commits_the_last_position() -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 101)])
    sink = MemorySink()
    offsets = MemoryOffsetStore()
    stats = _pipeline(reader, sink, offsets=offsets).run()
    assert seqs(sink.events) == list(range(1, 101))
    assert stats.events == 100
    stored = offsets.load("p", "src")
    assert stored is not None and stored.decoded() == Watermark(SERVER, (100,))
    assert reader.commits[-1] == Watermark(SERVER, (100,))


def test_batches_are_cut_by_count_and_by_bytes() -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 51)])
    sink = MemorySink()
    _pipeline(reader, sink, batch=BatchPolicy(max_events=7, max_wait_s=5)).run()
    assert sink.writes == 8  # 7 full batches of 7, one of 1
    size = len(make_event(1).to_json())
    reader = ScriptedReader([make_event(n) for n in range(1, 51)])
    sink = MemorySink()
    _pipeline(reader, sink, batch=BatchPolicy(max_events=1000, max_bytes=size * 5, max_wait_s=5)).run()
    assert 9 <= sink.writes <= 11


def test_checkpoint_only_on_transaction_boundary() -> None:
    # Events 1..3 are one transaction (only 3 is a boundary), 4..6 another whose commit never arrives.
    items = [make_event(n, boundary=n == 3) for n in (1, 2, 3)] + [
        make_event(n, boundary=False) for n in (4, 5, 6)
    ]
    reader = ScriptedReader(items)
    offsets = MemoryOffsetStore()
    _pipeline(reader, MemorySink(), offsets=offsets).run()
    stored = offsets.load("p", "src")
    assert stored is not None and stored.decoded() == Watermark(SERVER, (3,))
    assert all(c == Watermark(SERVER, (3,)) for c in reader.commits)


def test_transient_sink_failure_is_retried_and_nothing_is_lost() -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 31)])
    sink = MemorySink()
    sink.fail(CdcError(ErrorKind.SINK_TRANSIENT, "broker unavailable"), ConnectionError("reset"))
    _pipeline(reader, sink).run()
    assert seqs(sink.events) == list(range(1, 31))
    assert sink.writes >= 5


def test_rejected_batch_stops_without_committing_it() -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 21)])
    good, bad = MemorySink("good"), MemorySink("bad")
    offsets = MemoryOffsetStore()
    pipeline = _pipeline(reader, good, bad, offsets=offsets, batch=BatchPolicy(max_events=10, max_wait_s=5))
    original = bad.write
    calls = {"n": 0}

    def write(batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise CdcError(ErrorKind.SINK_REJECTED, "message too large")
        original(batch)

    bad.write = write  # type: ignore[method-assign]
    with pytest.raises(CdcError) as err:
        pipeline.run()
    assert err.value.kind is ErrorKind.SINK_REJECTED
    stored = offsets.load("p", "src")
    # The first batch (1..10) is durable in both sinks; the second is not in `bad`, so not committed.
    assert stored is not None and stored.decoded() == Watermark(SERVER, (10,))


def test_retries_are_bounded() -> None:
    reader = ScriptedReader([make_event(1)])
    sink = MemorySink()
    sink.fail(*[CdcError(ErrorKind.SINK_TRANSIENT, "down")] * 10)
    with pytest.raises(CdcError) as err:
        _pipeline(reader, sink, retry=RetryPolicy(3, 0.001, 0.001)).run()
    assert err.value.kind is ErrorKind.SINK_TRANSIENT
    assert sink.writes == 3


def test_filtered_events_still_move_the_checkpoint() -> None:
    items = [make_event(n, table="keep" if n <= 2 else "skip") for n in range(1, 11)]
    reader = ScriptedReader(items)
    sink = MemorySink()
    offsets = MemoryOffsetStore()
    stats = _pipeline(
        reader, sink, offsets=offsets, transforms=[FilterTransform(include_tables=["keep"])]
    ).run()
    assert seqs(sink.events) == [1, 2]
    assert stats.dropped == 8
    stored = offsets.load("p", "src")
    assert stored is not None and stored.decoded() == Watermark(SERVER, (10,))


def test_heartbeat_moves_the_checkpoint_without_data() -> None:
    reader = ScriptedReader([make_event(1), Heartbeat(Watermark(SERVER, (50,)))])
    offsets = MemoryOffsetStore()
    sink = MemorySink()
    _pipeline(reader, sink, offsets=offsets).run()
    assert seqs(sink.events) == [1]
    stored = offsets.load("p", "src")
    assert stored is not None and stored.decoded() == Watermark(SERVER, (50,))


def test_limit_delivers_exactly_n_and_commits_no_further() -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 101)])
    sink = MemorySink()
    offsets = MemoryOffsetStore()
    _pipeline(reader, sink, offsets=offsets, limit=13, batch=BatchPolicy(max_events=50, max_wait_s=5)).run()
    assert seqs(sink.events) == list(range(1, 14))
    stored = offsets.load("p", "src")
    assert stored is not None and stored.decoded() == Watermark(SERVER, (13,))


def test_resumes_from_the_stored_position() -> None:
    offsets = MemoryOffsetStore()
    offsets.save("p", "src", Watermark(SERVER, (40,)))
    reader = ScriptedReader([make_event(n) for n in range(1, 51)])
    sink = MemorySink()
    _pipeline(reader, sink, offsets=offsets).run()
    assert reader.starts == [Watermark(SERVER, (40,))]
    assert seqs(sink.events) == list(range(41, 51))


def test_refuses_to_resume_against_another_server() -> None:
    offsets = MemoryOffsetStore()
    offsets.save("p", "src", Watermark("some-other-server", (40,)))
    with pytest.raises(CdcError) as err:
        _pipeline(ScriptedReader([make_event(1)]), offsets=offsets).run()
    assert err.value.kind is ErrorKind.SERVER_MISMATCH
    assert "offsets reset" in (err.value.hint or "")


def test_source_failure_reconnects_and_resumes_from_the_committed_position() -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 41)], fail_after=25)
    sink = MemorySink()
    _pipeline(reader, sink).run()
    assert reader.opens == 2
    delivered = seqs(sink.events)
    assert set(delivered) == set(range(1, 41))
    # Replays after the reconnect start at the committed position: duplicates only past it. The
    # reader thread reconnects at once, so whether a batch was committed before it did depends on
    # the main loop's timing; with none, the replay starts from the beginning (duplicates from 1).
    start = reader.starts[1]
    committed = start.values[0] if start is not None else 0
    if committed:
        assert delivered.count(committed) == 1
    assert delivered[: delivered.index(committed + 1) + 1] == list(range(1, committed + 2))


def test_operator_error_from_source_stops_with_its_hint() -> None:
    class Lost(ScriptedReader):
        def stream(self, start):  # type: ignore[no-untyped-def]
            raise CdcError(ErrorKind.SLOT_LOST, "slot s is gone", "cdc-logs slots create ...")
            yield None

    with pytest.raises(CdcError) as err:
        _pipeline(Lost([])).run()
    assert err.value.kind is ErrorKind.SLOT_LOST


def test_bounded_queue_applies_backpressure() -> None:
    produced = []

    class Counting(ScriptedReader):
        def stream(self, start):  # type: ignore[no-untyped-def]
            for item in self.items:
                produced.append(item)
                yield item

    gate = threading.Event()

    class SlowSink(MemorySink):
        def write(self, batch):  # type: ignore[no-untyped-def]
            gate.wait(5)
            super().write(batch)

    reader = Counting([make_event(n) for n in range(1, 1001)])
    sink = SlowSink()
    pipeline = _pipeline(reader, sink, queue_size=20, batch=BatchPolicy(max_events=5, max_wait_s=0.01))
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    time.sleep(0.3)
    # Blocked sink: the reader is held back by the queue, it has not raced through 1000 events.
    assert len(produced) <= 20 + 5 + 2
    gate.set()
    runner.join(10)
    assert seqs(sink.events) == list(range(1, 1001))


def test_stop_flushes_and_commits_what_was_read() -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 6)])
    sink = MemorySink()
    offsets = MemoryOffsetStore()
    pipeline = _pipeline(
        reader, sink, offsets=offsets, stop_when_idle=False, batch=BatchPolicy(max_events=1000, max_wait_s=60)
    )
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    deadline = time.monotonic() + 5
    while pipeline._queue.qsize() or time.monotonic() < deadline - 4.7:
        time.sleep(0.01)
    pipeline.stop()
    runner.join(5)
    assert not runner.is_alive()
    assert seqs(sink.events) == [1, 2, 3, 4, 5]
    stored = offsets.load("p", "src")
    assert stored is not None and stored.decoded() == Watermark(SERVER, (5,))


def test_every_sink_must_hold_a_batch_before_commit() -> None:
    a, b = MemorySink("a"), MemorySink("b")
    b.fail(CdcError(ErrorKind.SINK_TRANSIENT, "slow start"))
    reader = ScriptedReader([make_event(n) for n in range(1, 11)])
    offsets = MemoryOffsetStore()
    _pipeline(reader, a, b, offsets=offsets).run()
    assert seqs(a.events)[-1] == 10 and seqs(b.events)[-1] == 10


def test_duplicate_sink_names_are_a_config_error() -> None:
    with pytest.raises(CdcError) as err:
        _pipeline(ScriptedReader([]), MemorySink("x"), MemorySink("x"))
    assert err.value.kind is ErrorKind.CONFIG


class _FlakyOpen(ScriptedReader):
    """Refuses connections `failures` times, like a database that is still starting."""

    def __init__(self, items: list, failures: int) -> None:  # type: ignore[type-arg]
        super().__init__(items)
        self.failures = failures

    def open(self) -> None:
        if self.failures:
            self.failures -= 1
            raise CdcError(ErrorKind.CONNECTION, "connection refused")
        super().open()


def test_a_source_still_starting_is_retried_at_startup() -> None:
    reader = _FlakyOpen([make_event(1), make_event(2)], failures=2)
    sink = MemorySink()
    _pipeline(reader, sink).run()
    assert seqs(sink.events) == [1, 2]


def test_without_start_retries_an_unreachable_source_fails_at_once() -> None:
    reader = _FlakyOpen([make_event(1)], failures=1)
    with pytest.raises(CdcError) as err:
        _pipeline(reader, retry_start=False).run()
    assert err.value.kind is ErrorKind.CONNECTION


class SlowReopenReader(ScriptedReader):
    """Fails after `fail_after` events; reopening then takes `reopen_s` (a database coming back)."""

    def __init__(self, items: list[Any], *, fail_after: int, reopen_s: float) -> None:
        super().__init__(items, fail_after=fail_after)
        self.reopen_s = reopen_s
        self.reopened_at: float | None = None

    def open(self) -> None:
        super().open()
        if self.opens > 1:
            time.sleep(self.reopen_s)
            self.reopened_at = time.monotonic()


class PacedReader(ScriptedReader):
    """Emits its events one every `every_s` seconds (a busy second source)."""

    def __init__(self, items: list[Any], every_s: float) -> None:
        super().__init__(items, follow=False)
        self.every_s = every_s

    def stream(self, start: Any) -> Any:
        for item in super().stream(start):
            time.sleep(self.every_s)
            yield item


class TimedSink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.delivered_at: list[tuple[str, float]] = []

    def write(self, batch):  # type: ignore[no-untyped-def]
        super().write(batch)
        now = time.monotonic()
        self.delivered_at += [(e.source.table, now) for e in batch]


def test_a_reader_reconnect_never_holds_back_the_other_sources() -> None:
    """One source fails and takes 1.5 s to come back: its reconnect runs on its own thread, so the
    other source's changes keep being delivered meanwhile (the delivery thread never sleeps for it)."""
    failing = SlowReopenReader([make_event(n, table="a") for n in range(1, 11)], fail_after=5, reopen_s=1.5)
    busy = PacedReader([make_event(n, table="b") for n in range(1, 81)], every_s=0.02)
    sink = TimedSink()
    pipeline = Pipeline(
        "p",
        {"a": failing, "b": busy},
        [sink],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=1000, max_wait_s=0.05),
        retry=FAST_RETRY,
        stop_when_idle=True,
    )
    failed_at = time.monotonic()
    pipeline.run()
    assert failing.reopened_at is not None and failing.reopened_at - failed_at > 1.4
    during = [t for table, t in sink.delivered_at if table == "b" and t < failing.reopened_at - 0.2]
    assert len(during) > 20, "the other source was held back while this one reconnected"
    assert set(seqs([e for e in sink.events if e.source.table == "a"])) == set(range(1, 11))
