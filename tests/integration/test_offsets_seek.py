"""`cdc-logs offsets set|rewind` with --lsn, --gtid, --timestamp against the stack's Postgres and MariaDB.

Each test drives the CLI as a user would (subprocesses: `run` with `sync.mode: one_time` reads until
idle and stops), on a table, slot and publication of its own, removed at the end. What the sink file
holds after the next `run` is the proof that the reader resumed from the position set.
"""

from __future__ import annotations

import datetime as dt
import os
import pty
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pymysql
import pytest

from cdc_logs.readers.mysql.connection import parse_dsn
from tests.integration.inprocess_cli import cli_here

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc_logs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,  # no terminal: a confirmation needs --yes
    )


def offsets_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return cli_here("offsets", *args)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def ids(path: Path) -> list[int]:
    """The `after.id` (or `before.id`) of every change in the file sink's output, in order."""
    if not path.exists():
        return []
    rows = [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r.get("after") or r.get("before"))["id"] for r in rows if r.get("op") in ("c", "u", "d")]


def stored(config: Path) -> dict[str, object]:
    (row,) = orjson.loads(ok(offsets_cli("show", "-c", str(config), "--json")))
    return dict(row["position"])


class Pipe:
    """One pipeline config (file sink, sqlite offsets in tmp_path) over one source."""

    def __init__(self, tmp_path: Path, name: str, source: str) -> None:
        self.out = tmp_path / "out.jsonl"
        self.config = tmp_path / "p.yaml"
        self.config.write_text(
            f"name: {name}\nsource: {source}\n"
            f"destination: {{type: file, path: {self.out}}}\n"
            f"offsets: {{type: sqlite, path: {tmp_path / 'offsets.db'}}}\n"
            "sync: {mode: one_time}\n"
        )

    def run(self) -> list[int]:
        """Run until idle; the ids delivered by this run."""
        before = len(ids(self.out))
        ok(cli("run", "-c", str(self.config)))
        return ids(self.out)[before:]

    def offsets(self, *args: str) -> subprocess.CompletedProcess[str]:
        return offsets_cli(*args, "-c", str(self.config))


