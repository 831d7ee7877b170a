"""The command line as a user runs it: subprocesses, real SQLite files, exit codes, stdout purity."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 60, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc_logs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        **kw,
    )  # type: ignore[call-overload, no-any-return]


def popen(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def _wait_for_triggers(db: Path, proc: subprocess.Popen[str], count: int = 3) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        with sqlite3.connect(db) as conn:
            if conn.execute("SELECT count(*) FROM sqlite_master WHERE type='trigger'").fetchone()[0] >= count:
                time.sleep(0.3)  # the reader has also taken its start position
                return
        time.sleep(0.05)
    raise AssertionError("capture triggers never appeared")


def test_demo_limit_exits_zero_after_n_events() -> None:
    result = cli("demo", "--limit", "5", "--format", "json", "--interval-ms", "20")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert {orjson.loads(line)["op"] for line in lines} <= {"c", "u", "d"}


def test_tail_sqlite_prints_exactly_the_three_changes(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL)")
    proc = popen(
        "tail",
        "--source",
        "sqlite",
        "--dsn",
        f"sqlite:///{db}",
        "--table",
        "t",
        "--format",
        "json",
        "--limit",
        "3",
    )
    _wait_for_triggers(db, proc)
    writer = subprocess.run(
        [
            sys.executable,
            "-c",
            f"""
import sqlite3
c = sqlite3.connect({str(db)!r}, isolation_level=None)
c.execute("INSERT INTO t VALUES (1, 'ada', 1.5)")
c.execute("UPDATE t SET name = 'grace' WHERE id = 1")
c.execute("DELETE FROM t WHERE id = 1")
""",
        ],
        check=True,
    )
    assert writer.returncode == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    events = [orjson.loads(line) for line in out.splitlines()]
    assert [e["op"] for e in events] == ["c", "u", "d"]
    assert events[0]["before"] is None and events[0]["after"] == {"id": 1, "name": "ada", "score": 1.5}
    assert events[1]["before"]["name"] == "ada" and events[1]["after"]["name"] == "grace"
    assert events[2]["before"] == {"id": 1, "name": "grace", "score": 1.5} and events[2]["after"] is None
    assert all(e["source"]["table"] == "t" for e in events)


def test_tail_cleanup_removes_triggers(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    proc = popen(
        "tail",
        "--source",
        "sqlite",
        "--dsn",
        str(db),
        "--table",
        "t",
        "--format",
        "json",
        "--limit",
        "1",
        "--cleanup",
    )
    _wait_for_triggers(db, proc)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE type='trigger'").fetchone()[0] == 0


def test_tail_missing_table_is_one_clear_line(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    sqlite3.connect(db).close()
    result = cli("tail", "--source", "sqlite", "--dsn", str(db), "--table", "nope", "--limit", "1")
    assert result.returncode == 3  # an operator must act (create the table)
    assert "nope" in result.stderr and "Traceback" not in result.stderr


def test_tail_usage_errors_exit_2() -> None:
    assert cli("tail", "--source", "sqlite").returncode == 2
    assert cli("tail", "--source", "cobol", "--dsn", "x", "--table", "t").returncode == 2
    assert cli("tail", "--no-such-flag").returncode == 2


def test_config_validate_names_the_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "source:\n  type: sqlite\n  path: x.db\n  tables: [t]\ndestination:\n  type: fiel\n  path: o\n"
    )
    result = cli("config", "validate", "-c", str(bad))
    assert result.returncode == 2
    assert "destination.type" in result.stderr and "file" in result.stderr and "stdout" in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("source: [unclosed\n")
    result = cli("config", "validate", "-c", str(broken))
    assert result.returncode == 2 and "line" in result.stderr and "Traceback" not in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text("source: {type: sqlite, path: x.db, tables: [t]}\ndestination: {type: stdout}\n")
    result = cli("config", "validate", "-c", str(good))
    assert result.returncode == 0 and "ok" in result.stdout


def test_config_schema_is_json() -> None:
    result = cli("config", "schema")
    assert result.returncode == 0
    schema = orjson.loads(result.stdout)
    assert {"source", "sources", "destination", "destinations", "plugins", "sync"} <= set(
        schema["properties"]
    )


def test_config_schema_has_every_registered_source_and_sink() -> None:
    """The schema comes from the registry: a new reader or sink module is in it with no other edit."""
    from cdc_logs import registry

    schema = orjson.loads(cli("config", "schema").stdout)
    for field, kind in (("source", "source"), ("destination", "sink")):
        mapping = schema["properties"][field]["anyOf"][0]["discriminator"]["mapping"]
        registered = {t: c.config.__name__ for c in registry.components(kind) for t in c.types}
        assert {t: ref.rsplit("/", 1)[1] for t, ref in mapping.items()} == registered
        many = schema["properties"][field + "s"]["anyOf"][0]["items"]["discriminator"]["mapping"]
        assert set(many) == set(registered)


def _pipeline(tmp_path: Path, mode: str = "one_time", extra: str = "") -> Path:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, email TEXT)")
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
name: users
source: {{type: sqlite, path: {db}, tables: [users]}}
destination: {{type: file, path: {tmp_path / "out.jsonl"}}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync: {{mode: {mode}}}
{extra}
""")
    return config


