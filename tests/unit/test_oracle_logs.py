"""Log selection per SCN window and the adaptive window (cdc_logs/readers/oracle/logs.py), on recorded
V$LOG x V$LOGFILE and V$ARCHIVED_LOG rows (tests/fixtures/oracle/logminer_session.json: recorded-style
data, not a server)."""

from __future__ import annotations

import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.oracle.logs import (
    OPEN_END,
    LogFile,
    WindowSizer,
    archived_logs,
    online_logs,
    select_logs,
)
from tests.unit.oracle_replay import load

FIXTURE = load("logminer_session.json")


def chosen(logs: dict, start: int, end: int) -> list[str]:
    return [
        f.name for f in select_logs(online_logs(logs["online"]), archived_logs(logs["archived"]), start, end)
    ]


def test_online_rows_skip_unused_groups_and_read_the_open_end() -> None:
    logs = online_logs(FIXTURE["logs"]["online"])
    assert [(f.sequence, f.next_scn) for f in logs] == [(10, 1012), (11, OPEN_END)]


def test_the_archived_copy_wins_over_the_online_member() -> None:
    assert chosen(FIXTURE["logs"], 1000, 1005) == ["/opt/oracle/archive/1_10_1.arc"]


def test_a_window_across_a_log_switch_takes_both_logs() -> None:
    assert chosen(FIXTURE["logs"], 1008, 1015) == [
        "/opt/oracle/archive/1_10_1.arc",
        "/opt/oracle/oradata/FREE/redo03.log",
    ]
    # A log ending exactly at the window's first SCN holds nothing of it.
    assert chosen(FIXTURE["logs"], 1011, 1015) == ["/opt/oracle/oradata/FREE/redo03.log"]


def test_after_the_switch_the_archived_copy_replaces_the_overwritten_member() -> None:
    logs = FIXTURE["log_switch"]["logs"]
    assert chosen(logs, 1020, 1030) == [
        "/opt/oracle/archive/1_11_1.arc",
        "/opt/oracle/oradata/FREE/redo01.log",
    ]


def test_redo_no_longer_available_is_position_lost() -> None:
    with pytest.raises(CdcError) as info:
        chosen(FIXTURE["logs"], 500, 1000)
    assert info.value.kind is ErrorKind.POSITION_LOST and "SCN 501" in info.value.message


def test_a_missing_sequence_is_position_lost() -> None:
    logs = [LogFile("a", 1, 1, 10, 20, True), LogFile("c", 1, 3, 30, 40, True)]
    with pytest.raises(CdcError) as info:
        select_logs([], logs, 15, 35)
    assert info.value.kind is ErrorKind.POSITION_LOST and "sequence 2" in info.value.message


def test_window_grows_while_behind_and_shrinks_once_caught_up() -> None:
    sizer = WindowSizer(100, 10, 400)
    assert sizer.end(1000, 5000) == 1100
    sizer.done(1100, 5000)
    assert sizer.size == 200
    for _ in range(5):
        sizer.done(1100, 5000)
    assert sizer.size == 400
    assert sizer.end(4900, 5000) == 5000
    sizer.done(5000, 5000)
    assert sizer.size == 200
    while sizer.shrink():
        pass
    assert sizer.size == 10
    with pytest.raises(ValueError):
        WindowSizer(10, 20, 5)
