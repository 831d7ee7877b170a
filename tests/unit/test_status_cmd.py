"""`cdc-logs status`: rendering a live /status body and the offset store's view, the /status endpoint,
and that no secret reaches either."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from cdc_logs.cli.status_cmd import render
from cdc_logs.observability import health
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.redact import register
from cdc_logs.observability.status import PipelineStatus
from cdc_logs.offsets.sqlite import SqliteOffsetStore
from cdc_logs.position import Lsn, Watermark

SECRET = "pw-status-9f3k"


def _text(body: dict[str, Any]) -> str:
    console = Console(record=True, width=200)
    for item in render(body):
        console.print(item)
    return console.export_text()


LIVE: dict[str, Any] = {
    "origin": "service",
    "url": "http://127.0.0.1:9000/status",
    "pipeline": "shop",
    "state": "running",
    "ready": False,
    "reasons": ["source pg: lag 300.0 kB is past max_lag 256kB"],
    "sinks": {
        "cache": {
            "backlog": 120,
            "last_write_age_s": 75.0,
            "failing": True,
            "consecutive_failures": 4,
            "last_error": f"redis: connection refused (password {SECRET})",
            "dead_lettered_events": 0,
        }
    },
    "sources": {
        "pg": {
            "position": "0/16B3748",
            "last_commit_at": 1_790_000_000.0,
            "last_commit_age_s": 75.2,
            "heartbeat_interval_s": 10.0,
            "heartbeat_age_s": 70.0,
            "lag": {
                "lag_bytes": 300 * 1024,
                "lag_seconds": 74.6,
                "retained_bytes": 2 << 20,
                "slot": "cdc_logs_shop",
                "max_lag": "256kB",
                "on_max_lag": "not_ready",
                "exceeded": "lag 300.0 kB is past max_lag 256kB",
            },
            "snapshot": [
                {"table": "public.orders", "rows": 500, "estimate": 1000, "done": False},
                {"table": "public.users", "rows": 20, "estimate": 20, "done": True},
            ],
            "last_error": None,
        }
    },
}


def test_a_live_status_shows_position_lag_snapshot_backlog_and_the_last_error() -> None:
    register(SECRET)
    text = _text(LIVE)
    assert "pipeline shop: running, NOT READY" in text
    assert "source pg: lag 300.0 kB is past max_lag 256kB" in text
    for expected in (
        "source pg",
        "0/16B3748",
        "2026-",  # the last commit's time
        "(75 s ago)",
        "300.0 kB, 75 s",
        "EXCEEDED: lag 300.0 kB is past max_lag 256kB; 256kB (on_max_lag: not_ready)",
        "2.0 MB",  # slot retained WAL
        "public.orders: 500 of ~1000 rows (50%)",
        "public.users: done, 20 rows",
        "120 waiting, last write 75 s ago, failing (4x)",
        "sink cache: redis: connection refused",
    ):
        assert expected in text, (expected, text)
    assert SECRET not in text
    # A sink named after its DSN, whose password was never registered: masked by its shape.
    named = {**LIVE, "sinks": {"postgresql://u:Unregistered9x@db/x": LIVE["sinks"]["cache"]}}
    assert "Unregistered9x" not in _text(named)


def test_the_offset_store_view_says_it_is_not_live() -> None:
    body = {
        "origin": "offsets",
        "pipeline": "shop",
        "note": "the service does not answer at http://127.0.0.1:9/status (connection refused)",
        "state": "not running (or not reachable)",
        "sinks": {"cache": {}},
        "sources": {
            "pg": {"position": "0/16B3748", "last_commit_at": 1_790_000_000.0, "last_commit_age_s": 3600.0,
                   "lag": None, "snapshot": [], "last_error": None},
        },
    }  # fmt: skip
    text = _text(body)
    assert "from the offset store: the service does not answer" in text
    assert "0/16B3748" in text and "(60 min ago)" in text
    assert "unknown: the service is not running" in text and "NOT READY" not in text


def test_status_reads_the_offset_store_when_no_service_answers(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    sqlite3.connect(db).close()
    offsets = tmp_path / "offsets.db"
    SqliteOffsetStore(offsets).save("shop", "pg", Lsn("7000000000000000001", 0x16B3748))
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
name: shop
source: {{type: sqlite, name: pg, path: {db}, tables: [t], max_lag: 10m}}
destination: {{type: stdout}}
offsets: {{type: sqlite, path: {offsets}}}
""")

    def status(*args: str) -> str:
        # A subprocess, as a user runs it (the CLI configures logging for its own process).
        done = subprocess.run(
            [sys.executable, "-m", "cdc_logs", "status", "-c", str(config), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    output = status("--url", "http://127.0.0.1:9")
    assert "from the offset store" in output and "does not answer" in output
    assert "0/16B3748" in output and "10m (on_max_lag: not_ready)" in output
    body = orjson.loads(status("--json"))
    assert body["origin"] == "offsets" and body["sources"]["pg"]["position"] == "0/16B3748"
    assert "health_checks is not enabled" in body["note"]


def test_the_status_endpoint_answers_json_and_masks_secrets() -> None:
    register(SECRET)
    status = PipelineStatus().attach({f"pg-{SECRET}": object()}, ["cache"])
    status.running()
    status.committed(f"pg-{SECRET}", "0/16B3748")
    status.sink_failed("cache", f"refused: password={SECRET}")
    metrics = Metrics("shop")
    server = health.serve(0, metrics, status)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
            raw = resp.read()
            assert resp.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            scraped = resp.read()
    finally:
        server.shutdown()
    body = orjson.loads(raw)
    assert body["pipeline"] == "shop" and body["ready"] is True and body["alive"] is True
    (name,) = body["sources"]
    assert body["sources"][name]["position"] == "0/16B3748"
    assert body["sinks"]["cache"]["recent_error"].startswith("refused")
    assert SECRET.encode() not in raw and SECRET.encode() not in scraped


def test_metric_labels_never_show_a_secret() -> None:
    register(SECRET)
    metrics = Metrics("shop")
    metrics.events_read({(f"postgresql://u:{SECRET}@db/x", "t", "c"): 1})
    metrics.source_lag(f"src-{SECRET}", seconds=1.0, lag_bytes=1, retained_bytes=1, slot="s", exceeded=False)
    text = metrics.render()
    assert SECRET.encode() not in text and b"cdc_logs_events_total" in text


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc_logs", *args], capture_output=True, text=True, timeout=60
    )


def test_status_exits_1_only_when_nothing_could_be_read(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    sqlite3.connect(db).close()
    offsets = tmp_path / "offsets.db"
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
name: fresh
source: {{type: sqlite, name: app, path: {db}, tables: [t]}}
destination: {{type: stdout}}
offsets: {{type: sqlite, path: {offsets}}}
""")
    done = _cli("status", "-c", str(config), "--url", "http://127.0.0.1:9")
    assert done.returncode == 1, done.stderr
    assert "not running (or not reachable): showing the offset store" in done.stdout  # the view still
    assert "nothing could be read: the service does not answer" in done.stderr
    assert "no source of pipeline fresh has a committed position" in done.stderr
    SqliteOffsetStore(offsets).save("fresh", "app", Watermark("s", (3,)))
    done = _cli("status", "-c", str(config), "--url", "http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr  # the offset store's view: something was read
    assert "showing the offset store" in done.stdout and "nothing could be read" not in done.stderr


def test_offsets_set_defaults_to_the_only_source(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    sqlite3.connect(db).close()
    offsets = tmp_path / "offsets.db"
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    common = f"destination: {{type: stdout}}\noffsets: {{type: sqlite, path: {offsets}}}\n"
    one.write_text(f"name: p\nsource: {{type: sqlite, name: app, path: {db}, tables: [t]}}\n{common}")
    two.write_text(
        f"name: p\nsources:\n  - {{type: sqlite, name: a, path: {db}, tables: [t]}}\n"
        f"  - {{type: sqlite, name: b, path: {db}, tables: [t]}}\n{common}"
    )
    SqliteOffsetStore(offsets).save("p", "app", Watermark("s", (3,)))
    position = orjson.dumps(Watermark("s", (7,)).to_dict()).decode()
    done = _cli("offsets", "set", "-c", str(one), "--position", position)
    assert done.returncode == 0, done.stderr
    row = SqliteOffsetStore(offsets).load("p", "app")
    assert row is not None and row.decoded() == Watermark("s", (7,))
    done = _cli("offsets", "set", "-c", str(two), "--position", position)
    assert done.returncode == 2 and "this pipeline has 2 sources" in done.stderr
    assert "add --source with one of: a, b" in done.stderr


def test_status_shows_which_capture_mode_auto_chose() -> None:
    body = {**LIVE, "sources": {"pg": {**LIVE["sources"]["pg"], "capture": {
        "mode": "auto", "chosen": "poll", "because": ["wal_level: is replica, not logical"],
        "cannot_see": ["public.orders: deletes"]}}}}  # fmt: skip
    text = _text(body)
    assert "auto: chose poll (wal_level: is replica, not logical)" in text
    assert "cannot see: public.orders: deletes" in text
    logged = {
        **LIVE,
        "sources": {"pg": {**LIVE["sources"]["pg"], "capture": {"mode": "auto", "chosen": "log"}}},
    }
    assert "auto: chose log" in _text(logged) and "cannot see" not in _text(logged)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_status_finds_a_run_on_any_http_port(tmp_path: Path) -> None:
    """`run --http-port N` records host:port in its pipeline lock; `status -c` (no --url) reads it. It
    used to try only the config's health_checks and report the running service as not running."""
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users VALUES (1, 'ada')")
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
name: anyport
source: {{type: sqlite, name: app, path: {db}, tables: [users]}}
destination: {{type: file, path: {tmp_path / "out.jsonl"}}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
""")
    port = _free_port()
    run = subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(config), "--http-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert run.poll() is None, run.stderr.read() if run.stderr else ""
            done = _cli("status", "-c", str(config), "--json")
            body = orjson.loads(done.stdout) if done.returncode == 0 else {}
            if body.get("origin") == "service":
                break
            assert time.monotonic() < deadline, (done.stdout, done.stderr)
            time.sleep(0.2)
        assert body["url"] == f"http://127.0.0.1:{port}/status" and body["pipeline"] == "anyport"
        shown = _cli("status", "-c", str(config))
        assert shown.returncode == 0 and "not running" not in shown.stdout
        assert f"(from http://127.0.0.1:{port}/status)" in shown.stdout
        # --url still wins: pointed elsewhere, status does not fall back to the recorded address.
        elsewhere = _cli("status", "-c", str(config), "--url", "http://127.0.0.1:9", "--json")
        assert orjson.loads(elsewhere.stdout)["origin"] == "offsets"
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=30)
    assert run.returncode == 0
    stopped = _cli("status", "-c", str(config), "--json")  # a clean exit leaves no address behind
    body = orjson.loads(stopped.stdout)
    assert body["origin"] == "offsets" and "no running service recorded its address" in body["note"]


def test_a_dead_runs_recorded_address_is_only_a_hint(tmp_path: Path) -> None:
    """After a kill -9 the lock file still names the address: status tries it, says so, and shows the
    offset store."""
    db = tmp_path / "app.db"
    sqlite3.connect(db).close()
    offsets = tmp_path / "offsets.db"
    SqliteOffsetStore(offsets).save("dead", "app", Watermark("s", (3,)))
    port = _free_port()
    lock = tmp_path / "offsets.db.dead.lock"
    lock.write_bytes(orjson.dumps({"pid": 999_999_999, "host": "h", "http": f"0.0.0.0:{port}"}))
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
name: dead
source: {{type: sqlite, name: app, path: {db}, tables: [t]}}
destination: {{type: stdout}}
offsets: {{type: sqlite, path: {offsets}}}
""")
    done = _cli("status", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    body = orjson.loads(done.stdout)
    assert body["origin"] == "offsets"
    assert f"the service does not answer at http://127.0.0.1:{port}/status" in body["note"]
