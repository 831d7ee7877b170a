"""Replay markers and stable event ids shared by the sinks (cdc_logs/sinks/dedup.py), and name templates."""

from __future__ import annotations

import pytest

from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError
from cdc_logs.position import Watermark
from cdc_logs.sinks.dedup import EventIds, Marker, ReplayGuard
from cdc_logs.sinks.routing import check_template, position_headers, render
from tests.helpers import SERVER, make_event


def at(n: int, pos: int, *, boundary: bool = True, table: str = "t", op: str = "c") -> ChangeEvent:
    event = make_event(n, boundary=boundary, table=table, op=op)
    event.position = Watermark(SERVER, (pos,))
    return event


def seqs(events: list[ChangeEvent]) -> list[int]:
    return [e.source.extra["seq"] for e in events]


def apply(guard: ReplayGuard, batch: list[ChangeEvent]) -> list[int]:
    fresh, changed = guard.plan(batch)
    guard.committed(changed)
    return seqs(fresh)


def test_replayed_events_are_skipped() -> None:
    guard = ReplayGuard()
    assert apply(guard, [at(1, 1), at(2, 2)]) == [1, 2]
    assert apply(guard, [at(1, 1), at(2, 2), at(3, 3)]) == [3]


def test_a_transaction_cut_by_a_batch_continues() -> None:
    guard = ReplayGuard()
    assert apply(guard, [at(1, 10, boundary=False)]) == [1]
    assert apply(guard, [at(2, 10, boundary=False), at(3, 10)]) == [2, 3]
    assert apply(guard, [at(1, 10, boundary=False), at(2, 10, boundary=False), at(3, 10)]) == []


def test_an_incomplete_transaction_is_reapplied_not_lost() -> None:
    guard = ReplayGuard()
    apply(guard, [at(1, 10, boundary=False)])
    # A replay from the transaction's start: duplicates of its first part, nothing lost.
    assert apply(guard, [at(1, 10, boundary=False), at(2, 10)]) == [1, 2]


def test_markers_are_per_table() -> None:
    guard = ReplayGuard()
    apply(guard, [at(1, 5, table="a"), at(2, 6, table="b")])
    assert apply(guard, [at(3, 5, table="b"), at(4, 6, table="a")]) == [4]


def test_a_failed_write_changes_nothing() -> None:
    guard = ReplayGuard()
    guard.plan([at(1, 1)])  # write failed: committed() never called
    assert seqs(guard.plan([at(1, 1)])[0]) == [1]


def test_events_without_position_are_always_applied() -> None:
    event = make_event(1)
    event.position = None
    assert ReplayGuard().plan([event, event])[0] == [event, event]


def test_marker_round_trip() -> None:
    marker = Marker(Watermark(SERVER, (3, "x")), complete=False)
    assert Marker.decode(marker.encode()) == marker


def test_event_ids_are_stable_and_distinct() -> None:
    batch = [at(1, 1), at(2, 2, op="u"), at(3, 2, op="u")]
    a, _ = EventIds().assign(batch)
    b, _ = EventIds().assign(batch)
    assert a == b and len(set(a)) == 3


def test_identical_changes_at_one_position_get_distinct_ids_across_batches() -> None:
    flip = at(1, 7, op="u", boundary=False)
    ids = EventIds()
    first, state = ids.assign([flip])
    ids.commit(state)
    second, state = ids.assign([at(1, 7, op="u")])
    assert first != second
    # A new process replaying the transaction from its start reproduces both ids.
    replay, _ = EventIds().assign([flip, at(1, 7, op="u")])
    assert replay == first + second


def test_templates() -> None:
    event = make_event(1, op="d")
    assert render("{prefix}.{schema}.{table}.{op}", event, None) == "p.main.t.d"
    assert render("{prefix}.{schema}.{table}", event, "app") == "app.main.t"
    event.source.schema = None
    assert render("{prefix}.{schema}.{table}", event, "app") == "app.db.t"  # MySQL: {schema} is the db
    with pytest.raises(CdcError, match="unknown field"):
        check_template("{prefix}.{tabel}", "topic")
    with pytest.raises(CdcError):
        check_template("{table!r}", "topic")


def test_position_headers() -> None:
    event = make_event(4)
    event.source.extra["lsn"] = 123
    headers = dict(position_headers(event))
    assert headers["op"] == "c" and headers["lsn"] == "123" and '"values":[4]' in headers["position"]
