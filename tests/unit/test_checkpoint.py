"""Tests for cdc_logs.checkpoint: commit only boundaries durable in every sink; a model-based check."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cdc_logs.checkpoint import Checkpointer
from cdc_logs.envelope import Heartbeat
from cdc_logs.position import Lsn, Position, Watermark

SERVER = "sys-1"


def pos(n: int) -> Lsn:
    """A position whose LSN equals the event's sequence number, so tests can read seq back."""
    return Lsn(SERVER, n)


def emit(cp: Checkpointer, source: str = "pg", boundary: bool = True) -> int:
    """Give the next event a seq and track its position (as the pipeline does); returns the seq."""
    seq = cp.next_seq()
    cp.track(seq, source, pos(seq), boundary)
    return seq


def test_needs_a_sink() -> None:
    with pytest.raises(ValueError):
        Checkpointer([])


def test_sequence_numbers_start_at_one_and_increase() -> None:
    cp = Checkpointer(["a"])
    assert [cp.next_seq() for _ in range(4)] == [1, 2, 3, 4]


def test_nothing_committable_before_any_ack() -> None:
    cp = Checkpointer(["a", "b"])
    emit(cp)
    assert cp.take_committable() == {}
    assert cp.pending() == 1


def test_committable_waits_for_the_slowest_sink() -> None:
    cp = Checkpointer(["file", "kafka", "redis"])
    for _ in range(5):
        emit(cp)
    cp.ack("file", 5)
    cp.ack("kafka", 5)
    assert cp.take_committable() == {}
    cp.ack("redis", 2)
    assert cp.durable_seq() == 2
    assert cp.take_committable() == {"pg": pos(2)}
    assert cp.take_committable() == {}  # taken marks are gone
    cp.ack("redis", 5)
    assert cp.take_committable() == {"pg": pos(5)}
    assert cp.pending() == 0


def test_only_the_highest_durable_boundary_is_returned() -> None:
    cp = Checkpointer(["a", "b"])
    seqs = [emit(cp) for _ in range(4)]
    cp.ack("a", 3)
    cp.ack("b", 4)
    assert cp.take_committable() == {"pg": pos(seqs[2])}
    assert cp.pending() == 1


def test_non_boundary_marks_are_never_returned() -> None:
    cp = Checkpointer(["a", "b"])
    first = emit(cp, boundary=True)  # 1: end of tx A
    emit(cp, boundary=False)  # 2: inside tx B
    emit(cp, boundary=False)  # 3: inside tx B
    cp.ack("a", 3)
    cp.ack("b", 3)
    assert cp.take_committable() == {"pg": pos(first)}
    last = emit(cp, boundary=True)  # 4: end of tx B
    cp.ack("a", 4)
    assert cp.take_committable() == {}
    cp.ack("b", 4)
    assert cp.take_committable() == {"pg": pos(last)}


def test_mid_transaction_only_is_never_committable() -> None:
    cp = Checkpointer(["a"])
    for _ in range(3):
        emit(cp, boundary=False)
    cp.ack("a", 3)
    assert cp.take_committable() == {}
    assert cp.pending() == 0


def test_events_without_position_are_ignored() -> None:
    cp = Checkpointer(["a"])
    seq = cp.next_seq()
    cp.track(seq, "pg", None, True)
    cp.ack("a", seq)
    assert cp.take_committable() == {}


def test_results_are_per_source() -> None:
    cp = Checkpointer(["a", "b"])
    s1 = emit(cp, "pg")  # 1
    s2 = emit(cp, "mysql")  # 2
    emit(cp, "pg")  # 3
    s4 = emit(cp, "sqlite")  # 4
    cp.ack("a", 4)
    cp.ack("b", 2)
    assert cp.take_committable() == {"pg": pos(s1), "mysql": pos(s2)}
    cp.ack("b", 4)
    assert cp.take_committable() == {"pg": pos(3), "sqlite": pos(s4)}


def test_acks_never_go_backwards() -> None:
    cp = Checkpointer(["a"])
    for _ in range(3):
        emit(cp)
    cp.ack("a", 3)
    cp.ack("a", 1)
    assert cp.durable_seq() == 3
    assert cp.take_committable() == {"pg": pos(3)}


def test_ack_from_unknown_sink_is_an_error() -> None:
    cp = Checkpointer(["a"])
    with pytest.raises(KeyError):
        cp.ack("nope", 1)


