"""Fan-out: sinks deliver independently through the spool; the checkpoint is the minimum over them."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

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


class ClosedSink(MemorySink):
    """Cannot even be opened (transiently) until `up` is set: a destination down when the run starts."""

    def __init__(self, name: str, error: CdcError | None = None) -> None:
        super().__init__(name)
        self.up = threading.Event()
        self.opens = 0
        self.error = error or CdcError(ErrorKind.SINK_TRANSIENT, "connection refused")

    def open(self) -> None:
        self.opens += 1
        if not self.up.is_set():
            raise self.error


class PickySink(MemorySink):
    """Refuses events whose seq is in `bad` (as a target refuses a value it cannot hold)."""

    def __init__(self, name: str, bad: set[int]) -> None:
        super().__init__(name)
        self.bad = bad

    def write(self, batch):  # type: ignore[no-untyped-def]
        if any(e.source.extra["seq"] in self.bad for e in batch):
            raise CdcError(ErrorKind.SINK_REJECTED, "value out of range")
        super().write(batch)


def _pipeline(tmp_path: Path, reader: ScriptedReader, *sinks: MemorySink, **kw: object) -> Pipeline:
    return Pipeline(
        "p",
        {"src": reader},
        list(sinks),
        kw.pop("offsets", MemoryOffsetStore()),  # type: ignore[arg-type]
        batch=BatchPolicy(max_events=10, max_wait_s=0.01),
        retry=RetryPolicy(0, 0.01, 0.05),
        fanout=FanoutPolicy(str(tmp_path / "spool"), kw.pop("max_spool_bytes", 1 << 24)),  # type: ignore[arg-type]
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


def _wait(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_sink_down_when_the_run_starts_is_retried_while_the_others_deliver(tmp_path: Path) -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 101)])
    good, down = MemorySink("good"), ClosedSink("down")
    offsets = MemoryOffsetStore()
    pipeline = _pipeline(tmp_path, reader, good, down, offsets=offsets)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        _wait(lambda: len(good.events) == 100 and down.opens >= 3)
        assert runner.is_alive(), "a sink that cannot be opened yet must not stop the run"
        assert pipeline.status.details()["sinks"]["down"]["last_error"] == "connection refused"
        assert down.events == [] and offsets.load("p", "src") is None, "nothing committed past the down sink"
        down.up.set()
        _wait(lambda: len(down.events) == 100)
    finally:
        pipeline.stop()
        runner.join(30)
    assert seqs(down.events) == list(range(1, 101)), "caught up from the start, in order"
    stored = offsets.load("p", "src")
    assert stored is not None and stored.decoded() == Watermark(SERVER, (100,))


def test_the_direct_path_retries_a_sink_down_when_the_run_starts(tmp_path: Path) -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 31)], follow=False)
    down = ClosedSink("down")
    offsets = MemoryOffsetStore()
    pipeline = Pipeline(
        "p",
        {"src": reader},
        [down],
        offsets,
        batch=BatchPolicy(max_events=10, max_wait_s=0.01),
        retry=RetryPolicy(0, 0.01, 0.05),
        stop_when_idle=True,
    )
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    _wait(lambda: down.opens >= 3)
    assert runner.is_alive() and reader.opens == 0, "waits for its sink before reading"
    down.up.set()
    runner.join(30)
    assert not runner.is_alive()
    assert seqs(down.events) == list(range(1, 31))
    stored = offsets.load("p", "src")
    assert stored is not None and stored.decoded() == Watermark(SERVER, (30,))


def test_stopped_while_its_sink_is_down_at_start_the_direct_path_commits_nothing(tmp_path: Path) -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 31)])
    down = ClosedSink("down")
    offsets = MemoryOffsetStore()
    pipeline = Pipeline("p", {"src": reader}, [down], offsets, retry=RetryPolicy(0, 0.01, 0.05))
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    _wait(lambda: down.opens >= 2)
    assert "connection refused" in str(pipeline.status.details()), "the status names why"
    pipeline.stop()
    runner.join(10)
    assert not runner.is_alive(), "a stop ends the wait for the sink"
    assert down.events == [] and offsets.load("p", "src") is None
    assert pipeline.status.details()["state"] == "stopped"


@pytest.mark.parametrize("fan", [True, False], ids=["fanout", "direct"])
def test_a_sink_that_cannot_be_opened_for_good_stops_the_run(tmp_path: Path, fan: bool) -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 31)])
    bad = ClosedSink("bad", CdcError(ErrorKind.AUTH, "password authentication failed"))
    sinks: list[MemorySink] = [MemorySink("good"), bad] if fan else [bad]
    pipeline = Pipeline(
        "p",
        {"src": reader},
        sinks,
        MemoryOffsetStore(),
        retry=RetryPolicy(0, 0.01, 0.05),
        fanout=FanoutPolicy(str(tmp_path / "spool")) if fan else None,
    )
    with pytest.raises(CdcError) as err:
        pipeline.run()
    assert err.value.kind is ErrorKind.AUTH and bad.opens == 1, "not retried"


def test_rejected_batch_goes_to_the_dead_letter_and_delivery_goes_on(tmp_path: Path) -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 31)], follow=False)
    good, picky = MemorySink("good"), PickySink("picky", set(range(1, 31)))
    dead = tmp_path / "dead"
    pipeline = _pipeline(tmp_path, reader, good, picky, dead_letter_dir=str(dead), stop_when_idle=True)
    pipeline.run()
    assert seqs(good.events) == list(range(1, 31))
    lines = [orjson.loads(line) for line in (dead / "picky.deadletter.jsonl").read_bytes().splitlines()]
    assert lines and all("value out of range" in line["reason"] for line in lines)
    assert all(line["kind"] == "sink_rejected" and line["component"] == "picky" for line in lines)
    assert all(line["stage"] == "sink" for line in lines)
    positions = [line["position"]["values"] for line in lines]
    assert positions == [[n] for n in range(1, 31)], "each with its position, to know where it stood"
    dead_seqs = [line["envelope"]["source"]["seq"] for line in lines]
    assert dead_seqs == list(range(1, 31)), "each refused event once, in order"


@pytest.mark.parametrize("fan", [True, False], ids=["fanout", "direct"])
def test_only_the_refused_events_are_dead_lettered(tmp_path: Path, fan: bool) -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 101)], follow=False)
    picky = PickySink("picky", {7, 8, 55})
    sinks: list[MemorySink] = [picky, MemorySink("other")] if fan else [picky]
    pipeline = Pipeline(
        "p",
        {"src": reader},
        sinks,
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=32, max_wait_s=0.01),
        retry=RetryPolicy(0, 0.01, 0.05),
        fanout=FanoutPolicy(str(tmp_path / "spool")) if fan else None,
        dead_letter_dir=str(tmp_path / "dead"),
        stop_when_idle=True,
    )
    pipeline.run()
    assert seqs(picky.events) == [n for n in range(1, 101) if n not in (7, 8, 55)], "the rest in order"
    lines = (tmp_path / "dead" / "picky.deadletter.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["envelope"]["source"]["seq"] for line in lines] == [7, 8, 55]


def test_rejected_batch_without_dead_letter_stops_the_pipeline(tmp_path: Path) -> None:
    reader = ScriptedReader([make_event(n) for n in range(1, 31)])
    good, picky = MemorySink("good"), MemorySink("picky")
    picky.fail(CdcError(ErrorKind.SINK_REJECTED, "document too large"))
    with pytest.raises(CdcError) as err:
        _pipeline(tmp_path, reader, good, picky).run()
    assert err.value.kind is ErrorKind.SINK_REJECTED


def _chunk(n: int, size: int = 1000) -> list:  # type: ignore[type-arg]
    return [make_event(i) for i in range(n * 10, n * 10 + 10)]


def test_spool_is_bounded_and_spills_then_blocks(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", ["fast", "slow"], max_bytes=1, max_memory_bytes=2000)
    stop = threading.Event()
    assert spool.append(_chunk(0), 1, 1000, stop) and spool.append(_chunk(1), 2, 1000, stop)
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").iterdir()), "in memory"
    assert spool.append(_chunk(2), 3, 1000, stop)  # memory full: spilled to disk
    assert len(list((tmp_path / "s").iterdir())) == 1
    # Memory and disk full: the next append blocks until every reader has moved past the oldest.
    blocked = threading.Thread(target=lambda: spool.append(_chunk(3), 4, 1000, stop))
    blocked.start()
    assert len(spool.read("fast", 100, 0.1).events) == 30
    spool.release()
    time.sleep(0.3)
    assert blocked.is_alive(), "one slow reader holds the spool: the writer must wait"
    taken = spool.read("slow", 100, 0.1)
    assert taken.ack == 3 and [e.source.extra["seq"] for e in taken.events] == list(range(30))
    spool.release()
    blocked.join(2)
    assert not blocked.is_alive(), "space was released, the append went through"
    spool.close()


def test_spool_hands_every_reader_the_same_events(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", ["a", "b"], max_memory_bytes=1 << 20)
    stop = threading.Event()
    originals = [_chunk(n) for n in range(6)]
    for n, chunk in enumerate(originals):
        spool.append(chunk, n + 1, 1 << 18, stop)  # the last ones spill to disk
    got_a = spool.read("a", 1000, 0.1)
    flat = [e for chunk in originals for e in chunk]
    assert got_a.events[:10][0] is flat[0], "in memory: the very same objects"
    assert got_a.events == flat and got_a.ack == 6, "spilled ones come back equal, with positions"
    assert [e.boundary for e in got_a.events] == [e.boundary for e in flat]
    assert len(spool.read("b", 25, 0.1).events) == 20, "whole chunks, at most max_events"
    assert len(spool.read("b", 1000, 0.1).events) == 40
    spool.release()
    spool.close()


def _varied_events() -> list[Any]:
    """Events of every value kind, a primary-key change (delete + create in one transaction) and a
    schema, as readers make them."""
    from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, Transaction
    from cdc_logs.schema import Column, Semantic, TableSchema

    schema = TableSchema(
        "db", "main", "t", (Column("id", "int32", key=True), Column("at", "int64", Semantic.TIMESTAMP))
    )
    out = []
    for n in range(1, 200):
        src = SourceInfo("test", "p", "db", "t", schema="main", extra={"seq": n})
        row = {
            "id": n,
            "at": 1_704_067_200_123,
            "raw": b"\x00\xff",
            "dec": "-1.500",
            "js": '{"a": 1}',
            "nul": None,
        }
        tx = Transaction(f"tx{n // 3}", n % 3 + 1, n % 3 + 1)
        position = Watermark(SERVER, (n,), event=0 if n % 3 == 2 else 1)
        op = Op.DELETE if n % 7 == 0 else Op.CREATE
        before, after = (row, None) if op is Op.DELETE else (None, row)
        event = ChangeEvent(op, src, before, after, {"id": n}, 0, tx, position=position, boundary=n % 3 == 2)
        event.schema = schema
        out.append(event)
    return out


def _seen(event: Any) -> tuple[Any, ...]:
    return (
        event.to_json(),
        event.key,
        event.position,
        event.position.event,
        event.boundary,
        event.schema.to_dict(),
    )


@pytest.mark.parametrize("memory", [64 << 20, 1], ids=["in-memory", "spilled-to-disk"])
def test_a_sink_gets_the_same_events_alone_or_fanned_out(tmp_path: Path, memory: int) -> None:
    """One delivery path: values and types, positions, boundaries and schemas reach a sink unchanged
    whether it is the only destination or one of several (also when the spool spills to disk)."""
    direct, fanned, other = MemorySink("a"), MemorySink("a"), MemorySink("b")
    Pipeline("p", {"src": ScriptedReader(_varied_events(), follow=False)}, [direct], MemoryOffsetStore(),
             batch=BatchPolicy(max_events=17, max_wait_s=0.01), stop_when_idle=True).run()  # fmt: skip
    Pipeline(
        "p",
        {"src": ScriptedReader(_varied_events(), follow=False)},
        [fanned, other],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=17, max_wait_s=0.01),
        fanout=FanoutPolicy(str(tmp_path / "spool"), 1 << 30, memory),
        stop_when_idle=True,
    ).run()
    assert [_seen(e) for e in fanned.events] == [_seen(e) for e in direct.events]
    assert [_seen(e) for e in other.events] == [_seen(e) for e in direct.events]
    assert isinstance(fanned.events[0].after["raw"], bytes), "bytes stay bytes (no JSON round trip)"


def test_the_spool_removes_only_its_own_files(tmp_path: Path) -> None:
    """A spool_dir may hold the user's files: a start or a close removes only the chunk files."""
    directory = tmp_path / "shared"
    directory.mkdir()
    (directory / "notes.txt").write_text("keep me")
    (directory / "000000000001.pickle.bak").write_text("not a chunk name")
    (directory / "000000000007.pickle").write_bytes(b"a chunk left by a killed run")
    spool = Spool(directory, ["a"], max_memory_bytes=1)
    assert sorted(p.name for p in directory.iterdir()) == ["000000000001.pickle.bak", "notes.txt"]
    for n in range(3):  # the first chunk stays in memory, the next ones spill (max_memory_bytes=1)
        spool.append(_chunk(n), n + 1, 1 << 18, threading.Event())
    assert any(p.name.endswith(".pickle") for p in directory.iterdir())
    spool.close()
    assert sorted(p.name for p in directory.iterdir()) == ["000000000001.pickle.bak", "notes.txt"]
    own = tmp_path / "own"
    first = Spool(own, ["a"], max_memory_bytes=1)
    for n in range(3):
        first.append(_chunk(n), n + 1, 1 << 18, threading.Event())
    assert any(own.iterdir()), "chunks spilled"
    Spool(own, ["a"]).close()
    assert not own.exists(), "a directory the spool alone used is removed"


