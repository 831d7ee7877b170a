"""The Oracle reader on recorded LogMiner rows, replayed at its connection boundary.

This is recorded data, not a server: no Oracle server runs on the project's machines. The rows in
tests/fixtures/oracle/logminer_session.json are shaped exactly like V$LOGMNR_CONTENTS (SCN,
START_SCN, COMMIT_SCN, XID, OPERATION_CODE, OPERATION, SEG_OWNER, TABLE_NAME, SQL_REDO, CSF,
ROLLBACK, RS_ID, SSN, ROW_ID, TIMESTAMP) as mined without COMMITTED_DATA_ONLY, and tests/unit/
oracle_replay.py answers the reader's queries from them (it stands where connection.LogMinerSession
stands). Everything past that boundary is the product's code: log selection per window, the adaptive
window, CSF joining, the XID buffer with its spill, partial rollbacks, commit order, the SQL_REDO
parser, value conversion and positions.

The fixture holds: two interleaved transactions (the later-started one commits first), a rollback,
a partial rollback (a ROLLBACK=1 row undoing an insert by its ROW_ID), two commits at one SCN (out
of XID order in the redo), an insert whose SQL_REDO is continued over three CSF rows, a transaction
open across another's commit (so the restart SCN lags the commit SCN), and a log switch during a
window (ORA-00310 after two rows; the online log is archived and its member overwritten).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from cdc_logs.envelope import ChangeEvent, Heartbeat, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import OracleScn, Position, decode
from cdc_logs.readers.contract import ContractChecker
from cdc_logs.readers.oracle.logs import WindowSizer
from cdc_logs.readers.oracle.reader import OracleReader
from tests.unit.oracle_replay import ReplaySession, load

FIXTURE = load("logminer_session.json")
DBID = FIXTURE["dbid"]


def xid(n: int) -> str:
    return f"{n:02X}001A00{n * 7 + 100:04X}0000"  # as the fixture's XIDs are written


def micros(text: str) -> int:
    return int((dt.datetime.fromisoformat(text) - dt.datetime(1970, 1, 1)).total_seconds() * 1_000_000)


def run(
    start: Position | None = None,
    *,
    fixture: dict[str, Any] | None = None,
    current: list[int] | None = None,
    start_scn: int | None = 1000,
    window: int = 5,
    memory: int = 64 << 20,
    snapshot: bool = False,
    stop_after: int | None = None,
) -> tuple[list[Any], OracleReader, ReplaySession]:
    """Run the reader over the fixture until it has mined up to the last current SCN; its items."""
    session = ReplaySession(fixture or FIXTURE, current=current)
    reader = OracleReader(
        lambda: session,
        ["HR.EMP"],
        pipeline_name="ora",
        start_scn=start_scn,
        snapshot=snapshot,
        poll_interval_s=0.001,
        window=WindowSizer(window, 2, 8),
        max_tx_memory_bytes=memory,
        heartbeat_interval_s=0,
        idle_tick_s=0.001,
        redo_flush_lag_s=0,  # recorded rows: all of their redo is there
    )
    last = (current or [FIXTURE["current_scn"]])[-1]
    items: list[Any] = []
    with reader:
        stream: Iterator[Any] = reader.stream(start)
        for item in stream:
            if item is None:
                if reader.mined_to >= last:
                    break
                continue
            items.append(item)
            if stop_after is not None and len(items) >= stop_after:
                reader.stop()
    return items, reader, session


def events(items: list[Any]) -> list[ChangeEvent]:
    return [i for i in items if isinstance(i, ChangeEvent)]


def summary(items: list[Any]) -> list[tuple[str, str, int]]:
    """(XID, op, key) of each event, in emission order."""
    out = []
    for e in events(items):
        assert e.transaction is not None and e.key is not None
        out.append((e.transaction.id, e.op.value, e.key["ID"]))
    return out


EXPECTED = [
    (xid(2), "c", 2),  # started after T1, committed first
    (xid(1), "c", 1),
    (xid(1), "u", 1),
    (xid(1), "c", 3),
    # T3 rolled back; in T4 the insert of 6 was undone (ROLLBACK=1 row)
    (xid(4), "c", 5),
    (xid(4), "u", 5),
    (xid(5), "c", 10),  # committed at the same SCN as T6, after it in the redo: XID order
    (xid(6), "c", 11),
    (xid(7), "c", 7),  # the CSF-continued insert
    (xid(9), "c", 9),
    (xid(8), "d", 2),  # open across T9's commit
    (xid(8), "u", 3),
]


@pytest.fixture(scope="module")
def full() -> tuple[list[Any], OracleReader, ReplaySession]:
    return run()


def test_transactions_in_commit_order_without_rollbacks(full: tuple[list[Any], Any, Any]) -> None:
    items, _, _ = full
    assert summary(items) == EXPECTED
    assert ContractChecker().check_all(items) == []


def test_values_and_envelope(full: tuple[list[Any], Any, Any]) -> None:
    by_key = {(e.transaction.id, e.op.value, e.key["ID"]): e for e in events(full[0])}  # type: ignore[union-attr,index]
    insert = by_key[(xid(1), "c", 1)]
    assert insert.after == {
        "ID": 1,
        "NAME": "Ann",
        "SALARY": "1000.5",
        "HIRED": micros("2024-01-02T09:30:00"),
        "UPDATED": micros("2024-01-02T03:04:05.000001"),
        "PHOTO": b"\x0a\x0b",
    }
    assert insert.before is None and insert.key == {"ID": 1}
    update = by_key[(xid(1), "u", 1)]
    assert update.before is not None and update.after is not None
    assert update.before["NAME"] == "Ann" and update.after["NAME"] == "Anne"
    assert {k: v for k, v in update.after.items() if k != "NAME"} == {
        k: v for k, v in update.before.items() if k != "NAME"
    }
    assert by_key[(xid(1), "c", 3)].after["NAME"] == "O'Brien"  # type: ignore[index]
    assert by_key[(xid(8), "u", 3)].after["SALARY"] == "2000"  # type: ignore[index]
    long_row = by_key[(xid(7), "c", 7)].after
    assert long_row is not None and long_row["NAME"].startswith("Name with a very long text x")
    assert long_row["NAME"].endswith("x end") and len(long_row["NAME"]) == 91
    source = insert.to_dict()["source"]
    assert source["connector"] == "oracle" and source["db"] == "FREE"
    assert (source["schema"], source["table"]) == ("HR", "EMP")
    assert source["txId"] == xid(1) and source["scn"] == "1002" and source["commit_scn"] == "1008"
    assert insert.transaction is not None and insert.transaction.total_order == 1
    assert insert.ts_ms == int(dt.datetime(2024, 5, 6, 7, 8, 1008 % 60, tzinfo=dt.UTC).timestamp() * 1000)
    orjson.loads(insert.to_json())


def test_positions_and_restart_scn(full: tuple[list[Any], Any, Any]) -> None:
    items = full[0]
    first = items[0]
    assert isinstance(first, Heartbeat) and first.position == OracleScn(DBID, scn=1000, restart=1001)
    boundaries = [e for e in events(items) if e.boundary]
    assert [(p.scn, p.xid) for p in (b.position for b in boundaries)] == [  # type: ignore[union-attr]
        (1006, xid(2)),
        (1008, xid(1)),
        (1017, xid(4)),
        (1020, xid(5)),
        (1020, xid(6)),
        (1023, xid(7)),
        (1028, xid(9)),
        (1030, xid(8)),
    ]
    restarts = {b.position.xid: b.position.restart for b in boundaries}  # type: ignore[union-attr]
    assert restarts[xid(2)] == 1002  # T1 (started 1001, first change at 1002) still open
    assert restarts[xid(1)] == 1008  # nothing open: its own commit SCN
    assert restarts[xid(9)] == 1025  # T8 (started 1024, first change at 1025) still open
    assert restarts[xid(8)] == 1030
    beats = [i for i in items[1:] if isinstance(i, Heartbeat)]
    assert beats and all(b.position.xid == "" for b in beats)
    inside = [e.position for e in events(items) if not e.boundary]
    assert all(isinstance(p, OracleScn) and p.inside and p.event >= 1 for p in inside)


def test_an_unrelated_open_transaction_does_not_hold_the_restart_scn(
    full: tuple[list[Any], Any, Any],
) -> None:
    """A transaction that started before all of the fixture's and never ends (a forgotten session,
    a batch on other tables: LogMiner's query returns only its START row) holds nothing back: the
    positions are those of the fixture without it, and the last heartbeat restarts at its own SCN."""
    fixture = dict(FIXTURE)
    forgotten = dict(FIXTURE["rows"][0], XID="FF001A00FFFF0000", SCN=1001)
    assert forgotten["OPERATION"] == "START"
    fixture["rows"] = [forgotten, *FIXTURE["rows"]]
    items, _, _ = run(fixture=fixture)
    assert summary(items) == EXPECTED

    def positions(found: list[Any]) -> list[Any]:
        return [i.position for i in found if isinstance(i, Heartbeat) or i.boundary]

    assert positions(items) == positions(full[0])
    last = [i for i in items if isinstance(i, Heartbeat)][-1].position
    assert last.restart == last.scn + 1 > 1030  # nothing open holds it back


def test_commit_and_rollback_of_transactions_never_buffered_are_ignored() -> None:
    fixture = dict(FIXTURE)
    start = dict(FIXTURE["rows"][0], XID="FE001A00FFFE0000", SCN=1001)
    commit = dict(start, SCN=1003, OPERATION="COMMIT", OPERATION_CODE=7, COMMIT_SCN=1003)
    other = dict(start, XID="FD001A00FFFD0000")
    rollback = dict(other, SCN=1004, OPERATION="ROLLBACK", OPERATION_CODE=36)
    fixture["rows"] = sorted([start, other, commit, rollback, *FIXTURE["rows"]], key=lambda r: r["SCN"])
    items, _, _ = run(fixture=fixture)
    assert summary(items) == EXPECTED


@pytest.mark.parametrize("at", range(len(EXPECTED) + 1))
def test_restart_from_any_committed_point_neither_loses_nor_repeats(
    full: tuple[list[Any], Any, Any], at: int
) -> None:
    """A crash at any point (even with T8 open across T9's commit) and a restart from the last position
    the pipeline could have committed: the rest, exactly once, byte for byte."""
    items = full[0]
    resumable = [i for i in items if i.boundary and isinstance(i, ChangeEvent | Heartbeat)]
    stored = resumable[min(at, len(resumable) - 1)].position
    stored = decode(stored.encode())  # as the offset store gives it back
    after = [e for e in events(items) if e.position.order_key() > stored.order_key()]  # type: ignore[union-attr]
    again, _, _ = run(stored)
    assert [e.to_json() for e in events(again)] == [e.to_json() for e in after]
    assert ContractChecker().check_all(again) == []


def test_log_switch_mid_window_loses_and_repeats_nothing(full: tuple[list[Any], Any, Any]) -> None:
    items, reader, session = full
    assert reader.log_switches == 1 and session.switched
    retried = [w for w in session.windows if w[0] < 1026 <= w[1]]
    assert len(retried) == 2
    assert "/opt/oracle/oradata/FREE/redo03.log" in retried[0][2]  # the online member, overwritten
    assert "/opt/oracle/archive/1_11_1.arc" in retried[1][2]  # its archived copy
    plain = dict(FIXTURE)
    del plain["log_switch"]
    quiet, quiet_reader, _ = run(fixture=plain)
    assert quiet_reader.log_switches == 0
    assert [e.to_json() for e in events(quiet)] == [e.to_json() for e in events(items)]


def test_windows_adapt_and_each_adds_its_logs(full: tuple[list[Any], Any, Any]) -> None:
    _, _, session = full
    spans = [end - start for start, end, _ in session.windows]
    assert max(spans) <= 8 and min(spans) >= 1
    assert session.windows[0] == (1000, 1005, ["/opt/oracle/archive/1_10_1.arc"])  # sequence 10 only
    across = [files for start, end, files in session.windows if start + 1 < 1012 <= end]
    assert across == [["/opt/oracle/archive/1_10_1.arc", "/opt/oracle/oradata/FREE/redo03.log"]]
    assert len(set(spans)) > 1  # the width changed: wider while behind


def test_the_same_with_every_transaction_spilled_to_disk(full: tuple[list[Any], Any, Any]) -> None:
    spilled, _, _ = run(memory=0)
    assert [e.to_json() for e in events(spilled)] == [e.to_json() for e in events(full[0])]


def test_first_run_delivers_transactions_open_at_start_whole() -> None:
    """Started without a position while T8 is open (V$TRANSACTION says since 1024) at SCN 1026: T8 is
    delivered with its change from before the start; T9 too; nothing committed before 1026."""
    fixture = dict(FIXTURE, oldest_open_scn=1024)
    items, _, _ = run(fixture=fixture, current=[1026, 1031], start_scn=None)
    first = items[0]
    assert isinstance(first, Heartbeat) and first.position == OracleScn(DBID, scn=1026, restart=1024)
    assert summary(items) == [(xid(9), "c", 9), (xid(8), "d", 2), (xid(8), "u", 3)]


def test_undecodable_change_is_dead_lettered_in_its_place() -> None:
    fixture = dict(FIXTURE)
    fixture["rows"] = [dict(r) for r in FIXTURE["rows"]]
    bad = next(r for r in fixture["rows"] if r["SCN"] == 1005)  # T1's update
    bad["SQL_REDO"] = 'update "HR"."EMP" set "NAME" = SYSDATE where "ID" = \'1\';'
    items, _, _ = run(fixture=fixture)
    dead = [i for i in items if isinstance(i, Undecodable)]
    assert len(dead) == 1 and dead[0].raw == bad["SQL_REDO"].encode()
    assert "SCN 1005" in dead[0].reason and "SYSDATE" not in dead[0].reason
    assert not dead[0].boundary
    assert summary(items) == [e for e in EXPECTED if e != (xid(1), "u", 1)]
    assert ContractChecker().check_all(items) == []


def test_a_position_of_another_database_is_refused() -> None:
    with pytest.raises(CdcError) as info:
        run(OracleScn("999", scn=1008, xid=xid(1), restart=1008))
    assert info.value.kind is ErrorKind.SERVER_MISMATCH


def test_purged_redo_is_position_lost() -> None:
    with pytest.raises(CdcError) as info:
        run(OracleScn(DBID, scn=700, restart=700))
    assert info.value.kind is ErrorKind.POSITION_LOST


def test_unknown_table_is_not_found() -> None:
    session = ReplaySession(FIXTURE)
    reader = OracleReader(lambda: session, ["HR.NOPE"], pipeline_name="ora")
    with pytest.raises(CdcError) as info:
        reader.open()
    assert info.value.kind is ErrorKind.NOT_FOUND and session.closed


def test_a_change_logminer_cannot_render_is_dead_lettered_not_skipped() -> None:
    fixture = dict(FIXTURE)
    fixture["rows"] = [dict(r) for r in FIXTURE["rows"]]
    insert = next(r for r in fixture["rows"] if r["SCN"] == 1027)  # T9's insert
    insert.update(OPERATION_CODE=255, OPERATION="UNSUPPORTED", SQL_REDO="Unsupported")
    items, _, _ = run(fixture=fixture)
    dead = [i for i in items if isinstance(i, Undecodable)]
    assert len(dead) == 1 and "UNSUPPORTED" in dead[0].reason and dead[0].boundary  # T9's only change
    assert (xid(9), "c", 9) not in summary(items)
    assert ContractChecker().check_all(items) == []


def test_windows_end_where_the_redo_is_surely_flushed() -> None:
    """The current SCN sampled 5 s ago bounds the window: redo newer than that may still be in memory."""
    from cdc_logs.readers.oracle.reader import FlushedScn

    flushed = FlushedScn(5.0)
    assert flushed.sample(100, 0.0) == 0
    assert flushed.sample(120, 3.0) == 0
    assert flushed.sample(130, 5.0) == 100
    assert flushed.sample(140, 9.0) == 120
    assert flushed.sample(150, 20.0) == 140  # the sample taken now is not old enough yet
    assert FlushedScn(0).sample(77, 0.0) == 77


def test_snapshot_then_the_stream_after_its_scn() -> None:
    items, reader, session = run(snapshot=True)
    rows = [i for i in items if isinstance(i, ChangeEvent) and i.op.value == "r"]
    assert [r.source.snapshot for r in rows] == ["first", "true", "last"]
    assert items[: len(rows)] == rows  # no start heartbeat before the snapshot
    assert rows[0].after == {
        "ID": 100,
        "NAME": "Pre'existing",
        "SALARY": "10.25",
        "HIRED": micros("2023-12-31T23:59:59"),
        "UPDATED": micros("2023-12-31T23:59:59.123456"),
        "PHOTO": b"\x00\xff",
    }
    assert rows[1].after == {
        "ID": 101,
        "NAME": None,
        "SALARY": "0.5",
        "HIRED": None,
        "UPDATED": None,
        "PHOTO": None,
    }
    assert rows[-1].boundary and rows[-1].position == OracleScn(DBID, scn=1000, restart=1001)
    assert not rows[0].boundary
    assert rows[2].after is not None and rows[2].after["PHOTO"] == b"" and rows[2].after["SALARY"] == "-7"
    assert summary(items[len(rows) :]) == EXPECTED
    assert ContractChecker().check_all(items) == []
    assert session.snapshots == [
        "SELECT TO_CHAR(\"ID\", 'TM9', 'NLS_NUMERIC_CHARACTERS=''.,'''), \"NAME\", "
        "TO_CHAR(\"SALARY\", 'TM9', 'NLS_NUMERIC_CHARACTERS=''.,'''), "
        "TO_CHAR(\"HIRED\", 'YYYY-MM-DD HH24:MI:SS'), TO_CHAR(\"UPDATED\", 'YYYY-MM-DD HH24:MI:SS.FF9'), "
        'RAWTOHEX("PHOTO") FROM "HR"."EMP" AS OF SCN :scn'
    ]
    assert reader.snapshot_progress() == []  # done


def test_a_snapshot_stopped_before_its_end_commits_nothing() -> None:
    items, _, _ = run(snapshot=True, stop_after=1)
    assert len(items) == 1 and isinstance(items[0], ChangeEvent) and not items[0].boundary


def test_an_undo_row_matches_an_insert_logged_without_a_row_id() -> None:
    """Oracle 23 logs an insert with LOB columns under the placeholder ROW_ID AAAAAAAAAAAAAAAAAA, and
    its undo (ROLLBACK TO SAVEPOINT) under the real one: the insert is still undone."""
    fixture = dict(FIXTURE)
    fixture["rows"] = [dict(r) for r in FIXTURE["rows"]]
    undone_insert = next(r for r in fixture["rows"] if r["SCN"] == 1014)  # T4's insert of 6
    undone_insert["ROW_ID"] = "AAAAAAAAAAAAAAAAAA"
    items, _, _ = run(fixture=fixture)
    assert summary(items) == EXPECTED