def test_heartbeat_position_becomes_committable() -> None:
    """An idle or filtered source still moves its checkpoint (does not pin WAL)."""
    cp = Checkpointer(["a"])
    beat = Heartbeat(Watermark("file-id", (17,)))
    seq = cp.next_seq()
    cp.track(seq, "sqlite", beat.position, beat.boundary)
    cp.ack("a", seq)
    assert cp.take_committable() == {"sqlite": Watermark("file-id", (17,))}


def test_concurrent_acks_and_takes_are_consistent() -> None:
    sinks = ["a", "b", "c"]
    cp = Checkpointer(sinks)
    seqs = [emit(cp) for _ in range(2000)]
    taken: list[Lsn] = []
    stop = threading.Event()

    def taker() -> None:
        while not stop.is_set():
            taken.extend(p for p in cp.take_committable().values() if isinstance(p, Lsn))

    def acker(sink: str) -> None:
        for seq in seqs:
            cp.ack(sink, seq)

    threads = [threading.Thread(target=acker, args=(s,)) for s in sinks]
    consumer = threading.Thread(target=taker)
    consumer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    consumer.join()
    taken.extend(p for p in cp.take_committable().values() if isinstance(p, Lsn))
    assert [p.lsn for p in taken] == sorted(p.lsn for p in taken)
    assert taken[-1] == pos(seqs[-1])
    assert cp.pending() == 0


# ------------------------------------------------------------------------------- model-based test
SINKS = ("file", "kafka", "redis")
SOURCES = ("pg", "mysql")


class CheckpointModel(RuleBasedStateMachine):
    """Random interleavings of events (boundary or not, two sources), acks from three sinks, takes."""

    @initialize()
    def setup(self) -> None:
        self.cp = Checkpointer(list(SINKS))
        self.emitted: list[tuple[int, str, bool]] = []  # (seq, source, boundary)
        self.acked = dict.fromkeys(SINKS, 0)
        self.committed: dict[str, int] = {}

    @rule(source=st.sampled_from(SOURCES), boundary=st.booleans())
    def event(self, source: str, boundary: bool) -> None:
        seq = self.cp.next_seq()
        assert seq == len(self.emitted) + 1
        self.cp.track(seq, source, pos(seq), boundary)
        self.emitted.append((seq, source, boundary))

    @precondition(lambda self: bool(self.emitted))
    @rule(sink=st.sampled_from(SINKS), data=st.data())
    def ack(self, sink: str, data: st.DataObject) -> None:
        upto = data.draw(st.integers(0, len(self.emitted)))  # may also be stale (below the last ack)
        self.cp.ack(sink, upto)
        self.acked[sink] = max(self.acked[sink], upto)

    @rule()
    def take(self) -> None:
        self._check(self.cp.take_committable())

    def _check(self, got: Mapping[str, Position]) -> None:
        durable = min(self.acked.values())
        boundaries = {seq: source for seq, source, boundary in self.emitted if boundary}
        for source in SOURCES:
            # expected: the highest boundary of this source at or below `durable`, if newer than the last
            candidates = [seq for seq, src in boundaries.items() if src == source and seq <= durable]
            newest = max(candidates, default=0)
            if newest > self.committed.get(source, 0):
                assert got.get(source) == pos(newest)
            else:
                assert source not in got
        for source, position in got.items():
            assert isinstance(position, Lsn)
            assert position.lsn <= durable, "committed a position not yet durable in every sink"
            assert boundaries.get(position.lsn) == source, "committed a non-boundary position"
            assert position.lsn > self.committed.get(source, 0), "commit went backwards"
            self.committed[source] = position.lsn

    @invariant()
    def durable_is_min_ack(self) -> None:
        assert self.cp.durable_seq() == min(self.acked.values())

    def teardown(self) -> None:
        # eventually: every sink acks everything -> the last boundary of each source is committed
        last = len(self.emitted)
        for sink in SINKS:
            self.cp.ack(sink, last)
            self.acked[sink] = last
        self._check(self.cp.take_committable())
        for source in SOURCES:
            final = [seq for seq, src, boundary in self.emitted if src == source and boundary]
            assert self.committed.get(source) == (final[-1] if final else None)
        assert self.cp.pending() == 0


CheckpointModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_checkpoint_model = CheckpointModel.TestCase
