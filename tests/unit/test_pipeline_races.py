"""Found in review: a fan-out commit racing a second source, and a pipeline hung on a full spool
whose slow sink failed. Both must not happen."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, FanoutPolicy, Pipeline, RetryPolicy
from tests.helpers import MemorySink, ScriptedReader, make_event

FAST = RetryPolicy(0, 0.01, 0.05)


def delay_first_put(pipeline: Pipeline, table: str, until: threading.Event) -> None:
    """Reader `source` is descheduled before its item reaches the queue (or waits longer in put() on a
    full queue than another reader does): its item enters the queue after the other source's."""
    original = pipeline._put
    done = []

    def put(item):  # type: ignore[no-untyped-def]
        event = item[-1] if isinstance(item, tuple) else None
        if getattr(getattr(event, "source", None), "table", None) == table and not done:
            done.append(1)
            until.wait(5)
        return original(item)

    pipeline._put = put  # type: ignore[method-assign]


class GateSink(MemorySink):
    """Holds writes that contain an event of table `table` until `gate` is set."""

    def __init__(self, name: str, table: str) -> None:
        super().__init__(name)
        self.table, self.gate = table, threading.Event()

    def write(self, batch):  # type: ignore[no-untyped-def]
        if any(e.source.table == self.table for e in batch):
            self.gate.wait(10)
            if not self.gate.is_set():
                raise CdcError(ErrorKind.SINK_TRANSIENT, "still down")
        super().write(batch)


def test_fanout_never_commits_a_position_whose_event_no_sink_has(tmp_path: Path) -> None:
    a = ScriptedReader([make_event(1, table="ta")])  # seq taken first
    b = ScriptedReader([make_event(n, table="tb") for n in range(100, 110)])
    sink = GateSink("s", "ta")
    offsets = MemoryOffsetStore()
    p = Pipeline(
        "p",
        {"A": a, "B": b},
        [sink],
        offsets,
        batch=BatchPolicy(10, max_wait_s=0.01),
        retry=FAST,
        fanout=FanoutPolicy(str(tmp_path / "spool")),
    )
    released = threading.Event()
    delay_first_put(p, "ta", released)
    t = threading.Thread(target=p.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(sink.events) < 10:  # B's batch delivered and acked
        time.sleep(0.01)
    released.set()  # A's item reaches the queue
    time.sleep(0.5)
    committed_a = offsets.load("p", "A")
    has_a = [e for e in sink.events if e.source.table == "ta"]
    p.stop()
    sink.gate.set()
    t.join(10)
    # A's position is committed although the only sink never received A's event: a crash now loses it.
    assert committed_a is None or has_a, f"committed {committed_a.position} for A, sink has {has_a}"


class DiesSlowly(MemorySink):
    def write(self, batch):  # type: ignore[no-untyped-def]
        time.sleep(0.5)
        raise CdcError(ErrorKind.PERMISSION, "permission denied for table t")


def test_a_sink_failing_while_the_spool_is_full_stops_the_pipeline_with_its_error(tmp_path: Path) -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 2001)])
    good, bad = MemorySink("good"), DiesSlowly("bad")
    p = Pipeline(
        "p",
        {"src": reader},
        [good, bad],
        MemoryOffsetStore(),
        batch=BatchPolicy(10, max_wait_s=0.01),
        retry=FAST,
        fanout=FanoutPolicy(str(tmp_path / "spool"), max_spool_bytes=1, max_memory_bytes=1),
    )
    error = []

    def run():  # type: ignore[no-untyped-def]
        try:
            p.run()
        except CdcError as exc:
            error.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(8)
    hung = t.is_alive()
    p.stop()
    t.join(10)
    assert not hung, "the sink failed after 0.5 s; 8 s later run() is still blocked in Spool.append"
    assert error and error[0].kind is ErrorKind.PERMISSION