def test_a_configured_spool_dir_gets_the_pipeline_s_own_subdirectory() -> None:
    from cdc_logs.build import _fanout_policy
    from cdc_logs.configfile import parse_config

    cfg = parse_config(
        {
            "name": "orders",
            "source": {"type": "sqlite", "path": "/tmp/x.db", "tables": ["t"]},
            "destinations": [{"type": "stdout"}, {"type": "file", "path": "/tmp/out.jsonl"}],
            "sync": {"fanout": {"spool_dir": "/var/lib/cdc"}},
        }
    )
    policy = _fanout_policy(cfg)
    assert policy is not None and Path(policy.spool_dir) == Path("/var/lib/cdc/orders.spool")


class SlowOpenSink(MemorySink):
    """Takes a while to open (a database connection, a Kafka producer's metadata) but never fails."""

    def open(self) -> None:
        time.sleep(0.5)
        super().open()


def test_a_one_time_run_waits_for_a_sink_still_opening(tmp_path: Path) -> None:
    """A fast source drained before the second destination finished connecting: the graceful drain
    waits for that sink (it is opening, not down), so the one-time run delivers to both and commits.
    Giving up at once ended a one_time MongoDB -> SQLite + Postgres run with exit 0, nothing written
    to Postgres and nothing committed."""
    reader = ScriptedReader([make_event(n) for n in range(1, 31)], follow=False)
    fast, slow = MemorySink("fast"), SlowOpenSink("slow")
    offsets = MemoryOffsetStore()
    pipeline = _pipeline(tmp_path, reader, fast, slow, offsets=offsets, stop_when_idle=True)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    runner.join(30)
    assert not runner.is_alive()
    assert seqs(fast.events) == list(range(1, 31)) and seqs(slow.events) == list(range(1, 31))
    stored = offsets.load("p", "src")
    assert stored is not None and stored.decoded() == Watermark(SERVER, (30,))


