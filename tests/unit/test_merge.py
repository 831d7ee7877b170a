"""merge_strategy: the timestamp_based window (cdc_logs/merge.py) on its own, then in the pipeline with
scripted readers (key_based = arrival order; timestamp_based = event-time order across sources, each
source's order and checkpoint kept). The same with two real SQLite sources under SIGKILL is
tests/chaos/test_merge_kill.py."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cdc_logs.envelope import ChangeEvent, Heartbeat, Undecodable
from cdc_logs.merge import TimestampMerge
from cdc_logs.observability.metrics import Metrics
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline, RetryPolicy
from cdc_logs.position import Position, Watermark
from cdc_logs.readers.base import StreamItem
from tests.helpers import SERVER, MemorySink, ScriptedReader, make_event

WINDOW = 1.0


def ev(n: int, ts: int, table: str = "t") -> ChangeEvent:
    """Event `n` (position n) with event time `ts`."""
    event = make_event(n, table=table)
    event.source.ts_ms = ts
    return event


def names(released: list[tuple[str, Any]]) -> list[str]:
    out = []
    for source, item in released:
        if isinstance(item, ChangeEvent):
            out.append(f"{source}{item.source.extra['seq']}")
        else:
            out.append(f"{source}:{type(item).__name__}")
    return out


def merge(*sources: str, **kw: Any) -> TimestampMerge:
    return TimestampMerge(sources or ("a", "b"), kw.pop("window_s", WINDOW), **kw)


# -- the window ------------------------------------------------------------------------------------
def test_heads_leave_in_event_time_order_once_every_source_has_one() -> None:
    m = merge()
    m.push("a", ev(1, 100), 0.0)
    m.push("a", ev(2, 300), 0.0)
    assert m.release(0.0) == []  # b may still send something earlier
    m.push("b", ev(1, 200), 0.1)
    m.push("b", ev(2, 400), 0.1)
    # a1 (100) < b1 (200) < a2 (300); b2 must wait: a has nothing left and is not idle.
    assert names(m.release(0.1)) == ["a1", "b1", "a2"]
    assert m.held == 1
    m.push("a", ev(3, 500), 0.2)
    assert names(m.release(0.2)) == ["b2"]


def test_a_source_is_never_reordered_even_when_its_own_times_go_backwards() -> None:
    m = merge()
    m.push("a", ev(1, 500), 0.0)
    m.push("a", ev(2, 100), 0.0)  # its own clock went back: it stays behind a1
    m.push("b", ev(1, 300), 0.0)
    m.idle("a")
    m.push("b", ev(2, 600), 0.0)
    out = names(m.release(0.0))
    assert out.index("a1") < out.index("a2")
    assert out[:3] == ["b1", "a1", "a2"]  # a2 (100) can only leave after a1 (500)
    assert m.late["a"] == 1  # released below the released time: counted


def test_an_idle_source_holds_nobody_back() -> None:
    m = merge()
    m.push("a", ev(1, 100), 0.0)
    assert m.release(0.0) == []
    m.idle("b")
    assert names(m.release(0.0)) == ["a1"]


def test_a_heartbeat_counts_as_idle_once_it_has_left() -> None:
    m = merge()
    m.push("b", Heartbeat(Watermark(SERVER, (7,))), 0.0)
    m.push("a", ev(1, 100), 0.0)
    assert names(m.release(0.0)) == ["b:Heartbeat", "a1"]


def test_a_silent_source_holds_the_others_at_most_the_window() -> None:
    m = merge(window_s=1.0)
    m.push("a", ev(1, 100), 10.0)
    m.push("a", ev(2, 200), 10.5)
    assert m.release(10.9) == []
    assert m.due_in(10.9) == pytest.approx(0.1)
    assert names(m.release(11.0)) == ["a1"]  # a1 waited 1 s; a2 has waited 0.5 s only
    assert names(m.release(11.5)) == ["a2"]
    assert m.due_in(11.5) is None


def test_an_event_later_than_the_window_is_released_at_once_and_counted() -> None:
    metrics = Metrics("p")
    m = merge("a", "b", "c", metrics=metrics)
    m.push("a", ev(1, 1000), 0.0)
    m.push("a", ev(2, 1500), 0.0)
    m.push("b", ev(1, 1000), 0.0)
    m.push("c", ev(1, 1000), 0.0)
    m.push("c", ev(2, 2000), 0.0)
    assert names(m.release(0.0)) == ["a1", "b1"]  # c1 waits: b might still send something before it
    assert m.watermark == 1000
    m.push("b", ev(2, 900), 0.2)  # late: 1000 was released already
    out = names(m.release(0.2))
    assert out == ["b2"]  # at once, though c1 still waits for b
    assert m.late == {"b": 1}
    assert 'cdc_logs_merge_late_events_total{pipeline="p",source="b"} 1.0' in metrics.render().decode()


def test_a_late_event_takes_its_lane_with_it_in_merge_order() -> None:
    m = merge()
    m.push("a", ev(1, 1000), 0.0)
    m.push("b", ev(1, 1100), 0.0)
    assert names(m.release(0.0)) == ["a1"]
    m.push("b", ev(2, 1200), 0.1)
    m.push("b", ev(3, 500), 0.1)  # late, behind b1 and b2 which must go first
    assert names(m.release(0.1)) == ["b1", "b2", "b3"]
    assert m.late == {"b": 1}


def test_positions_leave_at_once_at_a_lane_head_and_keep_their_place_behind_events() -> None:
    m = merge()
    bad = Undecodable(Watermark(SERVER, (2,)), "t", "not json")
    m.push("a", ev(1, 100), 0.0)
    m.push("a", Heartbeat(Watermark(SERVER, (1,))), 0.0)
    m.push("b", bad, 0.0)
    out = m.release(0.0)
    assert names(out) == ["b:Undecodable"]  # a's heartbeat stays behind a1, which waits for b
    m.push("b", ev(3, 50), 0.1)
    m.push("b", ev(4, 200), 0.1)
    # b4 may go after the heartbeat: a said it had nothing after a1.
    assert names(m.release(0.1)) == ["b3", "a1", "a:Heartbeat", "b4"]


def test_an_event_without_a_time_takes_its_lanes_previous_time() -> None:
    m = merge()
    m.push("a", ev(1, 300), 0.0)
    m.push("a", ev(2, 0), 0.0)
    m.push("b", ev(1, 301), 0.0)
    m.push("b", ev(2, 302), 0.0)
    m.idle("a")
    assert names(m.release(0.0)) == ["a1", "a2", "b1", "b2"]
    assert not m.late


def test_memory_is_bounded_by_max_held() -> None:
    m = merge(max_held=3)
    for n in range(1, 6):
        m.push("a", ev(n, 100 + n), 0.0)
    assert names(m.release(0.0)) == ["a1", "a2"]
    assert m.held == 3


def test_drain_gives_everything_in_merge_order() -> None:
    m = merge()
    m.push("a", ev(1, 100), 0.0)
    m.push("a", ev(2, 400), 0.0)
    m.push("b", ev(1, 300), 0.0)
    assert names(m.drain()) == ["a1", "b1", "a2"]
    assert m.empty


@pytest.mark.parametrize("seed", range(30))
def test_random_streams_lose_nothing_keep_each_source_and_order_what_was_in_time(seed: int) -> None:
    """Three sources with increasing times, arriving interleaved at random, some idle ticks and now
    and then a clock jump: every item comes out exactly once, each source in its own order, and the
    output goes back in time exactly at the events counted late."""
    rng = random.Random(seed)
    sources = ("a", "b", "c")
    pending: dict[str, list[ChangeEvent | Heartbeat]] = {}
    for s in sources:
        ts, items = 1000, []
        for n in range(1, 60):
            ts += rng.randint(0, 30) - (200 if rng.random() < 0.03 else 0)
            items.append(ev(n, ts) if rng.random() > 0.1 else Heartbeat(Watermark(SERVER, (n,))))
        pending[s] = items
    m = merge(*sources, max_held=rng.choice([5, 50, 10_000]))
    out: list[tuple[str, Any]] = []
    now = 0.0
    while any(pending.values()):
        now += rng.random() * 0.2
        s = rng.choice([s for s in sources if pending[s]])
        if rng.random() < 0.1:
            m.idle(s)
        else:
            m.push(s, pending[s].pop(0), now)
        out += m.release(now)
    out += m.drain()
    for s in sources:
        got = [item.position for src, item in out if src == s]
        assert got == sorted(got), f"source {s} was reordered"
        assert len(got) == 59
    high, inversions = 0, 0
    for _src, item in out:
        if isinstance(item, ChangeEvent):
            if item.source.ts_ms < high:
                inversions += 1
            high = max(high, item.source.ts_ms)
    assert inversions == sum(m.late.values())


def test_with_every_source_present_and_in_time_the_output_is_sorted() -> None:
    rng = random.Random(7)
    times = sorted(rng.sample(range(10_000), 300))
    lanes: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    for t in times:
        lanes[rng.choice("abc")].append(t)
    m = merge("a", "b", "c")
    out: list[tuple[str, Any]] = []
    n = 0
    while any(lanes.values()):
        s = rng.choice([s for s in lanes if lanes[s]])
        n += 1
        m.push(s, ev(n, lanes[s].pop(0)), 0.0)
        for other in lanes:
            if not lanes[other]:
                m.idle(other)
        out += m.release(0.0)
    out += m.drain()
    got = [item.source.ts_ms for _s, item in out]
    assert got == times and not m.late


# -- in the pipeline -------------------------------------------------------------------------------
FAST_RETRY = RetryPolicy(max_attempts=5, initial_backoff_s=0.001, max_backoff_s=0.01)


class GatedReader(ScriptedReader):
    """Yields item i only once `gate` allows it (so the test decides the arrival order across sources)."""

    def __init__(self, items: list[Any], turns: list[threading.Event]) -> None:
        super().__init__(items)
        self.turns = turns
        self.done: list[threading.Event] = [threading.Event() for _ in items]

    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        for index, item in enumerate(self.items):
            while not self.turns[index].wait(0.02):
                if self._stop.is_set():
                    return
                yield None
            yield item
            self.done[index].set()
        while not self._stop.wait(0.02):
            yield None


def test_key_based_delivers_one_keys_events_from_several_sources_in_arrival_order() -> None:
    """key_based is the pipeline's own behaviour, made explicit: no buffering, arrival order. Key 1 is
    changed by a (t=300), then b (t=100), then a (t=200): delivered a, b, a, not by time."""
    a_turns = [threading.Event(), threading.Event()]
    b_turns = [threading.Event()]
    a = GatedReader([_keyed(1, 300), _keyed(3, 200)], a_turns)
    b = GatedReader([_keyed(2, 100)], b_turns)
    sink = MemorySink()
    pipeline = Pipeline(
        "p",
        {"a": a, "b": b},
        [sink],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=10, max_wait_s=0.01),
        retry=FAST_RETRY,
        stop_when_idle=True,
        merge_window_s=None,
    )

    def script() -> None:
        for turn, done in ((a_turns[0], a.done[0]), (b_turns[0], b.done[0]), (a_turns[1], a.done[1])):
            turn.set()
            done.wait(5)  # set once the item is in the pipeline's queue

    threading.Thread(target=script, daemon=True).start()
    pipeline.run()
    assert [e.after["v"] for e in sink.events if e.after] == [1, 2, 3]


def _keyed(n: int, ts: int) -> ChangeEvent:
    event = make_event(n, key=1, op="u")
    event.source.ts_ms = ts
    return event


def test_timestamp_based_interleaves_by_event_time_and_keeps_each_sources_checkpoint() -> None:
    a_items = [ev(n, 1000 + 2 * n, table="a") for n in range(1, 101)]
    b_items = [ev(n, 1001 + 2 * n, table="b") for n in range(1, 101)]
    a, b = ScriptedReader(a_items), ScriptedReader(b_items)
    sink = MemorySink()
    offsets = MemoryOffsetStore()
    pipeline = Pipeline(
        "p",
        {"a": a, "b": b},
        [sink],
        offsets,
        batch=BatchPolicy(max_events=7, max_wait_s=0.01),
        retry=FAST_RETRY,
        stop_when_idle=True,
        merge_window_s=5.0,
    )
    stats = pipeline.run()
    assert [e.source.ts_ms for e in sink.events] == sorted(e.source.ts_ms for e in a_items + b_items)
    assert [e.source.table for e in sink.events[:6]] == ["a", "b", "a", "b", "a", "b"]
    assert stats.events == 200
    for name, reader in (("a", a), ("b", b)):
        stored = offsets.load("p", name)
        assert stored is not None and stored.decoded() == Watermark(SERVER, (100,))
        assert reader.commits == sorted(reader.commits)  # each source's checkpoint only moves on


def test_a_held_event_is_never_checkpointed_past() -> None:
    """a's events wait for b (silent, never idle) within a long window: a's checkpoint stays where it
    was until they are delivered, and a later heartbeat of a behind them does not move it either."""
    a = ScriptedReader([ev(1, 100), Heartbeat(Watermark(SERVER, (2,)))])
    silent = _Silent()
    sink = MemorySink()
    offsets = MemoryOffsetStore()
    pipeline = Pipeline(
        "p",
        {"a": a, "b": silent},
        [sink],
        offsets,
        batch=BatchPolicy(max_events=10, max_wait_s=0.01),
        retry=FAST_RETRY,
        merge_window_s=0.8,
    )
    thread = threading.Thread(target=pipeline.run, daemon=True)
    thread.start()
    pipeline.ready.wait(5)
    stop = threading.Event()
    stop.wait(0.4)
    assert sink.events == [] and offsets.load("p", "a") is None and a.commits == []
    deadline = time.monotonic() + 10
    while a.commits[-1:] != [Watermark(SERVER, (2,))] and time.monotonic() < deadline:
        stop.wait(0.02)  # past the window: released, delivered, committed
    assert [e.source.ts_ms for e in sink.events] == [100]
    stored = offsets.load("p", "a")
    assert stored is not None and stored.decoded() == Watermark(SERVER, (2,))
    assert a.commits[-1] == Watermark(SERVER, (2,))
    pipeline.stop()
    thread.join(10)


class _Silent(ScriptedReader):
    """A source that neither sends nor ticks idle (a reader stuck in a reconnect)."""

    def __init__(self) -> None:
        super().__init__([])

    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        self._stop.wait()
        return iter(())
