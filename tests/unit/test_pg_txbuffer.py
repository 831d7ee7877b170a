"""StreamBuffers: streamed transactions buffered per xid, spilled past the memory bound, aborts."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_logs.readers.postgres.txbuffer import StreamBuffers, subxid_of


def insert(xid: int, n: int, size: int = 10) -> bytes:
    """A streamed Insert-shaped payload tagged with `xid` (only the kind byte and xid matter here)."""
    return b"I" + struct.pack(">I", xid) + n.to_bytes(4, "big") + b"x" * size


def relation(xid: int) -> bytes:
    return b"R" + struct.pack(">I", xid) + b"rel"


def numbers(frames: list[tuple[int, bytes]]) -> list[int]:
    return [int.from_bytes(p[5:9], "big") for _, p in frames if p[:1] == b"I"]


def test_subxid_of_reads_the_tag_of_dml_and_falls_back_to_the_top_xid() -> None:
    assert subxid_of(insert(42, 1), 7) == 42
    assert subxid_of(b"E", 7) == 7  # Stream Stop has no xid
    assert subxid_of(b"O" + b"\0" * 12, 7) == 7  # Origin inside a stream is untagged


def test_in_memory_commit_replays_in_order_and_forgets_the_transaction() -> None:
    buf = StreamBuffers(max_memory_bytes=1 << 20)
    for i in range(5):
        buf.append(100, 1000 + i, insert(100, i))
    assert 100 in buf and buf.size(100) == 5 and not buf.spilled(100)
    out = list(buf.take(100))
    assert numbers(out) == [0, 1, 2, 3, 4]
    assert [lsn for lsn, _ in out] == [1000, 1001, 1002, 1003, 1004]
    assert 100 not in buf and buf.memory_bytes == 0


def test_interleaved_transactions_stay_apart() -> None:
    buf = StreamBuffers()
    buf.append(1, 10, insert(1, 1))
    buf.append(2, 11, insert(2, 100))
    buf.append(1, 12, insert(1, 2))
    assert numbers(list(buf.take(2))) == [100]
    assert numbers(list(buf.take(1))) == [1, 2]


def test_past_the_memory_bound_the_largest_transaction_spills_and_replays_whole() -> None:
    buf = StreamBuffers(max_memory_bytes=4096)
    buf.append(7, 1, insert(7, -1 & 0xFFFF, size=10))  # a small one that must stay in memory
    for i in range(1000):
        buf.append(5, 100 + i, insert(5, i, size=50))
    assert buf.spilled(5) and not buf.spilled(7)
    assert buf.memory_bytes <= 4096
    assert buf.spilled_bytes > 50 * 900
    out = list(buf.take(5))
    assert numbers(out) == list(range(1000))
    assert [lsn for lsn, _ in out] == [100 + i for i in range(1000)]
    assert len(list(buf.take(7))) == 1
    assert buf.memory_bytes == 0 and len(buf) == 0


def test_zero_bound_spills_everything() -> None:
    buf = StreamBuffers(max_memory_bytes=0)
    buf.append(3, 1, insert(3, 1))
    assert buf.spilled(3) and buf.memory_bytes == 0
    assert numbers(list(buf.take(3))) == [1]


@pytest.mark.parametrize("bound", [1 << 20, 0])
def test_whole_abort_drops_everything(bound: int) -> None:
    buf = StreamBuffers(max_memory_bytes=bound)
    for i in range(10):
        buf.append(9, i, insert(9, i))
    buf.abort(9, 9)
    assert 9 not in buf and buf.memory_bytes == 0
    assert list(buf.take(9)) == []


@pytest.mark.parametrize("bound", [1 << 20, 0])
def test_subtransaction_abort_drops_only_its_messages(bound: int) -> None:
    buf = StreamBuffers(max_memory_bytes=bound)
    buf.append(10, 1, insert(10, 1))
    buf.append(10, 2, relation(11))  # schema sent inside the savepoint, then rolled back with it
    buf.append(10, 3, insert(11, 2))
    buf.append(10, 4, insert(11, 3))
    buf.abort(10, 11)
    buf.append(10, 5, insert(12, 4))  # after ROLLBACK TO SAVEPOINT: a new subxid
    out = list(buf.take(10))
    assert numbers(out) == [1, 4]
    assert all(p[:1] != b"R" for _, p in out)


def test_abort_of_an_unknown_transaction_is_a_no_op() -> None:
    buf = StreamBuffers()
    buf.abort(1, 1)
    buf.abort(1, 2)
    assert len(buf) == 0


def test_memory_is_freed_by_an_in_memory_subtransaction_abort() -> None:
    buf = StreamBuffers()
    buf.append(1, 1, insert(1, 1))
    before = buf.memory_bytes
    buf.append(1, 2, insert(2, 2, size=1000))
    buf.abort(1, 2)
    assert buf.memory_bytes == before


def test_clear_closes_spill_files() -> None:
    buf = StreamBuffers(max_memory_bytes=0)
    buf.append(1, 1, insert(1, 1))
    buf.append(2, 1, insert(2, 1))
    buf.clear()
    assert len(buf) == 0 and buf.memory_bytes == 0


def test_a_half_consumed_replay_still_forgets_the_transaction() -> None:
    buf = StreamBuffers(max_memory_bytes=0)
    for i in range(3):
        buf.append(1, i, insert(1, i))
    it = buf.take(1)
    next(it)
    it.close()  # type: ignore[attr-defined]
    assert 1 not in buf


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["a", "a", "a", "sub"]), st.integers(0, 2), st.integers(0, 3)),
        max_size=80,
    ),
    bound=st.sampled_from([0, 300, 1 << 20]),
)
def test_replay_equals_a_model_whatever_spills(ops: list[tuple[str, int, int]], bound: int) -> None:
    """Model: per top xid, the appended (subxid, n) minus aborted subxids, in order."""
    buf = StreamBuffers(max_memory_bytes=bound)
    model: dict[int, list[tuple[int, int]]] = {}
    aborted: dict[int, set[int]] = {}
    for n, (op, top, sub) in enumerate(ops):
        xid = 100 + top
        subxid = xid if sub == 0 else 1000 + top * 10 + sub
        if op == "a":
            buf.append(xid, n, insert(subxid, n))
            model.setdefault(xid, []).append((subxid, n))
        elif subxid != xid:
            buf.abort(xid, subxid)
            if xid in model:
                aborted.setdefault(xid, set()).add(subxid)
    for xid, items in model.items():
        expected = [n for s, n in items if s not in aborted.get(xid, set())]
        assert numbers(list(buf.take(xid))) == expected
    assert buf.memory_bytes == 0