class NeverOpensSink(MemorySink):
    """A destination that is down for the whole run: every open is refused (transiently)."""

    def open(self) -> None:
        raise CdcError(ErrorKind.SINK_TRANSIENT, "connection refused")


def test_a_one_time_run_that_could_not_deliver_everywhere_fails(tmp_path: Path) -> None:
    """A one_time run whose destination is down must not end as a success: it committed nothing (the
    next run replays), and its exit status has to say so, naming the destination."""
    reader = ScriptedReader([make_event(n) for n in range(1, 31)], follow=False)
    fast, down = MemorySink("fast"), NeverOpensSink("down")
    offsets = MemoryOffsetStore()
    pipeline = _pipeline(tmp_path, reader, fast, down, offsets=offsets, stop_when_idle=True)
    with pytest.raises(CdcError) as caught:
        pipeline.run()
    assert caught.value.kind is ErrorKind.SINK_TRANSIENT and "down" in caught.value.message
    assert "next run replays" in caught.value.message
    assert offsets.load("p", "src") is None, "nothing committed past what every destination holds"


def test_a_stopped_run_with_a_destination_down_ends_quietly(tmp_path: Path) -> None:
    """A stop request (SIGTERM) is not a failure: the undelivered rest is replayed on restart."""
    reader = ScriptedReader([make_event(n) for n in range(1, 31)], follow=True)
    fast, down = MemorySink("fast"), NeverOpensSink("down")
    pipeline = _pipeline(tmp_path, reader, fast, down)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    deadline = time.monotonic() + 10
    while len(fast.events) < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    pipeline.stop()
    runner.join(10)
    assert not runner.is_alive()


def test_a_file_where_the_spool_directory_goes_is_a_config_error(tmp_path: Path) -> None:
    """`<spool_dir>/<name>.spool` taken by a user's file: said at start, the file left alone (it
    crashed the run with an unexpected NotADirectoryError at the first spill)."""
    taken = tmp_path / "orders.spool"
    taken.write_text("the user's file")
    with pytest.raises(CdcError) as caught:
        Spool(taken, ["a"])
    assert caught.value.kind is ErrorKind.CONFIG and "is a file" in caught.value.message
    assert taken.read_text() == "the user's file"
