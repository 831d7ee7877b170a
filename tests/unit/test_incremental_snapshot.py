"""The incremental snapshot state machine (readers/incremental.py), without a database: the watermark
window and its deduplication, the table queue, signals, and the state carried on positions."""

from __future__ import annotations

from typing import Any

import pytest

from cdc_logs.errors import CdcError
from cdc_logs.position import BinlogPosition, Lsn, decode
from cdc_logs.readers.incremental import (
    EXECUTE_SNAPSHOT,
    STOP_SNAPSHOT,
    WINDOW_CLOSE,
    WINDOW_OPEN,
    IncrementalSnapshots,
    Signal,
    SnapshotState,
    key_id,
    key_text,
    on_signal,
    parse_signal,
)

T, U = "public.orders", "public.items"


def k(n: int) -> bytes:
    key = key_id({"id": n})
    assert key is not None
    return key


def chunk(snaps: IncrementalSnapshots[str], table: str, ids: list[int], *, exhausted: bool = False) -> str:
    """Read one chunk of `table` (rows named 'r<id>') into a new window; returns the window id."""
    window = snaps.window or snaps.begin()
    for n in ids:
        window.add(table, k(n), f"r{n}")
    window.end(table, [n for n in ids[-1:]] or None, exhausted)
    return window.id


def snapshots(*tables: str, parallel: int = 1) -> IncrementalSnapshots[str]:
    snaps: IncrementalSnapshots[str] = IncrementalSnapshots(chunk_size=4, parallel=parallel, captured=[T, U])
    snaps.execute("sig-1", list(tables))
    return snaps


def test_a_change_inside_the_open_window_removes_its_row_from_the_chunk() -> None:
    snaps = snapshots(T)
    assert snaps.chunk_due()
    wid = chunk(snaps, T, [1, 2, 3, 4])
    assert not snaps.chunk_due()  # one chunk in flight at a time
    snaps.changed(T, k(2))  # before the low watermark: older than the select, the row stays
    assert snaps.watermark(wid, True) is None
    snaps.changed(T, k(3))  # inside the window: the change is at least as new as the row read
    snaps.changed(U, k(4))  # another table's key 4 is not this table's
    snaps.changed(T, None)  # no key: nothing to match
    snaps.changed(T, k(99))  # a key outside the chunk
    assert snaps.watermark(wid, False) == ["r1", "r2", "r4"]
    state = snaps.state
    assert state is not None and state.tables[0].last == [4] and state.tables[0].rows == 3
    assert snaps.chunk_due()  # the next chunk is due


def test_a_truncate_in_the_window_drops_the_tables_rows() -> None:
    snaps = snapshots(T)
    wid = chunk(snaps, T, [1, 2])
    snaps.watermark(wid, True)
    snaps.truncated(T)
    assert snaps.watermark(wid, False) == []


def test_the_last_chunk_finishes_the_table_and_the_snapshot() -> None:
    snaps = snapshots(T)
    wid = chunk(snaps, T, [1, 2, 3, 4])
    snaps.watermark(wid, True)
    snaps.watermark(wid, False)
    wid = chunk(snaps, T, [5], exhausted=True)
    snaps.watermark(wid, True)
    assert snaps.watermark(wid, False) == ["r5"]
    assert snaps.state is None and snaps.encoded() == "" and snaps.finished == 1
    assert not snaps.chunk_due()


def test_watermarks_of_another_chunk_are_ignored_and_a_close_before_the_open_is_an_error() -> None:
    snaps = snapshots(T)
    wid = chunk(snaps, T, [1])
    assert snaps.watermark("an-older-run", True) is None
    assert snaps.watermark("an-older-run", False) is None
    assert snaps.window is not None and not snaps.window.open
    with pytest.raises(CdcError, match="before the low one"):
        snaps.watermark(wid, False)


def test_tables_go_one_after_another_or_in_parallel() -> None:
    one = snapshots(T, U)
    assert [p.table for p in one.active()] == [T]
    both = snapshots(T, U, parallel=2)
    assert [p.table for p in both.active()] == [T, U]
    wid = chunk(both, T, [1, 2], exhausted=True)
    chunk(both, U, [7, 8])
    both.watermark(wid, True)
    both.changed(U, k(7))
    assert both.watermark(wid, False) == ["r1", "r2", "r8"]
    state = both.state
    assert state is not None and [p.table for p in state.tables] == [U]