def test_run_one_time_then_offsets_show_set_reset(tmp_path: Path) -> None:
    config = _pipeline(tmp_path)
    assert cli("run", "-c", str(config)).returncode == 0  # installs triggers, nothing to read yet
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.executemany("INSERT INTO users (email) VALUES (?)", [("a@x",), ("b@x",)])
    result = cli("run", "-c", str(config))
    assert result.returncode == 0, result.stderr
    out = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [e["after"]["email"] for e in out] == ["a@x", "b@x"]

    shown = cli("offsets", "show", "-c", str(config), "--json")
    assert shown.returncode == 0
    rows = orjson.loads(shown.stdout)
    assert rows[0]["source"] == "sqlite" and rows[0]["position"]["values"] == [2]
    # A second one-time run has nothing new: the offset held.
    assert cli("run", "-c", str(config)).returncode == 0
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
    # Move the offset forward past two new changes: the next run starts after them.
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.executemany("INSERT INTO users (email) VALUES (?)", [("c@x",), ("d@x",), ("e@x",)])
    position = orjson.dumps({**rows[0]["position"], "values": [4]}).decode()
    assert (
        cli("offsets", "set", "-c", str(config), "--source", "sqlite", "--position", position).returncode == 0
    )
    assert cli("run", "-c", str(config)).returncode == 0
    out = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [e["after"]["email"] for e in out] == ["a@x", "b@x", "e@x"]
    # Moving back before what the change table still holds is refused with the way out.
    back = orjson.dumps({**rows[0]["position"], "values": [1]}).decode()
    assert cli("offsets", "set", "-c", str(config), "--source", "sqlite", "--position", back).returncode == 0
    result = cli("run", "-c", str(config))
    assert result.returncode == 3 and "position_lost" in result.stderr and "Traceback" not in result.stderr
    assert cli("offsets", "reset", "-c", str(config), "--yes").returncode == 0
    assert orjson.loads(cli("offsets", "show", "-c", str(config), "--json").stdout) == []
    assert (
        cli("offsets", "set", "-c", str(config), "--source", "nope", "--position", position).returncode == 2
    )


def test_run_serves_metrics_health_ready_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = _pipeline(tmp_path, mode="continuous")
    port = 18000 + os.getpid() % 1000
    proc = popen("run", "-c", str(config), "--http-port", str(port))
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as resp:
                    ready = resp.status
                    break
            except OSError:
                time.sleep(0.1)
        assert ready == 200
        with sqlite3.connect(tmp_path / "app.db") as conn:
            conn.execute("INSERT INTO users (email) VALUES ('m@x')")
        time.sleep(1.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            metrics = resp.read().decode()
        read = 'cdc_logs_events_total{op="c",pipeline="users",source="sqlite",table="main.users"} 1.0'
        assert read in metrics
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "m@x" in (tmp_path / "out.jsonl").read_text()


def test_secrets_never_reach_the_logs(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text("""
source: {type: sqlite, path: x.db, tables: [t]}
destination: {type: stdout}
offsets: {type: postgres, dsn: "postgresql://cdc:hunter2@127.0.0.1:1/none"}
""")
    result = cli("run", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "hunter2" not in result.stderr + result.stdout


@pytest.mark.parametrize("args", [["--help"], ["tail", "--help"], ["run", "--help"], ["offsets", "--help"]])
def test_help_exits_zero(args: list[str]) -> None:
    assert cli(*args).returncode == 0


def test_offsets_show_prints_whole_positions_when_piped(tmp_path: Path) -> None:
    """Piped or redirected (no terminal), rich laid the table out for 80 columns and cut positions
    with an ellipsis; users copy them into `offsets set`."""
    from cdc_logs.offsets.sqlite import SqliteOffsetStore
    from cdc_logs.position import BinlogPosition

    config = _pipeline(tmp_path)
    position = BinlogPosition(
        "mariadb:server_id=1:uuid=0b6a3f1e-1111-2222-3333-444455556666",
        "mariadb-bin.000006",
        123456789,
        gtid="0-1-1400,1-2-99887766",
        flavor="mariadb",
    )
    store = SqliteOffsetStore(tmp_path / "offsets.db")
    try:
        store.save("users", "sqlite", position)
    finally:
        store.close()
    shown = cli("offsets", "show", "-c", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "…" not in shown.stdout, shown.stdout
    flat = "".join(shown.stdout.split())  # folded cells may wrap; nothing may be cut
    assert "".join(position.describe().split()) in flat, shown.stdout
