"""The server-free parts of `offsets set|rewind`: selectors, times, durations, order, purged GTIDs.

What needs a server (building and checking positions on it) is in
tests/integration/test_offsets_seek.py.
"""

from __future__ import annotations

import datetime as dt
import os
import pty
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from cdc_logs.cli.offsets_cmd import _guess, _parse_position
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.seek import Target, is_before, parse_duration, parse_time
from cdc_logs.position import BinlogPosition, Lsn
from cdc_logs.readers.mysql.seek import mariadb_purged_problem
from tests.integration.inprocess_cli import cli_here

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


# -- the CLI's checks that need no server ------------------------------------------------------------
def _pipeline(tmp_path: Path) -> Path:
    """A sqlite-source pipeline (sqlite offsets) with one committed position, set through the CLI."""
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
    config = tmp_path / "p.yaml"
    config.write_text(
        f"name: p\nsource: {{type: sqlite, path: {db}, tables: [users]}}\n"
        f"destination: {{type: file, path: {tmp_path / 'out.jsonl'}}}\n"
        f"offsets: {{type: sqlite, path: {tmp_path / 'offsets.db'}}}\n"
    )
    done = cli_here("offsets", "set", "-c", str(config), "--source", "sqlite", "--position", WATERMARK)
    assert done.returncode == 0, done.stderr
    return config


WATERMARK = '{"type": "watermark", "server": "s", "values": [7]}'


def _shown(config: Path) -> list[dict[str, object]]:
    shown = cli_here("offsets", "show", "-c", str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    return list(orjson.loads(shown.stdout))


def test_position_takes_what_offsets_show_json_prints(tmp_path: Path) -> None:
    """--position accepts the bare position, one record of `offsets show --json`, or its whole output."""
    config = _pipeline(tmp_path)
    listing = _shown(config)
    assert listing[0]["position"]["values"] == [7]  # type: ignore[index]

    def set_(text: str) -> object:
        return cli_here("offsets", "set", "-c", str(config), "--source", "sqlite", "--position", text)

    for form in (
        {**listing[0], "position": {**listing[0]["position"], "values": [8]}},  # type: ignore[dict-item]
        [{**listing[0], "position": {**listing[0]["position"], "values": [9]}}],  # type: ignore[dict-item]
    ):
        done = set_(orjson.dumps(form).decode())
        assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
    assert _shown(config)[0]["position"]["values"] == [9]  # type: ignore[index]

    for bad, words in (
        ([{**listing[0], "source": "other"}], "none for source 'sqlite'"),
        ({**listing[0], "source": "other"}, "is the record of source 'other'"),
        ([], "a list with no records"),
        ({"position": 5}, 'has no position "type"'),
    ):
        refused = set_(orjson.dumps(bad).decode())
        assert refused.returncode == 2, refused.stderr  # type: ignore[attr-defined]
        assert words in refused.stderr and "a record of `offsets show --json`" in refused.stderr  # type: ignore[attr-defined]
    assert _shown(config)[0]["position"]["values"] == [9]  # type: ignore[index]


def test_a_position_missing_a_field_is_named_not_a_python_error() -> None:
    with pytest.raises(CdcError) as err:
        _parse_position('{"type":"pg_lsn","lsn":1}', "postgresql", "postgresql")
    assert err.value.kind is ErrorKind.USAGE
    assert "missing field 'server' of a pg_lsn position" in err.value.message
    assert "positional argument" not in err.value.message
    with pytest.raises(CdcError) as err:
        _parse_position('{"type":"pg_lsn","server":"1","lsn":1,"lsm":2}', "postgresql", "postgresql")
    assert "unknown field(s) 'lsm'" in err.value.message


def test_rewind_names_to_among_the_flags() -> None:
    with pytest.raises(CdcError) as err:
        Target().chosen(ALLOWED, also=("to",))
    assert "give exactly one of --to, --position, --lsn" in err.value.message


def test_changes_without_a_terminal_need_yes_and_name_it(tmp_path: Path) -> None:
    """`offsets reset` and a plain `connectors delete` refuse like rewind and purge: exit 2, --yes named,
    before anything changes (and before Connect is contacted: nothing listens at that URL)."""
    config = _pipeline(tmp_path)
    for args in (
        ("offsets", "reset", "-c", str(config)),
        ("offsets", "rewind", "-c", str(config), "--source", "sqlite", "--position", WATERMARK),
        ("debezium", "connectors", "delete", "inv", "--connect-url", "http://127.0.0.1:1"),
        ("debezium", "connectors", "delete", "inv", "--purge", "--connect-url", "http://127.0.0.1:1"),
        ("debezium", "connectors", "offsets", "reset", "inv", "--connect-url", "http://127.0.0.1:1"),
    ):
        refused = cli_here(*args)
        assert refused.returncode == 2, (args, refused.stderr)
        assert "no terminal" in refused.stderr and "--yes" in refused.stderr, (args, refused.stderr)
    assert len(_shown(config)) == 1


def test_answering_no_changes_nothing_and_says_so(tmp_path: Path) -> None:
    config = _pipeline(tmp_path)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_logs", "offsets", "reset", "-c", str(config)],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out = b""
        deadline = time.monotonic() + 60
        while b"reset the offsets" not in out and proc.poll() is None and time.monotonic() < deadline:
            out += os.read(proc.stdout.fileno(), 4096) if proc.stdout else b""  # type: ignore[union-attr]
        os.write(master, b"n\n")
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 1 and b"nothing changed" in err and b"Aborted" not in err, err
    assert len(_shown(config)) == 1


def test_a_locked_pipeline_says_to_stop_it_not_to_rename_it(tmp_path: Path) -> None:
    from cdc_logs.build import lock_pipeline
    from cdc_logs.configfile import load_config

    config = _pipeline(tmp_path)
    cfg = load_config(config)
    with lock_pipeline(cfg.offsets, cfg.name):  # as a running `cdc-logs run` holds it
        for args in (
            ("set", "--source", "sqlite", "--position", WATERMARK),
            ("rewind", "--source", "sqlite", "--position", WATERMARK, "--yes"),
            ("reset", "--yes"),
        ):
            refused = cli_here("offsets", *args, "-c", str(config))
            assert refused.returncode == 3, refused.stderr
            assert f"stop the running pipeline first (pid {os.getpid()}" in refused.stderr, refused.stderr
            assert "another `name`" not in refused.stderr
