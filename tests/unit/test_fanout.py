"""Fan-out: sinks deliver independently through the spool; the checkpoint is the minimum over them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, FanoutPolicy, Pipeline, RetryPolicy
from cdc_logs.position import Watermark
from cdc_logs.spool import Spool
from tests.helpers import SERVER, MemorySink, ScriptedReader, make_event, seqs


class DownSink(MemorySink):
    """Refuses writes (transiently) until `up` is set: a destination that is down for a while."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.up = threading.Event()

    def write(self, batch):  # type: ignore[no-untyped-def]
        if not self.up.is_set():
            self.writes += 1
            raise CdcError(ErrorKind.SINK_TRANSIENT, "connection refused")
        super().write(batch)


def _pipeline(tmp_path: Path, reader: ScriptedReader, *sinks: MemorySink, **kw: object) -> Pipeline:
    return Pipeline(
        "p",
        {"src": reader},
        list(sinks),
        kw.pop("offsets", MemoryOffsetStore()),  # type: ignore[arg-type]
        batch=BatchPolicy(max_events=10, max_wait_s=0.01),
        retry=RetryPolicy(0, 0.01, 0.05),
        fanout=FanoutPolicy(
            str(tmp_path / "spool"),
            kw.pop("max_spool_bytes", 1 << 24),  # type: ignore[arg-type]
            kw.pop("dead_letter_dir", None),
        ),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_a_down_sink_does_not_stop_the_others_and_catches_up_in_order(tmp_path: Path) -> None:
    events = [make_event(n, key=n % 7) for n in range(1, 301)]
    reader = ScriptedReader(events)
    a, b, down = MemorySink("a"), MemorySink("b"), DownSink("down")
    offsets = MemoryOffsetStore()
    pipeline = _pipeline(tmp_path, reader, a, b, down, offsets=offsets)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and min(len(a.events), len(b.events)) < 300:
        time.sleep(0.02)
    # The healthy sinks have everything while the third is still down...
    assert seqs(a.events) == list(range(1, 301)) and seqs(b.events) == list(range(1, 301))
    assert down.events == [] and down.writes > 0
    # ...and the checkpoint has not moved past what the down sink holds.
    assert offsets.load("p", "src") is None or offsets.load("p", "src").decoded() < Watermark(SERVER, (1,))  # type: ignore[union-attr]
    down.up.set()
    while time.monotonic() < deadline + 10 and len(down.events) < 300:
        time.sleep(0.02)
    pipeline.stop()
    runner.join(30)
    assert seqs(down.events) == list(range(1, 301)), "caught up, nothing lost, in order"
    stored = offsets.load("p", "src")
    assert stored is not None and stored.decoded() == Watermark(SERVER, (300,))


def test_rejected_batch_goes_to_the_dead_letter_and_delivery_goes_on(tmp_path: Path) -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 31)], follow=False)
    good, picky = MemorySink("good"), MemorySink("picky")
    picky.fail(CdcError(ErrorKind.SINK_REJECTED, "document too large"))
    dead = tmp_path / "dead"
    pipeline = _pipeline(tmp_path, reader, good, picky, dead_letter_dir=str(dead), stop_when_idle=True)
    pipeline.run()
    assert seqs(good.events) == list(range(1, 31))
    lines = [orjson.loads(line) for line in (dead / "picky.deadletter.jsonl").read_bytes().splitlines()]
    assert lines and all("document too large" in line["reason"] for line in lines)
    dead_seqs = [line["envelope"]["source"]["seq"] for line in lines]
    assert sorted(dead_seqs + seqs(picky.events)) == list(range(1, 31))


def test_rejected_batch_without_dead_letter_stops_the_pipeline(tmp_path: Path) -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 31)])
    good, picky = MemorySink("good"), MemorySink("picky")
    picky.fail(CdcError(ErrorKind.SINK_REJECTED, "document too large"))
    with pytest.raises(CdcError) as err:
        _pipeline(tmp_path, reader, good, picky).run()
    assert err.value.kind is ErrorKind.SINK_REJECTED


def test_spool_is_bounded_and_releases_consumed_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", ["fast", "slow"], max_bytes=4096, segment_bytes=1024)
    stop = threading.Event()
    line = b'"' + b"x" * 298 + b'"'
    for _ in range(13):
        assert spool.append([line], stop)
    assert spool.size <= 4096
    # Full: the next append blocks until every reader has moved past the oldest segments.
    blocked = threading.Thread(target=lambda: spool.append([line] * 5, stop))
    blocked.start()
    assert len(spool.read("fast", 100, 0.1)) == 13
    spool.release()
    time.sleep(0.3)
    assert blocked.is_alive(), "one slow reader holds the spool: the writer must wait"
    assert len(spool.read("slow", 100, 0.1)) == 13
    spool.release()
    blocked.join(2)
    assert not blocked.is_alive(), "space was released, the append went through"
    assert spool.size <= 4096
    assert len(list((tmp_path / "s").iterdir())) <= 5
    spool.close()


def test_spool_round_trips_events_for_each_reader(tmp_path: Path) -> None:
    from cdc_logs.spool import decode_record, encode_record

    spool = Spool(tmp_path / "s", ["a", "b"], segment_bytes=2048)
    stop = threading.Event()
    for start in range(0, 60, 10):
        spool.append([encode_record(n, make_event(n)) for n in range(start, start + 10)], stop)
    got_a = [decode_record(r) for r in spool.read("a", 1000, 0.1)]
    assert [e.source.extra["seq"] for e in got_a] == list(range(60))
    assert got_a[5].position == Watermark(SERVER, (5,)) and got_a[5].key == {"id": 5}
    assert len(spool.read("b", 25, 0.1)) == 25
    assert len(spool.read("b", 1000, 0.1)) == 35
    spool.release()
    spool.close()
