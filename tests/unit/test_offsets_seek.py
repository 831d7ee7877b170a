"""The server-free parts of `offsets set|rewind`: selectors, times, durations, order, purged GTIDs.

What needs a server (building and checking positions on it) is in
tests/integration/test_offsets_seek.py.
"""

from __future__ import annotations

import datetime as dt

import pytest

from cdc_logs.cli.offsets_cmd import _guess
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.seek import Target, is_before, parse_duration, parse_time
from cdc_logs.position import BinlogPosition, Lsn
from cdc_logs.readers.mysql.seek import mariadb_purged_problem

ALLOWED = ("position", "lsn", "gtid", "binlog", "scn", "timestamp")


def test_exactly_one_selector() -> None:
    assert Target(lsn="0/1").chosen(ALLOWED) == ("lsn", "0/1")
    for target, words in (
        (Target(), "no position given"),
        (Target(lsn="0/1", gtid="0-1-1"), "2 positions given"),
        (Target(by="10m"), "--by is not accepted here"),
    ):
        with pytest.raises(CdcError) as err:
            target.chosen(ALLOWED)
        assert err.value.kind is ErrorKind.USAGE and words in err.value.message


def test_times_and_durations() -> None:
    assert parse_time("2026-11-01T00:00Z") == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert parse_time("2026-11-01T01:00:00+01:00") == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert parse_time("2026-11-01") == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)  # no zone: UTC
    assert parse_duration("10m") == dt.timedelta(minutes=10)
    assert parse_duration("1h30m") == dt.timedelta(minutes=90)
    assert parse_duration("2d 5s") == dt.timedelta(days=2, seconds=5)
    for bad in ("yesterday", "10", "10x", "m"):
        with pytest.raises(CdcError):
            parse_duration(bad) if bad != "yesterday" else parse_time(bad)


def test_to_is_read_by_its_form_and_the_source_type() -> None:
    assert _guess("0/16B3748", "postgresql", None, None, None, None) == ("0/16B3748", None, None, None)
    assert _guess("2026-11-01T00:00Z", "mariadb", None, None, None, None)[3] == "2026-11-01T00:00Z"
    assert (
        _guess("mariadb-bin.000003:1234", "mariadb", None, None, None, None)[2] == "mariadb-bin.000003:1234"
    )
    assert _guess("0-1-1400", "mariadb", None, None, None, None)[1] == "0-1-1400"
    with pytest.raises(CdcError):
        _guess("0-1-1400", "postgresql", None, None, None, None)


def test_what_counts_as_a_rewind() -> None:
    assert is_before(Lsn("s", 10), Lsn("s", 20)) is True
    assert is_before(Lsn("s", 20), Lsn("s", 20)) is True
    assert is_before(Lsn("s", 30), Lsn("s", 20)) is False

    def maria(gtid: str) -> BinlogPosition:
        return BinlogPosition(server="m", gtid=gtid, flavor="mariadb")

    assert is_before(maria("0-1-5"), maria("0-1-9")) is True
    assert is_before(maria("0-1-10"), maria("0-1-9")) is False
    assert is_before(maria("0-1-5,1-1-9"), maria("0-1-9,1-1-8")) is False  # ahead in one domain

    def mysql(gtid: str) -> BinlogPosition:
        return BinlogPosition(server="m", gtid=gtid, flavor="mysql")

    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    assert is_before(mysql(f"{uuid}:1-5"), mysql(f"{uuid}:1-9")) is True
    assert is_before(mysql(f"{uuid}:1-10"), mysql(f"{uuid}:1-9")) is False
    assert is_before(Lsn("s", 1), maria("0-1-1")) is None


def test_a_gtid_below_the_oldest_binlog_file_is_purged() -> None:
    oldest = "0-1-300,1-2-40"
    assert mariadb_purged_problem("0-1-300,1-2-40", "bin.000007", oldest) is None  # exactly the start
    assert mariadb_purged_problem("0-1-999,1-2-50", "bin.000007", oldest) is None
    problem = mariadb_purged_problem("0-1-299,1-2-50", "bin.000007", oldest)
    assert problem and "after 0-1-299 up to 0-1-300 were purged" in problem and "bin.000007" in problem
    problem = mariadb_purged_problem("0-1-400", "bin.000007", oldest)
    assert problem and "no entry for replication domain 1" in problem
    assert mariadb_purged_problem("0-1-1", "bin.000001", "") is None  # nothing purged yet