def test_the_state_resumes_from_its_encoded_form_and_old_windows_stay_ignored() -> None:
    snaps = snapshots(T, U)
    wid = chunk(snaps, T, [1, 2, 3, 4])
    snaps.watermark(wid, True)
    snaps.watermark(wid, False)
    snaps.active()[0].maximum, snaps.active()[0].started = [10], True
    text = snaps.encoded()
    assert SnapshotState.decode(text) == snaps.state

    restarted: IncrementalSnapshots[str] = IncrementalSnapshots(chunk_size=4, captured=[T, U])
    restarted.resume(text)
    progress = restarted.active()[0]
    assert (progress.table, progress.last, progress.maximum, progress.started) == (T, [4], [10], True)
    assert restarted.chunk_due()  # the next chunk is read again, with a new id
    assert restarted.watermark(wid, True) is None  # the crashed run's watermarks mean nothing now
    restarted.resume("")
    assert not restarted.running


def test_a_damaged_state_is_a_decode_error_naming_the_fix() -> None:
    with pytest.raises(CdcError, match="incremental snapshot state") as info:
        SnapshotState.decode('{"id": 1}')
    assert "offsets" in (info.value.hint or "")


def test_execute_while_running_adds_tables_once_and_leaves_out_uncaptured_ones() -> None:
    snaps = snapshots(T)
    assert snaps.execute("sig-2", [T, U, "public.nope"]) == [U]
    state = snaps.state
    assert state is not None and state.id == "sig-1" and [p.table for p in state.tables] == [T, U]


def test_stop_removes_tables_and_their_buffered_rows() -> None:
    snaps = snapshots(T, U, parallel=2)
    wid = chunk(snaps, T, [1])
    chunk(snaps, U, [2])
    assert snaps.stop([U]) == [U]
    snaps.watermark(wid, True)
    assert snaps.watermark(wid, False) == ["r1"]
    assert snaps.stop(None) == [T]
    assert not snaps.running


def test_resolve_takes_names_and_regular_expressions() -> None:
    snaps = snapshots()
    assert snaps.resolve(["public.orders"]) == [T]
    assert snaps.resolve(["public\\..*"]) == [U, T]
    with pytest.raises(CdcError, match="no captured table"):
        snaps.resolve(["public.nope"])


def signal(kind: str, data: dict[str, Any] | None = None, sid: str = "s1") -> Signal:
    import orjson

    return parse_signal({"id": sid, "type": kind, "data": orjson.dumps(data).decode() if data else None})


def test_signals_as_debezium_writes_them() -> None:
    snaps: IncrementalSnapshots[str] = IncrementalSnapshots(captured=[T, U])
    on_signal(
        snaps,
        signal(
            EXECUTE_SNAPSHOT,
            {
                "data-collections": [T, U],
                "type": "INCREMENTAL",
                "additional-conditions": [{"data-collection": T, "filter": "id > 5"}],
            },
        ),
    )
    state = snaps.state
    assert state is not None and [(p.table, p.where) for p in state.tables] == [(T, "id > 5"), (U, None)]
    # MySQL's watermarks are signal rows: <chunk>-open / <chunk>-close.
    wid = chunk(snaps, T, [1])
    assert on_signal(snaps, signal(WINDOW_OPEN, sid=f"{wid}-open")) is None
    assert on_signal(snaps, signal(WINDOW_CLOSE, sid=f"{wid}-close")) == ["r1"]
    on_signal(snaps, signal(STOP_SNAPSHOT, {"data-collections": [U], "type": "incremental"}))
    state = snaps.state
    assert state is not None and [p.table for p in state.tables] == [T]
    on_signal(snaps, signal(STOP_SNAPSHOT, {"type": "incremental"}))  # no tables: all
    assert not snaps.running


@pytest.mark.parametrize(
    "bad",
    [
        signal(EXECUTE_SNAPSHOT, {"data-collections": [T], "type": "blocking"}),
        signal(EXECUTE_SNAPSHOT, {"type": "incremental"}),
        signal(EXECUTE_SNAPSHOT, {"data-collections": ["public.nope"]}),
        signal("reboot-the-server", {}),
    ],
)
def test_a_signal_that_cannot_be_acted_on_is_logged_and_the_stream_goes_on(bad: Signal) -> None:
    snaps: IncrementalSnapshots[str] = IncrementalSnapshots(captured=[T])
    assert on_signal(snaps, bad) is None
    assert not snaps.running


def test_signal_data_must_be_a_json_object() -> None:
    with pytest.raises(CdcError, match="not a JSON object"):
        parse_signal({"id": "x", "type": EXECUTE_SNAPSHOT, "data": "[1, 2"})


