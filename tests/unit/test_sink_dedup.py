"""Replay markers and stable event ids shared by the sinks (cdc_logs/sinks/dedup.py), and name templates."""

from __future__ import annotations

import pytest

from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.errors import CdcError
from cdc_logs.position import Watermark
from cdc_logs.sinks.dedup import EventIds, Marker, ReplayGuard
from cdc_logs.sinks.routing import check_template, position_headers, render
from tests.helpers import SERVER, make_event


def at(
    n: int, pos: int, *, boundary: bool = True, table: str = "t", op: str = "c", event: int = 0
) -> ChangeEvent:
    """Event `n` at change-table position `pos`, `event` events past it (event contract)."""
    ev = make_event(n, boundary=boundary, table=table, op=op)
    ev.position = Watermark(SERVER, (pos,), event=event)
    return ev


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
    first, second, last = at(1, 9, boundary=False, event=1), at(2, 9, boundary=False, event=2), at(3, 10)
    assert apply(guard, [first]) == [1]
    assert apply(guard, [second, last]) == [2, 3]
    assert apply(guard, [first, second, last]) == []


def test_a_replayed_transaction_applies_exactly_what_was_missing() -> None:
    guard = ReplayGuard()
    apply(guard, [at(1, 9, boundary=False, event=1)])
    # A replay from the transaction's start: the applied part is recognised, the rest applied.
    assert apply(guard, [at(1, 9, boundary=False, event=1), at(2, 10)]) == [2]


def test_a_legacy_incomplete_marker_applies_its_position_again() -> None:
    guard = ReplayGuard()
    key = "watermark|" + SERVER + "|db.main.t"
    guard.markers[key] = Marker(Watermark(SERVER, (10,)), complete=False)  # written before `event`
    assert apply(guard, [at(1, 9), at(2, 10), at(3, 11)]) == [2, 3]


def test_snapshot_rows_are_always_applied_and_move_no_marker() -> None:
    guard = ReplayGuard()
    rows = [at(n, 5, op="r", boundary=n == 3) for n in (1, 2, 3)]
    assert apply(guard, rows) == [1, 2, 3]
    assert apply(guard, rows) == [1, 2, 3]
    assert guard.markers == {}
    assert apply(guard, [at(4, 6)]) == [4]


def test_lanes_are_guarded_separately() -> None:
    from cdc_logs.position import KafkaOffsets

    def rec(n: int, partition: str, offset: int) -> ChangeEvent:
        ev = make_event(n)
        ev.position = KafkaOffsets("k", ((partition, offset),), partition)
        return ev

    guard = ReplayGuard()
    assert apply(guard, [rec(1, "t:0", 5), rec(2, "t:1", 3)]) == [1, 2]
    # Another run interleaves the partitions differently: each is judged by its own offsets.
    assert apply(guard, [rec(3, "t:1", 4), rec(1, "t:0", 5), rec(4, "t:0", 6)]) == [3, 4]


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


def test_messages_without_a_table_go_where_debezium_puts_them() -> None:
    message = make_event(1)
    message.op, message.source.schema, message.source.table = Op.MESSAGE, "", ""
    assert render("{prefix}.{schema}.{table}", message, "app") == "app.message"  # Debezium's topic
    assert render("{prefix}/{schema}/{table}", message, "app") == "app/message"  # MQTT
    assert render("persistent://public/default/{prefix}.{schema}.{table}", message, None) == (
        "persistent://public/default/p.message"
    )
    assert render("{prefix}.{schema}.{table}.{op}", message, None) == "p.message.m"  # RabbitMQ
    assert render("cdc-{db}-{table}", message, None) == "cdc-message"
    assert render("audit.{table}", message, None) == "audit.message"
    assert render("all-changes", message, None) == "all-changes"
    with pytest.raises(CdcError):
        check_template("{table!r}", "topic")


def test_position_headers() -> None:
    event = make_event(4)
    event.source.extra["lsn"] = 123
    headers = dict(position_headers(event))
    assert headers["op"] == "c" and headers["lsn"] == "123" and '"values":[4]' in headers["position"]


def test_polled_rows_sharing_a_timestamp_are_never_skipped_on_a_replay() -> None:
    """Rows of one timestamp group are numbered in their order at read time; a replay after a row of
    the group changed numbers them differently, so only the group's resume point may be compared."""

    def polled(n: int, event: int, *, base: str = "dt:2024-01-01T00:00:01") -> ChangeEvent:
        ev = make_event(n, boundary=event == 0)
        ev.position = Watermark(SERVER, ("t", base, None), table="t", event=event)
        return ev

    guard = ReplayGuard()
    assert apply(guard, [polled(2, 1), polled(3, 2), polled(4, 3)]) == [2, 3, 4]  # then a crash
    # Row 3 was updated meanwhile (it left the group): 5 now takes the third place of the group.
    assert apply(guard, [polled(2, 1), polled(4, 2), polled(5, 3)]) == [2, 4, 5], "5 was never applied"
    # A group behind the marker's resume point is skipped whole.
    later = polled(9, 0, base="dt:2024-01-01T00:00:05")
    assert apply(guard, [later]) == [9]
    assert apply(guard, [polled(2, 1), polled(5, 3)]) == []
