"""PipelineStatus: when /ready and /health fail, with a fake clock; then through a real Pipeline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.status import HealthThresholds, PipelineStatus
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, FanoutPolicy, Pipeline, RetryPolicy
from tests.helpers import MemorySink, ScriptedReader, make_event


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class PgLike:
    """A reader with heartbeats (only its events and heartbeats count as movement)."""

    def __init__(self, heartbeat_interval_s: float) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s


T = HealthThresholds(sink_stall_s=60, dead_letter_window_s=300, source_stall_s=60, stuck_s=300)


def running(
    sinks: tuple[str, ...] = ("a", "b"), sources: dict[str, Any] | None = None
) -> tuple[PipelineStatus, Clock]:
    clock = Clock()
    status = PipelineStatus(T, clock=clock).attach(sources or {"src": object()}, sinks)
    status.running()
    return status, clock


def idle_for(status: PipelineStatus, clock: Clock, seconds: float, source: str = "src") -> None:
    """Time passes with the reader ticking (a polling source finding nothing)."""
    for _ in range(int(seconds)):
        clock.advance(1)
        status.source_idle(source)


def test_an_idle_pipeline_stays_ready_and_alive() -> None:
    status, clock = running()
    idle_for(status, clock, 3600)
    assert status.readiness() == (True, [])
    assert status.liveness() == (True, [])
    status.submitted(5)
    status.sink_acked("a", 5)
    status.sink_acked("b", 5)
    idle_for(status, clock, 3600)  # everything delivered long ago: nothing waits
    assert status.readiness() == (True, []) and status.liveness() == (True, [])


def test_a_sink_that_accepts_nothing_while_data_waits_fails_readiness_by_name() -> None:
    status, clock = running()
    status.submitted(5)
    status.sink_written("a")
    status.sink_acked("a", 5)
    status.sink_failed("b", "cannot reach Redis at redis://u:hunter2@h:1/0: Connection refused")
    idle_for(status, clock, 59)
    assert status.readiness()[0], "within the threshold"
    idle_for(status, clock, 2)
    ok, reasons = status.readiness()
    assert not ok and len(reasons) == 1
    assert reasons[0].startswith(
        "sink b: no write accepted for 61 s while data waits for it (threshold 60 s)"
    )
    assert "Connection refused" in reasons[0] and "hunter2" not in reasons[0]
    details = status.details()
    assert details["sinks"]["b"]["waiting"] and details["sinks"]["b"]["failing"]
    assert not details["sinks"]["a"]["waiting"]
    assert "hunter2" not in repr(details)
    status.sink_written("b")
    status.sink_acked("b", 5)
    assert status.readiness() == (True, [])


def test_a_sink_that_keeps_accepting_writes_is_not_stalled_while_it_catches_up() -> None:
    status, clock = running(("a",))
    status.submitted(100)
    for _ in range(10):
        idle_for(status, clock, 31)
        status.sink_written("a")  # progress (fan-out chunks), the ack comes at the end
    assert status.readiness() == (True, [])
    assert status.liveness()[0] is False, "nothing reached every sink for 300 s: no commit possible"
    status.sink_acked("a", 100)
    assert status.liveness() == (True, [])


def test_data_arriving_for_a_long_idle_sink_gets_the_full_threshold() -> None:
    status, clock = running(("a",))
    idle_for(status, clock, 3600)
    status.submitted(1)
    idle_for(status, clock, 30)
    assert status.readiness()[0]


def test_dead_lettering_fails_readiness_for_the_window() -> None:
    status, clock = running()
    status.submitted(3)
    status.sink_failed("a", "sink_rejected: message too large")
    status.sink_dead_lettered("a", 3, "sink_rejected: message too large")
    status.sink_acked("a", 3)
    status.sink_acked("b", 3)
    ok, reasons = status.readiness()
    assert not ok and reasons[0].startswith("sink a: dead-lettering, 3 event(s) so far, the last 0 s ago")
    assert "message too large" in reasons[0]
    status.sink_written("a")  # later writes succeed: still dead-lettering recently
    idle_for(status, clock, 299)
    assert not status.readiness()[0]
    idle_for(status, clock, 2)
    assert status.readiness() == (True, [])
    assert status.details()["sinks"]["a"]["dead_lettered_events"] == 3


def test_a_source_with_heartbeats_must_send_events_or_heartbeats() -> None:
    status, clock = running(sources={"pg": PgLike(10)})
    idle_for(status, clock, 59, "pg")  # idle ticks only: the reader loops, nothing arrives
    assert status.readiness()[0]
    idle_for(status, clock, 2, "pg")
    ok, reasons = status.readiness()
    assert not ok and reasons == ["source pg: no event or heartbeat for 61 s (threshold 60 s)"]
    status.source_moved("pg")  # a heartbeat
    assert status.readiness() == (True, [])
    # a long heartbeat interval stretches the threshold to three intervals
    slow, clock = running(sources={"pg": PgLike(40)})
    clock.advance(119)
    assert slow.readiness()[0]
    clock.advance(2)
    assert "threshold 120 s" in slow.readiness()[1][0]


def test_a_source_without_heartbeats_counts_its_polls_and_one_that_stops_ticking_fails() -> None:
    status, clock = running()
    idle_for(status, clock, 600)
    assert status.readiness()[0]
    clock.advance(61)  # no tick at all: the reader is blocked or gone
    assert status.readiness() == (False, ["source src: no event or poll for 61 s (threshold 60 s)"])


def test_a_silent_source_is_not_blamed_for_backpressure_unless_it_is_failing() -> None:
    status, clock = running(("a",), {"pg": PgLike(10)})
    status.submitted(10)
    clock.advance(100)
    ok, reasons = status.readiness()
    assert not ok and [r.split(":")[0] for r in reasons] == ["sink a"]
    status.source_failed("pg", "postgres: connecting (postgresql://cdc@db:5432/app): connection refused")
    reasons = status.readiness()[1]
    assert [r.split(":")[0] for r in reasons] == ["sink a", "source pg"]
    assert reasons[1].endswith(
        "last error: postgres: connecting (postgresql://cdc@db:5432/app): connection refused"
    )


def test_lifecycle_phases() -> None:
    clock = Clock()
    status = PipelineStatus(T, clock=clock).attach({"src": object()}, ["a"])
    clock.advance(5)
    assert status.readiness() == (False, ["pipeline is starting (opening sources and sinks for 5 s)"])
    assert status.liveness() == (True, [])
    status.running()
    assert status.readiness() == (True, [])
    status.stopping()
    assert status.readiness() == (False, ["pipeline is stopping (for 0 s)"])
    status.ended()
    assert status.readiness()[1] == ["pipeline is stopped (for 0 s)"]
    assert status.liveness() == (False, ["pipeline is stopped (for 0 s)"])
    status.scheduled("2030-01-01T00:05:00")  # cron: between runs, alive but not ready
    assert status.liveness() == (True, [])
    assert status.readiness()[1] == ["pipeline is waiting for its next scheduled run at 2030-01-01T00:05:00"]
    status.attach({"src": object()}, ["a"])  # the next run
    status.running()
    assert status.readiness() == (True, [])


def test_stuck_when_data_waits_and_nothing_reaches_every_sink() -> None:
    status, clock = running()
    status.submitted(7)
    status.sink_acked("a", 7)
    status.committed()
    idle_for(status, clock, 301)
    ok, reasons = status.liveness()
    assert not ok
    assert reasons == [
        "stuck: nothing delivered to every sink for 301 s while data waits (threshold 300 s), so nothing "
        "can be committed; waiting on: b; last commit: 301 s ago"
    ]
    status.sink_acked("b", 7)
    assert status.liveness() == (True, [])


def test_the_pipeline_thread_dying_is_reported() -> None:
    status = PipelineStatus(T).attach({"src": object()}, ["a"])
    worker = threading.Thread(target=status.running, name="pipeline")
    worker.start()
    worker.join()
    ok, reasons = status.liveness()
    assert not ok and reasons == ["the pipeline thread 'pipeline' died without stopping"]


def test_zero_thresholds_turn_checks_off() -> None:
    clock = Clock()
    status = PipelineStatus(HealthThresholds(0, 0, 0, 0), clock=clock).attach({"pg": PgLike(10)}, ["a"])
    status.running()
    status.submitted(1)
    status.sink_dead_lettered("a", 1, "rejected")
    clock.advance(10_000)
    assert status.readiness() == (True, []) and status.liveness() == (True, [])


# -- through a real pipeline --------------------------------------------------------------------------


def wait_for(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


FAST = HealthThresholds(sink_stall_s=0.3, dead_letter_window_s=60, source_stall_s=5, stuck_s=0.6)


def start(pipeline: Pipeline) -> threading.Thread:
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    wait_for(lambda: pipeline.ready.is_set())
    return runner


@pytest.mark.parametrize("fanout", [False, True])
def test_pipeline_reports_a_down_sink_by_name_and_recovers(tmp_path: Path, fanout: bool) -> None:
    events = [make_event(n) for n in range(1, 6)]
    good, bad = MemorySink("good"), MemorySink("bad")
    bad.fail(*[CdcError(ErrorKind.SINK_TRANSIENT, "connection refused (scripted)")] * 10_000)
    status = PipelineStatus(FAST)
    pipeline = Pipeline(
        "p",
        {"src": ScriptedReader(events)},
        [good, bad],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=100, max_wait_s=0.01),
        retry=RetryPolicy(max_attempts=0, initial_backoff_s=0.01, max_backoff_s=0.02),
        fanout=FanoutPolicy(str(tmp_path / "spool")) if fanout else None,
        status=status,
    )
    runner = start(pipeline)
    try:
        wait_for(lambda: not status.readiness()[0])
        reasons = status.readiness()[1]
        assert [r.split(":")[0] for r in reasons] == ["sink bad"], reasons
        assert "connection refused (scripted)" in reasons[0]
        wait_for(lambda: not status.liveness()[0])
        assert "waiting on: bad" in status.liveness()[1][0]
        with bad.lock:
            bad.failures.clear()
        wait_for(lambda: status.readiness()[0] and status.liveness()[0])
        wait_for(lambda: status.details()["last_commit_age_s"] is not None)
        assert len(bad.events) == 5
    finally:
        pipeline.stop()
        runner.join(10)
    assert status.details()["state"] == "stopped"


class PickySink(MemorySink):
    """Refuses the events whose seq is in `bad` (as a target refuses a value it cannot hold)."""

    def __init__(self, name: str, bad: set[int]) -> None:
        super().__init__(name)
        self.bad = bad

    def write(self, batch: Any) -> None:
        if any(e.source.extra["seq"] in self.bad for e in batch):
            raise CdcError(ErrorKind.SINK_REJECTED, "message too large (scripted)")
        super().write(batch)


@pytest.mark.parametrize("fanout", [False, True])
def test_pipeline_reports_dead_lettering(tmp_path: Path, fanout: bool) -> None:
    events = [make_event(n) for n in range(1, 6)]
    good, picky = MemorySink("good"), PickySink("picky", {2, 4})
    status = PipelineStatus(FAST)
    pipeline = Pipeline(
        "p",
        {"src": ScriptedReader(events)},
        [good, picky],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=100, max_wait_s=0.01),
        fanout=FanoutPolicy(str(tmp_path / "spool")) if fanout else None,
        dead_letter_dir=str(tmp_path / "dead"),
        status=status,
    )
    runner = start(pipeline)
    try:
        wait_for(lambda: len(picky.events) == 3 and not status.readiness()[0])
        reasons = status.readiness()[1]
        assert reasons[0].startswith("sink picky: dead-lettering, 2 event(s) so far"), reasons
        assert "message too large (scripted)" in reasons[0]
        assert len(reasons) == 1, "the other sink is fine"
        wait_for(lambda: status.liveness()[0])  # delivered (to the dead-letter file): not stuck
    finally:
        pipeline.stop()
        runner.join(10)


def test_an_idle_pipeline_is_ready() -> None:
    status = PipelineStatus(HealthThresholds(sink_stall_s=0.2, source_stall_s=0.3, stuck_s=0.3))
    pipeline = Pipeline(
        "p",
        {"src": ScriptedReader([make_event(1)])},
        [MemorySink("a")],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=100, max_wait_s=0.01),
        status=status,
    )
    runner = start(pipeline)
    try:
        time.sleep(1.0)  # many thresholds with nothing to write: ticks keep the source "moving"
        assert status.readiness() == (True, [])
        assert status.liveness() == (True, [])
    finally:
        pipeline.stop()
        runner.join(10)
    assert status.readiness()[1] == ["pipeline is stopped (for 0 s)"]
