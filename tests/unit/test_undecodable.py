"""A change a reader cannot decode goes to the dead-letter file with its position, table and reason,
while the changes around it are delivered; its data never reaches the log; with dead letters off the
run stops naming the table and the fix (issue: hostile input)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson

from cdc_logs.deadletter import decode_bytes

PII = "Jane Secret-Doe"


def _cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc_logs", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def _database(tmp_path: Path) -> Path:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, note TEXT)")
    return db


def _write(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO people VALUES (1, 'before', 'ok')")
        # SQLite stores any bytes as TEXT: a latin-1 'é' next to personal data.
        conn.execute("INSERT INTO people VALUES (2, ?, CAST(? AS TEXT))", (PII, b"caf\xe9"))
        conn.execute("INSERT INTO people VALUES (3, 'after', 'ok')")


def _config(tmp_path: Path, db: Path, dead_letters: bool) -> Path:
    config = tmp_path / "p.yaml"
    config.write_text(f"""
name: bad-utf8
source: {{type: sqlite, path: {db}, tables: [people], snapshot: true, poll_interval_ms: 20}}
destination: {{type: file, path: {tmp_path / "out.jsonl"}}}
sync: {{mode: one_time, dead_letters: {{enabled: {str(dead_letters).lower()}, dir: {tmp_path / "dead"}}}}}
""")
    return config


def test_a_corrupt_utf8_row_is_dead_lettered_and_its_neighbours_delivered(tmp_path: Path) -> None:
    db = _database(tmp_path)
    config = _config(tmp_path, db, dead_letters=True)
    # First run installs the triggers (nothing to snapshot), then the rows are written and streamed.
    assert _cli("run", "-c", str(config), cwd=tmp_path).returncode == 0
    _write(db)
    result = _cli("run", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert [e["after"]["id"] for e in out] == [1, 3], "the rows around the bad one are delivered"
    (dead,) = [
        orjson.loads(line)
        for line in (tmp_path / "dead" / "sqlite.undecodable.jsonl").read_bytes().splitlines()
    ]
    assert dead["table"] == "main.people" and "UTF-8" in dead["reason"] and dead["position"]
    assert dead["stage"] == "source" and dead["component"] == "sqlite" and dead["kind"] == "decode"
    assert b"caf\xe9" in decode_bytes(dead["raw"]), "the raw row is kept to repair"
    assert PII not in result.stderr and "caf" not in result.stderr, "row data must not reach the log"
    # The position moved past it: a third run delivers nothing again and dead-letters nothing new.
    again = _cli("run", "-c", str(config), cwd=tmp_path)
    assert again.returncode == 0 and len((tmp_path / "out.jsonl").read_bytes().splitlines()) == 2


def test_a_corrupt_snapshot_row_is_dead_lettered_too(tmp_path: Path) -> None:
    db = _database(tmp_path)
    _write(db)
    result = _cli("run", "-c", str(_config(tmp_path, db, dead_letters=True)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert [e["after"]["id"] for e in out] == [1, 3] and all(e["op"] == "r" for e in out)
    (dead,) = (tmp_path / "dead" / "sqlite.undecodable.jsonl").read_bytes().splitlines()
    assert b"636166e9" in decode_bytes(orjson.loads(dead)["raw"]), "the row, bytes as hex"


def test_with_dead_letters_off_the_run_stops_naming_the_table_and_the_fix(tmp_path: Path) -> None:
    db = _database(tmp_path)
    config = _config(tmp_path, db, dead_letters=False)
    assert _cli("run", "-c", str(config), cwd=tmp_path).returncode == 0
    _write(db)
    result = _cli("run", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "main.people" in result.stderr and "fix:" in result.stderr
    assert PII not in result.stderr
    started = time.monotonic()
    # Nothing was skipped: the next run stops at the same change again, it does not jump past it.
    assert _cli("run", "-c", str(config), cwd=tmp_path).returncode == 1
    assert time.monotonic() - started < 30
    out = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert [e["after"]["id"] for e in out] in ([1], [1, 1]), "delivered up to the bad change, not past it"


def test_tail_stops_at_it_or_parks_it_with_dead_letter_dir(tmp_path: Path) -> None:
    db = _database(tmp_path)
    _write(db)
    stopped = _cli("tail", "--source", "sqlite", "--dsn", str(db), "--table", "people", "--snapshot",
                   "--format", "json", "--cleanup", cwd=tmp_path)  # fmt: skip
    assert stopped.returncode == 1 and "--dead-letter-dir" in stopped.stderr and PII not in stopped.stderr
    args = ["--source", "sqlite", "--dsn", str(db), "--table", "people", "--snapshot", "--limit", "2"]
    parked = _cli(
        "tail",
        *args,
        "--format",
        "json",
        "--cleanup",
        "--dead-letter-dir",
        str(tmp_path / "dl"),
        cwd=tmp_path,
    )
    assert parked.returncode == 0, parked.stderr
    assert [orjson.loads(line)["after"]["id"] for line in parked.stdout.splitlines()] == [1, 3]


def test_own_bookkeeping_tables_are_refused_and_a_failed_start_leaves_no_trigger(tmp_path: Path) -> None:
    db = _database(tmp_path)
    for own in ("_cdc_changes", "_cdc_state", "sqlite_sequence"):
        result = _cli(
            "tail", "--source", "sqlite", "--dsn", str(db), "--table", own, "--limit", "1", cwd=tmp_path
        )
        assert result.returncode == 2 and "bookkeeping" in result.stderr, result.stderr
    failed = _cli("tail", "--source", "sqlite", "--dsn", str(db), "--table", "people", "--table", "nope",
                  "--limit", "1", cwd=tmp_path)  # fmt: skip
    assert failed.returncode == 3 and "nope" in failed.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone()[0] == 0
