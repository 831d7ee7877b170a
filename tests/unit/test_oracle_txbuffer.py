"""TxBuffer (cdc_logs/readers/oracle/txbuffer.py): changes held per XID, undo by ROW_ID, spill to disk."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_logs.errors import CdcError
from cdc_logs.readers.oracle.txbuffer import TxBuffer


def rec(n: int, size: int = 10) -> bytes:
    return n.to_bytes(4, "big") + b"x" * size


def nums(records: list[bytes]) -> list[int]:
    return [int.from_bytes(r[:4], "big") for r in records]


def test_interleaved_transactions_stay_apart_and_leave_on_take() -> None:
    buf = TxBuffer()
    buf.append("A", 10, "r1", rec(1))
    buf.append("B", 11, "r2", rec(100))
    buf.append("A", 12, "r3", rec(2))
    assert buf.oldest_start() == 10 and len(buf) == 2
    assert nums(list(buf.take("B"))) == [100]
    assert nums(list(buf.take("A"))) == [1, 2]
    assert len(buf) == 0 and buf.memory_bytes == 0 and buf.oldest_start() is None


def test_begin_keeps_the_earliest_start_and_discard_forgets() -> None:
    buf = TxBuffer()
    buf.begin("A", 20)
    buf.append("A", 25, "r", rec(1))
    buf.begin("A", 15)
    assert buf.start_scn("A") == 15
    buf.discard("A")
    assert "A" not in buf and buf.memory_bytes == 0
    assert list(buf.take("A")) == []


def test_undo_removes_the_last_change_to_that_row() -> None:
    buf = TxBuffer()
    buf.append("A", 1, "r1", rec(1))
    buf.append("A", 2, "r2", rec(2))
    buf.append("A", 3, "r1", rec(3))
    assert buf.undo("A", "r1")
    assert not buf.undo("A", "nope") and not buf.undo("Z", "r1")
    assert buf.size("A") == 2
    assert nums(list(buf.take("A"))) == [1, 2]


def test_past_the_memory_bound_the_largest_spills_and_undo_still_works() -> None:
    buf = TxBuffer(max_memory_bytes=4096)
    buf.append("small", 1, "s", rec(-1 & 0xFFFF))
    for i in range(1000):
        buf.append("big", 2 + i, f"r{i % 10}", rec(i, size=50))
    assert buf.spilled("big") and not buf.spilled("small")
    assert buf.memory_bytes <= 4096 and buf.spilled_bytes > 50 * 900
    assert buf.undo("big", "r9")  # the last change to r9 (999), in the file
    assert buf.undo("big", "r9")  # then 989
    assert nums(list(buf.take("big"))) == [i for i in range(1000) if i not in (989, 999)]
    assert nums(list(buf.take("small"))) == [0xFFFF]
    assert buf.memory_bytes == 0


def test_no_spill_directory_is_an_internal_error(tmp_path: object) -> None:
    buf = TxBuffer(max_memory_bytes=0, spill_dir="/nonexistent/dir")
    with pytest.raises(CdcError):
        buf.append("A", 1, "r", rec(1))


_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"), st.sampled_from("ABC"), st.sampled_from(["r1", "r2", "r3"]), st.integers(1, 300)
        ),
        st.tuples(st.just("undo"), st.sampled_from("ABC"), st.sampled_from(["r1", "r2", "r3"]), st.just(0)),
        st.tuples(st.just("rollback"), st.sampled_from("ABC"), st.just(""), st.just(0)),
        st.tuples(st.just("commit"), st.sampled_from("ABC"), st.just(""), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(_ops, st.sampled_from([0, 600, 1 << 20]))
def test_matches_a_list_model_whatever_spills(ops: list[tuple[str, str, str, int]], bound: int) -> None:
    buf = TxBuffer(max_memory_bytes=bound)
    model: dict[str, list[tuple[str, int]]] = {}
    counter = 0
    for op, xid, row, size in ops:
        if op == "add":
            counter += 1
            buf.append(xid, counter, row, rec(counter, size))
            model.setdefault(xid, []).append((row, counter))
        elif op == "undo":
            held = model.get(xid, [])
            hit = next((i for i in range(len(held) - 1, -1, -1) if held[i][0] == row), None)
            assert buf.undo(xid, row) == (hit is not None)
            if hit is not None:
                del held[hit]
        elif op == "rollback":
            buf.discard(xid)
            model.pop(xid, None)
        else:
            assert nums(list(buf.take(xid))) == [n for _, n in model.pop(xid, [])]
    for xid in list(model):
        assert nums(list(buf.take(xid))) == [n for _, n in model.pop(xid)]
    assert len(buf) == 0 and buf.memory_bytes == 0


def test_the_undo_index_counts_and_a_spilled_transaction_keeps_none_in_memory() -> None:
    """The (seq, ROW_ID) index is bounded too: counted while in memory, spilled with the records
    (a transaction of millions of rows would otherwise hold an index entry per row past the bound)."""
    import tracemalloc

    index_only = TxBuffer(max_memory_bytes=10_000)
    for i in range(60):
        index_only.append("A", 1, f"HR.EMP/AAAR3sAAEAAAACX{i:03d}", b"")
    assert index_only.spilled("A")  # empty records: the index alone passed the bound

    buf = TxBuffer(max_memory_bytes=4096)
    tracemalloc.start()
    try:
        for i in range(100):  # spilled by now (its file's write buffer allocated)
            buf.append("big", 2, f"HR.EMP/AAAR3sAAEAAAACX{i % 997:03d}", rec(i, size=8))
        assert buf.spilled("big")
        before = tracemalloc.take_snapshot()
        for i in range(100, 20_000):
            buf.append("big", 2, f"HR.EMP/AAAR3sAAEAAAACX{i % 997:03d}", rec(i, size=8))
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert buf.spilled("big") and buf.memory_bytes <= 4096
    assert grown < 200_000, grown  # 19,900 index entries would be well over 2 MB
    assert buf.size("big") == 20_000
    assert buf.undo("big", "HR.EMP/AAAR3sAAEAAAACX005")  # the last change to it, 19,945, in the file
    assert not buf.undo("big", "HR.EMP/nothing")
    buf.append("big", 2, "HR.EMP/x", rec(20_000, size=8))  # appends still go to the end of the file
    got = nums(list(buf.take("big")))
    assert got == [i for i in range(20_001) if i != 19_945]