# -- Postgres ----------------------------------------------------------------------------------------
@pytest.fixture
def pg(pg_dsn: str, tmp_path: Path) -> Iterator[tuple[Pipe, str, str]]:
    tag = uuid.uuid4().hex[:8]
    slot, table = f"cdc_logs_offseek_{tag}", f"offseek_{tag}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
    source = f'{{type: postgresql, dsn: "{pg_dsn}", tables: [public.{table}], slot: {slot}, snapshot: false}}'
    try:
        yield Pipe(tmp_path, f"offseek-{tag}", source), table, slot
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # the walsender of a run that just ended may linger
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
                ).fetchone()
                if row is None or not row[0]:
                    break
                time.sleep(0.2)
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (slot,),
            )
            conn.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def _pg(dsn: str, *statements: str) -> str:
    """Run statements (each its own transaction); the WAL end after them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
        return str(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])  # type: ignore[index]


def test_set_lsn_resumes_from_it_and_a_point_the_slot_passed_is_refused(
    pg: tuple[Pipe, str, str], pg_dsn: str
) -> None:
    pipe, table, slot = pg
    assert pipe.run() == []  # creates the slot at the end of the WAL; a heartbeat position is stored
    lsn = _pg(pg_dsn, f"INSERT INTO {table} VALUES (1, 'before')")
    _pg(pg_dsn, f"INSERT INTO {table} VALUES (2, 'after')", f"INSERT INTO {table} VALUES (3, 'after')")

    out = ok(pipe.offsets("set", "--source", "postgresql", "--lsn", lsn))
    assert f"-> {lsn} (server " in out
    assert stored(pipe.config)["lsn"] == int(lsn.split("/")[0], 16) << 32 | int(lsn.split("/")[1], 16)
    assert pipe.run() == [2, 3]  # streamed from the LSN: the transaction before it is skipped

    # The slot has confirmed past the LSN now: Postgres would silently start at its confirmed point.
    committed = stored(pipe.config)
    refused = pipe.offsets("set", "--source", "postgresql", "--lsn", lsn)
    assert refused.returncode == 3, refused.stderr
    assert "cannot serve LSN" in refused.stderr and "confirmed point" in refused.stderr
    assert f"cdc-logs slots drop {slot}" in refused.stderr  # the recovery, spelled out
    # The JSON form is checked the same way.
    as_json = orjson.dumps({**committed, "lsn": committed["lsn"] - 1}).decode()  # type: ignore[operator]
    refused = pipe.offsets("set", "--source", "postgresql", "--position", as_json)
    assert refused.returncode == 3 and "cannot serve LSN" in refused.stderr
    assert stored(pipe.config) == committed  # nothing moved

    # Postgres cannot map a time to a position: refused with the reason.
    refused = pipe.offsets("set", "--source", "postgresql", "--timestamp", "2026-11-01T00:00Z")
    assert refused.returncode == 2 and "no time index" in refused.stderr


def test_changes_are_refused_while_the_pipeline_runs(pg: tuple[Pipe, str, str]) -> None:
    pipe, _table, _slot = pg
    pipe.config.write_text(pipe.config.read_text().replace("one_time", "continuous"))
    run = subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(pipe.config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        # `show` takes no lock: wait for the run's first commit, so it surely holds the lock.
        while not orjson.loads(ok(pipe.offsets("show", "--json"))):
            assert run.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.3)
        result = pipe.offsets("set", "--source", "postgresql", "--lsn", "0/0")
        assert result.returncode == 3 and "already running" in result.stderr, result.stderr
        assert f"pid {run.pid}" in result.stderr  # names the holder, as a second `run` is told
        refused = pipe.offsets("rewind", "--source", "postgresql", "--lsn", "0/0", "--yes")
        assert refused.returncode == 3 and f"pid {run.pid}" in refused.stderr
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(60)


# -- MariaDB -----------------------------------------------------------------------------------------
def _my(dsn: str, *statements: str) -> tuple[str, dt.datetime]:
    """Run statements (autocommit); the server's GTID position and UTC time after them."""
    settings = parse_dsn(dsn)
    conn = pymysql.connect(**settings.kwargs(), autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
            cur.execute("SELECT @@gtid_binlog_pos, UTC_TIMESTAMP()")
            gtid, now = cur.fetchone()  # type: ignore[misc]
    finally:
        conn.close()
    return str(gtid), now.replace(tzinfo=dt.UTC)


def _binlog_events(dsn: str, file: str, pos: int) -> list[tuple[str, int, str]]:
    """(file, pos, type) of the binlog events from `file:pos` on (a few)."""
    conn = pymysql.connect(**parse_dsn(dsn).kwargs(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW BINLOG EVENTS IN %s FROM %s LIMIT 12", (file, pos))
            return [(str(r[0]), int(r[1]), str(r[2])) for r in cur.fetchall()]
    finally:
        conn.close()


@pytest.fixture
def maria(mariadb_dsn: str, tmp_path: Path) -> Iterator[tuple[Pipe, str]]:
    tag = uuid.uuid4().hex[:8]
    table = f"test.offseek_{tag}"
    _my(mariadb_dsn, f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
    source = f'{{type: mariadb, dsn: "{mariadb_dsn}", tables: [{table}], snapshot: false}}'
    try:
        yield Pipe(tmp_path, f"offseek-{tag}", source), table
    finally:
        _my(mariadb_dsn, f"DROP TABLE IF EXISTS {table}")


def test_gtid_rewind_replays_from_it(maria: tuple[Pipe, str], mariadb_dsn: str) -> None:
    pipe, table = maria
    assert pipe.run() == []  # stores the current end
    gtid, _ = _my(mariadb_dsn, f"INSERT INTO {table} VALUES (1, 'a')")
    _my(mariadb_dsn, f"INSERT INTO {table} VALUES (2, 'b')", f"INSERT INTO {table} VALUES (3, 'c')")
    assert pipe.run() == [1, 2, 3]
    committed = stored(pipe.config)

    # No terminal and no --yes: refused before anything changes.
    refused = pipe.offsets("rewind", "--source", "mariadb", "--to", gtid)
    assert refused.returncode == 2 and "no terminal" in refused.stderr
    assert stored(pipe.config) == committed

    out = ok(pipe.offsets("rewind", "--source", "mariadb", "--to", gtid, "--yes"))
    assert f"gtid={committed['gtid']} -> " in out and f"gtid={gtid} " in out  # from -> to
    position = stored(pipe.config)
    assert position["gtid"] == gtid and position["server"] == committed["server"]
    assert position["file"] and position["pos"]  # located in the binlog, as the reader's own are
    # --binlog file:pos maps back to the same GTID state (BINLOG_GTID_POS).
    ok(pipe.offsets("set", "--source", "mariadb", "--binlog", f"{position['file']}:{position['pos']}"))
    assert stored(pipe.config)["gtid"] == gtid
    refused = pipe.offsets("set", "--source", "mariadb", "--binlog", "no-such-bin.000001:4")
    assert refused.returncode == 3 and "not in the server's binlog" in refused.stderr
    # Inside a transaction (its Table_map event): refused, naming the next boundary; resuming there would
    # skip the whole transaction (id 2).
    events = _binlog_events(mariadb_dsn, str(position["file"]), int(position["pos"]))  # type: ignore[arg-type]
    assert events[0][2] == "Gtid", events[:3]
    inside = next(e for e in events if e[2] == "Table_map")
    boundary = next(e for e in events[1:] if e[2] == "Gtid")
    refused = pipe.offsets("set", "--source", "mariadb", "--binlog", f"{position['file']}:{inside[1]}")
    assert refused.returncode == 2, refused.stderr
    assert "inside a transaction (at its Table_map event" in refused.stderr
    assert f"the next boundary is {position['file']}:{boundary[1]}" in refused.stderr
    assert stored(pipe.config)["gtid"] == gtid  # nothing moved
    # Rewinding to where it already is changes nothing, and says so.
    out = ok(pipe.offsets("rewind", "--source", "mariadb", "--gtid", gtid, "--yes"))
    assert "nothing changed" in out and "rewound" not in out
    assert pipe.run() == [2, 3]  # the transactions after the GTID, again

    # Forward is not a rewind; `set --gtid` moves anywhere the binlog holds.
    ahead, _ = _my(mariadb_dsn, f"INSERT INTO {table} VALUES (4, 'd')")
    refused = pipe.offsets("rewind", "--source", "mariadb", "--gtid", ahead, "--yes")
    assert refused.returncode == 2 and "ahead of the committed position" in refused.stderr
    ok(pipe.offsets("set", "--source", "mariadb", "--gtid", gtid))
    assert pipe.run() == [2, 3, 4]


def test_gtid_the_server_cannot_serve_is_refused(maria: tuple[Pipe, str], mariadb_dsn: str) -> None:
    pipe, _table = maria
    assert pipe.run() == []
    committed = stored(pipe.config)
    gtid, _ = _my(mariadb_dsn)
    domain, server_id, seq = (int(x) for x in gtid.split(",")[0].split("-"))
    for bad, words in (
        (f"{domain}-{server_id}-{seq + 1_000_000}", "ahead of the server"),
        (f"{domain + 7}-{server_id}-1", "never had"),
        (f"{domain}-{server_id + 1000}-{max(seq - 1, 1)}", "not in the master's binlog"),  # diverged
    ):
        refused = pipe.offsets("set", "--source", "mariadb", "--gtid", bad)
        assert refused.returncode == 3, (bad, refused.stderr)
        assert words in refused.stderr, (bad, refused.stderr)
    refused = pipe.offsets("set", "--source", "mariadb", "--gtid", "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5")
    assert refused.returncode == 2 and "MySQL GTID set" in refused.stderr
    # A malformed GTID is a usage error (exit 2), like a bad LSN, file:pos or time.
    for args in (
        ("set", "--gtid", "garbage"),
        ("set", "--gtid", "0-1"),
        ("set", "--gtid", "0-1-5,0-1-6"),  # the same domain twice
        ("rewind", "--to", "banana", "--yes"),
    ):
        refused = pipe.offsets(args[0], "--source", "mariadb", *args[1:])
        assert refused.returncode == 2 and "error: usage:" in refused.stderr, (args, refused.stderr)
    refused = pipe.offsets("set", "--source", "mariadb", "--lsn", "0/16B3748")
    assert refused.returncode == 2 and "positioned by --gtid" in refused.stderr
    refused = pipe.offsets("set", "--source", "mariadb", "--scn", "123")
    assert refused.returncode == 2 and "Oracle" in refused.stderr
    assert stored(pipe.config) == committed


def test_timestamp_finds_the_first_transaction_at_or_after_it(
    maria: tuple[Pipe, str], mariadb_dsn: str
) -> None:
    pipe, table = maria
    assert pipe.run() == []
    _, first = _my(mariadb_dsn, f"INSERT INTO {table} VALUES (1, 'a')")
    time.sleep(1.2)  # binlog times are whole seconds
    _, cut = _my(mariadb_dsn)
    cut += dt.timedelta(seconds=1)
    while _my(mariadb_dsn)[1] < cut:
        time.sleep(0.1)
    _my(mariadb_dsn, f"INSERT INTO {table} VALUES (2, 'b')", f"INSERT INTO {table} VALUES (3, 'c')")
    assert pipe.run() == [1, 2, 3]
    assert cut > first

    future = pipe.offsets("set", "--source", "mariadb", "--timestamp", "2999-01-01T00:00Z")
    assert (
        future.returncode == 0 and "warning: --timestamp 2999-01-01T00:00Z is in the future" in future.stderr
    )
    out = ok(pipe.offsets("set", "--source", "mariadb", "--timestamp", cut.strftime("%Y-%m-%dT%H:%M:%SZ")))
    assert " -> " in out
    assert pipe.run() == [2, 3]  # from the first transaction at or after the time

    # rewind asks on a terminal: "n" changes nothing, "y" rewinds.
    before = stored(pipe.config)
    at = first.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _on_terminal(pipe, "n", "rewind", "--source", "mariadb", "--timestamp", at) == 1
    assert stored(pipe.config) == before
    assert _on_terminal(pipe, "y", "rewind", "--source", "mariadb", "--timestamp", at) == 0
    assert pipe.run() == [1, 2, 3]

    # --by: back from the time of the first transaction after the committed position.
    committed = stored(pipe.config)
    out = ok(pipe.offsets("rewind", "--source", "mariadb", "--by", "2s", "--yes"))
    # Nothing committed in those 2 s (the shared server may be quiet) leaves it where it is, and says so.
    assert "rewound to" in out or "nothing changed" in out
    seq = int(str(stored(pipe.config)["gtid"]).rsplit("-", 1)[1])
    assert seq <= int(str(committed["gtid"]).rsplit("-", 1)[1])
    refused = pipe.offsets("rewind", "--source", "mariadb", "--by", "soon", "--yes")
    assert refused.returncode == 2 and "not a duration" in refused.stderr


def _on_terminal(pipe: Pipe, answer: str, *args: str) -> int:
    """Run `offsets ARGS` with a pseudo-terminal as stdin, answer its question; the exit code."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_logs", "offsets", *args, "-c", str(pipe.config)],
            cwd=ROOT,
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out = b""
        deadline = time.monotonic() + 60
        while b"rewind?" not in out and proc.poll() is None and time.monotonic() < deadline:
            out += os.read(proc.stdout.fileno(), 4096) if proc.stdout else b""  # type: ignore[union-attr]
        assert b"rewind?" in out, out
        assert b" -> " in out  # what changes is shown before the question
        os.write(master, f"{answer}\n".encode())
        proc.communicate(timeout=60)
        return proc.returncode
    finally:
        os.close(master)
        os.close(slave)
