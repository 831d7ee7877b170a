"""`offsets set --scn` / `--timestamp` for Oracle, on recorded V$DATABASE / V$LOG / V$ARCHIVED_LOG
answers (tests/unit/oracle_replay.py: recorded data, no server runs here)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.seek import Seeker, is_before
from cdc_logs.position import OracleScn, decode
from cdc_logs.readers.oracle.seek import OracleSeeker
from tests.unit.oracle_replay import ReplaySession, load


class TimeSession(ReplaySession):
    """The replay plus the answer of TIMESTAMP_TO_SCN (or Oracle's error for a time out of reach)."""

    def __init__(self, answer: int | CdcError) -> None:
        super().__init__(load("logminer_session.json"))
        self.answer = answer
        self.asked: list[dict[str, Any]] = []

    def query(self, sql: str, binds: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        assert "TIMESTAMP_TO_SCN" in sql
        self.asked.append(binds or {})
        if isinstance(self.answer, CdcError):
            raise self.answer
        return [{"SCN": self.answer}]


def _seeker(session: ReplaySession | None = None) -> OracleSeeker:
    session = session or ReplaySession(load("logminer_session.json"))
    return OracleSeeker(session, session.identity().dbid)


def test_an_scn_in_the_redo_becomes_the_start_scn_position() -> None:
    position = _seeker().at_scn(995)  # archived log 10 (990..1012) and the current log cover 996 on
    assert position == OracleScn("1339461245", scn=995, restart=996)
    assert decode(position.encode()) == position  # what the store keeps, the reader resumes


def test_an_scn_ahead_of_the_database_is_a_usage_error() -> None:
    with pytest.raises(CdcError) as info:
        _seeker().at_scn(5000)  # current SCN 1031
    assert info.value.kind is ErrorKind.USAGE and "ahead of the database" in info.value.message


def test_an_scn_older_than_every_log_is_position_lost() -> None:
    with pytest.raises(CdcError) as info:
        _seeker().at_scn(500)  # the oldest archived log begins at 800
    assert info.value.kind is ErrorKind.POSITION_LOST and "SCN 501" in info.value.message


def test_a_time_goes_through_timestamp_to_scn_in_utc() -> None:
    session = TimeSession(1000)
    plus_one = dt.timezone(dt.timedelta(hours=1))
    position = _seeker(session).at_time(dt.datetime(2026, 11, 1, 1, 0, tzinfo=plus_one))
    assert position.scn == 1000 and position.restart == 1001
    assert session.asked == [{"ts": dt.datetime(2026, 11, 1, 0, 0)}]


def test_a_time_out_of_oracles_reach_names_scn_instead() -> None:
    session = TimeSession(
        CdcError(ErrorKind.NOT_FOUND, "ORA-08180: no snapshot found based on specified time")
    )
    with pytest.raises(CdcError) as info:
        _seeker(session).at_time(dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
    assert info.value.kind is ErrorKind.USAGE and "ORA-08180" in info.value.message
    assert "--scn" in (info.value.hint or "")


def _dispatching() -> Seeker:
    """offsets/seek.py's Seeker as `offsets set` opens it on an Oracle source, on the replay."""
    seeker = object.__new__(Seeker)
    seeker.source, seeker.type, seeker._opened = "ora", "oracle", False
    seeker.impl = _seeker()
    return seeker


def test_offsets_set_dispatches_scn_and_time_to_oracle_and_refuses_the_rest() -> None:
    assert _dispatching().build("scn", "995", None) == OracleScn("1339461245", scn=995, restart=996)
    with pytest.raises(CdcError) as info:
        _dispatching().build("scn", "0x3e3", None)
    assert info.value.kind is ErrorKind.USAGE and "not a system change number" in info.value.message
    with pytest.raises(CdcError) as info:
        _dispatching().build("lsn", "0/16B3748", None)
    assert info.value.kind is ErrorKind.USAGE and "--scn" in info.value.message + (info.value.hint or "")


def test_a_rewind_compares_oracle_positions_by_commit_scn() -> None:
    later, earlier = OracleScn("1", scn=1020, restart=1000), OracleScn("1", scn=995, restart=996)
    assert is_before(earlier, later) is True and is_before(later, earlier) is False