def test_key_ids_and_key_text() -> None:
    assert key_id({"a": 1, "b": "x"}) == key_id({"a": 1, "b": "x"}) != key_id({"a": 2, "b": "x"})
    assert key_id(None) is None
    assert key_text([1, "a", None, 2.5, True]) == [1, "a", None, "2.5", "True"]


@pytest.mark.parametrize(
    "position",
    [Lsn("sys", 100), BinlogPosition("mariadb:1", file="b.000001", pos=4, gtid="0-1-5", flavor="mariadb")],
)
def test_positions_carry_the_state_without_changing_their_order(position: Any) -> None:
    stamped = position.with_state('{"id":"s","q":[]}', (T, U))
    assert stamped == position and not stamped < position and not position < stamped
    back = decode(stamped.encode())
    assert back.incremental == '{"id":"s","q":[]}' and back.captured == (T, U)
    assert "incremental snapshot running" in back.describe()
    assert position.with_state("", ()) is position
    assert "incremental" not in position.encode() and "captured" not in position.encode()


def test_event_ids_and_position_headers_do_not_carry_the_readers_state() -> None:
    """A replay may carry another snapshot state on the same place: ids and headers stay the same."""
    from cdc_logs.sinks.dedup import EventIds
    from cdc_logs.sinks.routing import position_text
    from tests.helpers import make_event

    plain = make_event(1)
    plain.position = Lsn("sys", 100)
    stamped = make_event(1)
    stamped.position = Lsn("sys", 100).with_state('{"id":"s","q":[]}', (T,))
    assert EventIds().assign([plain])[0] == EventIds().assign([stamped])[0]
    assert position_text(stamped) == position_text(plain) == Lsn("sys", 100).encode()


def test_snapshot_new_tables_without_a_captured_list_in_the_stored_position_is_warned_about() -> None:
    from structlog.testing import capture_logs

    from cdc_logs.readers.incremental import warn_without_captured

    with capture_logs() as logs:
        warn_without_captured(("public.a",), ())
        warn_without_captured(("public.a",), ("public.a",))  # recorded: nothing to say
        warn_without_captured((), ())  # snapshot_new_tables off: nothing to say
    assert len(logs) == 1 and logs[0]["log_level"] == "warning"
    assert "cdc-logs snapshot TABLE" in logs[0]["fix"]


@pytest.mark.parametrize(
    "conditions",
    [
        {"additional-conditions": {"data-collection": T, "filter": "id > 5"}},  # not a list
        {"additional-conditions": [{"data-collection": T}]},  # no filter
        {"additional-conditions": [{"data-collection": T, "filter": ""}]},
        {"additional-conditions": [{"data-collection": T, "filter": 5}]},
        {"additional-conditions": [{"table": T, "filter": "id > 5"}]},
        {"additional-conditions": ["id > 5"]},
        {"additional-conditions": [{"data-collection": U, "filter": "id > 5"}]},  # not in collections
        {"additional-condition": ["id > 5"]},
    ],
)
def test_a_malformed_condition_refuses_the_signal_never_an_unfiltered_snapshot(
    conditions: dict[str, Any],
) -> None:
    from structlog.testing import capture_logs

    snaps: IncrementalSnapshots[str] = IncrementalSnapshots(captured=[T, U])
    with capture_logs() as logs:
        on_signal(
            snaps, signal(EXECUTE_SNAPSHOT, {"data-collections": [T], "type": "incremental", **conditions})
        )
    assert not snaps.running
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["signal refused"]


def test_conditions_for_a_table_already_queued_are_not_applied_and_that_is_logged() -> None:
    from structlog.testing import capture_logs

    snaps: IncrementalSnapshots[str] = IncrementalSnapshots(captured=[T, U])
    on_signal(snaps, signal(EXECUTE_SNAPSHOT, {"data-collections": [T], "type": "incremental"}))
    again = {
        "data-collections": [T, U],
        "type": "incremental",
        "additional-conditions": [
            {"data-collection": T, "filter": "id > 5"},
            {"data-collection": U, "filter": "id > 7"},
        ],
    }
    with capture_logs() as logs:
        on_signal(snaps, signal(EXECUTE_SNAPSHOT, again, sid="again"))
    state = snaps.state
    assert state is not None and [(p.table, p.where) for p in state.tables] == [(T, None), (U, "id > 7")]
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["event"], e["table"]) for e in warned] == [
        ("incremental snapshot: table already queued, conditions not applied", T)
    ]
